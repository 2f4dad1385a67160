"""The only backend-specific code of the test suite: taking gradients.

Keras has no backend-neutral `grad`; each branch below is the plain idiom of
its backend, and every gradient test goes through `gradients`.
"""

import keras
import numpy as np


def gradients(loss_fn, variables):
    """Gradients of `loss_fn()` with respect to Keras `variables`.

    Args:
        loss_fn: zero-argument function returning a scalar tensor, reading
            `variables` (directly or through layers).
        variables: list of `keras.Variable`.

    Returns:
        A list of numpy arrays, one per variable; a variable the loss does
        not depend on gets an array of zeros.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
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

        loss = loss_fn()
        grads = torch.autograd.grad(
            loss, [v.value for v in variables], allow_unused=True
        )
    else:
        raise NotImplementedError(f"No gradient helper for backend {backend}")
    return [
        np.zeros(v.shape, "float32") if g is None else keras.ops.convert_to_numpy(g)
        for v, g in zip(variables, grads)
    ]
