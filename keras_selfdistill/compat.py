"""The package's only reads of private Keras attributes.

Each function reads one attribute that Keras has no public way to read;
tests/test_compat.py fails if the attribute changes in a Keras release.
"""


def metric_direction(metric):
    """`"up"`, `"down"` or `None`: the direction Keras records on its own
    metrics (`Metric._direction`), which `mode="auto"` callbacks read."""
    return getattr(metric, "_direction", None)


def monitor_mode_unresolved(callback) -> bool:
    """Whether a `mode="auto"` monitor callback has not yet chosen its
    comparison (`monitor_op` is set when training starts)."""
    return getattr(callback, "monitor_op", "unset") is None


def set_untracked(instance, name, value) -> None:
    """Sets `instance.name = value` without Keras's attribute tracking.

    Keras tracks the layers, variables and metrics assigned to a layer's
    attributes; a functional view over layers the model already tracks (or
    a metric made after the model was built) would be registered a second
    time, and its weights saved twice. Keras has no public way to opt an
    attribute out, so this bypasses `Layer.__setattr__`.
    """
    object.__setattr__(instance, name, value)
