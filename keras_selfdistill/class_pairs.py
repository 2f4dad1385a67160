"""Same-class partners for class-wise self-distillation (CS-KD).

`ClassWiseSelfDistillation` trains on batches in which every sample comes
with a partner of the same class. The batch layout is

`({"inputs": x, "partner_inputs": x_partner}, y)`

where `x_partner[i]` is another sample with label `y[i]`, and `y` are the
labels of `x` (the partners' labels are the same). Three ways to make it:

- numpy arrays: `pair_by_class(x, y, seed)` returns that structure once
  (one partner per sample); call it again for new partners.
- `keras.utils.PyDataset`: `ClassPairedBatches(x, y, batch_size)` draws new
  partners and a new order every epoch, as the authors' sampler does. `fit`
  takes it on every backend.
- `tf.data`: `class_partner_indices(y, seed)` gives the partners' indices
  as a numpy array, to gather inside a pipeline (docs/headfree_self_kd.md
  shows it). The package itself imports no TensorFlow.

Labels must be integer class ids (one per sample), and every class present
must have at least two samples.
"""

import keras
import numpy as np

from keras_selfdistill.validation import check_integer

#: Keys of a paired batch's inputs.
INPUTS_KEY = "inputs"
PARTNER_INPUTS_KEY = "partner_inputs"


def is_paired_batch(inputs) -> bool:
    """Whether `inputs` is `{"inputs": x, "partner_inputs": x_partner}`.

    Decided on the Python structure, so it is free (and fixed) at trace time.
    """
    return isinstance(inputs, dict) and set(inputs) == {
        INPUTS_KEY,
        PARTNER_INPUTS_KEY,
    }


def class_ids(labels) -> np.ndarray:
    """`labels` as a 1-D integer numpy array, checked to be class ids.

    Args:
        labels: array-like of shape `(samples,)` or `(samples, 1)`, integer
            class ids.

    Returns:
        An int64 numpy array `(samples,)`.

    Raises:
        ValueError: for one-hot or other 2-D labels, non-integer values
            (floats with a fraction, strings) or negative ids.
    """
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ValueError(
            "Pairing by class needs integer class ids, one per sample "
            "(shape (samples,) or (samples, 1)). For one-hot labels pass "
            f"labels.argmax(-1). Received: labels with shape {labels.shape}"
        )
    integral = labels.dtype.kind in "iu" or (
        labels.dtype.kind == "f"
        and np.all(np.isfinite(labels))
        and np.all(labels == np.round(labels))
    )
    if not integral or (labels.size and labels.min() < 0):
        raise ValueError(
            "Pairing by class needs integer class ids >= 0. Received: labels "
            f"of dtype {labels.dtype} with values {labels[:5].tolist()}..."
        )
    return labels.astype("int64")


def _members_by_class(ids):
    """`{class id: indices of its samples}`, after checking every class has
    a partner to offer."""
    members = {int(c): np.flatnonzero(ids == c) for c in np.unique(ids)}
    lonely = {c: len(m) for c, m in members.items() if len(m) < 2}
    if lonely:
        raise ValueError(
            "Every class needs at least 2 samples, so each sample has a "
            "same-class partner. Received: classes with a single sample: "
            f"{sorted(lonely)[:10]} (of {len(members)} classes). Drop them or "
            "add samples."
        )
    return members


def class_partner_indices(labels, seed=None) -> np.ndarray:
    """For every sample, the index of a random other sample of its class.

    Args:
        labels: integer class ids `(samples,)` or `(samples, 1)`.
        seed: int, `None` or a `np.random.Generator`. Defaults to `None`
            (fresh randomness).

    Returns:
        An int64 numpy array `(samples,)`: `partners[i] != i` and
        `labels[partners[i]] == labels[i]`.

    Raises:
        ValueError: for labels that are not class ids, or a class with a
            single sample.

    Example:

    >>> import numpy as np
    >>> partners = class_partner_indices(np.array([0, 1, 0, 1]), seed=0)
    >>> sorted(partners.tolist())
    [0, 1, 2, 3]
    """
    ids = class_ids(labels)
    rng = np.random.default_rng(seed)
    partners = np.empty(len(ids), dtype="int64")
    for members in _members_by_class(ids).values():
        # An offset in [1, n) within the class never lands on the sample.
        offsets = rng.integers(1, len(members), size=len(members))
        positions = (np.arange(len(members)) + offsets) % len(members)
        partners[members] = members[positions]
    return partners


def pair_by_class(x, y, seed=None):
    """Numpy arrays as one paired batch layout: `(paired_x, y)`.

    Args:
        x: numpy array `(samples, ...)` (or a dict/list of them).
        y: integer class ids `(samples,)` or `(samples, 1)`.
        seed: int or `None`. Defaults to `None`.

    Returns:
        `({"inputs": x, "partner_inputs": x[partners]}, y)`, ready for
        `model.fit(*pair_by_class(x, y))`. The partners are drawn once;
        `ClassPairedBatches` draws new ones every epoch.
    """
    partners = class_partner_indices(y, seed)
    partner_x = keras.tree.map_structure(lambda array: array[partners], x)
    return {INPUTS_KEY: x, PARTNER_INPUTS_KEY: partner_x}, y


class ClassPairedBatches(keras.utils.PyDataset):
    """Batches of samples with same-class partners, new partners each epoch.

    Each batch is `({"inputs": x_batch, "partner_inputs": partner_batch},
    y_batch)`: every epoch the samples are shuffled and each gets a fresh
    random partner of its class (as the CS-KD authors' sampler does).

    Args:
        x: numpy array `(samples, ...)` (or a dict/list of them).
        y: integer class ids `(samples,)` or `(samples, 1)`.
        batch_size: int >= 1. Samples per batch (each with its partner).
            Defaults to `32`.
        shuffle: bool. A new order every epoch. Defaults to `True`.
        seed: int or `None`. Seeds the order and the partners. Defaults to
            `None`.
        **kwargs: `keras.utils.PyDataset` arguments (`workers`,
            `use_multiprocessing`, `max_queue_size`).

    Example:

    ```python
    model = ClassWiseSelfDistillation(classifier)
    model.compile(optimizer="adam", metrics=["accuracy"])
    model.fit(ClassPairedBatches(x_train, y_train, batch_size=64), epochs=5)
    ```
    """

    def __init__(self, x, y, batch_size=32, shuffle=True, seed=None, **kwargs):
        super().__init__(**kwargs)
        check_integer("batch_size", batch_size, 1)
        self.x = x
        self.y = y
        self.labels = class_ids(y)
        _members_by_class(self.labels)
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self._rng = np.random.default_rng(seed)
        self._draw()

    def _draw(self):
        count = len(self.labels)
        self.order = self._rng.permutation(count) if self.shuffle else np.arange(count)
        self.partners = class_partner_indices(self.labels, self._rng)

    @property
    def num_batches(self):
        """Batches per epoch (the last one may be smaller)."""
        return -(-len(self.labels) // self.batch_size)

    def __len__(self):
        return self.num_batches

    def __getitem__(self, index):
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        partner_rows = self.partners[rows]
        inputs = keras.tree.map_structure(lambda array: array[rows], self.x)
        partners = keras.tree.map_structure(lambda array: array[partner_rows], self.x)
        labels = np.asarray(self.y)[rows]
        return {INPUTS_KEY: inputs, PARTNER_INPUTS_KEY: partners}, labels

    def on_epoch_end(self):
        """Draws a new order and new partners for the next epoch."""
        self._draw()
