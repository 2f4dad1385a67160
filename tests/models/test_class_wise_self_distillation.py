"""ClassWiseSelfDistillation (CS-KD): the loss by hand, no gradient through
the partner, learning, serving, jit and saving."""

import keras
import numpy as np
import numpy_references
import pytest
from backend_utils import JIT_COMPILE
from backend_utils import gradients
from backend_utils import run_step

from keras_selfdistill import ClassWiseSelfDistillation
from keras_selfdistill import TrainingInputs
from keras_selfdistill import losses
from keras_selfdistill.class_pairs import ClassPairedBatches
from keras_selfdistill.class_pairs import pair_by_class
from keras_selfdistill.testing import run_model_saving_test
from keras_selfdistill.testing import run_serialization_test

NUM_CLASSES = 10


def make_student(hidden=16, name="student"):
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(hidden, activation="relu"),
            keras.layers.Dense(NUM_CLASSES),
        ],
        name=name,
    )


class SubclassedStudent(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.flatten = keras.layers.Flatten()
        self.logits = keras.layers.Dense(NUM_CLASSES)

    def call(self, inputs):
        return self.logits(self.flatten(inputs))


@pytest.fixture
def paired(digits):
    """64 digits with same-class partners: `(paired inputs, labels)`."""
    images, labels = digits[0][:64], digits[1][:64]
    return pair_by_class(images, labels, seed=0)


def as_numpy(value):
    return np.asarray(keras.ops.convert_to_numpy(value), "float64")


def test_loss_is_cross_entropy_plus_the_partners_softened_kl(paired):
    keras.utils.set_random_seed(0)
    model = ClassWiseSelfDistillation(make_student(), temperature=3.0,
                                      distillation_weight=2.0)
    inputs, labels = paired
    outputs = model(TrainingInputs(inputs), training=True)
    loss = model.compute_loss(y=labels, y_pred=outputs)

    student = model.student
    expected = numpy_references.numpy_class_wise_loss(
        labels, as_numpy(student(inputs["inputs"])),
        as_numpy(student(inputs["partner_inputs"])), 3.0, 2.0,
    ).mean()
    np.testing.assert_allclose(as_numpy(loss), expected, rtol=1e-5)


def test_no_gradient_flows_through_the_partners_forward_pass(paired):
    """The gradient equals that of the same loss with the partners' logits
    frozen as constants; a gradient through the partner pass would add
    terms (checked: without `stop_gradient` the two differ)."""
    keras.utils.set_random_seed(0)
    model = ClassWiseSelfDistillation(make_student())
    inputs, labels = paired
    partner_logits = as_numpy(model.student(inputs["partner_inputs"])).astype("float32")
    weights = model.student.trainable_variables

    def wrapper_loss():
        outputs = model(TrainingInputs(inputs), training=True)
        return model.compute_loss(y=labels, y_pred=outputs)

    def constant_partner_loss():
        logits = model.student(inputs["inputs"], training=True)
        return keras.ops.mean(
            losses.class_wise_objective(labels, logits, partner_logits)["total"]
        )

    def partner_with_gradient_loss():
        logits = model.student(inputs["inputs"], training=True)
        partner = model.student(inputs["partner_inputs"], training=True)
        log_p = keras.ops.log_softmax(logits / 4.0, axis=-1)
        log_q = keras.ops.log_softmax(partner / 4.0, axis=-1)
        kl = keras.ops.sum(keras.ops.exp(log_q) * (log_q - log_p), axis=-1) * 16.0
        ce = keras.ops.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        return keras.ops.mean(ce + kl)

    got = gradients(wrapper_loss, weights)
    want = gradients(constant_partner_loss, weights)
    leaky = gradients(partner_with_gradient_loss, weights)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-5)
    assert any(np.abs(g - l).max() > 1e-4 for g, l in zip(got, leaky))


def test_learns_on_digits_with_paired_batches(digits_split):
    (train_images, train_labels), (test_images, test_labels) = digits_split
    keras.utils.set_random_seed(1)
    model = ClassWiseSelfDistillation(make_student(hidden=32))
    model.compile(optimizer=keras.optimizers.Adam(0.01), metrics=["accuracy"])
    history = model.fit(
        ClassPairedBatches(train_images, train_labels, batch_size=64, seed=0),
        epochs=3, validation_data=(test_images, test_labels), verbose=0,
    ).history
    # Chance is 0.1; about 0.95 here.
    assert history["val_accuracy"][-1] > 0.88
    assert history["distillation_loss"][-1] > 0
    # Validation on plain (x, y): no partners, so no class-wise term.
    assert history["val_distillation_loss"][-1] == 0
    np.testing.assert_allclose(
        history["val_loss"][-1], history["val_cross_entropy_loss"][-1], rtol=1e-5
    )


def test_jit_compiled_step_matches_the_uncompiled_step(paired):
    inputs, labels = paired

    def one_step(jit_compile):
        keras.utils.set_random_seed(2)
        model = ClassWiseSelfDistillation(make_student())
        model.compile(optimizer=keras.optimizers.SGD(0.5), jit_compile=jit_compile)
        model.fit(inputs, labels, batch_size=16, epochs=1, shuffle=False, verbose=0)
        return model.student.get_weights()

    initial = (keras.utils.set_random_seed(2), make_student().get_weights())[1]
    plain, compiled = one_step(False), one_step(JIT_COMPILE)
    for got, want in zip(compiled, plain):
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert any(not np.allclose(now, then) for now, then in zip(plain, initial))


def test_predict_serves_the_students_logits_inside_fit(paired, digits):
    inputs, labels = paired
    probe = digits[0][:4]
    served = []

    class PredictInCallback(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            served.append(self.model.predict(probe, verbose=0))

    model = ClassWiseSelfDistillation(make_student())
    model.compile(optimizer="adam", jit_compile=JIT_COMPILE)
    model.fit(inputs, labels, batch_size=16, epochs=1, verbose=0,
              callbacks=[PredictInCallback()])
    assert served and all(np.shape(s) == (4, NUM_CLASSES) for s in served)
    np.testing.assert_allclose(
        model.predict(probe, verbose=0), as_numpy(model.student(probe)), atol=1e-5
    )


def test_a_subclassed_student_trains_and_saves(paired, digits):
    inputs, labels = paired
    student = SubclassedStudent()
    student(digits[0][:1])
    model = ClassWiseSelfDistillation(student)
    model.compile(optimizer="adam")
    logs = run_step(model, "train_step", (inputs, labels))
    assert np.isfinite(float(keras.ops.convert_to_numpy(logs["loss"])))


def test_config_and_keras_file_round_trip(paired, digits):
    inputs, labels = paired
    model = ClassWiseSelfDistillation(make_student(), temperature=2.0,
                                      distillation_weight=0.5)
    model.compile(optimizer="adam", metrics=["accuracy"])
    model.fit(inputs, labels, batch_size=16, epochs=1, verbose=0)
    model.temperature = 3.0  # The current value is what is saved.
    run_serialization_test(model)
    restored = run_model_saving_test(model, digits[0][:8])
    assert float(keras.ops.convert_to_numpy(restored.temperature)) == 3.0
    assert float(keras.ops.convert_to_numpy(restored.distillation_weight)) == 0.5
    restored.fit(inputs, labels, batch_size=16, epochs=1, verbose=0)


