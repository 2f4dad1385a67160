"""AuxiliaryHead on images, sequences, volumes and flat features."""

import keras
import numpy as np
import pytest
from backend_utils import gradients

from keras_selfdistill import AuxiliaryHead
from keras_selfdistill import SelfDistillModel
from keras_selfdistill.layers.auxiliary_head import scale_gradient
from keras_selfdistill.testing import run_model_saving_test
from keras_selfdistill.testing import run_serialization_test


@pytest.mark.parametrize("block", ["single", "double"])
@pytest.mark.parametrize(
    "input_shape",
    [(8, 8, 4), (12, 4), (4, 4, 4, 2), (6,)],
    ids=["image", "sequence", "volume", "flat"],
)
def test_head_maps_any_rank_to_logits(input_shape, block):
    head = AuxiliaryHead(num_classes=5, width=7, block=block)
    inputs = np.ones((3, *input_shape), "float32")
    assert tuple(head(inputs).shape) == (3, 5)
    assert tuple(head.bottleneck(inputs).shape) == (3, 7)


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


# ---------------------------------------------------------------------- #
# block="double" and attention=True: the authors' heads.
# ---------------------------------------------------------------------- #


def test_double_block_downsamples_once_then_keeps_the_resolution():
    head = AuxiliaryHead(num_classes=3, width=8, num_downsampling=2, block="double")
    head.build((None, 16, 16, 4))
    convolutions = [block[0::2] for block in head.bottleneck.blocks]
    assert [[c.strides for c in pair] for pair in convolutions] == [
        [(2, 2), (1, 1)], [(2, 2), (1, 1)]
    ]
    # The first convolution keeps its input's channels, the second sets the width.
    assert [[c.filters for c in pair] for pair in convolutions] == [[4, 8], [8, 8]]
    assert all(
        isinstance(c, keras.layers.SeparableConv2D) for pair in convolutions for c in pair
    )


def _sepconv_parameters(channels_in, channels_out, kernel_size, batch_norm_weights):
    """Depthwise k*k + pointwise, twice, and the two batch norms."""
    return (
        channels_in * kernel_size**2 + channels_in * channels_in
        + batch_norm_weights * channels_in
        + channels_in * kernel_size**2 + channels_in * channels_out
        + batch_norm_weights * channels_out
    )


def test_double_block_parameter_count_by_hand():
    head = AuxiliaryHead(num_classes=3, width=6, num_downsampling=2, block="double")
    head.build((None, 8, 8, 4))
    # Step 1 (4 -> 6 channels): 36 + 16 + 16 + 36 + 24 + 24 = 152 (batch
    # norm: gamma, beta, moving mean and variance). Step 2 (6 -> 6): 54 + 36
    # + 24 + 54 + 36 + 24 = 228. Classifier: 6 * 3 + 3 = 21.
    assert head.count_params() == 152 + 228 + 21
    gated = AuxiliaryHead(
        num_classes=3, width=6, num_downsampling=2, block="double", attention=True
    )
    gated.build((None, 8, 8, 4))
    # The gate: a SepConv 4 -> 4 (36 + 16 + 16 + 36 + 16 + 16) and a batch norm (16).
    assert gated.count_params() == 152 + 228 + 21 + 136 + 16


def test_authors_resnet18_first_head_has_the_official_parameter_count():
    # The official head 1 of ResNet-18 on CIFAR: attention1 (SepConv 64 -> 64,
    # then a batch norm) and scala1 (SepConv 64 -> 128 -> 256 -> 512), counted
    # with PyTorch's 2 trainable weights per batch-norm channel.
    official = _sepconv_parameters(64, 64, 3, 2) + 2 * 64 + sum(
        _sepconv_parameters(c, 2 * c, 3, 2) for c in (64, 128, 256)
    )
    head = AuxiliaryHead(num_classes=100, num_downsampling=3, block="double",
                         attention=True)
    head.build((None, 32, 32, 64))
    trainable = sum(int(np.prod(w.shape)) for w in head.bottleneck.trainable_weights)
    assert trainable == official == 278_528


def _gated_and_plain_heads(input_shape, use_batch_norm=True):
    """A head with the gate and one without it, sharing block and classifier weights."""
    settings = dict(num_classes=3, width=5, num_downsampling=2, block="double",
                    use_batch_norm=use_batch_norm)
    gated = AuxiliaryHead(attention=True, **settings)
    plain = AuxiliaryHead(**settings)
    gated.build((None, *input_shape))
    plain.build((None, *input_shape))
    rng = np.random.default_rng(3)
    for gated_block, plain_block in zip(gated.bottleneck.blocks, plain.bottleneck.blocks):
        for gated_layer, plain_layer in zip(gated_block, plain_block):
            gated_layer.set_weights(
                [rng.uniform(0.5, 1.5, size=w.shape) for w in gated_layer.get_weights()]
            )
            plain_layer.set_weights(gated_layer.get_weights())
    plain.classifier.set_weights(gated.classifier.get_weights())
    return gated, plain


@pytest.mark.parametrize("use_batch_norm", [True, False])
def test_attention_gate_multiplies_the_features_before_the_blocks(use_batch_norm):
    gated, plain = _gated_and_plain_heads((8, 6, 3), use_batch_norm)
    inputs = np.random.default_rng(4).normal(size=(2, 8, 6, 3)).astype("float32")
    gate = keras.ops.convert_to_numpy(gated.bottleneck.attention_map(inputs))
    assert gate.shape == inputs.shape
    assert gate.std() > 0  # Not a constant: the test below covers that case.
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(gated(inputs)),
        keras.ops.convert_to_numpy(plain(gate * inputs)),
        rtol=1e-5, atol=1e-5,
    )


@pytest.mark.parametrize("beta, expected", [(-5.0, 0.5), (4.0, 1 / (1 + np.exp(-4.0)))])
def test_attention_gate_is_a_sigmoid_of_a_relu(beta, expected):
    # With the gate's last batch norm at gamma 0, beta b, the map before the
    # sigmoid is relu(b) everywhere: the gate is sigmoid(relu(b)), never < 0.5.
    gated, plain = _gated_and_plain_heads((6, 6, 3))
    norm = gated.bottleneck.gate[-1]
    norm.set_weights([np.zeros(3), np.full(3, beta), np.zeros(3), np.ones(3)])
    inputs = np.random.default_rng(5).normal(size=(2, 6, 6, 3)).astype("float32")
    gate = keras.ops.convert_to_numpy(gated.bottleneck.attention_map(inputs))
    np.testing.assert_allclose(gate, np.full(inputs.shape, expected), rtol=1e-6)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(gated.bottleneck(inputs)),
        keras.ops.convert_to_numpy(plain.bottleneck(expected * inputs)),
        rtol=1e-5, atol=1e-5,
    )


def test_attention_gate_has_the_input_size_also_when_odd():
    head = AuxiliaryHead(num_classes=2, attention=True)
    head.build((None, 7, 9, 3))
    gate = head.bottleneck.attention_map(np.ones((1, 7, 9, 3), "float32"))
    assert tuple(gate.shape) == (1, 7, 9, 3)


def test_self_distill_model_features_pass_through_the_gate():
    inputs = keras.Input((8, 8, 3))
    x1 = keras.layers.Conv2D(4, 3, padding="same", name="stage1")(inputs)
    head = AuxiliaryHead(2, block="double", attention=True, name="head_1")
    x2 = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="stage2")(x1)
    logits = keras.layers.Dense(2, name="logits")(keras.layers.GlobalAveragePooling2D()(x2))
    model = SelfDistillModel(inputs, [head(x1), logits])
    images = np.random.default_rng(6).normal(size=(2, 8, 8, 3)).astype("float32")
    outputs = model.head_outputs(images)
    stage1 = keras.Model(inputs, x1)(images)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(outputs["features"][0]),
        keras.ops.convert_to_numpy(head.bottleneck(stage1)), rtol=1e-5, atol=1e-5,
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(outputs["logits"][0]),
        keras.ops.convert_to_numpy(head(stage1)), rtol=1e-5, atol=1e-5,
    )


def test_config_round_trip_of_the_authors_head():
    head = AuxiliaryHead(num_classes=4, block="double", attention=True, name="head_1")
    revived = run_serialization_test(head)
    assert revived.block == "double" and revived.attention is True


def test_config_without_the_new_arguments_gives_the_single_block():
    config = AuxiliaryHead(num_classes=4).get_config()
    del config["block"], config["attention"]  # A 0.1.0 config.
    revived = AuxiliaryHead.from_config(config)
    assert revived.block == "single" and revived.attention is False


@pytest.mark.parametrize("block, attention", [("double", False), ("double", True),
                                              ("single", True)])
def test_authors_head_saved_inside_a_model_predicts_the_same(block, attention):
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(
        inputs,
        AuxiliaryHead(num_classes=4, num_downsampling=2, block=block,
                      attention=attention, name="head")(inputs),
    )
    # Moving statistics away from 0 and 1, so a lost batch-norm state shows.
    bottleneck = model.get_layer("head").bottleneck
    for layer in bottleneck.gate + [layer for block in bottleneck.blocks for layer in block]:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(np.full(layer.moving_mean.shape, 0.3))
            layer.moving_variance.assign(np.full(layer.moving_variance.shape, 2.0))
    run_model_saving_test(model, np.random.default_rng(7).normal(size=(5, 8, 8, 3)))


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_authors_head_trains_under_mixed_precision(policy):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        inputs = keras.Input((8, 8, 4))
        head = AuxiliaryHead(3, num_downsampling=2, block="double", attention=True)
        model = keras.Model(inputs, head(inputs))
        model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        images = np.random.default_rng(8).uniform(size=(8, 8, 8, 4)).astype("float32")
        history = model.fit(images, np.arange(8) % 3, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][-1])
        gate = head.bottleneck.attention_map(images)
        assert keras.backend.standardize_dtype(gate.dtype) == policy.split("_")[1]
    finally:
        keras.mixed_precision.set_global_policy(previous)


# -- gradient_scale: the heads' pull on the backbone ------------------------ #


@pytest.mark.parametrize("scale", [0.0, 0.3, 1.0])
def test_scale_gradient_keeps_the_value_and_scales_the_gradient(scale):
    values = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    x = keras.Variable(values)
    weights = np.arange(12, dtype="float32").reshape(4, 3)

    # stop_gradient: torch cannot turn a tensor that needs grad into numpy.
    scaled = keras.ops.stop_gradient(scale_gradient(x.value, scale))
    # `+ sum(x)`: a path that always carries gradient 1 (torch refuses a
    # loss with no gradient at all, the `scale=0` case).
    (grad,) = gradients(
        lambda: keras.ops.sum(scale_gradient(x.value, scale) * keras.ops.convert_to_tensor(weights))
        + keras.ops.sum(x.value),
        [x],
    )

    np.testing.assert_array_equal(keras.ops.convert_to_numpy(scaled), values)
    np.testing.assert_allclose(grad, scale * weights + 1.0, rtol=1e-6)


@pytest.mark.parametrize("scale", [0.0, 0.25])
def test_head_gradient_scale_scales_only_the_backbone_gradient(scale):
    """The backbone layer below a head gets `scale` times the gradient of
    the head's loss; the head's own weights get all of theirs."""
    inputs = keras.Input((8, 8, 3))
    stage = keras.layers.Conv2D(4, 3, padding="same", name="stage")
    reference = AuxiliaryHead(num_classes=3, use_batch_norm=False, name="head")
    scaled = AuxiliaryHead(num_classes=3, use_batch_norm=False, gradient_scale=scale,
                           name="scaled_head")
    features = stage(inputs)
    reference(features), scaled(features)
    scaled.set_weights(reference.get_weights())
    images = np.random.default_rng(1).normal(size=(2, 8, 8, 3)).astype("float32")

    def head_loss(head):
        return lambda: keras.ops.sum(keras.ops.square(head(stage(images))))

    variables = [stage.kernel, *reference.trainable_weights]
    full = gradients(head_loss(reference), variables)
    part = gradients(head_loss(scaled), [stage.kernel, *scaled.trainable_weights])

    np.testing.assert_allclose(part[0], scale * full[0], rtol=1e-5, atol=1e-7)
    for mine, theirs in zip(part[1:], full[1:]):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-7)


def test_gradient_scale_round_trips_and_defaults_to_one():
    head = AuxiliaryHead(num_classes=3, gradient_scale=0.3)
    assert run_serialization_test(head).gradient_scale == 0.3
    config = AuxiliaryHead(num_classes=3).get_config()
    del config["gradient_scale"]
    assert AuxiliaryHead.from_config(config).gradient_scale == 1.0


def test_from_backbone_passes_head_gradient_scale_to_every_head():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="stage1")(inputs)
    x = keras.layers.Conv2D(4, 3, name="stage2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    backbone = keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))
    model = SelfDistillModel.from_backbone(
        backbone, taps=["stage1", "stage2"], head_gradient_scale=0.5
    )
    scales = [model.get_layer(f"head_{i}").bottleneck.gradient_scale for i in (1, 2)]
    assert scales == [0.5, 0.5]


def test_a_model_with_a_scaled_head_saves_and_predicts_the_same(tmp_path):
    inputs = keras.Input((8, 8, 3))
    head = AuxiliaryHead(num_classes=4, gradient_scale=0.3, name="head")
    model = keras.Model(inputs, head(inputs))
    restored = run_model_saving_test(model, np.random.default_rng(0).normal(size=(5, 8, 8, 3)))
    assert restored.get_layer("head").gradient_scale == 0.3
    assert restored.get_layer("head").bottleneck.gradient_scale == 0.3
