"""The distillation math, in one place.

Every model in this package computes its loss with these functions; none
carries its own copy of KL-with-temperature. Each function is pure (no state,
no Keras layers), works on every Keras backend through `keras.ops`, computes in
float32 whatever the input dtype (so `mixed_float16` logits cannot overflow the
softmax), and returns **per-sample** values of shape `(batch,)`. Reduce them
with `weighted_batch_mean`, which follows Keras's own `"sum_over_batch_size"`
convention for `sample_weight`.

Teacher-side inputs (teacher logits, teacher features) always pass through
`keras.ops.stop_gradient`: a teacher is a target, never something the
student's loss may move.
"""

import math

from keras import ops

from keras_selfdistill.validation import check_non_negative
from keras_selfdistill.validation import check_positive
from keras_selfdistill.validation import check_unit_interval


def _as_float32(x):
    return ops.cast(x, "float32")


def _check_python_number(check, name, value):
    # Tensors and variables (schedules) are the caller's to keep in range.
    if isinstance(value, (int, float)):
        check(name, value)


def labels_are_one_hot(labels, logits) -> bool:
    """Whether `labels` are one-hot (or soft) class vectors for `logits`.

    The decision is made on static shapes, so it is free under `jit`:
    labels with the same rank as the logits and one entry per class are
    one-hot; labels of shape `(batch,)` or `(batch, 1)` are integer class ids.

    Args:
        labels: tensor. Integer class ids `(batch,)`/`(batch, 1)`, or one-hot
            `(batch, num_classes)`.
        logits: tensor of shape `(batch, num_classes)`.

    Returns:
        `True` for one-hot labels, `False` for integer class ids.

    Raises:
        ValueError: if the labels fit neither form, e.g. one-hot vectors with
            a different number of classes than the logits.
    """
    labels_shape = tuple(labels.shape)
    logits_shape = tuple(logits.shape)
    num_classes = logits_shape[-1]
    if len(labels_shape) == len(logits_shape) - 1:
        return False
    if len(labels_shape) == len(logits_shape):
        if labels_shape[-1] == 1 and num_classes != 1:
            return False
        if labels_shape[-1] == num_classes or labels_shape[-1] is None:
            return True
    raise ValueError(
        "Labels must be integer class ids of shape (batch,) or (batch, 1), "
        f"or one-hot vectors of shape (batch, {num_classes}) to match the "
        f"model's {num_classes} classes. Received: labels with shape "
        f"{labels_shape} for logits with shape {logits_shape}."
    )


def cross_entropy(labels, logits):
    """Per-sample softmax cross-entropy from logits.

    Integer class ids and one-hot (or soft, e.g. label-smoothed or mixup)
    labels are both accepted; which one is decided from the static shapes
    (see `labels_are_one_hot`).

    `CE(y, z) = -sum_k y_k * log softmax(z)_k`

    Args:
        labels: tensor. Integer class ids `(batch,)`/`(batch, 1)` or class
            probability vectors `(batch, num_classes)`.
        logits: tensor of shape `(batch, num_classes)`, unnormalised scores.

    Returns:
        A float32 tensor of shape `(batch,)`.

    Example:

    >>> import numpy as np
    >>> loss = cross_entropy(np.array([0, 1]), np.array([[2.0, 0.0], [0.0, 0.0]]))
    >>> [round(float(value), 4) for value in np.asarray(loss)]
    [0.1269, 0.6931]
    """
    logits = _as_float32(logits)
    if labels_are_one_hot(labels, logits):
        return ops.categorical_crossentropy(
            _as_float32(labels), logits, from_logits=True
        )
    class_ids = ops.reshape(ops.cast(labels, "int32"), (-1,))
    return ops.sparse_categorical_crossentropy(
        class_ids, logits, from_logits=True
    )


def softened_kl_divergence(
    teacher_logits,
    student_logits,
    temperature=1.0,
    scale_by_temperature_squared: bool = True,
):
    """Per-sample KL divergence between temperature-softened distributions.

    `KL(softmax(t / T) || softmax(s / T)) * T^2`

    Computed from logits with `log_softmax` on both sides, so logits of any
    magnitude (1e4 and beyond) give finite values and gradients; never from
    probabilities. The teacher logits pass through `stop_gradient`.

    The `T^2` factor (Hinton et al., 2015, section 2) keeps the gradient of
    the softened term on the same scale as the cross-entropy's when the
    temperature changes; it is on by default. Turn it off to get the bare
    KL as written in Zhang et al. (2019).

    Args:
        teacher_logits: tensor of shape `(batch, num_classes)`. The target
            distribution's logits; receives no gradient.
        student_logits: tensor of shape `(batch, num_classes)`.
        temperature: float > 0, or a scalar tensor/variable (so a schedule
            can change it inside a compiled step). Defaults to `1.0`.
        scale_by_temperature_squared: bool. Multiply by `T^2`. Defaults to
            `True`.

    Returns:
        A float32 tensor of shape `(batch,)`, each entry >= 0.

    Example:

    >>> import numpy as np
    >>> kl = softened_kl_divergence(
    ...     np.array([[2.0, 0.0]]), np.array([[0.0, 0.0]]), temperature=2.0
    ... )
    >>> round(float(np.asarray(kl)[0]), 4)
    0.4438

    References:
        Hinton, Vinyals, Dean. "Distilling the Knowledge in a Neural
        Network", 2015. https://arxiv.org/abs/1503.02531
    """
    _check_python_number(check_positive, "temperature", temperature)
    temperature = _as_float32(temperature)
    teacher_logits = ops.stop_gradient(_as_float32(teacher_logits))
    student_logits = _as_float32(student_logits)
    teacher_log_probs = ops.log_softmax(teacher_logits / temperature, axis=-1)
    student_log_probs = ops.log_softmax(student_logits / temperature, axis=-1)
    kl = ops.sum(
        ops.exp(teacher_log_probs) * (teacher_log_probs - student_log_probs),
        axis=-1,
    )
    if scale_by_temperature_squared:
        kl = kl * ops.square(temperature)
    return kl


def feature_distance(student_features, teacher_features, reduction="sum"):
    """Per-sample squared L2 distance between feature vectors.

    `||F_student - F_teacher||^2`, summed (or averaged) over every non-batch
    axis. The
    teacher features pass through `stop_gradient` (the "hint" of FitNets and
    the feature term of Be Your Own Teacher).

    Args:
        student_features: tensor of shape `(batch, ...)`.
        teacher_features: tensor of the same shape; receives no gradient.
        reduction: `"sum"` (the squared norm, as Be Your Own Teacher writes
            it) or `"mean"` (divided by the number of feature elements, so a
            weight means the same for a vector and a feature map, as FitNets
            hints are usually weighted). Defaults to `"sum"`.

    Returns:
        A float32 tensor of shape `(batch,)`.

    Example:

    >>> import numpy as np
    >>> d = feature_distance(np.array([[1.0, 2.0]]), np.array([[0.0, 0.0]]))
    >>> float(np.asarray(d)[0])
    5.0

    References:
        Romero et al. "FitNets: Hints for Thin Deep Nets", ICLR 2015.
        https://arxiv.org/abs/1412.6550
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(
            "`reduction` must be 'sum' or 'mean'. "
            f"Received: reduction={reduction!r}"
        )
    student_features = _as_float32(student_features)
    teacher_features = ops.stop_gradient(_as_float32(teacher_features))
    if tuple(student_features.shape[1:]) != tuple(teacher_features.shape[1:]):
        raise ValueError(
            "Student and teacher features must have the same shape after "
            "projection. Received: student_features.shape="
            f"{tuple(student_features.shape)}, teacher_features.shape="
            f"{tuple(teacher_features.shape)}"
        )
    squared = ops.square(student_features - teacher_features)
    squared = ops.reshape(squared, (ops.shape(squared)[0], -1))
    if reduction == "mean":
        return ops.mean(squared, axis=-1)
    return ops.sum(squared, axis=-1)


def weighted_batch_mean(per_sample_values, sample_weight=None):
    """Reduces per-sample values to a scalar, Keras style.

    `sum_i(w_i * v_i) / batch_size` — the `"sum_over_batch_size"` reduction
    Keras losses use, so a `sample_weight` of all ones equals no weight, and a
    weight of zero removes a sample's contribution.

    Args:
        per_sample_values: tensor of shape `(batch,)`.
        sample_weight: optional tensor of shape `(batch,)` or `(batch, 1)`.

    Returns:
        A float32 scalar tensor.
    """
    per_sample_values = _as_float32(per_sample_values)
    if sample_weight is None:
        return ops.mean(per_sample_values)
    sample_weight = ops.reshape(_as_float32(sample_weight), (-1,))
    return ops.mean(per_sample_values * sample_weight)


def distillation_objective(
    labels,
    student_logits,
    teacher_logits,
    alpha=0.5,
    temperature=1.0,
    scale_by_temperature_squared: bool = True,
):
    """Per-sample Hinton objective: labels plus a softened teacher.

    `(1 - alpha) * CE(y, s) + alpha * T^2 * KL(softmax(t/T) || softmax(s/T))`

    This is the knowledge-distillation loss of Hinton et al. (2015) and the
    logit part of every shallow head's loss in Be Your Own Teacher.

    Args:
        labels: integer class ids or one-hot labels (see `cross_entropy`).
        student_logits: tensor of shape `(batch, num_classes)`.
        teacher_logits: tensor of shape `(batch, num_classes)`; receives no
            gradient.
        alpha: float in [0, 1] or scalar tensor. Weight of the teacher term.
        temperature: float > 0 or scalar tensor.
        scale_by_temperature_squared: bool. See `softened_kl_divergence`.

    Returns:
        A dict of float32 tensors of shape `(batch,)`: `"cross_entropy"` and
        `"distillation"` (both unweighted) and `"total"` (weighted as above).
    """
    _check_python_number(check_unit_interval, "alpha", alpha)
    alpha = _as_float32(alpha)
    ce = cross_entropy(labels, student_logits)
    kl = softened_kl_divergence(
        teacher_logits,
        student_logits,
        temperature=temperature,
        scale_by_temperature_squared=scale_by_temperature_squared,
    )
    return {
        "cross_entropy": ce,
        "distillation": kl,
        "total": (1.0 - alpha) * ce + alpha * kl,
    }


def self_distillation_loss(
    labels,
    head_logits,
    head_features=None,
    alpha=0.3,
    temperature=3.0,
    feature_weight=0.03,
    sample_weight=None,
    scale_by_temperature_squared: bool = False,
):
    """Be Your Own Teacher: the deepest classifier teaches the shallower ones.

    With heads `1..C` ordered shallow to deep, logits `z_i` and features
    `F_i`, the loss is

    `L = CE(y, z_C) + sum_{i<C} [ (1 - alpha) * CE(y, z_i)
         + alpha * s * KL(softmax(z_C/T) || softmax(z_i/T))
         + feature_weight * ||F_i - F_C||^2 ]`

    with `s = T^2` when `scale_by_temperature_squared` (Hinton's scaling)
    and `s = 1` otherwise (the paper's equation, and `SelfDistillModel`'s
    default), each term averaged over the batch (`weighted_batch_mean`). The deepest
    head learns from the labels only; its logits and features are targets
    (`stop_gradient`), so the KL and feature terms move only the shallow
    heads and the layers beneath them.

    Args:
        labels: integer class ids or one-hot labels (see `cross_entropy`).
        head_logits: list of tensors `(batch, num_classes)`, shallow to deep;
            at least two.
        head_features: optional list of tensors `(batch, width)`, one per
            head, shallow features already projected to the deepest head's
            width. `None` (or `feature_weight=0`) skips the feature term.
        alpha: float in [0, 1] or scalar tensor. Defaults to `0.3`.
        temperature: float > 0 or scalar tensor. Defaults to `3.0`.
        feature_weight: float >= 0 or scalar tensor (lambda in the paper).
            Defaults to `0.03`.
        sample_weight: optional tensor `(batch,)`.
        scale_by_temperature_squared: bool. Multiply the KL by `T^2`.
            Defaults to `False`, as `SelfDistillModel`.

    Returns:
        A dict of float32 scalars: `"total"`, and the batch-averaged sums over
        heads of each unweighted term, `"cross_entropy"` (all heads),
        `"distillation"` and `"feature"` (shallow heads).

    Example:

    >>> import numpy as np
    >>> terms = self_distillation_loss(
    ...     labels=np.array([1]),
    ...     head_logits=[np.array([[0.0, 0.0]]), np.array([[0.0, 2.0]])],
    ...     alpha=0.5, temperature=1.0,
    ... )
    >>> round(float(np.asarray(terms["total"])), 4)
    0.6374

    References:
        Zhang, Song, Gao, Chen, Bao, Ma. "Be Your Own Teacher: Improve the
        Performance of Convolutional Neural Networks via Self Distillation",
        ICCV 2019, equation (1)-(3). https://arxiv.org/abs/1905.08094
    """
    if len(head_logits) < 2:
        raise ValueError(
            "Self-distillation needs at least 2 heads (shallow ones and the "
            f"deepest teacher). Received: {len(head_logits)} head(s)."
        )
    _check_python_number(check_unit_interval, "alpha", alpha)
    _check_python_number(check_non_negative, "feature_weight", feature_weight)
    alpha = _as_float32(alpha)
    teacher_logits = head_logits[-1]
    deepest_ce = cross_entropy(labels, teacher_logits)
    total_ce = deepest_ce
    total = deepest_ce
    total_kl = ops.zeros_like(deepest_ce)
    total_feature = ops.zeros_like(deepest_ce)
    use_features = head_features is not None and not (
        isinstance(feature_weight, (int, float)) and feature_weight == 0
    )
    for index, student_logits in enumerate(head_logits[:-1]):
        terms = distillation_objective(
            labels,
            student_logits,
            teacher_logits,
            alpha=alpha,
            temperature=temperature,
            scale_by_temperature_squared=scale_by_temperature_squared,
        )
        total = total + terms["total"]
        total_ce = total_ce + terms["cross_entropy"]
        total_kl = total_kl + terms["distillation"]
        if use_features:
            distance = feature_distance(
                head_features[index], head_features[-1]
            )
            total_feature = total_feature + distance
    if use_features:
        total = total + _as_float32(feature_weight) * total_feature
    return {
        "total": weighted_batch_mean(total, sample_weight),
        "cross_entropy": weighted_batch_mean(total_ce, sample_weight),
        "distillation": weighted_batch_mean(total_kl, sample_weight),
        "feature": weighted_batch_mean(total_feature, sample_weight),
    }


def peer_teacher_logits(peer_logits, index, temperature=1.0):
    """Logits of the mean softened prediction of every peer but one.

    Peer `i`'s teacher in mutual learning is the average of the other peers'
    temperature-softened distributions,
    `p_bar_i = 1/(K-1) * sum_{j != i} softmax(z_j / T)`. Log-probabilities
    are valid logits, so the teacher logits returned are `T * log(p_bar_i)`:
    `softmax(T * log(p_bar_i) / T) = p_bar_i`, which is what
    `softened_kl_divergence` compares against. The log of the mean is
    computed as a `logsumexp` of log-softmaxes, so it is finite for logits
    of any magnitude. With two peers it is peer `j`'s own log-softmax (times
    `T`), i.e. peer `j`'s logits up to a constant.

    Args:
        peer_logits: list of `K >= 2` tensors `(batch, num_classes)`.
        index: int. The peer being taught; its own logits are left out.
        temperature: float > 0 or scalar tensor/variable.

    Returns:
        A float32 tensor `(batch, num_classes)`.
    """
    temperature = ops.cast(temperature, "float32")
    others = [
        ops.log_softmax(ops.cast(logits, "float32") / temperature, axis=-1)
        for position, logits in enumerate(peer_logits)
        if position != index
    ]
    log_mean = ops.logsumexp(ops.stack(others), axis=0) - math.log(len(others))
    return temperature * log_mean


def mutual_learning_loss(
    labels,
    peer_logits,
    alpha=0.5,
    temperature=1.0,
    sample_weight=None,
    scale_by_temperature_squared: bool = True,
):
    """Deep mutual learning: every peer learns from the labels and the others.

    With `K` peers, logits `z_1..z_K` and
    `p_bar_i = 1/(K-1) * sum_{j != i} softmax(z_j / T)`:

    `L_i = (1 - alpha) * CE(y, z_i)
           + alpha * T^2 * KL(stop_gradient(p_bar_i) || softmax(z_i / T))`

    `L = sum_i L_i`

    each term averaged over the batch (`weighted_batch_mean`). The teachers
    pass through `stop_gradient` (inside `softened_kl_divergence`), so
    `L_i` moves peer `i` only: the gradient of `L` with respect to peer `j`'s
    weights is the gradient of `L_j` alone.

    Args:
        labels: integer class ids or one-hot labels (see
            `cross_entropy`).
        peer_logits: list of `K >= 2` tensors `(batch, num_classes)`.
        alpha: float in [0, 1] or scalar tensor. Weight of the peer term.
            Defaults to `0.5`.
        temperature: float > 0 or scalar tensor. Defaults to `1.0`.
        sample_weight: optional tensor `(batch,)`.
        scale_by_temperature_squared: bool. Defaults to `True`.

    Returns:
        A dict of float32 scalars: `"total"` (`L`), `"cross_entropy"` and
        `"distillation"` (unweighted terms summed over peers), and
        `"peer_totals"`, the list of each peer's `L_i`.

    Example:

    >>> import numpy as np
    >>> terms = mutual_learning_loss(
    ...     labels=np.array([0]),
    ...     peer_logits=[np.array([[1.0, 0.0]]), np.array([[1.0, 0.0]])],
    ...     alpha=0.5,
    ... )
    >>> round(float(np.asarray(terms["total"])), 4)  # KL is 0: 2 * CE / 2
    0.3133

    References:
        Zhang, Xiang, Hospedales, Lu. "Deep Mutual Learning", CVPR 2018,
        equations (1)-(2) and (9)-(10) for K peers.
        https://arxiv.org/abs/1706.00384
    """
    if len(peer_logits) < 2:
        raise ValueError(
            "Mutual learning needs at least 2 peers. "
            f"Received: {len(peer_logits)} peer logits."
        )
    peer_totals, cross_entropies, distillations = [], [], []
    for index, logits in enumerate(peer_logits):
        terms = distillation_objective(
            labels,
            logits,
            peer_teacher_logits(peer_logits, index, temperature),
            alpha=alpha,
            temperature=temperature,
            scale_by_temperature_squared=scale_by_temperature_squared,
        )
        peer_totals.append(weighted_batch_mean(terms["total"], sample_weight))
        cross_entropies.append(
            weighted_batch_mean(terms["cross_entropy"], sample_weight)
        )
        distillations.append(
            weighted_batch_mean(terms["distillation"], sample_weight)
        )
    return {
        "total": sum(peer_totals[1:], peer_totals[0]),
        "cross_entropy": sum(cross_entropies[1:], cross_entropies[0]),
        "distillation": sum(distillations[1:], distillations[0]),
        "peer_totals": peer_totals,
    }


def progressive_self_distillation_loss(
    labels, logits, previous_probabilities, alpha
):
    """Per-sample PS-KD loss: cross-entropy against progressively softened targets.

    Progressive self-knowledge distillation (PS-KD) trains on the target
    `(1 - alpha_t) * y + alpha_t * p_prev`, where `p_prev` is the model's own
    softmax prediction for the same sample in the previous epoch. Cross-entropy
    is linear in its target, so

    `L = (1 - alpha_t) * CE(y, z) + alpha_t * CE(p_prev, z)`

    with `CE(q, z) = -sum_k q_k * log softmax(z)_k`. `p_prev` is a target: it
    passes through `stop_gradient`. `alpha_t` may differ per sample (each
    sample's own epoch).

    Args:
        labels: integer class ids `(batch,)`/`(batch, 1)` or one-hot labels
            `(batch, num_classes)` (see `cross_entropy`).
        logits: tensor of shape `(batch, num_classes)`.
        previous_probabilities: tensor of shape `(batch, num_classes)`, each
            row a probability vector (the last epoch's softmax); receives no
            gradient.
        alpha: float in [0, 1], or a tensor of shape `()` or `(batch,)`.
            `alpha_t`, the weight of the previous prediction.

    Returns:
        A dict of float32 tensors of shape `(batch,)`: `"cross_entropy"`
        (`CE(y, z)`), `"distillation"` (`CE(p_prev, z)`) and `"total"`
        (weighted as above).

    Example:

    >>> import numpy as np
    >>> terms = progressive_self_distillation_loss(
    ...     labels=np.array([0]), logits=np.array([[0.0, 0.0]]),
    ...     previous_probabilities=np.array([[0.5, 0.5]]), alpha=0.5,
    ... )
    >>> round(float(np.asarray(terms["total"])[0]), 4)  # log 2
    0.6931

    References:
        Kim, Ji, Yoon, Hwang. "Self-Knowledge Distillation with Progressive
        Refinement of Targets", ICCV 2021, equations (3)-(5).
        https://arxiv.org/abs/2006.12000
    """
    _check_python_number(check_unit_interval, "alpha", alpha)
    alpha = _as_float32(alpha)
    logits = _as_float32(logits)
    previous_probabilities = ops.stop_gradient(
        _as_float32(previous_probabilities)
    )
    ce = cross_entropy(labels, logits)
    log_probs = ops.log_softmax(logits, axis=-1)
    soft_ce = -ops.sum(previous_probabilities * log_probs, axis=-1)
    return {
        "cross_entropy": ce,
        "distillation": soft_ce,
        "total": (1.0 - alpha) * ce + alpha * soft_ce,
    }


def last_mini_batch_loss(
    labels,
    logits,
    previous_logits,
    target_mask,
    alpha=1.0,
    temperature=3.0,
    sample_weight=None,
):
    """DLB: cross-entropy plus consistency with the last mini-batch's logits.

    Self-distillation from the last mini-batch (DLB) builds each batch of
    `2 * n` samples from `n` samples that repeat the second half of the
    previous batch, then `n` new ones. The previous step's logits for the
    repeated samples, `z^{t-1}`, are soft targets for their logits now, `z^t`:

    `L = mean_batch CE(y, z^t) + alpha * T^2 * mean_repeated
         KL(softmax(z^{t-1}/T) || softmax(z^t/T))`

    The KL is averaged over the repeated samples that have a target
    (`target_mask` 1; none on the first step); the stored logits pass through
    `stop_gradient`.

    Args:
        labels: integer class ids or one-hot labels for the whole batch
            (see `cross_entropy`).
        logits: tensor of shape `(2 * n, num_classes)`: the repeated half
            first, then the new half.
        previous_logits: tensor of shape `(n, num_classes)`, the previous
            step's logits of the repeated samples; receives no gradient.
        target_mask: tensor of shape `(n,)`, 1 where `previous_logits` is the
            target of that repeated sample, 0 where there is none.
        alpha: float >= 0 or scalar tensor. Weight of the KL term. Defaults
            to `1.0` (the paper's).
        temperature: float > 0 or scalar tensor. Defaults to `3.0` (the
            paper's).
        sample_weight: optional tensor `(2 * n,)`; weights both terms.

    Returns:
        A dict of float32 scalars: `"total"`, `"cross_entropy"` (the batch
        mean, Keras's `"sum_over_batch_size"`) and `"distillation"` (the
        masked mean of `T^2 * KL`, 0 when no sample has a target).

    Example:

    >>> import numpy as np
    >>> terms = last_mini_batch_loss(
    ...     labels=np.array([0, 1]), logits=np.array([[0.0, 0.0], [0.0, 0.0]]),
    ...     previous_logits=np.array([[0.0, 0.0]]), target_mask=np.array([1.0]),
    ... )
    >>> round(float(np.asarray(terms["total"])), 4)  # KL is 0: CE = log 2
    0.6931

    References:
        Shen, Xu, Yang, Li, Guo. "Self-Distillation from the Last Mini-Batch
        for Consistency Regularization", CVPR 2022, equation (4).
        https://arxiv.org/abs/2203.16172
    """
    _check_python_number(check_non_negative, "alpha", alpha)
    logits = _as_float32(logits)
    half = previous_logits.shape[0]
    if half is not None and logits.shape[0] is not None and (
        logits.shape[0] != 2 * half
    ):
        raise ValueError(
            "DLB batches hold the repeated half, then the new half: `logits` "
            "must have twice as many rows as `previous_logits`. Received: "
            f"logits with shape {tuple(logits.shape)}, previous_logits with "
            f"shape {tuple(previous_logits.shape)}"
        )
    ce = weighted_batch_mean(cross_entropy(labels, logits), sample_weight)
    kl = softened_kl_divergence(
        previous_logits, logits[:half], temperature=temperature
    )
    weights = _as_float32(target_mask)
    if sample_weight is not None:
        weights = weights * ops.reshape(_as_float32(sample_weight), (-1,))[:half]
    count = ops.sum(_as_float32(target_mask))
    distillation = ops.sum(kl * weights) / ops.maximum(count, 1.0)
    return {
        "total": ce + _as_float32(alpha) * distillation,
        "cross_entropy": ce,
        "distillation": distillation,
    }


__all__ = [
    "cross_entropy",
    "distillation_objective",
    "feature_distance",
    "labels_are_one_hot",
    "last_mini_batch_loss",
    "mutual_learning_loss",
    "peer_teacher_logits",
    "progressive_self_distillation_loss",
    "self_distillation_loss",
    "softened_kl_divergence",
    "weighted_batch_mean",
]

