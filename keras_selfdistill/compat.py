"""The only place this package reads or writes private Keras attributes.

Each function wraps one attribute that Keras 3 uses internally and does not
expose publicly, so a Keras release that renames it breaks one function and
its test (`tests/test_compat.py`), not the models. Before adding a function
here, look for a public way; the ones checked so far:

- the layer that produced a symbolic tensor, and the tensors a call read:
  a functional view (`keras.Model(inputs, tensor).layers`) lists the layers
  on a path but not which call of a shared layer made a tensor, and
  `layer.output` is only the layer's first call; `keras.utils.
  get_source_inputs` walks the same private record as `tensor_producer`.
- a metric's direction: Keras's `mode="auto"` monitors read `_direction`
  and nothing else; there is no public setter or getter.
- whether a monitor callback has resolved its `mode="auto"`: `monitor_op`
  is set at the start of training by Keras's own monitor callbacks; the
  base class that defines it (`MonitorCallback`) is not exported.
- an attribute Keras should not track: `Layer.__setattr__` tracks every
  layer, variable and metric assigned; there is no public opt-out.
"""

import keras


def tensor_producer(tensor):
    """The operation (usually a layer) whose call made a symbolic tensor.

    Keras records it on every `KerasTensor` of a functional graph.

    Args:
        tensor: any object; a `KerasTensor` of a functional graph to get an
            answer.

    Returns:
        The producing `keras.layers.Layer` (or `keras.Operation`, for a
        `keras.ops` call on symbolic tensors), or `None` when `tensor` was
        not made by a Keras call.
    """
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return None
    return history.operation


def tensor_parents(tensor) -> list:
    """The symbolic tensors the call that made `tensor` read.

    Args:
        tensor: a `KerasTensor` of a functional graph.

    Returns:
        A list of `KerasTensor`s, in the call's input order; empty for a
        `keras.Input` or an object not made by a Keras call.
    """
    history = getattr(tensor, "_keras_history", None)
    if history is None or history.operation is None:
        return []
    node = history.operation._inbound_nodes[history.node_index]
    return list(node.input_tensors)


def tensor_output_index(tensor) -> int:
    """Which output of its call a symbolic tensor is (0 for one output).

    Keras records it beside the producing operation on every `KerasTensor`
    of a functional graph; a layer with several outputs (a list or tuple)
    makes tensors 0, 1, ... in the order of its flattened outputs.

    Args:
        tensor: a `KerasTensor` of a functional graph.

    Returns:
        The index, or `0` for an object not made by a Keras call.
    """
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return 0
    return history.tensor_index


def metric_direction(metric):
    """Which way `metric` improves, as Keras's own metrics declare it.

    Args:
        metric: a `keras.metrics.Metric`.

    Returns:
        `"up"` (accuracies), `"down"` (losses, errors), or `None` when the
        metric does not say (e.g. `keras.metrics.Mean`).
    """
    return getattr(metric, "_direction", None)


def set_metric_direction(metric, direction: str):
    """Declares which way `metric` improves, where Keras's monitors read it.

    A `mode="auto"` `EarlyStopping`/`ModelCheckpoint`/`ReduceLROnPlateau`
    looks for the direction of a metric that `compile` built; this is the
    attribute it reads.

    Args:
        metric: a `keras.metrics.Metric`.
        direction: str. `"up"` or `"down"`.

    Returns:
        `metric`, for chaining.
    """
    if direction not in ("up", "down"):
        raise ValueError(
            "`direction` must be 'up' or 'down'. "
            f"Received: direction={direction!r}"
        )
    metric._direction = direction
    return metric


def monitor_mode_unresolved(callback) -> bool:
    """Whether `callback` is a Keras monitor whose `mode` is still to settle.

    Keras's monitor callbacks (`EarlyStopping`, `ModelCheckpoint`,
    `ReduceLROnPlateau`) choose their comparison from `mode` when training
    starts; until then a new `mode` still takes effect.

    Args:
        callback: any `keras.callbacks.Callback`.

    Returns:
        `True` for a monitor callback that has not chosen its comparison yet,
        `False` otherwise (other callbacks included).
    """
    return isinstance(callback, keras.callbacks.Callback) and (
        getattr(callback, "monitor_op", "absent") is None
    )


def set_untracked(instance, name, value) -> None:
    """Sets `instance.name = value` without Keras's attribute tracking.

    Keras tracks the layers, variables and metrics assigned to a layer's
    attributes; a functional view over layers the model already tracks (or
    a metric made after the model was built) would be registered a second
    time, and its weights saved twice. Keras has no public way to opt an
    attribute out, so this bypasses `Layer.__setattr__`.
    """
    object.__setattr__(instance, name, value)
