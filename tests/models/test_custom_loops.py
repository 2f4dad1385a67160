"""Custom training loops that call Keras's `train_step` / `test_step`.

A loop of one's own (under `strategy.run`, with gradient accumulation, ...)
calls `model.train_step(data)` instead of `fit`. Every model of the package
then takes the step `train_on_batch` takes: the step asks the model for its
training outputs itself (docs/scaling.md has the multi-worker recipe). On
JAX the loop passes the state, as Keras's JAX trainer does
(`backend_utils.run_train_step`).
"""

import keras
import numpy as np
import pytest
from backend_utils import run_step
from model_families import FAMILIES

BATCH = 16

def compiled(build, initial_weights):
    model = build()
    model.set_weights(initial_weights)
    model.compile(optimizer=keras.optimizers.SGD(0.1), run_eagerly=True)
    return model


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_train_step_in_a_loop_takes_the_train_on_batch_step(family, digits):
    images, labels = digits[0][:BATCH], digits[1][:BATCH]
    keras.utils.set_random_seed(0)
    initial_weights = FAMILIES[family]().get_weights()

    looped = compiled(FAMILIES[family], initial_weights)
    loop_logs = run_step(looped, "train_step", (images, labels))
    reference = compiled(FAMILIES[family], initial_weights)
    reference_logs = reference.train_on_batch(images, labels, return_dict=True)

    assert float(loop_logs["loss"]) == pytest.approx(reference_logs["loss"], rel=1e-6)
    assert reference_logs["loss"] > 0
    if hasattr(looped, "update_teacher"):
        # A momentum teacher takes the step's student at the start of the
        # next step; train_on_batch (and fit) fold the last one on return.
        looped.update_teacher()
    for got, want in zip(looped.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    # Outside the step the model serves again: one output, not the dict.
    assert not isinstance(looped(images[:2]), dict)


def test_test_step_in_a_loop_reports_every_loss_term(digits):
    images, labels = digits[0][:BATCH], digits[1][:BATCH]
    model = FAMILIES["SelfDistillModel"]()
    model.compile(optimizer="sgd", metrics=["accuracy"], run_eagerly=True)
    logs = run_step(model, "test_step", (images, labels))
    evaluated = model.evaluate(images, labels, verbose=0, return_dict=True)
    for key in ("loss", "cross_entropy_loss", "distillation_loss", "feature_loss",
                "accuracy", "head_1_accuracy"):
        assert float(logs[key]) == pytest.approx(evaluated[key], rel=1e-5), key
