"""Plots of multi-head training: per-head learning curves and the anytime curve.

Two pictures tell whether self-distillation paid off:

- **per-head accuracy over epochs** (`plot_head_accuracy`), from the
  `History` that `fit` returns: every head's training and validation
  accuracy on one chart;
- **the anytime curve** (`plot_anytime_curve`): accuracy against the
  fraction of the network's compute spent per sample, when each sample
  exits at the first head confident enough, over a range of confidence
  thresholds. The numbers come from
  `keras_selfdistill.models.early_exit.anytime_curve`, the compute from
  `keras_selfdistill.models.compute_cost`.

`keras_selfdistill.callbacks.PlotWriter` writes both as PNG files when
`fit` ends.

matplotlib is optional: it is imported when a plot is drawn, and a missing
matplotlib raises an `ImportError` saying how to install it
(`pip install matplotlib`, or the package's `plots` extra).
"""

import os

import numpy as np

from keras_selfdistill.models.early_exit import AnytimeCurve

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


def require_matplotlib() -> None:
    """Raises an `ImportError` saying how to install matplotlib if it is missing.

    For code that will draw later (a callback at the end of `fit`) and
    should fail before training instead.
    """
    _new_figure()


def _integer_locator():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


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
        curve: an `AnytimeCurve` (from
            `keras_selfdistill.models.early_exit.anytime_curve`).
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
