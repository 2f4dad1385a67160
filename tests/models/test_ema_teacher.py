"""EMATeacher and SelfEnsembleTeacher: teacher state by hand, loss, saving."""

import os

import keras
import numpy as np
import pytest
from backend_utils import JIT_COMPILE
from numpy_references import numpy_log_softmax

from keras_selfdistill.callbacks import CosineSchedule
from keras_selfdistill.callbacks import MomentumScheduler
from keras_selfdistill.models.ema_teacher import EMATeacher
from keras_selfdistill.models.self_ensemble import SelfEnsembleTeacher
from keras_selfdistill.testing import run_model_saving_test
from keras_selfdistill.testing import run_serialization_test


def make_student(batch_norm=False, hidden=0, name="student"):
    layers = [keras.Input((8, 8, 1)), keras.layers.Flatten()]
    if batch_norm:
        layers += [
            keras.layers.Dense(16),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
        ]
    if hidden:
        layers.append(keras.layers.Dense(hidden, activation="relu"))
    layers.append(keras.layers.Dense(10))
    return keras.Sequential(layers, name=name)


def weight_values(model):
    return [
        np.array(keras.ops.convert_to_numpy(weight), dtype="float64")
        for weight in model.weights
    ]


class WeightRecorder(keras.callbacks.Callback):
    """Student (and teacher) weights after every optimizer step."""

    def __init__(self, student, teacher=None):
        super().__init__()
        self.student, self.teacher = student, teacher
        self.students = [weight_values(student)]  # theta_0
        self.teachers = []

    def on_train_batch_end(self, batch, logs=None):
        # Reading `self.model` writes the step's state back into the
        # variables on JAX (whose `fit` keeps it outside them mid-epoch).
        assert self.model is not None
        self.students.append(weight_values(self.student))
        if self.teacher is not None:
            self.teachers.append(weight_values(self.teacher))


def numpy_ema(states, momenta):
    """xi_0 = theta_0, xi_t = m_t xi_{t-1} + (1 - m_t) theta_t; all xi_t."""
    averages = [states[0]]
    for theta, momentum in zip(states[1:], momenta):
        averages.append(
            [momentum * xi + (1 - momentum) * w for xi, w in zip(averages[-1], theta)]
        )
    return averages


def assert_weights_close(actual, expected, atol=1e-6):
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        np.testing.assert_allclose(got, want, atol=atol, rtol=1e-5)


# --------------------------------------------------------------------- #
# EMATeacher
# --------------------------------------------------------------------- #


def test_teacher_weights_are_the_ema_of_student_weights_under_jit(digits):
    images, labels = digits
    keras.utils.set_random_seed(3)
    student = make_student(batch_norm=True)
    model = EMATeacher(student, momentum=0.8, alpha=0.5)
    model.compile(optimizer=keras.optimizers.Adam(0.01), jit_compile=JIT_COMPILE)
    recorder = WeightRecorder(student, model.teacher)
    # A momentum that changes every step also shows that the new value
    # reaches the compiled step: m_t = schedule(t) (see EMATeacher).
    scheduler = MomentumScheduler(start=0.5, end=0.9, total_steps=6)
    schedule = CosineSchedule(0.5, 0.9, 6)

    # 2 epochs of 3 steps; each validation pass reads the student's new
    # weights before the next step does, and must not take them in twice.
    model.fit(images[:96], labels[:96], batch_size=32, epochs=2,
              validation_data=(images[96:128], labels[96:128]),
              shuffle=False, callbacks=[scheduler, recorder], verbose=0)

    averages = numpy_ema(recorder.students, [schedule(t) for t in range(1, 7)])
    # After fit (6 steps), the teacher holds xi_6 over every weight,
    # BatchNorm moving statistics included.
    assert_weights_close(weight_values(model.teacher), averages[6])
    # During step t+1 the teacher is xi_t: at the end of step t it has taken
    # in theta_{t-1}; theta_t is taken at the start of the next step.
    for step, teacher in enumerate(recorder.teachers, start=1):
        assert_weights_close(teacher, averages[step - 1])
    assert not np.allclose(averages[6][0], recorder.students[6][0])
    # A constant momentum gives a different answer: the schedule was used.
    constant = numpy_ema(recorder.students, [0.8] * 6)[6]
    assert not np.allclose(constant[0], averages[6][0], atol=1e-6)


@pytest.mark.parametrize("momentum", [0.0, 1.0])
def test_momentum_zero_copies_and_one_freezes_after_train_on_batch(digits, momentum):
    images, labels = digits
    student = make_student()
    initial = weight_values(student)
    model = EMATeacher(student, momentum=momentum)
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    for start in (0, 32):
        model.train_on_batch(images[start:start + 32], labels[start:start + 32])

    expected = weight_values(student) if momentum == 0.0 else initial
    assert_weights_close(weight_values(model.teacher), expected, atol=0)
    assert not np.allclose(weight_values(student)[0], initial[0])


def test_loss_is_the_hinton_objective_against_the_teacher(digits):
    images, labels = digits
    student = make_student()
    model = EMATeacher(student, momentum=0.5, alpha=0.3, temperature=2.0)
    model.compile(optimizer=keras.optimizers.SGD(0.5), metrics=["accuracy"])
    model.fit(images[:128], labels[:128], batch_size=32, verbose=0)
    teacher_after_fit = weight_values(model.teacher)

    logs = model.evaluate(images[:64], labels[:64], batch_size=64,
                          verbose=0, return_dict=True)

    s = student.predict(images[:64], verbose=0)
    t = model.teacher.predict(images[:64], verbose=0)
    ce = -numpy_log_softmax(s)[np.arange(64), labels[:64]]
    teacher_log_probs = numpy_log_softmax(t / 2.0)
    student_log_probs = numpy_log_softmax(s / 2.0)
    kl = (np.exp(teacher_log_probs) * (teacher_log_probs - student_log_probs)).sum(-1)
    assert kl.mean() > 1e-3  # the student has moved away from the teacher
    np.testing.assert_allclose(
        logs["loss"], np.mean(0.7 * ce + 0.3 * 4.0 * kl), rtol=1e-4
    )
    np.testing.assert_allclose(
        logs["distillation_loss"], np.mean(4.0 * kl), rtol=1e-4
    )
    np.testing.assert_allclose(
        logs["teacher_accuracy"], np.mean(t.argmax(-1) == labels[:64]), atol=1e-6
    )
    # fit took in the student's last weights; evaluating (or asking again)
    # must not take them in a second time.
    model.update_teacher()
    assert_weights_close(weight_values(model.teacher), teacher_after_fit, atol=0)


def test_only_the_student_is_trainable():
    student = make_student(batch_norm=True)
    model = EMATeacher(student)
    assert [id(w) for w in model.trainable_weights] == [
        id(w) for w in student.trainable_weights
    ]
    assert not model.teacher.trainable


def test_fit_learns_on_digits_and_saves(digits_split):
    (train_images, train_labels), (test_images, test_labels) = digits_split
    keras.utils.set_random_seed(4)
    model = EMATeacher(make_student(hidden=32), momentum=0.9, alpha=0.5)
    model.compile(optimizer=keras.optimizers.Adam(0.01), metrics=["accuracy"])
    history = model.fit(train_images, train_labels, epochs=3, batch_size=64,
                        validation_data=(test_images, test_labels),
                        verbose=0).history

    # Chance is 0.1; both reach about 0.95 here.
    assert history["val_accuracy"][-1] > 0.9
    assert history["val_teacher_accuracy"][-1] > 0.9
    assert "val_distillation_loss" in history

    model.momentum = 0.95
    run_serialization_test(model)
    restored = run_model_saving_test(model, test_images[:16])
    assert_weights_close(weight_values(restored.teacher),
                         weight_values(model.teacher), atol=0)
    assert float(restored.momentum.numpy()) == pytest.approx(0.95)
    np.testing.assert_allclose(
        restored.export_teacher().predict(test_images[:16], verbose=0),
        model.teacher.predict(test_images[:16], verbose=0),
        atol=1e-6,
    )


def functional_student():
    inputs = keras.Input((8, 8, 1))
    hidden = keras.layers.BatchNormalization()(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Dense(10)(hidden), name="student")


@keras.saving.register_keras_serializable(package="test_ema_teacher")
class SubclassedStudent(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.flatten = keras.layers.Flatten()
        self.normalization = keras.layers.BatchNormalization()
        self.classifier = keras.layers.Dense(10)

    def call(self, x, training=False):
        return self.classifier(self.normalization(self.flatten(x), training=training))


def subclassed_student():
    student = SubclassedStudent(name="student")
    student(np.zeros((1, 8, 8, 1), "float32"))
    return student


@pytest.mark.parametrize(
    "make",
    [lambda: make_student(batch_norm=True), functional_student, subclassed_student],
    ids=["sequential", "functional", "subclassed"],
)
def test_teacher_variables_have_their_own_paths(make):
    # Variable paths must be unique inside a model: torch tracks parameters
    # by path, and `get_state_tree` refuses a path found twice (the
    # teacher's copy of a BatchNormalization moving mean had the student's).
    student = make()
    model = EMATeacher(student)
    model.compile(optimizer="sgd")
    assert len({v.path for v in model.weights}) == len(model.weights)
    student_mean = next(v for v in student.weights if "moving_mean" in v.path)
    teacher_mean = next(v for v in model.teacher.weights if "moving_mean" in v.path)
    student_mean.assign(np.ones(student_mean.shape))
    teacher_mean.assign(np.zeros(teacher_mean.shape))
    flat = {
        "/".join(str(key) for key in path): value
        for path, value in keras.tree.flatten_with_path(model.get_state_tree())
    }
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(flat[f"non_trainable_variables/{student_mean.path}"]),
        np.ones(student_mean.shape),
    )
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(flat[f"non_trainable_variables/{teacher_mean.path}"]),
        np.zeros(teacher_mean.shape),
    )


@pytest.mark.parametrize("average", ["parameters", "outputs"])
def test_self_ensemble_copies_have_their_own_paths(average):
    model = SelfEnsembleTeacher(functional_student(), num_snapshots=2, average=average)
    model.compile(optimizer="sgd")
    assert len({v.path for v in model.weights}) == len(model.weights)
    model.get_state_tree()  # Refuses a path found twice.


def test_a_file_saved_when_the_teacher_shared_the_students_paths_loads():
    # Made by tests/data/make_ema_teacher_shared_paths.py at 9d2c72e, before
    # the teacher's layers had their own names: weight files address
    # layers by class, not name, so it loads into today's renamed teacher.
    fixture = os.path.join(os.path.dirname(__file__), os.pardir, "data",
                           "ema_teacher_shared_paths")
    expected = np.load(fixture + ".npz")
    model = keras.saving.load_model(fixture + ".keras", safe_mode=True)
    assert len({v.path for v in model.weights}) == len(model.weights)
    np.testing.assert_allclose(model.predict(expected["x"], verbose=0),
                               expected["student_logits"], atol=1e-5)
    np.testing.assert_allclose(model.teacher.predict(expected["x"], verbose=0),
                               expected["teacher_logits"], atol=1e-5)


# Bad inputs (each refused with a message naming the value and what is
# allowed) are rows of the one table in tests/test_bad_inputs.py.


# --------------------------------------------------------------------- #
# SelfEnsembleTeacher
# --------------------------------------------------------------------- #


def test_parameter_average_is_the_mean_of_the_last_k_snapshots(digits):
    images, labels = digits
    keras.utils.set_random_seed(5)
    student = make_student()
    model = SelfEnsembleTeacher(student, num_snapshots=3, average="parameters",
                                snapshot_interval=2)
    model.compile(optimizer=keras.optimizers.Adam(0.01), jit_compile=JIT_COMPILE)
    recorder = WeightRecorder(student, model.teacher)
    model.fit(images[:288], labels[:288], batch_size=32, epochs=1,
              shuffle=False, callbacks=[recorder], verbose=0)  # 9 steps
    theta = recorder.students

    def mean(*states):
        return [np.mean(ws, axis=0) for ws in zip(*states)]

    # Snapshots at steps 2, 4, 6, 8 in a ring of 3: the last are 4, 6, 8.
    assert_weights_close(
        weight_values(model.teacher), mean(theta[4], theta[6], theta[8])
    )
    # While the ring fills, the empty slots hold theta_0. At the end of step
    # 3 the teacher has taken theta_1 and theta_2 (one snapshot).
    assert_weights_close(recorder.teachers[2], mean(theta[2], theta[0], theta[0]))
    assert int(model.snapshot_steps.numpy()) == 9

    run_serialization_test(model)
    restored = run_model_saving_test(model, images[:16])
    assert_weights_close(weight_values(restored.teacher),
                         weight_values(model.teacher), atol=0)


def test_output_vote_is_the_mean_of_the_snapshots_logits(digits):
    images, labels = digits
    keras.utils.set_random_seed(6)
    student = make_student()  # Flatten + Dense: logits = x W + b
    model = SelfEnsembleTeacher(student, num_snapshots=2, average="outputs",
                                alpha=0.4)
    model.compile(optimizer=keras.optimizers.Adam(0.01), metrics=["accuracy"])
    recorder = WeightRecorder(student)
    model.fit(images[:160], labels[:160], batch_size=32, epochs=1,
              shuffle=False, callbacks=[recorder], verbose=0)  # 5 steps

    flat = images[:64].reshape(64, -1).astype("float64")
    snapshot_logits = [flat @ recorder.students[t][0] + recorder.students[t][1]
                       for t in (4, 5)]
    expected = np.mean(snapshot_logits, axis=0)
    teacher = model.export_teacher()
    np.testing.assert_allclose(teacher.predict(images[:64], verbose=0), expected,
                               atol=1e-4)
    logs = model.evaluate(images[:64], labels[:64], batch_size=64, verbose=0,
                          return_dict=True)
    np.testing.assert_allclose(
        logs["teacher_accuracy"], np.mean(expected.argmax(-1) == labels[:64]),
        atol=1e-6,
    )

    restored = run_model_saving_test(model, images[:16])
    run_model_saving_test(teacher, images[:16])
    np.testing.assert_allclose(
        restored.export_teacher().predict(images[:16], verbose=0),
        expected[:16],
        atol=1e-4,
    )
