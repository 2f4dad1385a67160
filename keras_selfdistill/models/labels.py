"""Label checks done once, before training, on the arrays given to `fit`.

Out-of-range class ids make TensorFlow raise in the middle of a step on a
CPU, and give a silent NaN loss on a GPU and on JAX; a string or float label
array gives a confusing error deep in the loss. Arrays given to
`fit`/`evaluate` are therefore checked before the first step; labels from a
dataset are not read ahead.
"""

import inspect

import numpy as np


def check_label_values(labels, num_classes, argument="y") -> None:
    """Refuses integer labels that are not class ids in `[0, num_classes)`.

    Only numpy arrays of class ids (`(samples,)` or `(samples, 1)`) are
    checked; one-hot labels are checked by shape in the loss.

    Args:
        labels: the labels given to `fit`/`evaluate`.
        num_classes: int or `None` (unknown: nothing is checked).
        argument: str. How the message names them.

    Raises:
        ValueError: naming the first bad value, its index and the count.
    """
    if not _is_class_id_array(labels, num_classes):
        return
    if labels.dtype.kind not in "iuf":
        raise ValueError(
            f"Labels must be integer class ids in [0, {num_classes}) or "
            f"one-hot vectors of length {num_classes}. Received: "
            f"{argument} of dtype {labels.dtype}"
        )
    flat = labels.reshape(-1)
    bad = (flat < 0) | (flat >= num_classes)
    if labels.dtype.kind == "f":
        bad |= ~np.isfinite(flat) | (flat != np.round(flat))
    if bad.any():
        index = int(np.argmax(bad))
        raise ValueError(
            f"Integer labels must be class ids in [0, {num_classes}) for "
            f"this model's {num_classes} classes. Received: {argument} "
            f"with value {flat[index].item()!r} at index {index} "
            f"({int(bad.sum())} of {flat.size} labels are not class ids)."
        )


def _is_class_id_array(labels, num_classes) -> bool:
    if not isinstance(labels, np.ndarray) or not num_classes or labels.size == 0:
        return False
    return labels.ndim == 1 or (
        labels.ndim == 2 and labels.shape[1] == 1 and num_classes != 1
    )


def check_fit_labels(model, arguments) -> None:
    """Checks the labels of a `fit` or `evaluate` call (`y`, and the labels
    of a `(x, y)` `validation_data`) with `check_label_values`.

    Args:
        model: the model (its `num_classes` attribute, if any, is used).
        arguments: the call's arguments by name (`bound_arguments`).
    """
    num_classes = getattr(model, "num_classes", None)
    check_label_values(arguments.get("y"), num_classes, "y")
    validation_data = arguments.get("validation_data")
    if isinstance(validation_data, (list, tuple)) and len(validation_data) > 1:
        check_label_values(
            validation_data[1], num_classes, "validation_data labels"
        )


def bound_arguments(method, model, args, kwargs) -> dict:
    """`{parameter name: value}` of a call of `method(model, *args,
    **kwargs)`, bound to Keras's own signature of `method` (so positional
    and keyword arguments are found by name; extra keywords included).

    Arguments that do not fit the signature are left for Keras to refuse
    with its own message: the result is then empty.
    """
    try:
        bound = inspect.signature(method).bind(model, *args, **kwargs)
    except TypeError:
        return {}
    arguments = dict(bound.arguments)
    arguments.update(arguments.pop("kwargs", {}) or {})
    return arguments

