"""Inputs that carry each sample's index: `{"inputs": x, "sample_index": i}`.

Methods that keep per-sample state between epochs (`ProgressiveSelfDistillation`'s
table of last-epoch predictions) or between steps (`LastBatchSelfDistillation`'s
check that a batch repeats the previous one) need to know *which* training
sample each row of a batch is. The layout is the same for every data source:
the model's inputs `x` and an integer index in `[0, num_samples)` per sample,

`x = {"inputs": images, "sample_index": indices}`

with `indices` of shape `(samples,)` (`(batch,)` per batch). Keras batches,
shuffles and distributes a dict like any other structure, so the index
travels with its sample. Build it with `with_sample_index` from numpy arrays
or an unbatched `tf.data.Dataset`; a `keras.utils.PyDataset` returns it from
its `__getitem__` (docs/headfree_self_kd.md shows one).
"""

import keras
import numpy as np
from keras import ops

#: The key of the model's own inputs.
INPUTS_KEY = "inputs"
#: The key of the per-sample integer index.
SAMPLE_INDEX_KEY = "sample_index"


def is_indexed(inputs) -> bool:
    """Whether `inputs` is `{"inputs": x, "sample_index": i}`.

    Decided on the Python structure, so it is free (and fixed) at trace time.
    """
    return isinstance(inputs, dict) and set(inputs) == {
        INPUTS_KEY,
        SAMPLE_INDEX_KEY,
    }


def model_inputs(inputs):
    """The model's own inputs: `inputs["inputs"]` for indexed inputs, else
    `inputs` itself."""
    return inputs[INPUTS_KEY] if is_indexed(inputs) else inputs


def with_sample_index(x, sample_index=None):
    """Attaches each sample's index to numpy inputs or a `tf.data.Dataset`.

    For arrays (or a dict/list of arrays with one leading sample axis), the
    result is `{"inputs": x, "sample_index": sample_index}`, ready for
    `fit(x, y, ...)` with any `batch_size` and `shuffle`. For an unbatched
    `tf.data.Dataset` of `x` or `(x, y[, sample_weight])` elements, each
    element's position in the dataset becomes its index
    (`dataset.enumerate()`), so apply it **before** `shuffle`, random
    augmentation that changes the order, and `batch`, and only to a dataset
    whose order before shuffling is the same every epoch.

    Args:
        x: numpy array (or dict/list of them), or an unbatched
            `tf.data.Dataset`.
        sample_index: optional integer array `(samples,)` for array inputs:
            the sample each row is (e.g. the permutation a caller shuffled
            with). Defaults to `0, 1, ..., samples - 1`.

    Returns:
        `{"inputs": x, "sample_index": indices}` for arrays; a dataset of
        `({"inputs": x, "sample_index": i}, y[, sample_weight])` elements.

    Raises:
        ValueError: for a source that is neither, an index of the wrong
            shape or type, or an index given with a dataset.

    Example:

    >>> import numpy as np
    >>> x = with_sample_index(np.zeros((3, 2)))
    >>> sorted(x), x["sample_index"].tolist()
    (['inputs', 'sample_index'], [0, 1, 2])
    """
    if _is_dataset(x):
        if sample_index is not None:
            raise ValueError(
                "`sample_index` is for array inputs; a dataset's indices are "
                "its elements' positions. Received: sample_index with a "
                f"{type(x).__name__}."
            )
        return x.enumerate().map(_indexed_element)
    num_samples = _number_of_samples(x)
    if sample_index is None:
        sample_index = np.arange(num_samples, dtype="int64")
    sample_index = np.asarray(sample_index)
    if sample_index.shape != (num_samples,) or sample_index.dtype.kind not in "iu":
        raise ValueError(
            "`sample_index` must be integers of shape (samples,) = "
            f"({num_samples},), one per input row. Received: sample_index "
            f"with shape {sample_index.shape} and dtype {sample_index.dtype}"
        )
    return {INPUTS_KEY: x, SAMPLE_INDEX_KEY: sample_index}


def _is_dataset(x) -> bool:
    # A tf.data.Dataset, recognised without importing TensorFlow.
    return hasattr(x, "enumerate") and hasattr(x, "element_spec")


def _indexed_element(index, element):
    if isinstance(element, tuple):
        return ({INPUTS_KEY: element[0], SAMPLE_INDEX_KEY: index},) + element[1:]
    return {INPUTS_KEY: element, SAMPLE_INDEX_KEY: index}


def _number_of_samples(x) -> int:
    leaves = list(x.values()) if isinstance(x, dict) else (
        list(x) if isinstance(x, (list, tuple)) else [x]
    )
    sizes = {
        len(leaf) for leaf in leaves if isinstance(leaf, np.ndarray) and leaf.ndim
    }
    if len(leaves) == 0 or len(sizes) != 1 or not all(
        isinstance(leaf, np.ndarray) for leaf in leaves
    ):
        raise ValueError(
            "`with_sample_index` takes numpy arrays (or a dict/list of them "
            "with the same number of rows) or an unbatched tf.data.Dataset; "
            "a keras.utils.PyDataset returns {'inputs': x, 'sample_index': "
            "indices} from its __getitem__ itself. Received: x of type "
            f"{type(x).__name__}"
        )
    return sizes.pop()


def check_sample_index_values(sample_index, num_samples, argument="x") -> None:
    """Refuses indices outside `[0, num_samples)` (numpy arrays only).

    Args:
        sample_index: the index array (or any value: only numpy arrays are
            read).
        num_samples: int. The model's table size.
        argument: str. How the message names the inputs.

    Raises:
        ValueError: naming the first bad value, its position and the count.
    """
    if not isinstance(sample_index, np.ndarray) or sample_index.size == 0:
        return
    flat = sample_index.reshape(-1)
    bad = (flat < 0) | (flat >= num_samples)
    if bad.any():
        position = int(np.argmax(bad))
        raise ValueError(
            f"Sample indices must be in [0, {num_samples}) (the model's "
            f"num_samples={num_samples}). Received: {argument}['sample_index'] "
            f"with value {flat[position].item()!r} at position {position} "
            f"({int(bad.sum())} of {flat.size} out of range)."
        )


def checked_sample_index(index, model_name):
    """The batch's sample indices as int32 `(batch,)`, with clear errors for
    a wrong shape or dtype (both static, so free under `jit`)."""
    shape = tuple(index.shape)
    if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
        raise ValueError(
            f"{model_name} needs one integer sample index per sample, shape "
            f"(batch,). Received: sample_index with shape {shape} (a dataset "
            "enumerated after `batch` gives one index per batch: call "
            "`with_sample_index` on the unbatched dataset)."
        )
    dtype = keras.backend.standardize_dtype(index.dtype)
    if "int" not in dtype:
        raise ValueError(
            f"{model_name}'s sample indices must be integers. Received: "
            f"sample_index of dtype {dtype}"
        )
    return ops.reshape(ops.cast(index, "int32"), (-1,))


def concrete_values(tensor):
    """`tensor` as a numpy array when the step runs eagerly, else `None`.

    Inside a traced step (a `tf.function`, `jax.jit`) values are not known;
    converting them raises, with a backend-specific error type.
    """
    try:
        return ops.convert_to_numpy(tensor)
    except Exception:  # noqa: BLE001 (symbolic tensor or tracer)
        return None


def missing_index_error(model_name, received):
    """The error for training inputs without sample indices."""
    return ValueError(
        f"{model_name} trains on inputs that carry each sample's index: "
        f"x = {{'{INPUTS_KEY}': images, '{SAMPLE_INDEX_KEY}': indices}} "
        "(`keras_selfdistill.with_sample_index(x)` builds it from arrays or "
        f"a tf.data.Dataset). Received: {received}"
    )


__all__ = [
    "INPUTS_KEY",
    "SAMPLE_INDEX_KEY",
    "check_sample_index_values",
    "checked_sample_index",
    "concrete_values",
    "is_indexed",
    "missing_index_error",
    "model_inputs",
    "with_sample_index",
]
