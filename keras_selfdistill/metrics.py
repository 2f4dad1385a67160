"""Per-head metrics for models with several classifiers.

`compile(metrics=["accuracy"])` on a multi-head model gives every head its own
copy of each metric: the deepest (or only served) head keeps the plain name,
so `EarlyStopping(monitor="val_accuracy")` keeps working, and every other head
gets its name as a prefix (`head_1_accuracy`).
"""

import keras
from keras import ops

from keras_selfdistill import losses
from keras_selfdistill.compat import set_metric_direction

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


def with_direction(metric, direction):
    """Marks which way `metric` improves (`"up"` or `"down"`).

    Keras's `mode="auto"` monitors read the direction only from metrics that
    `compile` built; `DistillationBase.fit` hands it on to
    `ModelCheckpoint`/`EarlyStopping`, which cannot find these metrics
    themselves. See `compat.set_metric_direction`.
    """
    return set_metric_direction(metric, direction)


def _metric_from_spec(spec, name=None):
    """A fresh metric object for one compile-style metric spec."""
    if isinstance(spec, str) and spec in _ACCURACY_NAMES:
        # Keras resolves "accuracy" from the label shapes; ours handles both
        # integer and one-hot labels itself, so one object serves any data.
        return with_direction(
            keras.metrics.MeanMetricWrapper(class_accuracy, name=name or spec),
            "up",
        )
    if isinstance(spec, str) and spec in _CROSS_ENTROPY_NAMES:
        # From logits: every head of these models outputs logits.
        return with_direction(
            keras.metrics.MeanMetricWrapper(losses.cross_entropy, name=name or spec),
            "down",
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


# Keras metrics that read only one form of labels, and those that read
# probabilities unless told `from_logits=True`.
_SPARSE_LABEL_METRICS = (
    keras.metrics.SparseCategoricalAccuracy,
    keras.metrics.SparseTopKCategoricalAccuracy,
    keras.metrics.SparseCategoricalCrossentropy,
)
_ONE_HOT_LABEL_METRICS = (
    keras.metrics.CategoricalAccuracy,
    keras.metrics.TopKCategoricalAccuracy,
    keras.metrics.CategoricalCrossentropy,
)
_PROBABILITY_METRICS = (
    keras.metrics.SparseCategoricalCrossentropy,
    keras.metrics.CategoricalCrossentropy,
)


def check_metric_labels(metric, labels, logits) -> None:
    """Raises if `metric` would misread these labels or these logits.

    Every head of these models outputs logits, and the loss takes integer
    or one-hot labels alike; but `SparseCategoricalAccuracy` on one-hot
    labels, `CategoricalAccuracy` on integer labels or a cross-entropy
    metric without `from_logits=True` would report wrong numbers (or fail
    mid-step with a shape error). Decided on static shapes, at trace time.

    Args:
        metric: a `keras.metrics.Metric` about to be updated.
        labels: the batch's labels.
        logits: tensor `(batch, num_classes)`.

    Raises:
        ValueError: naming the metric, the labels' shape and what to use.
    """
    if isinstance(metric, _PROBABILITY_METRICS) and not metric.get_config().get(
        "from_logits", False
    ):
        raise ValueError(
            f"Metric '{metric.name}' reads probabilities, but every head of "
            "this model outputs logits. Use 'crossentropy' (computed from "
            f"logits, any labels) or {type(metric).__name__}(from_logits=True)."
            f" Received: metric {type(metric).__name__}(from_logits=False)"
        )
    one_hot = losses.labels_are_one_hot(labels, logits)
    if one_hot and isinstance(metric, _SPARSE_LABEL_METRICS):
        wanted = "integer class ids"
    elif not one_hot and isinstance(metric, _ONE_HOT_LABEL_METRICS):
        wanted = "one-hot labels"
    else:
        return
    form = "one-hot labels" if one_hot else "integer class ids"
    raise ValueError(
        f"Metric '{metric.name}' ({type(metric).__name__}) needs {wanted}, "
        f"but the labels are {form} of shape {tuple(labels.shape)}. Use "
        "'accuracy' or 'crossentropy' (they read both forms), or a metric "
        f"made for {form}. Received: labels with shape "
        f"{tuple(labels.shape)} for logits with shape {tuple(logits.shape)}"
    )
