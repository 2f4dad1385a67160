"""SelfDistillModel: Be Your Own Teacher through plain compile/fit/predict."""

import keras
import numpy as np
import pytest
from backend_utils import JIT_COMPILE
from backend_utils import gradients
from backend_utils import requires_xla
from backend_utils import tensorflow_pass_only
from numpy_references import numpy_log_softmax
from numpy_references import numpy_self_distillation_loss
from numpy_references import numpy_softened_kl

from keras_selfdistill import AuxiliaryHead
from keras_selfdistill import SelfDistillModel
from keras_selfdistill import losses
from keras_selfdistill import testing

NUM_CLASSES = 10


def build_digits_model(alpha=0.3, temperature=3.0, feature_weight=2.0, **kwargs):
    """3 stages on 8x8 digits; head_1 matches the deepest width, head_2 is
    narrower (so it gets a learned projection)."""
    inputs = keras.Input((8, 8, 1), name="image")
    x1 = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stage1")(inputs)
    x2 = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="stage2")(x1)
    x3 = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="stage3")(x2)
    head_1 = AuxiliaryHead(NUM_CLASSES, num_downsampling=2, name="head_1")(x1)
    head_2 = AuxiliaryHead(NUM_CLASSES, width=16, name="head_2")(x2)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(x3)
    logits = keras.layers.Dense(NUM_CLASSES, name="logits")(pooled)
    return SelfDistillModel(
        inputs, [head_1, head_2, logits], alpha=alpha, temperature=temperature,
        feature_weight=feature_weight, **kwargs,
    )


def build_plain_backbone(final_activation=None):
    inputs = keras.Input((8, 8, 1))
    x1 = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stage1")(inputs)
    x2 = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="stage2")(x1)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(x2)
    logits = keras.layers.Dense(NUM_CLASSES, activation=final_activation, name="logits")(pooled)
    return keras.Model(inputs, logits, name="plain")


def numpy_outputs(model, images):
    """Every head's logits and projected features, as numpy arrays."""
    outputs = model.head_outputs(images, training=False)
    features = model.project_features(outputs["features"])
    to_numpy = keras.ops.convert_to_numpy
    return [to_numpy(x) for x in outputs["logits"]], [to_numpy(x) for x in features]


@pytest.fixture(scope="module")
def trained(digits_split):
    """A model trained for a few epochs, shared by read-only tests."""
    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = digits_split
    model = build_digits_model()
    model.compile(optimizer=keras.optimizers.Adam(0.01), metrics=["accuracy"])
    history = model.fit(
        x_train, y_train, epochs=6, batch_size=64, verbose=0,
        validation_data=(x_test, y_test),
    )
    return model, history


# -- training -------------------------------------------------------------- #


def test_fit_lowers_the_loss_and_learns_real_digits(trained, digits_split):
    model, history = trained
    (_, _), (x_test, y_test) = digits_split
    cross_entropy = history.history["cross_entropy_loss"]
    assert cross_entropy[-1] < 0.25 * cross_entropy[0]
    # From the second epoch: the first one's mean includes the untrained
    # start, when every head's features are near zero and so is the feature
    # term, which then rises with the deepest features before it falls.
    assert history.history["loss"][-1] < history.history["loss"][1]
    test_accuracy = np.mean(np.argmax(model.predict(x_test, verbose=0), -1) == y_test)
    assert test_accuracy > 0.85


def test_history_reports_the_total_each_term_and_each_head(trained):
    _, history = trained
    for split in ("", "val_"):
        for key in (
            "loss", "cross_entropy_loss", "distillation_loss", "feature_loss",
            "accuracy", "head_1_accuracy", "head_2_accuracy",
        ):
            assert split + key in history.history, split + key
    assert "logits_accuracy" not in history.history  # Deepest keeps the plain name.


def test_every_head_learns(trained, digits_split):
    model, _ = trained
    (x_train, y_train), _ = digits_split
    for logits in model.predict_heads(x_train, verbose=0):
        assert np.mean(np.argmax(logits, -1) == y_train) > 0.5


def test_early_stopping_on_val_accuracy_works(digits_split):
    (x_train, y_train), (x_test, y_test) = digits_split
    model = build_digits_model()
    model.compile(optimizer="adam", metrics=["accuracy"])
    stopper = keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=0, mode="max")
    model.fit(x_train[:256], y_train[:256], epochs=3, verbose=0,
              validation_data=(x_test[:64], y_test[:64]), callbacks=[stopper])
    assert stopper.best is not None and np.isfinite(stopper.best)


def test_fit_takes_a_tf_data_pipeline_with_one_hot_labels(digits):
    import tensorflow as tf

    images, labels = digits
    dataset = tf.data.Dataset.from_tensor_slices(
        (images[:128], np.eye(NUM_CLASSES, dtype="float32")[labels[:128]])
    ).batch(32)
    model = build_digits_model()
    model.compile(optimizer="adam", metrics=["accuracy"])
    history = model.fit(dataset, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


@requires_xla
@pytest.mark.parametrize("jit_compile", [True, "auto"])
def test_trains_under_xla(digits, jit_compile):
    images, labels = digits
    model = build_digits_model()
    model.compile(optimizer="adam", metrics=["accuracy"], jit_compile=jit_compile)
    history = model.fit(images[:256], labels[:256], epochs=2, batch_size=64, verbose=0)
    assert history.history["loss"][1] < history.history["loss"][0]


# -- the loss against a hand computation ------------------------------------ #


@pytest.mark.parametrize(
    "jit_compile", [False, pytest.param(True, marks=requires_xla)]
)
def test_evaluated_loss_matches_a_numpy_hand_computation(digits, jit_compile):
    images, labels = digits[0][:32], digits[1][:32]
    model = build_digits_model(alpha=0.4, temperature=2.5, feature_weight=0.05)
    model.compile(jit_compile=jit_compile)
    logits, features = numpy_outputs(model, images)
    expected = numpy_self_distillation_loss(
        labels, logits, features, alpha=0.4, temperature=2.5, feature_weight=0.05,
        squared=False,
    )
    result = model.evaluate(images, labels, batch_size=32, verbose=0, return_dict=True)
    assert result["loss"] == pytest.approx(expected, rel=1e-4)
    expected_kl = sum(
        numpy_softened_kl(logits[-1], z, 2.5, squared=False).mean() for z in logits[:-1]
    )
    assert result["distillation_loss"] == pytest.approx(expected_kl, rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("feature_reduction", ["sum", "mean"])
def test_feature_reduction_reaches_the_evaluated_loss(digits, feature_reduction):
    images, labels = digits[0][:32], digits[1][:32]
    model = build_digits_model(feature_weight=0.5, feature_reduction=feature_reduction)
    model.compile()
    logits, features = numpy_outputs(model, images)
    expected = numpy_self_distillation_loss(
        labels, logits, features, alpha=0.3, temperature=3.0, feature_weight=0.5,
        feature_reduction=feature_reduction,
    )
    result = model.evaluate(images, labels, batch_size=32, verbose=0, return_dict=True)
    assert result["loss"] == pytest.approx(expected, rel=1e-4)


def test_sample_weight_weights_every_term(digits):
    images, labels = digits[0][:32], digits[1][:32]
    weights = np.linspace(0.0, 2.0, 32).astype("float32")
    model = build_digits_model()
    model.compile()
    logits, features = numpy_outputs(model, images)
    expected = numpy_self_distillation_loss(
        labels, logits, features, 0.3, 3.0, 2.0, sample_weight=weights, squared=False
    )
    result = model.evaluate(images, labels, sample_weight=weights, batch_size=32,
                            verbose=0, return_dict=True)
    assert result["loss"] == pytest.approx(expected, rel=1e-4)


def test_one_hot_and_integer_labels_give_the_same_loss(digits):
    images, labels = digits[0][:32], digits[1][:32]
    model = build_digits_model()
    model.compile(metrics=["accuracy"])
    sparse = model.evaluate(images, labels, verbose=0, return_dict=True)
    one_hot = model.evaluate(images, np.eye(NUM_CLASSES)[labels], verbose=0, return_dict=True)
    for key in sparse:
        assert one_hot[key] == pytest.approx(sparse[key], rel=1e-5), key


def test_changing_alpha_reaches_the_compiled_step(digits):
    images, labels = digits[0][:32], digits[1][:32]
    model = build_digits_model(alpha=0.3)
    model.compile(jit_compile=JIT_COMPILE)
    model.evaluate(images, labels, verbose=0)  # Traces and compiles the step.
    model.alpha = 0.9
    logits, features = numpy_outputs(model, images)
    expected = numpy_self_distillation_loss(
        labels, logits, features, 0.9, 3.0, 2.0, squared=False
    )
    result = model.evaluate(images, labels, verbose=0, return_dict=True)
    assert result["loss"] == pytest.approx(expected, rel=1e-4)


def test_weight_regularizers_are_added_to_the_loss(digits):
    images, labels = digits[0][:16], digits[1][:16]
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, name="conv", kernel_regularizer=keras.regularizers.L2(1.0))(inputs)
    head = AuxiliaryHead(NUM_CLASSES, name="head_1")(x)
    logits = keras.layers.Dense(NUM_CLASSES, name="logits")(keras.layers.Flatten()(x))
    model = SelfDistillModel(inputs, [head, logits])
    model.compile()
    logits_np, features = numpy_outputs(model, images)
    kernel = keras.ops.convert_to_numpy(model.network.get_layer("conv").kernel)
    expected = numpy_self_distillation_loss(
        labels, logits_np, features, 0.3, 3.0, 2.0, squared=False
    ) + float((kernel.astype("float64") ** 2).sum())
    result = model.evaluate(images, labels, batch_size=16, verbose=0, return_dict=True)
    assert result["loss"] == pytest.approx(expected, rel=1e-4)


# -- gradients ------------------------------------------------------------------ #


def test_teaching_terms_reach_shallow_heads_but_not_the_deepest(digits):
    images, labels = digits[0][:16], digits[1][:16]
    model = build_digits_model(feature_weight=0.1)

    def teaching_terms():
        outputs = model.head_outputs(images, training=True)
        terms = losses.self_distillation_loss(
            labels, outputs["logits"], model.project_features(outputs["features"]),
            alpha=0.3, temperature=3.0, feature_weight=0.1,
        )
        return terms["distillation"] + 0.1 * terms["feature"]

    layer = model.network.get_layer
    deepest_only = layer("logits").trainable_variables + layer("stage3").trainable_variables
    shallow = (
        layer("head_1_classifier").trainable_variables
        + layer("head_2_bottleneck").trainable_variables
        + model.feature_projections[1].trainable_variables
        + layer("stage1").trainable_variables
    )
    grads = gradients(teaching_terms, deepest_only + shallow)
    for grad in grads[: len(deepest_only)]:
        np.testing.assert_array_equal(grad, 0.0)
    for grad in grads[len(deepest_only):]:
        assert np.abs(grad).max() > 0.0


def test_deepest_head_learns_from_labels(digits):
    images, labels = digits[0][:16], digits[1][:16]
    model = build_digits_model()
    deepest = model.network.get_layer("logits").trainable_variables

    def total_loss():
        outputs = model.head_outputs(images, training=True)
        return model.compute_loss(images, labels, outputs)

    assert all(np.abs(g).max() > 0 for g in gradients(total_loss, deepest))


# -- inference ------------------------------------------------------------------- #


def test_predict_serves_the_deepest_head(trained, digits):
    model, _ = trained
    images = digits[0][:40]
    heads = model.predict_heads(images, verbose=0)
    assert len(heads) == 3 and all(h.shape == (40, NUM_CLASSES) for h in heads)
    np.testing.assert_allclose(model.predict(images, verbose=0), heads[-1], atol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(images)), heads[-1], atol=1e-5)


def test_predict_ensemble_is_the_mean_of_the_heads(trained, digits):
    model, _ = trained
    images = digits[0][:40]
    expected = np.mean(model.predict_heads(images, verbose=0), axis=0)
    np.testing.assert_allclose(model.predict_ensemble(images, verbose=0), expected, atol=1e-5)


def test_early_exit_stops_at_the_first_confident_head(trained, digits):
    model, _ = trained
    images = digits[0][:200]
    heads = np.stack(model.predict_heads(images, verbose=0))
    probabilities = np.exp(numpy_log_softmax(heads))
    result = model.predict_early_exit(images, threshold=0.8, verbose=0)
    for sample in range(len(images)):
        confident = np.flatnonzero(probabilities[:-1, sample].max(-1) >= 0.8)
        expected_head = confident[0] if len(confident) else 2
        assert result.exit_heads[sample] == expected_head
        np.testing.assert_allclose(result.logits[sample], heads[expected_head, sample], atol=1e-5)
    counts = np.bincount(result.exit_heads, minlength=3) / len(images)
    np.testing.assert_allclose(result.exit_fractions, counts)
    assert sum(result.exit_fractions) == pytest.approx(1.0)


def test_early_exit_extremes(trained, digits):
    model, _ = trained
    images = digits[0][:50]
    assert model.predict_early_exit(images, threshold=0.0, verbose=0).exit_fractions[0] == 1.0
    with pytest.raises(ValueError, match="threshold=1.5"):
        model.predict_early_exit(images, threshold=1.5)


def test_export_backbone_drops_the_heads_and_keeps_the_predictions(trained, digits):
    model, _ = trained
    images = digits[0][:40]
    backbone = model.export_backbone()
    names = [layer.name for layer in backbone.layers]
    assert not any(name.startswith("head_") for name in names)
    np.testing.assert_allclose(
        backbone.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6
    )
    restored = testing.run_model_saving_test(backbone, images)
    assert not isinstance(restored, SelfDistillModel)


# -- saving ------------------------------------------------------------------------ #


def test_config_round_trip():
    revived = testing.run_serialization_test(
        build_digits_model(alpha=0.5, temperature=4.0, feature_reduction="mean")
    )
    assert revived.feature_reduction == "mean"


def test_a_config_from_before_feature_reduction_sums_the_feature_term():
    config = build_digits_model(feature_reduction="mean").get_config()
    del config["feature_reduction"]
    assert SelfDistillModel.from_config(config).feature_reduction == "sum"


def test_save_and_load_keeps_predictions_heads_and_training_state(trained, digits, tmp_path):
    model, _ = trained
    images, labels = digits[0][:64], digits[1][:64]
    restored = testing.run_model_saving_test(model, images)
    for want, got in zip(model.predict_heads(images, verbose=0),
                         restored.predict_heads(images, verbose=0)):
        np.testing.assert_allclose(got, want, atol=1e-6)
    assert int(restored.optimizer.iterations) == int(model.optimizer.iterations)
    want = model.evaluate(images, labels, verbose=0, return_dict=True)
    got = restored.evaluate(images, labels, verbose=0, return_dict=True)
    assert got.keys() == want.keys()
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-5)
    history = restored.fit(images, labels, epochs=1, verbose=0)
    assert "head_1_accuracy" in history.history


def test_scheduled_hyperparameters_are_saved(digits, tmp_path):
    model = build_digits_model(alpha=0.3)
    model.alpha = 0.8
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert float(keras.ops.convert_to_numpy(restored.alpha)) == pytest.approx(0.8)


# -- from_backbone ------------------------------------------------------------------ #


@tensorflow_pass_only("graph surgery on a keras.applications model")
def test_from_backbone_attaches_heads_to_a_keras_application():
    backbone = keras.applications.ResNet50V2(
        weights=None, input_shape=(32, 32, 3), classes=10, classifier_activation=None
    )
    model = SelfDistillModel.from_backbone(
        backbone, taps=["conv2_block3_out", "conv3_block4_out", "conv4_block6_out"]
    )
    assert model.head_names == ["head_1", "head_2", "head_3", "predictions"]
    downsampling = [model.network.get_layer(f"head_{i}_bottleneck").num_downsampling
                    for i in (1, 2, 3)]
    assert downsampling == [2, 1, 1]  # 4x4, 2x2 and 1x1 maps down to 1x1.
    images = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(
        model.predict(images, verbose=0), backbone.predict(images, verbose=0), atol=1e-5
    )


def test_from_backbone_shares_the_backbone_weights(digits):
    backbone = build_plain_backbone()
    model = SelfDistillModel.from_backbone(backbone, taps=["stage1"])
    model.compile(optimizer="adam")
    model.fit(digits[0][:64], digits[1][:64], epochs=1, verbose=0)
    np.testing.assert_allclose(
        backbone.predict(digits[0][:8], verbose=0), model.predict(digits[0][:8], verbose=0),
        atol=1e-6,
    )


def test_from_backbone_accepts_a_sequential_model():
    backbone = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(8, 3, name="conv"),
        keras.layers.GlobalAveragePooling2D(name="pool"),
        keras.layers.Dense(NUM_CLASSES, name="logits"),
    ])
    model = SelfDistillModel.from_backbone(backbone, taps=["conv"])
    assert model.predict(np.zeros((2, 8, 8, 1)), verbose=0).shape == (2, NUM_CLASSES)


def block_widths(model, head):
    bottleneck = model.network.get_layer(f"{head}_bottleneck")
    return [block[0].filters for block in bottleneck.blocks]


def test_doubling_heads_double_the_tapped_channels_and_end_at_the_deepest_width(
        digits, tmp_path):
    # stage1 (8 channels, 8x8) -> stage2 (16, 4x4) -> stage3 (32, 2x2).
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stage1")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu",
                            name="stage2")(x)
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu",
                            name="stage3")(x)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    backbone = keras.Model(inputs, keras.layers.Dense(NUM_CLASSES, name="logits")(pooled))
    images, labels = digits[0][:32], digits[1][:32]

    model = SelfDistillModel.from_backbone(
        backbone, taps=["stage1", "stage2"], head_width="doubling"
    )
    deepest_width = SelfDistillModel.from_backbone(backbone, taps=["stage1", "stage2"])

    assert block_widths(model, "head_1") == [16, 32]
    assert block_widths(model, "head_2") == [32]
    assert block_widths(deepest_width, "head_1") == [32, 32]
    # Both heads end at the deepest width: no feature projection to learn.
    assert model.feature_projections == [None, None]
    assert model.count_params() < deepest_width.count_params()
    model.compile(optimizer="adam")
    model.fit(images, labels, epochs=1, verbose=0)
    path = tmp_path / "doubling.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    assert block_widths(reloaded, "head_1") == [16, 32]
    for before, after in zip(model.predict_heads(images[:8], verbose=0),
                             reloaded.predict_heads(images[:8], verbose=0)):
        np.testing.assert_allclose(after, before, atol=1e-5)


def test_doubling_heads_get_a_projection_where_the_stages_do_not_double(digits):
    model = SelfDistillModel.from_backbone(
        build_plain_backbone(), taps=["stage1"], head_width="doubling"
    )

    # stage1 has 8 channels and one block to stage2's 4x4: 16 wide, the
    # deepest features too; a 4-channel tap would end at 8 and be projected.
    assert block_widths(model, "head_1") == [16]
    assert model.feature_projections == [None]
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="narrow")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="wide")(x)
    pooled = keras.layers.GlobalAveragePooling2D()(x)
    narrow = SelfDistillModel.from_backbone(
        keras.Model(inputs, keras.layers.Dense(NUM_CLASSES)(pooled)), taps=["narrow"],
        head_width="doubling",
    )
    assert block_widths(narrow, "head_1") == [8]
    assert narrow.feature_projections[0].kernel.shape == (8, 16)
    narrow.compile(optimizer="adam")
    history = narrow.fit(digits[0][:32], digits[1][:32], epochs=1, verbose=0).history
    assert np.isfinite(history["feature_loss"][0])


def test_from_backbone_builds_the_authors_heads_when_asked(digits, tmp_path):
    model = SelfDistillModel.from_backbone(
        build_plain_backbone(), taps=["stage1"], head_block="double",
        head_attention=True,
    )
    head = model.export_heads().get_layer("head_1")
    assert (head.block, head.attention) == ("double", True)
    model.compile(optimizer="adam")
    model.fit(digits[0][:32], digits[1][:32], epochs=1, verbose=0)
    path = tmp_path / "double.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        reloaded.predict_heads(digits[0][:8], verbose=0)[0],
        model.predict_heads(digits[0][:8], verbose=0)[0], atol=1e-5,
    )


# -- bad input ---------------------------------------------------------------------- #


# Bad inputs (each refused with a message naming the value and what is
# allowed) are rows of the one table in tests/test_bad_inputs.py.
