"""XLA: a compiled train step computes what the uncompiled one does.

For every model family, two copies with the same weights train on the same
batches, one with `jit_compile=False` and one with `jit_compile=True`; the
loss of every step, each loss term, and the weights after the steps (the
optimizer's update and any state updated inside the step, such as an EMA
teacher's) must agree within float32 tolerance.
"""

import keras
import numpy as np
import pytest
from backend_utils import requires_xla
from model_families import FAMILIES

STEPS = 3
BATCH = 16


def train_steps(build, jit_compile, initial_weights, images, labels):
    model = build()
    model.set_weights(initial_weights)
    model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=jit_compile)
    logs = [
        model.train_on_batch(
            images[step * BATCH:(step + 1) * BATCH],
            labels[step * BATCH:(step + 1) * BATCH],
            return_dict=True,
        )
        for step in range(STEPS)
    ]
    evaluated = model.evaluate(images, labels, verbose=0, return_dict=True)
    return logs, evaluated, [np.asarray(w) for w in model.get_weights()]


@requires_xla
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_jit_compiled_steps_match_uncompiled_steps(family, digits):
    images, labels = digits[0][: STEPS * BATCH], digits[1][: STEPS * BATCH]
    keras.utils.set_random_seed(0)
    initial_weights = FAMILIES[family]().get_weights()

    eager_logs, eager_eval, eager_weights = train_steps(
        FAMILIES[family], False, initial_weights, images, labels
    )
    xla_logs, xla_eval, xla_weights = train_steps(
        FAMILIES[family], True, initial_weights, images, labels
    )

    assert eager_logs[0]["loss"] > 0
    for step, (eager, xla) in enumerate(zip(eager_logs, xla_logs)):
        for key in eager:
            assert xla[key] == pytest.approx(eager[key], rel=1e-5, abs=1e-6), (
                f"step {step}: {key}"
            )
    for key in eager_eval:
        assert xla_eval[key] == pytest.approx(eager_eval[key], rel=1e-5, abs=1e-6), key
    assert len(xla_weights) == len(eager_weights)
    for xla, eager in zip(xla_weights, eager_weights):
        np.testing.assert_allclose(xla, eager, rtol=1e-4, atol=1e-6)
