"""Per-head metrics for models with several classifiers.

`compile(metrics=["accuracy"])` on a multi-head model gives every head its own
copy of each metric: the deepest (or only served) head keeps the plain name,
so `EarlyStopping(monitor="val_accuracy")` keeps working, and every other head
gets its name as a prefix (`head_1_accuracy`).
"""

import keras
from keras import ops

from keras_selfdistill import losses

_ACCURACY_NAMES = ("accuracy", "acc")
_CROSS_ENTROPY_NAMES = ("crossentropy", "ce")


def class_accuracy(labels, logits):
    """Per-sample top-1 accuracy for integer or one-hot labels.

    Args:
        labels: integer class ids `(batch,)`/`(batch, 1)` or one-hot
            `(batch, num_classes)`.
        logits: tensor `(batch, num_classes)`.

    Returns:
        A float32 tensor `(batch,)` of 0/1 values.
    """
    if losses.labels_are_one_hot(labels, logits):
        labels = ops.argmax(labels, axis=-1)
    labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
    predicted = ops.cast(ops.argmax(logits, axis=-1), "int32")
    return ops.cast(ops.equal(labels, predicted), "float32")


def _metric_from_spec(spec, name=None):
    """A fresh metric object for one compile-style metric spec."""
    if isinstance(spec, str) and spec in _ACCURACY_NAMES:
        # Keras resolves "accuracy" from the label shapes; ours handles both
        # integer and one-hot labels itself, so one object serves any data.
        return keras.metrics.MeanMetricWrapper(
            class_accuracy, name=name or spec
        )
    if isinstance(spec, str) and spec in _CROSS_ENTROPY_NAMES:
        # From logits: every head of these models outputs logits.
        return keras.metrics.MeanMetricWrapper(
            losses.cross_entropy, name=name or spec
        )
    if isinstance(spec, keras.metrics.Metric):
        config = spec.get_config()
        if name is not None:
            config["name"] = name
        return spec.__class__.from_config(config)
    if isinstance(spec, str):
        try:
            metric = keras.metrics.get(spec)
        except ValueError as error:
            raise ValueError(
                f"Unknown metric {spec!r}. Use 'accuracy', 'crossentropy', a "
                "name that keras.metrics.get() knows, a keras.metrics.Metric "
                "or a function (labels, logits) -> per-sample values."
            ) from error
        return _metric_from_spec(metric, name=name)
    if callable(spec):
        return keras.metrics.MeanMetricWrapper(
            spec, name=name or getattr(spec, "__name__", "metric")
        )
    raise ValueError(
        "Each metric must be a string, a keras.metrics.Metric or a function. "
        f"Received: {spec!r} of type {type(spec).__name__}"
    )


def _metric_name(spec):
    return _metric_from_spec(spec).name


def build_head_metrics(metrics, head_names, served_head):
    """One list of metric objects per head.

    Args:
        metrics: list of compile-style metric specs (or `None`).
        head_names: list of str. Names of the heads, shallow to deep.
        served_head: str. The head whose metrics keep their plain names.

    Returns:
        A list (one entry per head, in `head_names` order) of lists of fresh
        `keras.metrics.Metric` objects.
    """
    if metrics is None:
        return [[] for _ in head_names]
    if isinstance(metrics, dict) or not isinstance(metrics, (list, tuple)):
        raise ValueError(
            "`metrics` must be a list, e.g. metrics=['accuracy']; every head "
            "gets its own copy. Received: "
            f"metrics={metrics!r}"
        )
    per_head = []
    for head_name in head_names:
        head_metrics = []
        for spec in metrics:
            base_name = _metric_name(spec)
            name = base_name if head_name == served_head else (
                f"{head_name}_{base_name}"
            )
            head_metrics.append(_metric_from_spec(spec, name=name))
        per_head.append(head_metrics)
    return per_head
