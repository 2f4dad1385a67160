"""Schedules: their formulas, and that a new value reaches a jit-compiled step.

The jit tests train with a learning rate of 0, so the logits stay fixed and
the loss each epoch can be computed by hand from `predict`; the only thing
that changes between epochs is the scheduled hyper-parameter.
"""

import math

import keras
import numpy as np
import pytest
from backend_utils import JIT_COMPILE

from keras_selfdistill.callbacks import CosineSchedule
from keras_selfdistill.callbacks import HyperparameterScheduler
from keras_selfdistill.callbacks import LinearSchedule
from keras_selfdistill.callbacks import MomentumScheduler
from keras_selfdistill.models.ema_teacher import EMATeacher
from keras_selfdistill.models.mutual_learning import MutualLearning
from keras_selfdistill.models.self_distill_model import SelfDistillModel
from keras_selfdistill.testing import run_serialization_test


def log_softmax(logits):
    logits = np.asarray(logits, dtype="float64")
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def cross_entropy(labels, logits):
    return -log_softmax(logits)[np.arange(len(labels)), labels]


def softened_kl(teacher_logits, student_logits, temperature):
    teacher = log_softmax(np.asarray(teacher_logits) / temperature)
    student = log_softmax(np.asarray(student_logits) / temperature)
    return (np.exp(teacher) * (teacher - student)).sum(-1) * temperature**2


def frozen_compile(model):
    """Compiled (XLA; see `JIT_COMPILE`), with a zero learning rate: the
    logits never move."""
    model.compile(optimizer=keras.optimizers.SGD(0.0), jit_compile=JIT_COMPILE)


def make_mlp(name, width=8):
    inputs = keras.Input((8, 8, 1))
    hidden = keras.layers.Dense(width, activation="relu")(
        keras.layers.Flatten()(inputs)
    )
    return keras.Model(inputs, keras.layers.Dense(10)(hidden), name=name)


# --------------------------------------------------------------------- #
# Schedules
# --------------------------------------------------------------------- #


def test_linear_schedule_ramps_then_stays():
    schedule = LinearSchedule(start=0.0, end=0.6, total_steps=3)
    np.testing.assert_allclose(
        [schedule(i) for i in range(5)], [0.0, 0.2, 0.4, 0.6, 0.6]
    )
    run_serialization_test(schedule)


def test_cosine_schedule_is_dino_momentum_formula():
    schedule = CosineSchedule(start=0.996, end=1.0, total_steps=10)
    expected = [
        1.0 - (1.0 - 0.996) * (math.cos(math.pi * min(i, 10) / 10) + 1) / 2
        for i in range(12)
    ]
    np.testing.assert_allclose([schedule(i) for i in range(12)], expected)
    run_serialization_test(schedule)


def test_scheduler_config_round_trip():
    scheduler = HyperparameterScheduler(
        "temperature", CosineSchedule(4.0, 1.0, 10), per="step"
    )
    revived = run_serialization_test(scheduler)
    assert revived.schedule(10) == 1.0
    run_serialization_test(MomentumScheduler(start=0.99, total_steps=100))


# --------------------------------------------------------------------- #
# The new value reaches the compiled step
# --------------------------------------------------------------------- #


def test_alpha_switch_mid_fit_reaches_jit_step_of_self_distill_model(digits):
    images, labels = digits
    images, labels = images[:64], labels[:64]
    inputs = keras.Input((8, 8, 1))
    hidden = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    shallow = keras.layers.Dense(10, name="shallow")(keras.layers.Flatten()(hidden))
    deep = keras.layers.Dense(10, name="deep")(
        keras.layers.GlobalAveragePooling2D()(hidden)
    )
    model = SelfDistillModel(
        inputs, [shallow, deep], alpha=0.0, temperature=2.0, feature_weight=0.0,
        scale_by_temperature_squared=True,
    )
    frozen_compile(model)

    history = model.fit(
        images, labels, batch_size=64, epochs=2, shuffle=False, verbose=0,
        callbacks=[HyperparameterScheduler("alpha", lambda epoch: float(epoch))],
    ).history

    z_shallow, z_deep = model.predict_heads(images, verbose=0)
    ce_deep = cross_entropy(labels, z_deep)
    ce_shallow = cross_entropy(labels, z_shallow)
    kl = softened_kl(z_deep, z_shallow, 2.0)
    expected = [
        np.mean(ce_deep + (1 - alpha) * ce_shallow + alpha * kl)
        for alpha in (0.0, 1.0)
    ]
    assert history["alpha"] == [0.0, 1.0]
    np.testing.assert_allclose(history["loss"], expected, rtol=1e-5)
    assert abs(expected[1] - expected[0]) > 0.1


def test_temperature_switch_mid_fit_reaches_jit_step_of_mutual_learning(digits):
    images, labels = digits
    images, labels = images[:64], labels[:64]
    keras.utils.set_random_seed(7)
    peers = [make_mlp("first"), make_mlp("second")]
    model = MutualLearning(peers, alpha=0.5, temperature=1.0)
    frozen_compile(model)

    history = model.fit(
        images, labels, batch_size=64, epochs=2, shuffle=False, verbose=0,
        callbacks=[
            HyperparameterScheduler("temperature", LinearSchedule(1.0, 4.0, 1))
        ],
    ).history

    first, second = (peer.predict(images, verbose=0) for peer in peers)
    expected = []
    for temperature in (1.0, 4.0):
        total = 0.0
        for own, other in ((first, second), (second, first)):
            kl = softened_kl(other, own, temperature)
            total += np.mean(0.5 * cross_entropy(labels, own) + 0.5 * kl)
        expected.append(total)
    assert history["temperature"] == [1.0, 4.0]
    np.testing.assert_allclose(history["loss"], expected, rtol=1e-5)


def test_per_step_alpha_schedule_reaches_jit_step_of_ema_teacher(digits):
    images, labels = digits
    images, labels = images[:64], labels[:64]
    student = make_mlp("student")
    # Learning rate 0: the teacher stays equal to the student (KL = 0) and
    # each step's loss is (1 - alpha_step) * CE of its batch.
    model = EMATeacher(student, momentum=0.5, alpha=0.0)
    frozen_compile(model)
    schedule = LinearSchedule(0.0, 1.0, 4)

    history = model.fit(
        images, labels, batch_size=32, epochs=2, shuffle=False, verbose=0,
        callbacks=[HyperparameterScheduler("alpha", schedule, per="step")],
    ).history

    logits = student.predict(images, verbose=0)
    batch_ce = [np.mean(cross_entropy(labels[i:i + 32], logits[i:i + 32]))
                for i in (0, 32)]
    alphas = [schedule(step) for step in range(4)]  # 0, .25, .5, .75
    expected = [
        np.mean([(1 - alphas[2 * epoch + b]) * batch_ce[b] for b in (0, 1)])
        for epoch in (0, 1)
    ]
    np.testing.assert_allclose(history["loss"], expected, rtol=1e-5)
    # Logged at each epoch's end: the value the next step will use.
    assert history["alpha"] == [0.5, 1.0]
    assert float(model.alpha.numpy()) == 1.0


def test_momentum_scheduler_takes_its_length_from_fit():
    model = EMATeacher(make_mlp("student"))
    model.compile(optimizer="sgd")
    scheduler = MomentumScheduler(start=0.9, end=1.0)
    scheduler.set_model(model)
    scheduler.set_params({"epochs": 2, "steps": 5, "verbose": 0})

    scheduler.on_train_begin()

    assert scheduler.schedule.total_steps == 10
    assert float(model.momentum.numpy()) == pytest.approx(0.9)
    scheduler.set_params({"epochs": 2, "steps": None, "verbose": 0})
    with pytest.raises(ValueError, match="steps per epoch=None"):
        scheduler.on_train_begin()


# --------------------------------------------------------------------- #
# Errors
# --------------------------------------------------------------------- #


# Bad inputs (each refused with a message naming the value and what is
# allowed) are rows of the one table in tests/test_bad_inputs.py.


@pytest.mark.parametrize(
    "make",
    [
        lambda: LinearSchedule(0.0, 0.5, 5),
        lambda: CosineSchedule(0.996, 1.0, 100),
        lambda: MomentumScheduler(0.99, 1.0, total_steps=10),
    ],
    ids=["linear", "cosine", "momentum"],
)
def test_schedule_configs_round_trip(make):
    original = make()
    revived = type(original).from_config(original.get_config())
    assert revived.get_config() == original.get_config()
    if callable(original):
        assert [revived(i) for i in range(6)] == [original(i) for i in range(6)]
