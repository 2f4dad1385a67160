"""keras_selfdistill.models.compute_cost: MACs per layer and per head."""

import keras
import pytest

from keras_selfdistill import AuxiliaryHead
from keras_selfdistill import SelfDistillModel
from keras_selfdistill.models import compute_cost

NUM_CLASSES = 10


def build_model():
    """8x8 digits, a head after each of the two first stages."""
    inputs = keras.Input((8, 8, 1), name="image")
    x1 = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stage1")(inputs)
    x2 = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="stage2")(x1)
    x3 = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="stage3")(x2)
    head_1 = AuxiliaryHead(NUM_CLASSES, num_downsampling=2, name="head_1")(x1)
    head_2 = AuxiliaryHead(NUM_CLASSES, width=32, name="head_2")(x2)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(x3)
    logits = keras.layers.Dense(NUM_CLASSES, name="logits")(pooled)
    return SelfDistillModel(inputs, [head_1, head_2, logits])


# MACs of `build_model` by hand: output positions x kernel entries.
STAGE1 = 8 * 8 * (3 * 3 * 1 * 8)          # 4,608
STAGE2 = 4 * 4 * (3 * 3 * 8 * 16)         # 18,432
STAGE3 = 2 * 2 * (3 * 3 * 16 * 32)        # 18,432
LOGITS = 32 * NUM_CLASSES                 # 320
# head_1 on 8x8x8: separable 8->16 at 4x4, separable 16->32 at 2x2, dense.
HEAD_1 = 4 * 4 * (3 * 3 * 8 + 8 * 16) + 2 * 2 * (3 * 3 * 16 + 16 * 32) + 32 * NUM_CLASSES
# head_2 on 4x4x16: separable 16->32 at 2x2, dense.
HEAD_2 = 2 * 2 * (3 * 3 * 16 + 16 * 32) + 32 * NUM_CLASSES


def test_layer_macs_counts_kernel_entries_times_output_positions():
    inputs = keras.Input((8, 8, 3))
    conv = keras.layers.Conv2D(4, 3, strides=2, padding="same")
    separable = keras.layers.SeparableConv2D(6, 3, padding="valid")
    dense = keras.layers.Dense(5)
    dense(keras.layers.Flatten()(separable(conv(inputs))))
    assert compute_cost.layer_macs(conv) == 4 * 4 * (3 * 3 * 3 * 4)
    assert compute_cost.layer_macs(separable) == 2 * 2 * (3 * 3 * 4 + 4 * 6)
    assert compute_cost.layer_macs(dense) == (2 * 2 * 6) * 5


def test_layer_macs_ignores_layers_without_kernels():
    inputs = keras.Input((4, 4, 2))
    norm = keras.layers.BatchNormalization()
    pool = keras.layers.GlobalAveragePooling2D()
    pool(norm(inputs))
    assert compute_cost.layer_macs(norm) == 0
    assert compute_cost.layer_macs(pool) == 0


def test_auxiliary_head_macs_follow_each_block_resolution():
    heads = build_model().export_heads()
    assert compute_cost.layer_macs(heads.get_layer("head_1")) == HEAD_1
    assert compute_cost.layer_macs(heads.get_layer("head_2")) == HEAD_2


def test_head_costs_count_every_layer_up_to_the_exit_once():
    model = build_model()
    assert compute_cost.head_costs(model) == [
        STAGE1 + HEAD_1,
        STAGE1 + HEAD_1 + STAGE2 + HEAD_2,
        STAGE1 + HEAD_1 + STAGE2 + HEAD_2 + STAGE3 + LOGITS,
    ]
    assert compute_cost.backbone_cost(model) == STAGE1 + STAGE2 + STAGE3 + LOGITS


def test_head_costs_of_the_exported_heads_equal_the_model_s():
    model = build_model()
    assert compute_cost.head_costs(model.export_heads()) == compute_cost.head_costs(model)


def test_head_costs_need_static_spatial_shapes():
    inputs = keras.Input((None, None, 1))
    x = keras.layers.Conv2D(4, 3)(inputs)
    head = AuxiliaryHead(3, name="head_1")(x)
    logits = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))
    with pytest.raises(ValueError, match="static spatial shapes"):
        compute_cost.head_costs(SelfDistillModel(inputs, [head, logits]))
