"""Early exit: each sample leaves at the first head confident enough.

The rule (`early_exit_heads`): a sample exits at the shallowest head whose
largest softmax probability is at least a threshold; samples no head is
sure of exit at the deepest. `SelfDistillModel.predict_early_exit` applies
it at one threshold (`early_exit_predictions`); the anytime curve
(`anytime_curve`) applies it at many and weighs each exit by its compute
(`keras_selfdistill.models.compute_cost`).
"""

import dataclasses

import numpy as np

from keras_selfdistill.models.compute_cost import backbone_cost
from keras_selfdistill.models.compute_cost import head_costs
from keras_selfdistill.validation import check_unit_interval

#: Confidence thresholds of the default anytime curve: 0 sends every sample
#: out at the first head, 1 keeps (almost) every sample to the deepest.
DEFAULT_THRESHOLDS = (
    0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999, 1.0,
)


@dataclasses.dataclass
class EarlyExitPredictions:
    """What `SelfDistillModel.predict_early_exit` returns.

    Attributes:
        logits: array `(samples, num_classes)`. For every sample, the logits
            of the head it exited at.
        exit_heads: int array `(samples,)`. Index (0 = shallowest) of the
            head each sample exited at.
        exit_fractions: list of floats, one per head, shallow to deep: the
            fraction of samples that exited there. Sums to 1.
    """

    logits: np.ndarray
    exit_heads: np.ndarray
    exit_fractions: list


def early_exit_heads(head_logits, threshold: float) -> np.ndarray:
    """The head each sample exits at.

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
    # In the logits' own dtype: a float64 softmax of float32 logits could
    # put a sample on the other side of a threshold.
    logits = np.asarray(head_logits)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    probabilities = np.exp(shifted)
    probabilities /= probabilities.sum(axis=-1, keepdims=True)
    confident = probabilities.max(axis=-1) >= threshold
    confident[-1] = True
    return np.argmax(confident, axis=0)


def _exit_fractions(exit_heads, num_heads) -> np.ndarray:
    return np.bincount(exit_heads, minlength=num_heads) / len(exit_heads)


def early_exit_predictions(head_logits, threshold: float) -> EarlyExitPredictions:
    """Every sample's prediction at the head it exits at.

    Args:
        head_logits: as for `early_exit_heads`.
        threshold: float in [0, 1]. Confidence needed to exit.

    Returns:
        An `EarlyExitPredictions`.
    """
    logits = np.asarray(head_logits)
    exit_heads = early_exit_heads(logits, threshold)
    samples = np.arange(logits.shape[1])
    return EarlyExitPredictions(
        logits=logits[exit_heads, samples],
        exit_heads=exit_heads,
        exit_fractions=_exit_fractions(exit_heads, len(logits)).tolist(),
    )


def _class_ids(labels) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[-1] > 1:
        return labels.argmax(axis=-1)
    return labels.reshape(-1).astype("int64")


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
            (`compute_cost.head_costs(model)`).
        plain_cost: number > 0. The cost all fractions are relative to
            (`compute_cost.backbone_cost(model)`).
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
        exit_fractions.append(_exit_fractions(exits, len(logits)))
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
    `predict_early_exit` at every threshold; costs come from
    `compute_cost.head_costs` and `compute_cost.backbone_cost` (see that
    module for how they are counted).

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
    from keras_selfdistill import plots
    from keras_selfdistill.models.early_exit import anytime_curve

    curve = anytime_curve(model, x_test, y_test, verbose=0)
    for threshold, cost, accuracy in zip(
        curve.thresholds, curve.cost_fraction, curve.accuracy
    ):
        print(f"{threshold:.2f}: {cost:.0%} of the compute, {accuracy:.2%}")
    plots.plot_anytime_curve(curve, "anytime.png")
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
