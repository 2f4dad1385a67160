"""`SelfDistillModel.from_backbone` on the models users bring: nested
functional models (keras-hub backbones inside their classifiers,
keras.applications inside a user's model), multi-output layers, and
classifiers whose last layers only reshape the logits."""

import keras
import numpy as np
import pytest
from backend_utils import tensorflow_pass_only

from keras_selfdistill import SelfDistillModel
from keras_selfdistill import testing

NUM_CLASSES = 10


def images(size=8, channels=1, count=4):
    return np.random.default_rng(0).uniform(
        size=(count, size, size, channels)
    ).astype("float32")


def twice_nested_backbone():
    """keras-hub's layout: a functional Backbone inside a functional model
    inside the classifier; the taps live two levels down."""
    block_inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", name="inner_conv")(block_inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="inner_down")(x)
    block = keras.Model(block_inputs, x, name="block")
    middle_inputs = keras.Input((8, 8, 1))
    middle = keras.Model(
        middle_inputs,
        keras.layers.ReLU(name="middle_relu")(block(middle_inputs)),
        name="middle",
    )
    inputs = keras.Input((8, 8, 1))
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(middle(inputs))
    logits = keras.layers.Dense(NUM_CLASSES, name="logits")(pooled)
    return keras.Model(inputs, logits, name="classifier")


class TwoOutputs(keras.layers.Layer):
    """A layer returning a list of tensors (as DINOv2's encoder does)."""

    def call(self, inputs):
        return [inputs * 2.0, keras.ops.relu(inputs)]


def backbone_with_a_multi_output_layer():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", name="stage1")(inputs)
    first, second = TwoOutputs(name="split")(x)
    x = keras.layers.Add(name="merge")([first, second])
    logits = keras.layers.Dense(NUM_CLASSES, name="logits")(
        keras.layers.GlobalAveragePooling2D()(x)
    )
    return keras.Model(inputs, logits, name="multi_output")


# -- nested models --------------------------------------------------------- #


def test_taps_reach_layers_two_nested_models_deep():
    backbone = twice_nested_backbone()
    model = SelfDistillModel.from_backbone(backbone, taps=["inner_conv"])
    x = images()
    np.testing.assert_allclose(
        model.predict(x, verbose=0), backbone.predict(x, verbose=0), atol=1e-6
    )
    # The head reads inner_conv's 4 channels, and trains with the backbone.
    assert model.get_layer("head_1").input.shape[-1] == 4
    model.compile(optimizer="adam")
    before = keras.ops.convert_to_numpy(backbone.get_layer("middle").get_layer(
        "block").get_layer("inner_conv").kernel)
    model.fit(x, np.arange(4), epochs=1, verbose=0)
    after = keras.ops.convert_to_numpy(
        model.get_layer("inner_conv").kernel
    )
    assert not np.allclose(before, after)  # The same layer, trained.
    np.testing.assert_allclose(  # The user's backbone shares the weights.
        model.predict(x, verbose=0), backbone.predict(x, verbose=0), atol=1e-6
    )


@tensorflow_pass_only("saving a flattened graph does not depend on the backend")
def test_a_model_tapped_inside_nested_models_saves_and_reloads():
    model = SelfDistillModel.from_backbone(twice_nested_backbone(), taps=["inner_conv"])
    restored = testing.run_model_saving_test(model, images())
    assert restored.get_layer("inner_conv").kernel.shape == (3, 3, 1, 4)


def test_a_multi_output_layer_is_tapped_by_output_index():
    backbone = backbone_with_a_multi_output_layer()
    model = SelfDistillModel.from_backbone(backbone, taps=[("split", 1)])
    head_input = model.get_layer("head_1").input
    split_second = model.get_layer("split").output[1]
    assert head_input is split_second
    x = images()
    # Only the relu output feeds the head: the input (x2) branch differs.
    heads = model.predict_heads(x, verbose=0)
    assert heads[0].shape == (4, NUM_CLASSES)


def test_a_multi_output_tap_without_an_index_says_how_to_give_one():
    with pytest.raises(ValueError, match=r"taps=\[\('split', 0\)\]"):
        SelfDistillModel.from_backbone(
            backbone_with_a_multi_output_layer(), taps=["split"]
        )


class SubclassedBlock(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(4, 3, padding="same", name="hidden_conv")

    def call(self, inputs):
        return keras.ops.relu(self.conv(inputs))


def test_a_tap_inside_a_subclassed_model_gets_one_message_that_says_what_works():
    inputs = keras.Input((8, 8, 1))
    block = SubclassedBlock(name="subclassed")
    x = block(inputs)
    logits = keras.layers.Dense(NUM_CLASSES, name="logits")(
        keras.layers.GlobalAveragePooling2D()(x)
    )
    backbone = keras.Model(inputs, logits)
    with pytest.raises(ValueError) as error:
        SelfDistillModel.from_backbone(backbone, taps=["hidden_conv"])
    message = str(error.value)
    assert "inside the subclassed model 'subclassed'" in message
    assert "'subclassed' itself" in message  # What works, first option.
    assert "Pass 'subclassed' as the backbone" not in message  # No dead end.
    # And that option does work.
    model = SelfDistillModel.from_backbone(backbone, taps=["subclassed"])
    assert model.predict(images(), verbose=0).shape == (4, NUM_CLASSES)


@tensorflow_pass_only("graph surgery on a keras.applications model")
def test_taps_inside_a_keras_application_wrapped_in_a_users_model():
    base = keras.applications.MobileNetV3Small(
        input_shape=(32, 32, 3), include_top=False, weights=None,
        include_preprocessing=False,
    )
    inputs = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(base(inputs))
    logits = keras.layers.Dense(NUM_CLASSES, name="logits")(pooled)
    backbone = keras.Model(inputs, logits)
    model = SelfDistillModel.from_backbone(backbone, taps=["expanded_conv_2_add"])
    x = images(size=32, channels=3, count=2)
    np.testing.assert_allclose(
        model.predict(x, verbose=0), backbone.predict(x, verbose=0), atol=1e-5
    )
    assert model.get_layer("head_1").input.shape[1:] == (4, 4, 24)


# -- the deepest classifier's features -------------------------------------- #


@tensorflow_pass_only("graph reading of a keras.applications model")
def test_mobilenet_v3_features_are_the_channels_before_the_logits_convolution():
    backbone = keras.applications.MobileNetV3Small(
        input_shape=(32, 32, 3), weights=None, classes=NUM_CLASSES,
        classifier_activation=None, include_preprocessing=False,
    )
    # Conv2D "logits" -> Flatten -> Activation "predictions": the features
    # are the 1024 channels the 1x1 logits convolution reads, not the logits.
    model = SelfDistillModel.from_backbone(backbone, taps=["expanded_conv_2_add"])
    assert model._feature_widths == [1024, 1024]
    assert model.get_layer("head_1").width == 1024
    x = images(size=32, channels=3, count=2)
    features = model.head_outputs(x)["features"][-1]
    pooled_conv = keras.Model(
        backbone.input, backbone.get_layer("dropout").output
    )(x)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(features),
        keras.ops.convert_to_numpy(pooled_conv)[:, 0, 0, :], atol=1e-5,
    )


def classifier_behind_reshaping_layers():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(6, 3, padding="same", name="stage1")(inputs)
    hidden = keras.layers.Dense(5, name="hidden")(
        keras.layers.GlobalAveragePooling2D(name="pool")(x)
    )
    x = keras.layers.Dropout(0.1)(hidden)
    x = keras.layers.Dense(NUM_CLASSES, name="classes")(x)
    x = keras.layers.Reshape((NUM_CLASSES, 1))(x)
    x = keras.layers.Flatten()(x)
    logits = keras.layers.Activation("linear", name="logits")(x)
    return keras.Model(inputs, logits)


def test_features_are_found_through_flatten_reshape_activation_and_dropout():
    model = SelfDistillModel.from_backbone(
        classifier_behind_reshaping_layers(), taps=["stage1"]
    )
    assert model._feature_widths[-1] == 5  # The Dense "classes" reads 5.


def test_features_argument_names_the_features():
    model = SelfDistillModel.from_backbone(
        classifier_behind_reshaping_layers(), taps=["stage1"], features="pool"
    )
    assert model._feature_widths[-1] == 6
    assert model.get_layer("head_1").width == 6
    x = images()
    features = model.head_outputs(x)["features"][-1]
    pool = keras.Model(model.network.input, model.get_layer("pool").output)(x)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(features), keras.ops.convert_to_numpy(pool),
        atol=1e-6,
    )


@tensorflow_pass_only("the config of `features` does not depend on the backend")
def test_named_features_are_saved():
    model = SelfDistillModel.from_backbone(
        classifier_behind_reshaping_layers(), taps=["stage1"], features="pool"
    )
    restored = testing.run_model_saving_test(model, images())
    assert restored.features == "pool"
    assert restored._feature_widths[-1] == 6


def test_features_argument_must_name_a_layer_on_the_way_to_the_output():
    with pytest.raises(ValueError, match="Received: features='nope'"):
        SelfDistillModel.from_backbone(
            classifier_behind_reshaping_layers(), taps=["stage1"], features="nope"
        )


# -- keras-hub (installed by hand: see docs/backbones.md) ------------------ #


def keras_hub_models():
    keras_hub = pytest.importorskip("keras_hub")
    resnet = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 16], stackwise_num_blocks=[1, 1],
        stackwise_num_strides=[1, 2], block_type="basic_block",
        use_pre_activation=False, image_shape=(16, 16, 3),
    )
    vit = keras_hub.models.ViTBackbone(
        image_shape=(16, 16, 3), patch_size=4, num_layers=2, num_heads=2,
        hidden_dim=8, mlp_dim=16,
    )
    mit = keras_hub.models.MiTBackbone(
        layerwise_depths=[1, 1], num_layers=2, layerwise_num_heads=[1, 2],
        layerwise_sr_ratios=[2, 1], max_drop_path_rate=0.0,
        layerwise_patch_sizes=[3, 3], layerwise_strides=[2, 2],
        image_shape=(16, 16, 3), hidden_dims=[4, 8],
    )
    dino = keras_hub.models.DINOV2Backbone(
        patch_size=4, num_layers=2, hidden_dim=8, num_heads=2,
        intermediate_dim=16, image_shape=(16, 16, 3),
        position_embedding_shape=(16, 16, 3),
    )
    inputs = keras.Input((16, 16, 3))
    dino_classifier = keras.Model(inputs, keras.layers.Dense(NUM_CLASSES)(
        keras.layers.GlobalAveragePooling1D()(dino(inputs))))
    return {
        "resnet": (keras_hub.models.ImageClassifier(
            backbone=resnet, num_classes=NUM_CLASSES, activation=None),
            ["stack0_block0_out"], True),
        "vit": (keras_hub.models.ViTImageClassifier(
            backbone=vit, num_classes=NUM_CLASSES, activation=None),
            ["vit_patching_and_embedding"], False),
        "mit": (keras_hub.models.MiTImageClassifier(
            backbone=mit, num_classes=NUM_CLASSES, activation=None),
            ["output_level_0"], False),
        "dino": (dino_classifier, [("encoder", 0)], None),  # See docs/backbones.md.
    }


@tensorflow_pass_only("graph surgery on keras-hub models")
@pytest.mark.parametrize("name", ["resnet", "vit", "mit", "dino"])
def test_keras_hub_backbones_get_heads(name, tmp_path):
    classifier, taps, saves = keras_hub_models()[name]
    model = SelfDistillModel.from_backbone(classifier, taps=taps)
    x = images(size=16, channels=3)
    np.testing.assert_allclose(
        model.predict(x, verbose=0), classifier.predict(x, verbose=0), atol=1e-5
    )
    model.compile(optimizer="adam", metrics=["accuracy"])
    history = model.fit(x, np.arange(4), epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0]) and "head_1_accuracy" in history
    if saves:
        testing.run_model_saving_test(model, x, atol=1e-5)
    elif saves is False:
        # keras-hub 0.32's ViT/MiT layers do not rebuild from their own
        # config outside their Backbone: a clear error before saving.
        with pytest.raises(ValueError, match="cannot be rebuilt from their own"):
            model.save(tmp_path / "model.keras")
        model.save_weights(tmp_path / "model.weights.h5")
