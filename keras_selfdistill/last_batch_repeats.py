"""Batches for DLB: half of each batch repeats the previous batch's new half.

Self-distillation from the last mini-batch (`LastBatchSelfDistillation`) trains on
batches of `batch_size = 2 * n` samples: the first `n` repeat the last `n`
of the previous batch, the last `n` are new. With the new halves
`h_0, h_1, ..., h_{m-1}` of one pass over the data, the batches are

`[h_{-1}, h_0], [h_0, h_1], ..., [h_{m-2}, h_{m-1}]`

so every sample is trained on twice, in two consecutive steps. `h_{-1}` is
the last new half of the previous pass when there is one (so consecutive
epochs chain), else `h_{m-1}`. Every batch carries the sample indices
(`{"inputs": x, "sample_index": i}`), so the model checks that the repeated
half is the samples whose logits it kept, and uses no target where it is not
(the first step, or a pass that does not continue the previous one).

Three sources, all giving only full batches (a remainder of fewer than `n`
samples is left out of a pass, and a different one each pass when shuffled):

- `last_batch_repeat_order(order, batch_size)`: the index plan for arrays
  you batch yourself (`fit(..., batch_size=batch_size, shuffle=False)`);
- `LastBatchRepeats(x, y, batch_size)`: a `keras.utils.PyDataset` that
  reshuffles every epoch, chains the epochs, and re-augments the repeated
  half (`augment`); fit it with `shuffle=False`, so Keras keeps the order;
- `repeat_last_half_batches(dataset, batch_size)`: the same for an unbatched
  `tf.data.Dataset`.
"""

import keras
import numpy as np

from keras_selfdistill.sample_index import INPUTS_KEY
from keras_selfdistill.sample_index import SAMPLE_INDEX_KEY
from keras_selfdistill.sample_index import with_sample_index


def check_batch_size(batch_size) -> None:
    """`batch_size` must be an even integer >= 2 (two equal halves)."""
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or batch_size < 2
        or batch_size % 2
    ):
        raise ValueError(
            "`batch_size` must be an even integer >= 2: half of each batch "
            "repeats the previous batch, half is new. Received: "
            f"batch_size={batch_size!r}"
        )


def last_batch_repeat_order(order, batch_size: int, previous_half=None):
    """The sample order of one pass of DLB batches over `order`.

    Args:
        order: 1-D integer array, the samples of one pass in the order their
            new halves are taken (e.g. a permutation). The last
            `len(order) % (batch_size // 2)` are left out.
        batch_size: even int >= 2. Samples per batch.
        previous_half: optional integer array `(batch_size // 2,)`, the last
            new half of the previous pass, repeated by the first batch.
            Defaults to this pass's own last new half.

    Returns:
        An int64 array of `m * batch_size` sample indices, `m = len(order) //
        (batch_size // 2)`: batch `k` is rows `k * batch_size` to `(k + 1) *
        batch_size`, its repeated half first.

    Raises:
        ValueError: for a bad `batch_size`, fewer samples than half a batch,
            or a `previous_half` of the wrong shape.

    Example:

    >>> last_batch_repeat_order(np.arange(6), batch_size=4).tolist()
    [4, 5, 0, 1, 0, 1, 2, 3, 2, 3, 4, 5]
    """
    check_batch_size(batch_size)
    half = batch_size // 2
    order = np.asarray(order).reshape(-1)
    halves = len(order) // half
    if halves == 0:
        raise ValueError(
            f"A pass needs at least half a batch ({half} samples) of new "
            f"samples. Received: {len(order)} samples with "
            f"batch_size={batch_size}"
        )
    new = order[: halves * half].reshape(halves, half)
    if previous_half is None:
        previous_half = new[-1]
    previous_half = np.asarray(previous_half).reshape(-1)
    if previous_half.shape != (half,):
        raise ValueError(
            f"`previous_half` must hold batch_size // 2 = {half} indices. "
            f"Received: previous_half with shape {previous_half.shape}"
        )
    repeated = np.concatenate([previous_half[None], new[:-1]])
    return np.concatenate([repeated, new], axis=1).reshape(-1).astype("int64")


class LastBatchRepeats(keras.utils.PyDataset):
    """DLB batches from arrays: a `PyDataset` for `LastBatchSelfDistillation`.

    Yields `({"inputs": x[i], "sample_index": i}, y[i])` batches (with
    `sample_weight[i]` when given) in the layout of
    `last_batch_repeat_order`. The order is reshuffled at the end of every
    epoch, and the first batch of an epoch repeats the last new half of the
    one before, also across `fit` calls on the same object. `augment`, if
    given, runs on every batch, so the repeated half is re-augmented (the
    paper's setting).

    Args:
        x: numpy array `(samples, ...)`, the model's inputs.
        y: numpy array `(samples, ...)`, the labels.
        batch_size: even int >= 2.
        sample_weight: optional numpy array `(samples,)`.
        shuffle: bool. A new random order every epoch. Defaults to `True`.
        seed: optional int for the order. Defaults to `None`.
        augment: optional callable `(images, rng) -> images`, with `rng` a
            `numpy.random.Generator`. Defaults to `None`.
        **kwargs: `keras.utils.PyDataset` arguments (`workers`, ...).

    Example:

    ```python
    batches = LastBatchRepeats(x_train, y_train, batch_size=64, seed=0)
    model = LastBatchSelfDistillation(classifier, batch_size=64)
    model.compile(optimizer="adam", metrics=["accuracy"])
    # shuffle=False: the batches themselves are shuffled, Keras must keep
    # their order.
    model.fit(batches, epochs=10, shuffle=False, validation_data=(x_val, y_val))
    ```
    """

    def __init__(self, x, y, batch_size, sample_weight=None, shuffle=True,
                 seed=None, augment=None, **kwargs):
        super().__init__(**kwargs)
        check_batch_size(batch_size)
        with_sample_index(x)  # Checks that x is arrays.
        if len(y) != len(x) or (
            sample_weight is not None and len(sample_weight) != len(x)
        ):
            raise ValueError(
                "`x`, `y` and `sample_weight` must have one row per sample. "
                f"Received: {len(x)} inputs, {len(y)} labels"
                + ("" if sample_weight is None
                   else f", {len(sample_weight)} sample weights")
            )
        self.x, self.y, self.sample_weight = x, y, sample_weight
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        self.rng = np.random.default_rng(seed)
        self.plan = self._new_plan(previous_half=None)

    def _new_plan(self, previous_half):
        count = len(self.x)
        order = self.rng.permutation(count) if self.shuffle else np.arange(count)
        return last_batch_repeat_order(order, self.batch_size, previous_half)

    def __len__(self):
        return len(self.plan) // self.batch_size

    def __getitem__(self, batch):
        index = self.plan[batch * self.batch_size:(batch + 1) * self.batch_size]
        inputs = self.x[index]
        if self.augment is not None:
            inputs = self.augment(inputs, self.rng)
        data = ({INPUTS_KEY: inputs, SAMPLE_INDEX_KEY: index}, self.y[index])
        if self.sample_weight is not None:
            data += (self.sample_weight[index],)
        return data

    def on_epoch_end(self):
        """Draws the next epoch's order, chained to this one's last half."""
        self.plan = self._new_plan(previous_half=self.plan[-self.batch_size // 2:])


def repeat_last_half_batches(dataset, batch_size: int):
    """DLB batches from an unbatched `tf.data.Dataset`.

    Indexes the samples by their position in each pass, then groups them into halves of `batch_size // 2` and
    yields each pair of consecutive halves as one batch: `[h_0, h_1], [h_1,
    h_2], ...` (the first pass of each epoch has no `h_{-1}`, so an epoch
    has one batch fewer than halves, and its first step has no target).
    Map random augmentation **after** this function, on the batches, so the
    repeated half is re-augmented.

    Args:
        dataset: an unbatched `tf.data.Dataset` of `x` or
            `(x, y[, sample_weight])` elements, not yet indexed, shuffled as
            you like: a sample's index is its position in the pass, which is
            all DLB needs to recognise the repeated half in the next step.
        batch_size: even int >= 2.

    Returns:
        A `tf.data.Dataset` of batches `({"inputs": x, "sample_index": i},
        y[, sample_weight])`.

    Example:

    ```python
    samples = tf.data.Dataset.from_tensor_slices((x_train, y_train))
    batches = repeat_last_half_batches(samples.shuffle(10_000), batch_size=64)
    model.fit(batches.map(augment_batch), epochs=10)
    ```
    """
    check_batch_size(batch_size)
    halves = with_sample_index(dataset).batch(batch_size // 2, drop_remainder=True)
    pairs = halves.window(2, shift=1, drop_remainder=True)
    return pairs.flat_map(_zip_window).unbatch().batch(batch_size, drop_remainder=True)


def _zip_window(*window):
    # `Dataset.zip` is a static method: reached through a dataset of the
    # window, so that no TensorFlow import is needed.
    first = keras.tree.flatten(window)[0]
    return first.zip(window if len(window) > 1 else window[0])


__all__ = [
    "LastBatchRepeats",
    "check_batch_size",
    "last_batch_repeat_order",
    "repeat_last_half_batches",
]
