"""Tests for `Distiller`: loss values, a frozen teacher, caching, saving."""

import os

import keras
import numpy as np
import pytest
from backend_utils import gradients
from backend_utils import requires_xla
from numpy_references import numpy_log_softmax

from keras_selfdistill.models.distiller import Distiller
from keras_selfdistill.testing import run_model_saving_test
from keras_selfdistill.testing import run_serialization_test


def make_classifier(width, name, batch_norm=False, num_classes=10, shape=(8, 8, 1)):
    """A tiny MLP on 8x8 digits; its hidden layer is named "hidden"."""
    inputs = keras.Input(shape)
    x = keras.layers.Flatten(name="flatten")(inputs)
    x = keras.layers.Dense(width, activation="relu", name="hidden")(x)
    if batch_norm:
        x = keras.layers.BatchNormalization(name="hidden_norm")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name=name)


def numpy_terms(labels, student_logits, teacher_logits, temperature):
    """Per-sample CE and T^2 * KL, computed by hand in float64."""
    student_logits = student_logits.astype("float64")
    teacher_logits = teacher_logits.astype("float64")
    rows = np.arange(len(labels))
    ce = -numpy_log_softmax(student_logits)[rows, labels]
    teacher_log_probs = numpy_log_softmax(teacher_logits / temperature)
    student_log_probs = numpy_log_softmax(student_logits / temperature)
    kl = (np.exp(teacher_log_probs) * (teacher_log_probs - student_log_probs)).sum(-1)
    return ce, kl * temperature**2


@pytest.fixture(scope="module")
def trained_teacher(digits):
    keras.utils.set_random_seed(0)
    images, labels = digits
    teacher = make_classifier(64, "teacher", batch_norm=True)
    teacher.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    teacher.fit(images[:1400], labels[:1400], epochs=5, batch_size=64, verbose=0)
    return teacher


@pytest.fixture
def batch(digits):
    images, labels = digits
    return images[:32], labels[:32]


def test_loss_matches_numpy_hand_computation(batch):
    keras.utils.set_random_seed(1)
    images, labels = batch
    teacher = make_classifier(32, "teacher")
    student = make_classifier(8, "student")
    distiller = Distiller(teacher, student, alpha=0.7, temperature=3.0)
    distiller.compile(optimizer="adam", jit_compile=False)

    result = distiller.evaluate(
        images, labels, batch_size=len(images), return_dict=True, verbose=0
    )

    ce, kl = numpy_terms(
        labels,
        student.predict(images, verbose=0),
        teacher.predict(images, verbose=0),
        temperature=3.0,
    )
    np.testing.assert_allclose(result["loss"], np.mean(0.3 * ce + 0.7 * kl), rtol=1e-5)
    np.testing.assert_allclose(result["cross_entropy_loss"], ce.mean(), rtol=1e-5)
    np.testing.assert_allclose(result["distillation_loss"], kl.mean(), rtol=1e-5)


def test_feature_hint_loss_matches_numpy_with_an_adapter(batch):
    keras.utils.set_random_seed(2)
    images, labels = batch
    teacher = make_classifier(32, "teacher")
    student = make_classifier(8, "student")
    distiller = Distiller(
        teacher,
        student,
        alpha=0.5,
        temperature=2.0,
        feature_pairs=[("hidden", "hidden")],
        feature_weight=0.25,
    )
    distiller.compile(optimizer="adam", jit_compile=False)

    result = distiller.evaluate(
        images, labels, batch_size=len(images), return_dict=True, verbose=0
    )

    def hidden(model):
        extractor = keras.Model(model.input, model.get_layer("hidden").output)
        return extractor.predict(images, verbose=0).astype("float64")

    adapter_kernel = keras.ops.convert_to_numpy(
        distiller.feature_adapters[0].kernel
    )
    feature = ((hidden(student) @ adapter_kernel - hidden(teacher)) ** 2).mean(-1)
    ce, kl = numpy_terms(
        labels,
        student.predict(images, verbose=0),
        teacher.predict(images, verbose=0),
        temperature=2.0,
    )
    expected = np.mean(0.5 * ce + 0.5 * kl + 0.25 * feature)
    np.testing.assert_allclose(result["feature_loss"], feature.mean(), rtol=1e-5)
    np.testing.assert_allclose(result["loss"], expected, rtol=1e-5)


def test_feature_map_hint_uses_a_one_by_one_adapter(batch):
    keras.utils.set_random_seed(7)
    images, labels = batch

    def conv_classifier(filters, name):
        inputs = keras.Input((8, 8, 1))
        x = keras.layers.Conv2D(filters, 3, padding="same", name="conv")(inputs)
        x = keras.layers.GlobalAveragePooling2D()(x)
        return keras.Model(inputs, keras.layers.Dense(10)(x), name=name)

    teacher, student = conv_classifier(6, "teacher"), conv_classifier(3, "student")
    distiller = Distiller(teacher, student, feature_pairs=[("conv", "conv")])
    distiller.compile(optimizer="adam", jit_compile=False)

    result = distiller.evaluate(
        images, labels, batch_size=len(images), return_dict=True, verbose=0
    )

    def conv_map(model):
        extractor = keras.Model(model.input, model.get_layer("conv").output)
        return extractor.predict(images, verbose=0).astype("float64")

    kernel = keras.ops.convert_to_numpy(distiller.feature_adapters[0].kernel)
    assert kernel.shape == (3, 6)
    projected = np.einsum("bhwc,cd->bhwd", conv_map(student), kernel)
    feature = ((projected - conv_map(teacher)) ** 2).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(result["feature_loss"], feature.mean(), rtol=1e-5)


def test_adapter_only_where_hint_widths_differ():
    teacher = make_classifier(16, "teacher")
    student = make_classifier(16, "student")
    distiller = Distiller(
        teacher,
        student,
        feature_pairs=[("hidden", "hidden"), ("flatten", "hidden")],
    )
    first, second = distiller.feature_adapters
    assert first is None
    assert tuple(second.kernel.shape) == (16, 64)


def test_zero_sample_weight_removes_a_sample_from_the_loss(batch):
    keras.utils.set_random_seed(3)
    images, labels = batch
    distiller = Distiller(
        make_classifier(32, "teacher"), make_classifier(8, "student")
    )
    distiller.compile(optimizer="adam", jit_compile=False)
    weights = np.ones(len(labels), "float32")
    weights[0] = 0.0
    flipped = labels.copy()
    flipped[0] = (labels[0] + 1) % 10
    perturbed = images.copy()
    perturbed[0] = 1.0 - perturbed[0]

    def weighted_loss(x, y):
        return distiller.evaluate(
            x, y, sample_weight=weights, batch_size=len(y), return_dict=True,
            verbose=0,
        )["loss"]

    unchanged = weighted_loss(images, labels)
    np.testing.assert_allclose(weighted_loss(perturbed, flipped), unchanged, rtol=1e-6)
    ce, kl = numpy_terms(
        labels,
        distiller.student.predict(images, verbose=0),
        distiller.teacher.predict(images, verbose=0),
        temperature=4.0,
    )
    per_sample = 0.1 * ce + 0.9 * kl
    np.testing.assert_allclose(
        unchanged, per_sample[1:].sum() / len(labels), rtol=1e-5
    )


def test_teacher_receives_no_gradient(batch):
    images, labels = batch
    teacher = make_classifier(32, "teacher", batch_norm=True)
    distiller = Distiller(
        teacher, make_classifier(8, "student"),
        feature_pairs=[("hidden_norm", "hidden")],
    )

    def loss():
        outputs = distiller.training_outputs(images, training=True)
        return distiller.compute_loss(images, labels, outputs)

    teacher_gradients = gradients(loss, teacher.weights)
    student_gradients = gradients(loss, distiller.trainable_weights)

    for gradient in teacher_gradients:
        np.testing.assert_array_equal(gradient, 0.0)
    assert all(np.abs(gradient).max() > 0 for gradient in student_gradients)
    assert not any(
        variable is teacher_variable
        for variable in distiller.trainable_weights
        for teacher_variable in teacher.weights
    )


def test_teacher_weights_and_batch_norm_statistics_do_not_change_during_fit(
    digits,
):
    images, labels = digits
    teacher = make_classifier(32, "teacher", batch_norm=True)
    teacher_before = [np.copy(w) for w in teacher.get_weights()]
    student = make_classifier(8, "student")
    student_before = [np.copy(w) for w in student.get_weights()]
    distiller = Distiller(
        teacher, student, feature_pairs=[("hidden_norm", "hidden")]
    )
    distiller.compile(optimizer="adam", jit_compile=False)

    distiller.fit(images[:256], labels[:256], batch_size=32, epochs=1, verbose=0)

    assert len(teacher.non_trainable_weights) == len(teacher.weights)
    for before, after in zip(teacher_before, teacher.get_weights()):
        np.testing.assert_array_equal(before, after)
    changed = [
        not np.array_equal(before, after)
        for before, after in zip(student_before, student.get_weights())
    ]
    assert all(changed)


def test_student_accuracy_improves_on_digits(trained_teacher, digits_split):
    keras.utils.set_random_seed(4)
    (x_train, y_train), (x_test, y_test) = digits_split
    student = make_classifier(16, "student")
    distiller = Distiller(trained_teacher, student, alpha=0.5, temperature=2.0)
    distiller.compile(
        optimizer=keras.optimizers.Adam(0.01), metrics=["accuracy"],
        jit_compile=False,
    )
    before = distiller.evaluate(x_test, y_test, return_dict=True, verbose=0)

    distiller.fit(x_train, y_train, batch_size=64, epochs=4, verbose=0)

    after = distiller.evaluate(x_test, y_test, return_dict=True, verbose=0)
    assert before["accuracy"] < 0.3
    assert after["accuracy"] > 0.85
    accuracy = np.mean(
        np.argmax(student.predict(x_test, verbose=0), -1) == y_test
    )
    np.testing.assert_allclose(accuracy, after["accuracy"], atol=1e-6)


@requires_xla
def test_trains_under_jit_compile(trained_teacher, digits):
    keras.utils.set_random_seed(5)
    images, labels = digits
    distiller = Distiller(
        trained_teacher, make_classifier(16, "student"),
        feature_pairs=[("hidden_norm", "hidden")],
    )
    distiller.compile(
        optimizer=keras.optimizers.Adam(0.01), metrics=["accuracy"],
        jit_compile=True,
    )

    history = distiller.fit(
        images[:512], labels[:512], batch_size=64, epochs=3, verbose=0
    )

    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0]


def test_history_has_student_metrics_and_each_loss_term(trained_teacher, digits):
    images, labels = digits
    distiller = Distiller(
        trained_teacher, make_classifier(8, "student"),
        feature_pairs=[("hidden_norm", "hidden")],
    )
    distiller.compile(optimizer="adam", metrics=["accuracy"], jit_compile=False)

    history = distiller.fit(
        images[:128], labels[:128], batch_size=64, epochs=1, verbose=0,
        validation_data=(images[128:192], labels[128:192]),
    )

    terms = {"loss", "accuracy", "cross_entropy_loss", "distillation_loss", "feature_loss"}
    assert set(history.history) == terms | {f"val_{term}" for term in terms}


def test_predict_returns_the_bare_student_logits(batch):
    images, _ = batch
    student = make_classifier(8, "student")
    distiller = Distiller(make_classifier(32, "teacher"), student)

    assert distiller.student is student
    np.testing.assert_allclose(
        distiller.predict(images, verbose=0), student.predict(images, verbose=0),
        atol=1e-6,
    )


def test_cached_and_uncached_teacher_give_the_same_loss(trained_teacher, digits):
    images, labels = digits[0][:128], digits[1][:128]
    distiller = Distiller(trained_teacher, make_classifier(8, "student"))
    distiller.compile(optimizer="adam", metrics=["accuracy"], jit_compile=False)
    cached = distiller.cache_teacher_logits(images)

    uncached_result = distiller.evaluate(
        images, labels, batch_size=64, return_dict=True, verbose=0
    )
    cached_result = distiller.evaluate(
        cached, labels, batch_size=64, return_dict=True, verbose=0
    )

    assert set(cached) == {"inputs", "teacher_logits"}
    for key, value in uncached_result.items():
        np.testing.assert_allclose(cached_result[key], value, rtol=1e-5)


def test_cached_training_step_equals_uncached_step(trained_teacher, digits):
    images, labels = digits[0][:64], digits[1][:64]

    def one_step(cached):
        keras.utils.set_random_seed(6)
        student = make_classifier(8, "student")
        distiller = Distiller(trained_teacher, student)
        distiller.compile(optimizer="sgd", jit_compile=False)
        x = distiller.cache_teacher_logits(images) if cached else images
        loss = distiller.train_on_batch(x, labels)
        return loss, student.get_weights()

    cached_loss, cached_weights = one_step(cached=True)
    uncached_loss, uncached_weights = one_step(cached=False)
    np.testing.assert_allclose(cached_loss, uncached_loss, rtol=1e-5)
    for cached_weight, uncached_weight in zip(cached_weights, uncached_weights):
        np.testing.assert_allclose(cached_weight, uncached_weight, atol=1e-6)


def test_the_loss_uses_the_cached_logits_not_the_teacher(trained_teacher, batch):
    images, labels = batch
    distiller = Distiller(
        trained_teacher, make_classifier(8, "student"), temperature=2.0
    )
    distiller.compile(optimizer="adam", jit_compile=False)
    uniform_teacher = {"inputs": images, "teacher_logits": np.zeros((32, 10), "float32")}

    result = distiller.evaluate(
        uniform_teacher, labels, batch_size=32, return_dict=True, verbose=0
    )

    _, kl = numpy_terms(
        labels, distiller.student.predict(images, verbose=0),
        np.zeros((32, 10)), temperature=2.0,
    )
    np.testing.assert_allclose(result["distillation_loss"], kl.mean(), rtol=1e-5)


def test_config_round_trip():
    distiller = Distiller(
        make_classifier(32, "teacher"), make_classifier(8, "student"),
        alpha=0.6, temperature=5.0, feature_pairs=[("hidden", "hidden")],
        feature_weight=0.5, scale_by_temperature_squared=False,
    )
    revived = run_serialization_test(distiller)
    assert revived.feature_pairs == [["hidden", "hidden"]]
    assert float(revived.temperature.numpy()) == 5.0


def test_saves_and_loads_with_the_same_predictions_and_loss(
    trained_teacher, digits, tmp_path
):
    images, labels = digits[0][:128], digits[1][:128]
    distiller = Distiller(
        trained_teacher, make_classifier(8, "student"),
        feature_pairs=[("hidden_norm", "hidden")],
    )
    distiller.compile(optimizer="adam", metrics=["accuracy"], jit_compile=False)
    distiller.fit(images, labels, batch_size=64, epochs=1, verbose=0)

    restored = run_model_saving_test(distiller, images)

    expected = distiller.evaluate(images, labels, return_dict=True, verbose=0)
    actual = restored.evaluate(images, labels, return_dict=True, verbose=0)
    for key, value in expected.items():
        np.testing.assert_allclose(actual[key], value, rtol=1e-5)
    assert restored.optimizer.iterations.numpy() == 2


def test_student_saves_alone_without_the_teacher(trained_teacher, batch, tmp_path):
    images, _ = batch
    student = make_classifier(8, "student")
    distiller = Distiller(trained_teacher, student)
    path = os.path.join(tmp_path, "student.keras")

    distiller.student.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)

    assert restored.count_params() == student.count_params()
    assert "hidden_norm" not in [layer.name for layer in restored.layers]
    np.testing.assert_allclose(
        restored.predict(images, verbose=0), distiller.predict(images, verbose=0),
        atol=1e-6,
    )


# Bad inputs (each refused with a message naming the value and what is
# allowed) are rows of the one table in tests/test_bad_inputs.py.
