"""Which way this package's metrics go, for callbacks in `mode="auto"`.

`ModelCheckpoint(monitor="val_head_1_accuracy", save_best_only=True)`,
`EarlyStopping` and `ReduceLROnPlateau` in `mode="auto"` find a metric's
direction among the metrics Keras compiled itself. The per-head metrics and
loss terms of these models are not among them, so Keras would refuse
`mode="auto"` for them. `set_monitor_modes` gives each such callback the
direction of the metric it monitors, before `fit` starts.
"""

from keras_selfdistill import compat


def set_monitor_modes(model, callbacks) -> None:
    """Gives `mode="max"` (accuracies) or `"min"` (losses) to each callback
    in `mode="auto"` that monitors a metric of `model` with a known
    direction.

    Args:
        model: a compiled model of this package.
        callbacks: the `callbacks` given to `fit` (a list, or `None`).
    """
    if not isinstance(callbacks, (list, tuple)):
        return
    directions = {
        metric.name: compat.metric_direction(metric) for metric in model.metrics
    }
    for callback in callbacks:
        monitor = getattr(callback, "monitor", None)
        if (
            getattr(callback, "mode", None) != "auto"
            or not compat.monitor_mode_unresolved(callback)
            or not isinstance(monitor, str)
        ):
            continue
        direction = directions.get(monitor.removeprefix("val_"))
        if direction in ("up", "down"):
            callback.mode = "max" if direction == "up" else "min"
