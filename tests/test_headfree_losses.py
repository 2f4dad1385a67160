"""Teacher-free KD and CS-KD losses against plain-numpy hand computations."""

import json

import keras
import numpy as np
import numpy_references
import pytest
from backend_utils import JIT_COMPILE
from backend_utils import gradients
from keras import ops

from keras_selfdistill import losses
from keras_selfdistill import TeacherFreeLoss

ATOL = 1e-5
NUM_CLASSES = 5


def as_numpy(value):
    return np.asarray(ops.convert_to_numpy(value), dtype="float64")


@pytest.fixture
def batch(rng):
    """6 samples, 5 classes: labels, logits and same-class partners' logits."""
    return {
        "labels": rng.integers(0, NUM_CLASSES, size=6).astype("int32"),
        "logits": rng.normal(size=(6, NUM_CLASSES)).astype("float32") * 3,
        "partner_logits": rng.normal(size=(6, NUM_CLASSES)).astype("float32") * 3,
    }


# -- the virtual teacher ------------------------------------------------- #


def test_virtual_teacher_puts_a_on_the_true_class_and_spreads_the_rest(batch):
    teacher = losses.virtual_teacher_logits(batch["labels"], batch["logits"], 0.9)
    expected = numpy_references.numpy_virtual_teacher(batch["labels"], NUM_CLASSES, 0.9)
    np.testing.assert_allclose(np.exp(as_numpy(teacher)), expected, atol=1e-6)


def test_virtual_teacher_is_the_same_for_one_hot_labels(batch):
    sparse = as_numpy(losses.virtual_teacher_logits(batch["labels"], batch["logits"]))
    one_hot = np.eye(NUM_CLASSES, dtype="float32")[batch["labels"]]
    dense = as_numpy(losses.virtual_teacher_logits(one_hot, batch["logits"]))
    np.testing.assert_allclose(dense, sparse, atol=1e-6)


# -- teacher_free_objective ---------------------------------------------- #


@pytest.mark.parametrize("temperature", [1.0, 4.0, 20.0])
@pytest.mark.parametrize("squared", [False, True])
def test_teacher_free_objective_matches_numpy(batch, temperature, squared):
    expected = numpy_references.numpy_teacher_free_loss(
        batch["labels"], batch["logits"], 0.3, temperature, 0.95, squared
    )
    actual = losses.teacher_free_objective(
        batch["labels"], batch["logits"], alpha=0.3, temperature=temperature,
        true_class_probability=0.95, scale_by_temperature_squared=squared,
    )["total"]
    np.testing.assert_allclose(as_numpy(actual), expected, atol=ATOL, rtol=1e-5)


def test_teacher_free_loss_is_finite_with_finite_gradients_for_huge_logits():
    logits = keras.Variable(np.array([[1e4, 0.0, -1e4]], "float32"))

    def loss():
        return ops.sum(
            losses.teacher_free_objective(np.array([2]), logits, alpha=0.5)["total"]
        )

    assert np.isfinite(as_numpy(loss()))
    assert np.all(np.isfinite(gradients(loss, [logits])[0]))


def label_smoothing_epsilon(alpha, true_class_probability, num_classes):
    """The label smoothing that Tf-KD_reg at T=1 equals (docs, losses.py)."""
    return alpha * (1 - true_class_probability) * num_classes / (num_classes - 1)


@pytest.mark.parametrize("alpha", [1.0, 0.4])
def test_teacher_free_at_temperature_one_is_label_smoothing_up_to_the_entropy(
    batch, alpha
):
    a = 0.9
    epsilon = label_smoothing_epsilon(alpha, a, NUM_CLASSES)
    one_hot = np.eye(NUM_CLASSES, dtype="float32")[batch["labels"]]
    smoothing = keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=epsilon, reduction=None
    )
    teacher_free = TeacherFreeLoss(
        alpha=alpha, temperature=1.0, true_class_probability=a, reduction=None
    )
    logits = keras.Variable(batch["logits"])
    teacher = numpy_references.numpy_virtual_teacher(batch["labels"], NUM_CLASSES, a)
    entropy = -(teacher * np.log(teacher)).sum(axis=-1)

    np.testing.assert_allclose(
        as_numpy(teacher_free(batch["labels"], logits)),
        as_numpy(smoothing(one_hot, logits)) - alpha * entropy,
        atol=ATOL,
    )
    grad_teacher_free = gradients(
        lambda: ops.sum(teacher_free(batch["labels"], logits)), [logits]
    )[0]
    grad_smoothing = gradients(lambda: ops.sum(smoothing(one_hot, logits)), [logits])[0]
    np.testing.assert_allclose(grad_teacher_free, grad_smoothing, atol=ATOL)


def test_teacher_free_above_temperature_one_is_not_label_smoothing(batch):
    one_hot = np.eye(NUM_CLASSES, dtype="float32")[batch["labels"]]
    logits = keras.Variable(batch["logits"])
    epsilon = label_smoothing_epsilon(1.0, 0.9, NUM_CLASSES)
    smoothing = keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=epsilon
    )
    teacher_free = TeacherFreeLoss(alpha=1.0, temperature=4.0, true_class_probability=0.9)
    grad_teacher_free = gradients(lambda: teacher_free(batch["labels"], logits), [logits])[0]
    grad_smoothing = gradients(lambda: smoothing(one_hot, logits), [logits])[0]
    assert np.abs(grad_teacher_free - grad_smoothing).max() > 1e-3


# -- TeacherFreeLoss ------------------------------------------------------ #


def test_teacher_free_loss_reduces_like_keras_with_sample_weight(batch):
    weights = np.array([1.0, 0.0, 2.0, 1.0, 0.5, 1.0], "float32")
    per_sample = numpy_references.numpy_teacher_free_loss(
        batch["labels"], batch["logits"], 0.1, 20.0, 0.99
    )
    loss = TeacherFreeLoss()(batch["labels"], batch["logits"], sample_weight=weights)
    np.testing.assert_allclose(as_numpy(loss), (per_sample * weights).mean(), atol=ATOL)


def test_teacher_free_loss_config_round_trips_through_json():
    loss = TeacherFreeLoss(alpha=0.3, temperature=4.0, true_class_probability=0.9,
                           scale_by_temperature_squared=True, name="tf_kd")
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(loss)))
    restored = keras.saving.deserialize_keras_object(config)
    assert isinstance(restored, TeacherFreeLoss)
    assert restored.get_config() == loss.get_config()


# -- class_wise_objective ------------------------------------------------- #


@pytest.mark.parametrize("temperature, weight", [(4.0, 1.0), (1.0, 3.0)])
def test_class_wise_objective_matches_numpy(batch, temperature, weight):
    expected = numpy_references.numpy_class_wise_loss(
        batch["labels"], batch["logits"], batch["partner_logits"], temperature, weight
    )
    actual = losses.class_wise_objective(
        batch["labels"], batch["logits"], batch["partner_logits"],
        temperature=temperature, distillation_weight=weight,
    )["total"]
    np.testing.assert_allclose(as_numpy(actual), expected, atol=ATOL, rtol=1e-5)


def test_class_wise_partner_logits_receive_no_gradient(batch):
    logits = keras.Variable(batch["logits"])
    partner = keras.Variable(batch["partner_logits"])
    logits_grad, partner_grad = gradients(
        lambda: ops.sum(
            losses.class_wise_objective(batch["labels"], logits, partner)["total"]
        ),
        [logits, partner],
    )
    np.testing.assert_array_equal(partner_grad, 0.0)
    assert np.abs(logits_grad).max() > 1e-3


# -- TeacherFreeLoss in compile ------------------------------------------- #


class SubclassedClassifier(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.flatten = keras.layers.Flatten()
        self.hidden = keras.layers.Dense(32, activation="relu")
        self.logits = keras.layers.Dense(10)

    def call(self, inputs):
        return self.logits(self.hidden(self.flatten(inputs)))


def functional_classifier():
    inputs = keras.Input((8, 8, 1))
    hidden = keras.layers.Dense(32, activation="relu")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Dense(10)(hidden))


def sequential_classifier():
    return keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Flatten(),
        keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10),
    ])


@pytest.mark.parametrize(
    "make_model", [functional_classifier, sequential_classifier, SubclassedClassifier]
)
def test_any_model_learns_digits_with_the_teacher_free_loss(make_model, digits_split):
    (train_images, train_labels), (test_images, test_labels) = digits_split
    keras.utils.set_random_seed(0)
    model = make_model()
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=TeacherFreeLoss(alpha=0.5, temperature=4.0, true_class_probability=0.9),
        metrics=["accuracy"],
        jit_compile=JIT_COMPILE,
    )
    history = model.fit(train_images, train_labels, epochs=3, batch_size=64,
                        validation_data=(test_images, test_labels), verbose=0)
    assert history.history["val_accuracy"][-1] > 0.88  # chance: 0.1


def test_a_model_compiled_with_the_loss_saves_and_loads_safely(digits, tmp_path):
    images, labels = digits[0][:32], digits[1][:32]
    model = functional_classifier()
    model.compile(optimizer="adam", loss=TeacherFreeLoss(alpha=0.3, temperature=2.0))
    model.fit(images, labels, epochs=1, verbose=0)
    path = str(tmp_path / "teacher_free.keras")
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(
        restored.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6
    )
    assert isinstance(restored.loss, TeacherFreeLoss)
    assert restored.loss.get_config() == model.loss.get_config()
    np.testing.assert_allclose(
        restored.evaluate(images, labels, verbose=0),
        model.evaluate(images, labels, verbose=0), rtol=1e-5,
    )
