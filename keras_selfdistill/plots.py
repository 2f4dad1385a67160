"""Plots of multi-head training: per-head learning curves and the anytime curve.

Two pictures tell whether self-distillation paid off:

- **per-head accuracy over epochs** (`plot_head_accuracy`), from the
  `History` that `fit` returns: every head's training and validation
  accuracy on one chart;
- **the anytime curve** (`anytime_curve`, `plot_anytime_curve`): accuracy
  against the fraction of the network's compute spent per sample, when each
  sample exits at the first head confident enough
  (`SelfDistillModel.predict_early_exit`), over a range of confidence
  thresholds.

`PlotWriter` is a callback that writes both as PNG files when `fit` ends.

The numbers (`head_costs`, `anytime_curve`) need only numpy and Keras.
matplotlib is optional: it is imported when a plot is drawn, and a missing
matplotlib raises an `ImportError` saying how to install it
(`pip install matplotlib`, or the package's `plots` extra).

**How compute is counted.** The cost of a head is the number of
multiply-accumulates (MACs) of the layers its logits depend on, counted from
each layer's kernel sizes and output resolution: for every weight of rank
>= 2 (convolution, depthwise and pointwise kernels, dense kernels),
`prod(weight.shape) * prod(output spatial shape)`. That is exact for dense,
convolution, depthwise and separable convolution layers with "same" or
"valid" padding, and it ignores what costs O(activations) rather than
O(weights x positions): biases, batch normalisation, activations, pooling,
additions, softmax. Attention score products are not counted (only the
projections), and embedding tables count nothing. Exiting at head `k` costs
the MACs of every layer on the paths to heads `1..k` (the shallower heads
were evaluated and declined), so the deepest exit costs a bit more than the
plain network. Costs are reported as fractions of the plain network's MACs
(the path to the deepest classifier alone).
"""

import dataclasses
import math
import os

import keras
import numpy as np

from keras_selfdistill.layers.auxiliary_head import AuxiliaryHead
from keras_selfdistill.validation import check_unit_interval

#: Confidence thresholds of the default anytime curve: 0 sends every sample
#: out at the first head, 1 keeps (almost) every sample to the deepest.
DEFAULT_THRESHOLDS = (
    0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999, 1.0,
)

#: Files `PlotWriter` writes in its directory.
HEAD_ACCURACY_FILENAME = "head_accuracy.png"
ANYTIME_FILENAME = "anytime_curve.png"

_INSTALL_HINT = (
    "keras_selfdistill.plots draws with matplotlib, which is not installed. "
    "Install it with `pip install matplotlib` (or "
    "`pip install \"keras-selfdistill[plots]\"`)."
)


def _new_figure(**figure_kwargs):
    """A matplotlib `Figure` that draws off-screen (no pyplot, no GUI)."""
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(_INSTALL_HINT) from error
    return Figure(**figure_kwargs)


def _check_matplotlib() -> None:
    _new_figure()


def _integer_locator():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


# ---------------------------------------------------------------------- #
# Compute per head.
# ---------------------------------------------------------------------- #


def _positions(shape, layer_name) -> int:
    """Number of output positions: the product of the spatial axes."""
    spatial = tuple(shape)[1:-1]
    if any(size is None for size in spatial):
        raise ValueError(
            "Counting compute needs static spatial shapes, but layer "
            f"'{layer_name}' has output shape {tuple(shape)}. Build the model "
            "with a fixed input size, e.g. keras.Input((32, 32, 3))."
        )
    return math.prod(spatial) if spatial else 1


def _kernel_size(layer) -> int:
    return sum(
        math.prod(weight.shape) for weight in layer.weights if len(weight.shape) >= 2
    )


def _auxiliary_head_macs(head) -> int:
    # Its blocks are not separate nodes of the graph: follow the shapes.
    shape = tuple(head.input.shape)
    macs = 0
    for block in head.bottleneck.blocks:
        main = block[0]
        shape = tuple(main.compute_output_shape(shape))
        macs += _kernel_size(main) * _positions(shape, main.name)
    return macs + _kernel_size(head.classifier)


def layer_macs(layer) -> int:
    """Multiply-accumulates of one call of `layer` on one sample.

    See the module docstring for the rule. A nested functional model counts
    the sum of its layers; an `AuxiliaryHead` counts its blocks at their own
    resolutions plus its classifier.

    Args:
        layer: a `keras.layers.Layer` of a functional graph (called once).

    Returns:
        An int (0 for layers without kernels, such as pooling or batch
        normalisation).
    """
    if isinstance(layer, AuxiliaryHead):
        return _auxiliary_head_macs(layer)
    if isinstance(layer, keras.layers.Embedding):
        return 0
    if isinstance(layer, keras.Model) and getattr(layer, "outputs", None):
        return sum(layer_macs(inner) for inner in layer.layers)
    kernels = _kernel_size(layer)
    if not kernels:
        return 0
    try:
        output = layer.output
    except (AttributeError, ValueError) as error:
        raise ValueError(
            f"Cannot count the compute of layer '{layer.name}': it must be "
            "called exactly once in the model's graph (shared layers are not "
            f"supported). {error}"
        ) from None
    if isinstance(output, (list, tuple, dict)):
        output = keras.tree.flatten(output)[0]
    return kernels * _positions(output.shape, layer.name)


def _heads_graph(model):
    """The functional model whose outputs are the heads, shallow to deep."""
    if hasattr(model, "export_heads"):
        return model.export_heads()
    if not isinstance(model, keras.Model) or not getattr(model, "outputs", None):
        raise ValueError(
            "Counting compute per head needs a SelfDistillModel or a "
            "functional keras.Model with one logits output per head, shallow "
            f"to deep. Received: {model!r}"
        )
    return model


def _path_layers(graph, output):
    """The layers `output` depends on, in a new functional view."""
    # A functional model keeps only the layers between its inputs and
    # outputs, so this is the head's path through the shared layers.
    return keras.Model(graph.inputs, output).layers


def head_costs(model) -> list:
    """The compute of an early exit at each head, in MACs per sample.

    Entry `k` is the multiply-accumulates of every layer on the paths to
    heads `0..k` (0 = shallowest), counted once each: what a sample that
    exits at head `k` has cost, the shallower heads included.

    Args:
        model: a `SelfDistillModel`, or a functional `keras.Model` with one
            logits output per head, shallow to deep (e.g. `export_heads()`).

    Returns:
        A list of ints, one per head, non-decreasing.
    """
    graph = _heads_graph(model)
    seen = {}
    costs = []
    for output in graph.outputs:
        for layer in _path_layers(graph, output):
            if id(layer) not in seen:
                seen[id(layer)] = layer_macs(layer)
        costs.append(sum(seen.values()))
    return costs


def backbone_cost(model) -> int:
    """MACs per sample of the plain network: the deepest head's path alone.

    Args:
        model: as for `head_costs`.

    Returns:
        An int, the denominator of every cost fraction in this module.
    """
    graph = _heads_graph(model)
    return sum(layer_macs(layer) for layer in _path_layers(graph, graph.outputs[-1]))


# ---------------------------------------------------------------------- #
# The anytime curve.
# ---------------------------------------------------------------------- #


def _class_ids(labels) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[-1] > 1:
        return labels.argmax(axis=-1)
    return labels.reshape(-1).astype("int64")


def early_exit_heads(head_logits, threshold: float) -> np.ndarray:
    """The head each sample exits at, by the rule of `predict_early_exit`.

    A sample exits at the shallowest head whose largest softmax probability
    is at least `threshold`; samples no head is sure of exit at the deepest.

    Args:
        head_logits: array `(heads, samples, num_classes)` or a list of
            `(samples, num_classes)` arrays, shallow to deep.
        threshold: float in [0, 1].

    Returns:
        An int array `(samples,)` of head indices (0 = shallowest).
    """
    check_unit_interval("threshold", threshold)
    # The logits' own dtype, as `predict_early_exit` computes: a float64
    # softmax could put a sample on the other side of a threshold.
    logits = np.asarray(head_logits)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    probabilities = np.exp(shifted)
    probabilities /= probabilities.sum(axis=-1, keepdims=True)
    confident = probabilities.max(axis=-1) >= threshold
    confident[-1] = True
    return np.argmax(confident, axis=0)


@dataclasses.dataclass
class AnytimeCurve:
    """Accuracy against compute for early exit at several thresholds.

    Attributes:
        thresholds: float array `(points,)`. The confidence thresholds.
        accuracy: float array `(points,)`. Accuracy of the early-exit
            predictions at each threshold.
        cost_fraction: float array `(points,)`. Mean compute per sample at
            each threshold, as a fraction of the plain network's (the
            deepest head's path alone).
        exit_fractions: float array `(points, heads)`. Fraction of samples
            exiting at each head, per threshold; rows sum to 1.
        head_accuracy: float array `(heads,)`. Accuracy of each head alone.
        head_cost_fraction: float array `(heads,)`. Compute of an exit at
            each head (shallower heads included), as a fraction of the plain
            network's.
    """

    thresholds: np.ndarray
    accuracy: np.ndarray
    cost_fraction: np.ndarray
    exit_fractions: np.ndarray
    head_accuracy: np.ndarray
    head_cost_fraction: np.ndarray


def anytime_curve_from_logits(
    head_logits, labels, exit_costs, plain_cost, thresholds=DEFAULT_THRESHOLDS
) -> AnytimeCurve:
    """The anytime curve from heads' logits already computed.

    For each threshold, every sample exits as in `early_exit_heads`; the
    point is (mean of the exit heads' costs / `plain_cost`, accuracy of the
    exit heads' predictions).

    Args:
        head_logits: list of arrays `(samples, num_classes)`, shallow to deep.
        labels: integer class ids `(samples,)`/`(samples, 1)` or one-hot
            `(samples, num_classes)`.
        exit_costs: list of numbers, one per head: the cost of exiting there
            (`head_costs(model)`).
        plain_cost: number > 0. The cost all fractions are relative to
            (`backbone_cost(model)`).
        thresholds: sequence of floats in [0, 1]. Defaults to
            `DEFAULT_THRESHOLDS`.

    Returns:
        An `AnytimeCurve`.
    """
    logits = np.stack([np.asarray(head) for head in head_logits])
    class_ids = _class_ids(labels)
    if logits.shape[1] != len(class_ids):
        raise ValueError(
            "Every head must have one row of logits per label. Received: "
            f"logits for {logits.shape[1]} samples and {len(class_ids)} labels."
        )
    if len(exit_costs) != len(logits):
        raise ValueError(
            f"`exit_costs` must have one entry per head ({len(logits)}). "
            f"Received: exit_costs={list(exit_costs)}"
        )
    if not plain_cost > 0:
        raise ValueError(
            f"`plain_cost` must be > 0. Received: plain_cost={plain_cost!r}"
        )
    thresholds = [float(threshold) for threshold in thresholds]
    if not thresholds:
        raise ValueError("`thresholds` must not be empty. Received: thresholds=[]")
    costs = np.asarray(exit_costs, dtype="float64") / float(plain_cost)
    correct = logits.argmax(axis=-1) == class_ids[None, :]
    samples = np.arange(len(class_ids))
    accuracy, cost_fraction, exit_fractions = [], [], []
    for threshold in thresholds:
        exits = early_exit_heads(logits, threshold)
        accuracy.append(correct[exits, samples].mean())
        cost_fraction.append(costs[exits].mean())
        exit_fractions.append(np.bincount(exits, minlength=len(logits)) / len(exits))
    return AnytimeCurve(
        thresholds=np.asarray(thresholds),
        accuracy=np.asarray(accuracy),
        cost_fraction=np.asarray(cost_fraction),
        exit_fractions=np.asarray(exit_fractions),
        head_accuracy=correct.mean(axis=1),
        head_cost_fraction=costs,
    )


def anytime_curve(model, x, labels, thresholds=DEFAULT_THRESHOLDS, **predict_kwargs):
    """Accuracy against compute of `model`'s early exit, over thresholds.

    Runs `model.predict_heads(x)` once, then applies the rule of
    `predict_early_exit` at every threshold; costs come from `head_costs`
    and `backbone_cost` (see the module docstring for how they are counted).

    Args:
        model: a `SelfDistillModel`.
        x: inputs, as for `predict` (arrays or a dataset yielding inputs
            only, in the order of `labels`).
        labels: integer class ids `(samples,)` or one-hot labels for `x`.
        thresholds: sequence of floats in [0, 1]. Defaults to
            `DEFAULT_THRESHOLDS`.
        **predict_kwargs: passed to `predict_heads` (`batch_size`,
            `verbose`, ...).

    Returns:
        An `AnytimeCurve`.

    Example:

    ```python
    curve = anytime_curve(model, x_test, y_test, verbose=0)
    for threshold, cost, accuracy in zip(
        curve.thresholds, curve.cost_fraction, curve.accuracy
    ):
        print(f"{threshold:.2f}: {cost:.0%} of the compute, {accuracy:.2%}")
    plot_anytime_curve(curve, "anytime.png")
    ```
    """
    if not hasattr(model, "predict_heads"):
        raise ValueError(
            "The anytime curve needs a model with several heads "
            "(a SelfDistillModel). Received: "
            f"{type(model).__name__} '{getattr(model, 'name', model)}'"
        )
    predict_kwargs.setdefault("verbose", 0)
    head_logits = model.predict_heads(x, **predict_kwargs)
    return anytime_curve_from_logits(
        head_logits, labels, head_costs(model), backbone_cost(model), thresholds
    )


# ---------------------------------------------------------------------- #
# Drawing.
# ---------------------------------------------------------------------- #


def _history_dict(history) -> dict:
    values = getattr(history, "history", history)
    if not isinstance(values, dict):
        raise ValueError(
            "`history` must be the keras.callbacks.History that fit returns, "
            f"or its .history dict. Received: {type(history).__name__}"
        )
    return values


def head_metric_keys(history, metric: str = "accuracy") -> list:
    """The history keys of `metric` for every head, in the history's order.

    Training keys only: `metric` itself (the served head) and every
    `<head>_<metric>` (e.g. `head_1_accuracy`), without `val_` keys.

    Args:
        history: a `keras.callbacks.History` or its `.history` dict.
        metric: str. The metric's name. Defaults to `"accuracy"`.

    Returns:
        A list of keys, the served head's (`metric`) last.
    """
    keys = [
        key for key in _history_dict(history)
        if not key.startswith("val_") and key.endswith(f"_{metric}")
    ]
    if metric in _history_dict(history):
        keys.append(metric)
    return keys


def _save(figure, path):
    if path is not None:
        directory = os.path.dirname(os.fspath(path))
        if directory:
            os.makedirs(directory, exist_ok=True)
        figure.savefig(path, dpi=120)
    return figure


def plot_head_accuracy(
    history, path=None, metric: str = "accuracy", served_name=None, title=None
):
    """Every head's `metric` over epochs, training dashed, validation solid.

    Args:
        history: the `keras.callbacks.History` returned by `fit` (of any
            model of this package), or its `.history` dict.
        path: str, path-like or `None`. Where to write the PNG (parent
            directories are created). `None` only returns the figure.
            Defaults to `None`.
        metric: str. Which metric to plot. Defaults to `"accuracy"`.
        served_name: str or `None`. Legend label of the plain key (the
            served head: the deepest for `SelfDistillModel`, the ensemble for
            `MutualLearning`, the student for `EMATeacher`). `None` uses the
            model's `served_head_name` when the history knows its model, else
            `"served"`. Defaults to `None`.
        title: str or `None`. Figure title. Defaults to `None`.

    Returns:
        The matplotlib `Figure`.
    """
    values = _history_dict(history)
    keys = head_metric_keys(values, metric)
    if not keys:
        raise ValueError(
            f"The history has no '{metric}' values for any head. Compile with "
            f"metrics=['{metric}']. Received keys: {sorted(values)}"
        )
    if served_name is None:
        served_name = getattr(getattr(history, "model", None), "served_head_name", None)
        served_name = served_name or "served"
    figure = _new_figure(figsize=(7, 4.5))
    axes = figure.add_subplot()
    colors = [f"C{index % 10}" for index in range(len(keys))]
    for key, color in zip(keys, colors):
        label = served_name if key == metric else key[: -len(metric) - 1]
        train = values[key]
        epochs = np.arange(1, len(train) + 1)
        axes.plot(
            epochs, train, linestyle="--", color=color, marker=".",
            label=f"{label} (train)",
        )
        validation = values.get(f"val_{key}")
        if validation:
            axes.plot(
                np.arange(1, len(validation) + 1), validation, color=color,
                marker="o", markersize=3, label=f"{label} (validation)",
            )
    axes.xaxis.set_major_locator(_integer_locator())
    axes.set_xlabel("epoch")
    axes.set_ylabel(metric)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    if title:
        axes.set_title(title)
    figure.tight_layout()
    return _save(figure, path)


def plot_anytime_curve(curve: AnytimeCurve, path=None, title=None):
    """Accuracy against the fraction of the plain network's compute.

    Draws the early-exit curve (one point per threshold, a few labelled) and
    each head used alone (its exit cost, its accuracy).

    Args:
        curve: an `AnytimeCurve` (from `anytime_curve`).
        path: str, path-like or `None`. Where to write the PNG. Defaults to
            `None` (only return the figure).
        title: str or `None`. Figure title. Defaults to `None`.

    Returns:
        The matplotlib `Figure`.
    """
    figure = _new_figure(figsize=(7, 4.5))
    axes = figure.add_subplot()
    order = np.argsort(curve.cost_fraction, kind="stable")
    axes.plot(
        curve.cost_fraction[order], curve.accuracy[order], marker="o",
        markersize=4, color="C0", label="early exit (threshold)",
    )
    labelled = {0, len(curve.thresholds) - 1, len(curve.thresholds) // 2}
    for index, threshold in enumerate(curve.thresholds):
        if index in labelled:
            axes.annotate(
                f"t={threshold:g}", (curve.cost_fraction[index], curve.accuracy[index]),
                textcoords="offset points", xytext=(4, -10), fontsize="x-small",
            )
    axes.scatter(
        curve.head_cost_fraction, curve.head_accuracy, marker="s", color="C3",
        zorder=3, label="one head alone",
    )
    for index, (cost, accuracy) in enumerate(
        zip(curve.head_cost_fraction, curve.head_accuracy)
    ):
        axes.annotate(
            f"head {index + 1}", (cost, accuracy), textcoords="offset points",
            xytext=(4, 4), fontsize="x-small",
        )
    axes.axvline(1.0, color="grey", linewidth=0.8, linestyle=":")
    axes.set_xlabel("compute per sample (fraction of the plain network's MACs)")
    axes.set_ylabel("accuracy")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small", loc="lower right")
    if title:
        axes.set_title(title)
    figure.tight_layout()
    return _save(figure, path)


class PlotWriter(keras.callbacks.Callback):
    """Writes the per-head accuracy curves (and the anytime curve) as PNGs.

    Records every epoch's logs and, when `fit` ends, writes
    `<directory>/head_accuracy.png` (`plot_head_accuracy`) and, if
    `anytime_data` is given and the model has several heads
    (`SelfDistillModel`), `<directory>/anytime_curve.png`
    (`plot_anytime_curve` on that data). matplotlib is checked at
    construction, so a missing install fails before training, not after.

    Args:
        directory: str or path-like. Where the files go (created if
            missing).
        anytime_data: `(x, labels)` or `None`. Inputs and labels for the
            anytime curve, e.g. the validation set. Defaults to `None` (no
            anytime curve).
        thresholds: sequence of floats in [0, 1]. Thresholds of the anytime
            curve. Defaults to `DEFAULT_THRESHOLDS`.
        metric: str. The metric of the per-head curves. Defaults to
            `"accuracy"`.
        batch_size: int. Batch size of the anytime curve's prediction pass
            (ignored for a dataset). Defaults to `256`.

    Attributes:
        written_paths: list of str. The files written by the last `fit`.

    Example:

    ```python
    model.fit(x_train, y_train, epochs=30, validation_data=(x_val, y_val),
              callbacks=[PlotWriter("plots", anytime_data=(x_val, y_val))])
    # plots/head_accuracy.png, plots/anytime_curve.png
    ```
    """

    def __init__(
        self,
        directory,
        anytime_data=None,
        thresholds=DEFAULT_THRESHOLDS,
        metric: str = "accuracy",
        batch_size: int = 256,
    ):
        super().__init__()
        try:
            directory = os.fspath(directory)
        except TypeError:
            raise ValueError(
                "`directory` must be a path (str or os.PathLike). Received: "
                f"directory={directory!r}"
            ) from None
        if anytime_data is not None and (
            not isinstance(anytime_data, (list, tuple)) or len(anytime_data) != 2
        ):
            raise ValueError(
                "`anytime_data` must be a pair (x, labels) or None. Received: "
                f"anytime_data of type {type(anytime_data).__name__}"
            )
        thresholds = tuple(thresholds)
        for threshold in thresholds:
            check_unit_interval("threshold", threshold)
        _check_matplotlib()
        self.directory = directory
        self.anytime_data = anytime_data
        self.thresholds = thresholds
        self.metric = metric
        self.batch_size = batch_size
        self.written_paths = []
        self._logs = {}

    def on_train_begin(self, logs=None):
        self._logs = {}
        self.written_paths = []

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self._logs.setdefault(key, []).append(float(value))

    def on_train_end(self, logs=None):
        if not self._logs:
            return
        os.makedirs(self.directory, exist_ok=True)
        served = getattr(self.model, "served_head_name", None)
        path = os.path.join(self.directory, HEAD_ACCURACY_FILENAME)
        plot_head_accuracy(self._logs, path, metric=self.metric, served_name=served)
        self.written_paths.append(path)
        if self.anytime_data is not None and hasattr(self.model, "predict_heads"):
            x, labels = self.anytime_data
            curve = anytime_curve(
                self.model, x, labels, self.thresholds, batch_size=self.batch_size
            )
            path = os.path.join(self.directory, ANYTIME_FILENAME)
            plot_anytime_curve(curve, path)
            self.written_paths.append(path)
