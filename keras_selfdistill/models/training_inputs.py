"""`TrainingInputs`: how a training step asks a model for its training outputs.

A distillation model trains on more than it serves: every head's logits and
features, a teacher's logits, every peer's logits. Keras's trainers compute
the forward pass as `self(x, training=...)` in `train_step`, `test_step` and
`predict_step` alike, so the request for the training outputs travels with
the inputs: the train and test steps of `DistillationBase` wrap `x` in
`TrainingInputs(x)` before calling Keras's step, and `call` answers a
`TrainingInputs` with the training outputs and anything else with what is
served. Nothing is set on the model, so nothing one call does can change what
another returns: `predict` inside a callback during `fit`, `evaluate` inside
`fit`, and a compiled function cached by Keras all see only their own inputs.

`TrainingInputs` is a named tuple, so Keras's structure utilities see the
tensors inside it (batch size, dtype conversion) and keep the wrapper.
"""

import collections

import keras


class TrainingInputs(collections.namedtuple("TrainingInputs", ["inputs"])):
    """Model inputs for which a distillation model returns its training outputs.

    `model(TrainingInputs(x), training=True)` returns the dict the model's
    `compute_loss` takes (every head's logits, the teacher's logits, ...),
    where `model(x)` returns the served logits. The models' `train_step` and
    `test_step` wrap their inputs this way; a custom loop that computes the
    loss itself does the same:

    Example:

    >>> import keras, numpy as np
    >>> from keras_selfdistill import AuxiliaryHead, SelfDistillModel
    >>> from keras_selfdistill import TrainingInputs
    >>> inputs = keras.Input((8,))
    >>> hidden = keras.layers.Dense(8, activation="relu")(inputs)
    >>> head = AuxiliaryHead(3, name="head_1")(hidden)
    >>> logits = keras.layers.Dense(3, name="logits")(hidden)
    >>> model = SelfDistillModel(inputs, [head, logits])
    >>> x = np.zeros((2, 8), "float32")
    >>> sorted(model(TrainingInputs(x), training=True))
    ['features', 'logits']
    >>> tuple(model(x).shape)
    (2, 3)

    Args:
        inputs: the model's inputs (a tensor, or the structure the model
            takes).
    """

    __slots__ = ()


def as_training_batch(data):
    """A `fit`/`evaluate` batch with its inputs wrapped in `TrainingInputs`.

    Args:
        data: what Keras passes to `train_step`/`test_step`: `x`,
            `(x,)`, `(x, y)` or `(x, y, sample_weight)`.

    Returns:
        The same batch, `(TrainingInputs(x), y, sample_weight)` packed as
        Keras packs it.
    """
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    if not isinstance(x, TrainingInputs):
        x = TrainingInputs(x)
    return keras.utils.pack_x_y_sample_weight(x, y, sample_weight)
