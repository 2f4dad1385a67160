"""AuxiliaryHead on images, sequences, volumes and flat features."""

import keras
import numpy as np
import pytest

from keras_selfdistill import AuxiliaryHead
from keras_selfdistill.testing import run_model_saving_test
from keras_selfdistill.testing import run_serialization_test


@pytest.mark.parametrize(
    "input_shape",
    [(8, 8, 4), (12, 4), (4, 4, 4, 2), (6,)],
    ids=["image", "sequence", "volume", "flat"],
)
def test_head_maps_any_rank_to_logits(input_shape):
    head = AuxiliaryHead(num_classes=5)
    logits = head(np.ones((3, *input_shape), "float32"))
    assert tuple(logits.shape) == (3, 5)


def test_each_downsampling_block_halves_the_resolution():
    head = AuxiliaryHead(num_classes=3, width=8, num_downsampling=3)
    head.build((None, 32, 32, 4))
    strides = [block[0].strides for block in head.bottleneck.blocks]
    assert strides == [(2, 2)] * 3
    feature_map = keras.Sequential(
        [block[0] for block in head.bottleneck.blocks]
    )(np.zeros((1, 32, 32, 4), "float32"))
    assert tuple(feature_map.shape) == (1, 4, 4, 8)


def test_default_width_doubles_the_channels_at_each_block():
    head = AuxiliaryHead(num_classes=3, num_downsampling=2)
    assert head.bottleneck is None  # Built from the input's rank and width.
    head.build((None, 16, 16, 6))
    widths = [block[0].filters for block in head.bottleneck.blocks]
    assert widths == [12, 24]
    assert tuple(head.classifier.kernel.shape) == (24, 3)


def test_explicit_width_sets_the_feature_width():
    head = AuxiliaryHead(num_classes=3, width=40, num_downsampling=1)
    head.build((None, 10, 7))
    features = head.bottleneck(np.ones((2, 10, 7), "float32"))
    assert tuple(features.shape) == (2, 40)


def test_zero_blocks_is_pooling_and_a_linear_classifier():
    head = AuxiliaryHead(num_classes=2, num_downsampling=0)
    inputs = np.random.default_rng(0).normal(size=(4, 5, 5, 3)).astype("float32")
    logits = keras.ops.convert_to_numpy(head(inputs))
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in head.classifier.weights)
    np.testing.assert_allclose(logits, inputs.mean(axis=(1, 2)) @ kernel + bias, atol=1e-5)


def test_batch_norm_can_be_turned_off():
    head = AuxiliaryHead(num_classes=2, use_batch_norm=False)
    head.build((None, 8, 8, 3))
    assert len(head.bottleneck.blocks[0]) == 1
    assert head.bottleneck.blocks[0][0].use_bias


def test_config_round_trip():
    head = AuxiliaryHead(
        num_classes=7, width=16, num_downsampling=2, kernel_size=5,
        use_batch_norm=False, activation="gelu", name="head_3",
    )
    revived = run_serialization_test(head)
    assert revived.name == "head_3" and revived.kernel_size == 5


def test_saved_inside_a_model_predicts_the_same(tmp_path):
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, AuxiliaryHead(num_classes=4, name="head")(inputs))
    run_model_saving_test(model, np.random.default_rng(0).normal(size=(5, 8, 8, 3)))


# Bad inputs (each refused with a message naming the value and what is
# allowed) are rows of the one table in tests/test_bad_inputs.py.


def test_convolutions_are_separable_by_default_like_the_papers_sepconv():
    separable = AuxiliaryHead(num_classes=3, width=64)
    separable.build((None, 16, 16, 32))
    full = AuxiliaryHead(num_classes=3, width=64, separable=False)
    full.build((None, 16, 16, 32))
    assert isinstance(separable.bottleneck.blocks[0][0], keras.layers.SeparableConv2D)
    assert isinstance(full.bottleneck.blocks[0][0], keras.layers.Conv2D)
    # 3x3x32 depthwise + 32x64 pointwise, against 3x3x32x64.
    assert separable.bottleneck.count_params() < full.bottleneck.count_params() / 5
