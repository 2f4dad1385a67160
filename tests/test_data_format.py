"""Channels-first models: the heads follow the backbone's layout.

Channels first is the torch backend's native layout for convolutions, and
some users build their models that way (`keras.config.
set_image_data_format("channels_first")`). A self-distilled model built channels first
must compute what the same model built channels last computes on transposed
images: the same heads (widths, number of blocks), the same outputs, the same
training step, the same file round trip.
"""

import contextlib

import keras
import numpy as np
import pytest

from keras_selfdistill import DINO
from keras_selfdistill import AuxiliaryHead
from keras_selfdistill import Distiller
from keras_selfdistill import MultiCrop
from keras_selfdistill import SelfDistillModel
from keras_selfdistill.models import compute_cost

NUM_CLASSES = 5


@contextlib.contextmanager
def image_data_format(data_format):
    previous = keras.config.image_data_format()
    keras.config.set_image_data_format(data_format)
    try:
        yield
    finally:
        keras.config.set_image_data_format(previous)


def conv_backbone(data_format, name="backbone", width=6):
    """Conv -> BN -> ReLU at 16x16, two stride-2 stages, pooled logits.

    No map has as many channels as columns: Keras's TensorFlow backend adds
    a channels-first bias on the wrong axis then (see the last test).
    """
    axis = 1 if data_format == "channels_first" else -1
    shape = (3, 16, 16) if data_format == "channels_first" else (16, 16, 3)
    inputs = keras.Input(shape)
    x = keras.layers.Conv2D(width, 3, padding="same", name="stem")(inputs)
    x = keras.layers.BatchNormalization(axis=axis, name="stem_bn")(x)
    x = keras.layers.ReLU(name="stage0")(x)
    x = keras.layers.Conv2D(2 * width, 3, strides=2, padding="same", name="down1")(x)
    x = keras.layers.ReLU(name="stage1")(x)
    x = keras.layers.Conv2D(4 * width, 3, strides=2, padding="same", name="down2")(x)
    x = keras.layers.ReLU(name="stage2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(NUM_CLASSES, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def self_distilled(data_format, **head_arguments):
    with image_data_format(data_format):
        keras.utils.set_random_seed(0)
        model = SelfDistillModel.from_backbone(
            conv_backbone(data_format), taps=["stage0", "stage1"], **head_arguments
        )
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    return model


def the_two_layouts(**head_arguments):
    """The same self-distilled model built channels last and channels first,
    with the channels-last model's weights in both."""
    last = self_distilled("channels_last", **head_arguments)
    first = self_distilled("channels_first", **head_arguments)
    first.set_weights(last.get_weights())
    return last, first


def heads(model):
    return [model.get_layer(name) for name in ("head_1", "head_2")]


def images(count=8, seed=0):
    rng = np.random.default_rng(seed)
    channels_last = rng.normal(size=(count, 16, 16, 3)).astype("float32")
    return channels_last, np.transpose(channels_last, (0, 3, 1, 2))


@pytest.mark.parametrize(
    "head_arguments",
    [{}, {"head_block": "double", "head_attention": True}],
    ids=["default heads", "the authors' heads with the attention gate"],
)
def test_heads_compute_the_same_function_in_both_layouts(head_arguments):
    last, first = the_two_layouts(**head_arguments)
    x_last, x_first = images()

    for head_last, head_first in zip(heads(last), heads(first)):
        assert head_first.data_format == "channels_first"
        assert head_last.data_format == "channels_last"
        assert head_first.num_downsampling == head_last.num_downsampling
        assert head_first.bottleneck.blocks[0][0].filters == (
            head_last.bottleneck.blocks[0][0].filters
        )
    # Two stride-2 stages between the 16x16 tap and the 4x4 deepest map.
    assert [head.num_downsampling for head in heads(first)] == [2, 1]
    every_head_last = last.export_heads().predict(x_last, verbose=0)
    every_head_first = first.export_heads().predict(x_first, verbose=0)
    for logits_last, logits_first in zip(every_head_last, every_head_first):
        np.testing.assert_allclose(logits_first, logits_last, rtol=1e-4, atol=1e-4)


def test_heads_take_the_backbones_layout_not_the_current_default():
    with image_data_format("channels_first"):
        backbone = conv_backbone("channels_first")

    with image_data_format("channels_last"):
        model = SelfDistillModel.from_backbone(backbone, taps=["stage0", "stage1"])

    assert [head.data_format for head in heads(model)] == ["channels_first"] * 2
    assert [head.num_downsampling for head in heads(model)] == [2, 1]


def test_attention_gate_is_cropped_on_the_spatial_axes_channels_first():
    head = AuxiliaryHead(NUM_CLASSES, attention=True, data_format="channels_first")
    x = np.random.default_rng(0).normal(size=(2, 3, 7, 5)).astype("float32")
    head(x)

    gate = keras.ops.convert_to_numpy(head.bottleneck.attention_map(x))

    assert gate.shape == x.shape


def test_a_training_step_moves_both_layouts_to_the_same_weights():
    last, first = the_two_layouts()
    x_last, x_first = images(16)
    labels = np.arange(16) % NUM_CLASSES

    history_last = last.fit(x_last, labels, batch_size=16, epochs=2, verbose=0)
    history_first = first.fit(x_first, labels, batch_size=16, epochs=2, verbose=0)

    np.testing.assert_allclose(
        history_first.history["loss"], history_last.history["loss"], rtol=1e-3
    )
    for weight_last, weight_first in zip(last.weights, first.weights):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(weight_first),
            keras.ops.convert_to_numpy(weight_last),
            rtol=1e-3, atol=1e-4, err_msg=weight_first.path,
        )


def test_a_channels_first_model_round_trips_through_a_keras_file(tmp_path):
    _, first = the_two_layouts()
    _, x_first = images()
    path = str(tmp_path / "channels_first.keras")
    first.save(path)

    with image_data_format("channels_last"):
        # The file says channels first; the process's default must not matter.
        loaded = keras.models.load_model(path, safe_mode=True)

    assert [head.data_format for head in heads(loaded)] == ["channels_first"] * 2
    np.testing.assert_allclose(
        loaded.predict(x_first, verbose=0), first.predict(x_first, verbose=0),
        rtol=1e-5, atol=1e-5,
    )


def test_head_compute_is_counted_on_the_spatial_axes_channels_first():
    last, first = the_two_layouts()

    assert compute_cost.head_costs(first) == compute_cost.head_costs(last)
    assert compute_cost.backbone_cost(first) == compute_cost.backbone_cost(last)


def test_distiller_hints_of_equal_width_train_channels_first():
    with image_data_format("channels_first"):
        keras.utils.set_random_seed(0)
        distiller = Distiller(
            conv_backbone("channels_first", name="teacher"),
            conv_backbone("channels_first", name="student"),
            feature_pairs=[("stage1", "stage1")],
        )
    distiller.compile(optimizer="sgd")
    _, x_first = images(8)

    history = distiller.fit(x_first, np.arange(8) % NUM_CLASSES, epochs=1, verbose=0)

    assert np.isfinite(history.history["loss"][0])
    assert distiller.feature_adapters == [None]


def test_distiller_hints_take_channels_first_maps_of_unknown_size():
    with image_data_format("channels_first"):
        inputs = keras.Input((3, None, None))
        hint = keras.layers.Conv2D(4, 3, padding="same", name="hint")(inputs)
        pooled = keras.layers.GlobalAveragePooling2D()(hint)
        teacher = keras.Model(inputs, keras.layers.Dense(NUM_CLASSES)(pooled), name="teacher")
        student = keras.models.clone_model(teacher)
        student.name = "student"
        distiller = Distiller(teacher, student, feature_pairs=[("hint", "hint")])

    assert distiller.feature_adapters == [None]


def test_distiller_refuses_hints_of_different_widths_channels_first():
    with image_data_format("channels_first"):
        with pytest.raises(ValueError, match="needs channels-last maps") as error:
            Distiller(
                conv_backbone("channels_first", name="teacher", width=12),
                conv_backbone("channels_first", name="student"),
                feature_pairs=[("stage1", "stage1")],
            )

    assert "different widths" in str(error.value)


def test_multi_crop_draws_the_same_crops_in_both_layouts():
    x_last, x_first = images(4)
    x_last, x_first = np.abs(x_last) % 1.0, np.abs(x_first) % 1.0

    def crops(data_format, x):
        layer = MultiCrop(global_size=8, local_size=4, num_local_crops=2, seed=3,
                          data_format=data_format)
        return [keras.ops.convert_to_numpy(view) for view in layer(x)], layer

    views_last, _ = crops("channels_last", x_last)
    views_first, layer = crops("channels_first", x_first)

    assert [view.shape for view in views_first] == [
        (4, 3, 8, 8), (4, 3, 8, 8), (4, 3, 4, 4), (4, 3, 4, 4)
    ]
    assert [tuple(shape) for shape in layer.compute_output_shape(x_first.shape)] == [
        view.shape for view in views_first
    ]
    for view_last, view_first in zip(views_last, views_first):
        np.testing.assert_allclose(
            np.transpose(view_first, (0, 2, 3, 1)), view_last, rtol=1e-5, atol=1e-6
        )


def test_multi_crop_keeps_its_layout_in_its_config():
    with image_data_format("channels_first"):
        layer = MultiCrop(seed=1)

    with image_data_format("channels_last"):
        restored = MultiCrop.from_config(layer.get_config())

    assert layer.get_config()["data_format"] == "channels_first"
    assert restored.data_format == "channels_first"


def test_dino_trains_a_channels_first_backbone_without_labels():
    with image_data_format("channels_first"):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((3, None, None))
        x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
        backbone = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
        model = DINO(backbone, output_dim=8, hidden_dim=8, bottleneck_dim=4,
                     multi_crop=MultiCrop(global_size=8, local_size=4,
                                          num_local_crops=2, seed=0))
    model.compile(optimizer="adam")
    _, x_first = images(8)

    history = model.fit(np.abs(x_first) % 1.0, batch_size=8, epochs=1, verbose=0)

    assert model.multi_crop.data_format == "channels_first"
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="TensorFlow's ops.add only"
)
@pytest.mark.xfail(
    strict=True,
    reason="Keras 3.15's TensorFlow ops.add turns a (1, C, 1, 1) addend into "
    "an NHWC bias_add whenever the other tensor's last axis is also C, so a "
    "channels-first Conv2D adds its bias along the columns when it has as "
    "many channels as columns. Upstream; when this passes, drop the note in "
    "docs/backbones.md (Channels first).",
)
def test_keras_adds_a_channels_first_bias_on_the_channel_axis():
    with image_data_format("channels_first"):
        conv = keras.layers.Conv2D(8, 1, kernel_initializer="zeros")
        conv.build((None, 4, 8, 8))
    conv.bias.assign(np.arange(8, dtype="float32"))

    outputs = keras.ops.convert_to_numpy(conv(np.ones((1, 4, 8, 8), "float32")))

    np.testing.assert_array_equal(outputs[0, :, 0, 0], np.arange(8))
