"""The only backend-specific code of the test suite.

Taking gradients: Keras has no backend-neutral `grad`; each branch below is
the plain idiom of its backend, and every gradient test goes through
`gradients`.

Compiling: `jit_compile=True` means XLA on TensorFlow and JAX, but
`torch.compile` (TorchDynamo, minutes per model on a CPU) on torch. Tests
about XLA itself are marked `requires_xla`; tests that only want the
compiled step of the backend (schedules reaching it, state updated inside
it) compile with `JIT_COMPILE`, which runs the same checks on torch's
uncompiled step.
"""

import keras
import numpy as np
import pytest

#: The backends whose `jit_compile=True` is XLA.
XLA_BACKENDS = ("tensorflow", "jax")

#: `jit_compile` for a test that wants the backend's compiled train step:
#: XLA on TensorFlow and JAX; the uncompiled step on torch (see above).
JIT_COMPILE = keras.backend.backend() in XLA_BACKENDS

def tensorflow_pass_only(why):
    """Marks a slow test whose subject does not depend on the backend, so
    the suite runs it once, in its TensorFlow pass (scripts/test.sh runs
    the suite once per backend).

    Args:
        why: str. What makes the test backend-independent.
    """
    return pytest.mark.skipif(
        keras.backend.backend() != "tensorflow",
        reason=f"slow and backend-independent ({why}): run once, in the "
        "TensorFlow pass",
    )


#: Marks a test about XLA itself: it runs on TensorFlow and JAX only.
requires_xla = pytest.mark.skipif(
    keras.backend.backend() not in XLA_BACKENDS,
    reason="XLA (jit_compile=True) exists on TensorFlow and JAX; on torch, "
    "jit_compile=True means torch.compile, not what this test checks",
)


def gradients(loss_fn, variables):
    """Gradients of `loss_fn()` with respect to Keras `variables`.

    Args:
        loss_fn: zero-argument function returning a scalar tensor, reading
            `variables` (directly or through layers).
        variables: list of `keras.Variable`, trainable or not (a frozen
            teacher's weights too: the gradient then shows whether the loss
            reaches them, not whether an optimizer would update them).

    Returns:
        A list of numpy arrays, one per variable; a variable the loss does
        not depend on gets an array of zeros.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch([v.value for v in variables])
            loss = loss_fn()
        grads = tape.gradient(loss, [v.value for v in variables])
    elif backend == "jax":
        import jax

        def stateless_loss(values):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return loss_fn()

        grads = jax.grad(stateless_loss)([v.value for v in variables])
    elif backend == "torch":
        import torch

        # Non-trainable variables are tensors with requires_grad=False;
        # enable it for the duration so they can be differentiated too.
        frozen = [v.value for v in variables if not v.value.requires_grad]
        for value in frozen:
            value.requires_grad_(True)
        try:
            loss = loss_fn()
            grads = torch.autograd.grad(
                loss, [v.value for v in variables], allow_unused=True
            )
        finally:
            for value in frozen:
                value.requires_grad_(False)
    else:
        raise NotImplementedError(f"No gradient helper for backend {backend}")
    return [
        np.zeros(v.shape, "float32") if g is None else keras.ops.convert_to_numpy(g)
        for v, g in zip(variables, grads)
    ]


def run_step(model, step, data):
    """`model.train_step` or `model.test_step` as a custom loop calls it.

    TensorFlow and torch steps are stateful (`step(data)`); JAX's are pure
    functions of the state, so the loop passes the variables' values and
    writes the returned state back, as Keras's JAX trainer does.

    Args:
        model: a compiled model.
        step: `"train_step"` or `"test_step"`.
        data: a batch, e.g. `(x, y)`.

    Returns:
        The step's logs.
    """
    if keras.backend.backend() != "jax":
        return getattr(model, step)(data)
    groups = [model.trainable_variables, model.non_trainable_variables]
    if step == "train_step":
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        groups.append(model.optimizer.variables)
    groups.append(model.metrics_variables)
    state = tuple([variable.value for variable in group] for group in groups)
    logs, new_state = getattr(model, step)(state, data)
    for group, values in zip(groups, new_state):
        for variable, value in zip(group, values):
            variable.assign(value)
    return logs
