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

`TeacherFreeLoss` is the one Keras loss object here: teacher-free KD needs
no model wrapper, so it plugs into `model.compile(loss=...)` of any model.
"""

import math

import keras
from keras import ops

from keras_selfdistill.validation import check_choice
from keras_selfdistill.validation import check_non_negative
from keras_selfdistill.validation import check_number
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


def labels_only_terms(labels, logits):
    """The loss terms of a batch that has nothing to distil from.

    A wrapper's evaluation on plain inputs, or its first step before any
    target exists, trains on the labels alone; it reports the same terms as
    its distillation steps, with a zero `"distillation"`.

    Args:
        labels: integer class ids or one-hot labels.
        logits: float tensor `(batch, num_classes)`.

    Returns:
        A dict of float32 tensors `(batch,)`: `"cross_entropy"`,
        `"distillation"` (zeros) and `"total"` (the cross-entropy).

    Example:

    >>> import numpy as np
    >>> terms = labels_only_terms(np.array([0]), np.array([[0.0, 0.0]]))
    >>> round(float(np.asarray(terms["total"])[0]), 4)  # log 2
    0.6931
    """
    cross_entropy_values = cross_entropy(labels, logits)
    return {
        "cross_entropy": cross_entropy_values,
        "distillation": ops.zeros_like(cross_entropy_values),
        "total": cross_entropy_values,
    }


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
    feature_weight=2.0,
    sample_weight=None,
    scale_by_temperature_squared: bool = False,
    feature_reduction: str = "mean",
):
    """Be Your Own Teacher: the deepest classifier teaches the shallower ones.

    With heads `1..C` ordered shallow to deep, logits `z_i` and features
    `F_i`, the loss is

    `L = CE(y, z_C) + sum_{i<C} [ (1 - alpha) * CE(y, z_i)
         + alpha * s * KL(softmax(z_C/T) || softmax(z_i/T))
         + feature_weight * d(F_i, F_C) ]`

    with `d` the squared distance averaged over the feature dimensions
    (`feature_reduction="mean"`) or summed (`"sum"`, the paper's
    `||F_i - F_C||^2`), `s = T^2` when `scale_by_temperature_squared` (Hinton's scaling)
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
            Defaults to `2.0`, as `SelfDistillModel` (the paper's 0.03 with
            `feature_reduction="sum"` on 64-wide features).
        sample_weight: optional tensor `(batch,)`.
        scale_by_temperature_squared: bool. Multiply the KL by `T^2`.
            Defaults to `False`, as `SelfDistillModel`.
        feature_reduction: `"mean"` or `"sum"`: the feature distance averaged
            over the feature dimensions or summed over them (the paper's
            `||.||^2`; see `feature_distance`). Defaults to `"mean"`, as
            `SelfDistillModel`.

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
    check_choice("feature_reduction", feature_reduction, ("sum", "mean"))
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
                head_features[index], head_features[-1], feature_reduction
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


def stale_teacher_logits(teacher_logits, teacher_mask, temperature=1.0):
    """Logits of the mean softened prediction of the teachers a mask selects.

    With teacher logits `t_1..t_M` and a 0/1 row `m` of length `M`,
    `p_bar = sum_j m_j softmax(t_j / T) / sum_j m_j`, returned as
    `T * log(p_bar)` (valid logits whose softened distribution is `p_bar`;
    see `peer_teacher_logits`), computed as a `logsumexp` of log-softmaxes,
    finite for logits of any magnitude. A row with no teacher (`sum m = 0`)
    gives finite logits that mean nothing; `co_distillation_loss` weights
    its distillation term by zero.

    Args:
        teacher_logits: list of `M >= 1` tensors `(batch, num_classes)`.
        teacher_mask: float tensor `(M,)` of zeros and ones.
        temperature: float > 0 or scalar tensor/variable.

    Returns:
        A float32 tensor `(batch, num_classes)`.
    """
    temperature = ops.cast(temperature, "float32")
    teacher_mask = ops.cast(teacher_mask, "float32")
    log_probabilities = ops.stack(
        [
            ops.log_softmax(ops.cast(logits, "float32") / temperature, axis=-1)
            for logits in teacher_logits
        ]
    )
    # Teachers left out get -1e9 added: their exp underflows to exactly 0.
    offsets = ops.reshape((teacher_mask - 1.0) * 1e9, (-1, 1, 1))
    count = ops.maximum(ops.sum(teacher_mask), 1.0)
    log_mean = ops.logsumexp(log_probabilities + offsets, axis=0) - ops.log(count)
    return temperature * log_mean


def co_distillation_loss(
    labels,
    peer_logits,
    teacher_logits,
    teacher_mask,
    alpha=0.5,
    temperature=1.0,
    sample_weight=None,
    scale_by_temperature_squared: bool = True,
):
    """Co-distillation: each peer learns from labels and stale teachers.

    Online distillation with teachers that are stale snapshots of the other
    peers (Anil et al., 2018). With `N` peers of logits `z_1..z_N`, `M`
    teachers of logits `t_1..t_M` (predictions of snapshots, computed
    without gradient) and a 0/1 mask `m` of shape `(N, M)` saying which
    teachers teach peer `i` (the others' snapshots, those that exist, after
    the burn-in):

    `p_bar_i = sum_j m_ij softmax(t_j / T) / sum_j m_ij`

    `L_i = (1 - a_i) * CE(y, z_i) + a_i * T^2 * KL(p_bar_i || softmax(z_i / T))`

    `a_i = alpha` if `sum_j m_ij > 0`, else `0`, and `L = sum_i L_i`.

    The teacher is the mean of the teachers' **probabilities**, as in the
    paper's Algorithm 1 (`psi(1/(N-1) sum_{j != i} F(theta_j, x), F(theta_i,
    x))`, `F` the softmax output). A peer with no teacher (during burn-in, or
    before any snapshot of another peer exists) trains on the labels alone,
    with weight 1, and its distillation term is exactly zero: so is its
    gradient. Each term is averaged over the batch (`weighted_batch_mean`).

    Args:
        labels: integer class ids or one-hot labels (see `cross_entropy`).
        peer_logits: list of `N >= 1` tensors `(batch, num_classes)`.
        teacher_logits: list of `M >= 1` tensors `(batch, num_classes)`;
            they receive no gradient.
        teacher_mask: float tensor `(N, M)` of zeros and ones.
        alpha: float in [0, 1] or scalar tensor. Weight of the teacher term.
            Defaults to `0.5`.
        temperature: float > 0 or scalar tensor. Defaults to `1.0`.
        sample_weight: optional tensor `(batch,)`.
        scale_by_temperature_squared: bool. Defaults to `True`.

    Returns:
        A dict of float32 scalars: `"total"` (`L`), `"cross_entropy"` and
        `"distillation"` (unweighted terms summed over peers; a peer without
        teacher adds zero distillation), and `"peer_totals"`, the list of
        each peer's `L_i`.

    Example:

    >>> import numpy as np
    >>> terms = co_distillation_loss(
    ...     labels=np.array([0]),
    ...     peer_logits=[np.array([[1.0, 0.0]])],
    ...     teacher_logits=[np.array([[0.0, 1.0]])],
    ...     teacher_mask=np.array([[0.0]]),  # no teacher yet: labels only
    ... )
    >>> round(float(np.asarray(terms["total"])), 4)  # CE = log(1 + e^-1)
    0.3133

    References:
        Anil, Pereyra, Passos, Ormandi, Dahl, Hinton. "Large scale
        distributed neural network training through online distillation",
        ICLR 2018, section 2 and Algorithm 1.
        https://arxiv.org/abs/1804.03235
    """
    if not peer_logits or not teacher_logits:
        raise ValueError(
            "Co-distillation needs at least one peer and one teacher. "
            f"Received: {len(peer_logits)} peer logits and "
            f"{len(teacher_logits)} teacher logits."
        )
    _check_python_number(check_unit_interval, "alpha", alpha)
    alpha = _as_float32(alpha)
    teacher_mask = _as_float32(teacher_mask)
    peer_totals, cross_entropies, distillations = [], [], []
    for index, logits in enumerate(peer_logits):
        row = teacher_mask[index]
        has_teacher = ops.cast(ops.sum(row) > 0.0, "float32")
        peer_alpha = alpha * has_teacher
        ce = cross_entropy(labels, logits)
        kl = softened_kl_divergence(
            stale_teacher_logits(teacher_logits, row, temperature),
            logits,
            temperature=temperature,
            scale_by_temperature_squared=scale_by_temperature_squared,
        )
        total = (1.0 - peer_alpha) * ce + peer_alpha * kl
        peer_totals.append(weighted_batch_mean(total, sample_weight))
        cross_entropies.append(weighted_batch_mean(ce, sample_weight))
        distillations.append(
            weighted_batch_mean(kl * has_teacher, sample_weight)
        )
    return {
        "total": sum(peer_totals[1:], peer_totals[0]),
        "cross_entropy": sum(cross_entropies[1:], cross_entropies[0]),
        "distillation": sum(distillations[1:], distillations[0]),
        "peer_totals": peer_totals,
    }


def check_true_class_probability(value, num_classes=None) -> None:
    """`value` must be a number in (0, 1), and at least `1 / num_classes`.

    A virtual teacher that gives the true class less than the uniform
    `1 / num_classes` would teach the wrong class; `1` itself would give the
    other classes probability 0 (a logit of minus infinity).

    Args:
        value: the received `true_class_probability`.
        num_classes: int or `None` (not known yet: only (0, 1) is checked).

    Raises:
        ValueError: naming the value and the allowed range.
    """
    name = "true_class_probability"
    check_number(name, value, 0.0, 1.0, False, "in (0, 1)")
    if value == 1.0:
        raise ValueError(
            f"`{name}` must be in (0, 1): at 1 the virtual teacher gives the "
            "other classes probability 0, whose log is -inf. Use e.g. 0.99. "
            f"Received: {name}={value!r}"
        )
    if num_classes is not None and value < 1.0 / num_classes:
        raise ValueError(
            f"`{name}` must be at least 1 / num_classes = "
            f"{1.0 / num_classes:.4g} for {num_classes} classes, or the "
            "virtual teacher prefers a wrong class. Received: "
            f"{name}={value!r}"
        )


def virtual_teacher_logits(labels, logits, true_class_probability=0.99):
    """Logits of the teacher-free virtual teacher: `log u`.

    The virtual teacher of Yuan et al. (2020) gives probability `a` to the
    true class and spreads `1 - a` evenly over the `K - 1` others:

    `u_k = a` for the true class, `u_k = (1 - a) / (K - 1)` otherwise.

    With one-hot (or soft, e.g. mixup) labels `y` this is
    `u = a * y + (1 - a) / (K - 1) * (1 - y)`, a distribution whenever `y`
    is. Log-probabilities are valid logits (`softmax(log u) = u`), so
    `softmax(log(u) / T)` is the teacher softened with temperature `T`.

    Args:
        labels: integer class ids `(batch,)`/`(batch, 1)` or class
            probability vectors `(batch, num_classes)`.
        logits: tensor `(batch, num_classes)`, the model's logits; only its
            static shape is read (the number of classes, `K >= 2`).
        true_class_probability: float in `[1/K, 1)`. `a` above. Defaults to
            `0.99` (the authors' code).

    Returns:
        A float32 tensor `(batch, num_classes)`: `log u`.

    Example:

    >>> import numpy as np
    >>> teacher = virtual_teacher_logits(
    ...     np.array([1]), np.zeros((1, 3)), true_class_probability=0.8
    ... )
    >>> [round(float(p), 4) for p in np.exp(np.asarray(teacher))[0]]
    [0.1, 0.8, 0.1]
    """
    num_classes = logits.shape[-1]
    if num_classes is None or num_classes < 2:
        raise ValueError(
            "A virtual teacher needs a known number of classes >= 2. "
            f"Received: logits with shape {tuple(logits.shape)}"
        )
    if isinstance(true_class_probability, (int, float)):
        check_true_class_probability(true_class_probability, num_classes)
    if labels_are_one_hot(labels, logits):
        target = _as_float32(labels)
    else:
        class_ids = ops.reshape(ops.cast(labels, "int32"), (-1,))
        target = ops.one_hot(class_ids, num_classes, dtype="float32")
    probability = _as_float32(true_class_probability)
    others = (1.0 - probability) / (num_classes - 1)
    return ops.log(probability * target + others * (1.0 - target))


def teacher_free_objective(
    labels,
    logits,
    alpha=0.1,
    temperature=20.0,
    true_class_probability=0.99,
    scale_by_temperature_squared: bool = False,
):
    """Per-sample teacher-free KD loss, regularisation form (Tf-KD_reg).

    `(1 - alpha) * CE(y, z) + alpha * KL(softmax(log(u) / T) || softmax(z / T))`

    with the virtual teacher `u` of `virtual_teacher_logits` (probability
    `a` on the true class). No model is trained as a teacher: `u` is built
    from the labels.

    **Relation to label smoothing.** At `T = 1` the loss is a label-smoothed
    cross-entropy up to a constant:
    `(1 - alpha) * CE(y, z) + alpha * KL(u || p) = CE(y_ls, z) - alpha * H(u)`
    with `y_ls = (1 - eps) * y + eps / K` and
    `eps = alpha * (1 - a) * K / (K - 1)`. `H(u)` does not depend on the
    model, so the gradients are those of
    `keras.losses.CategoricalCrossentropy(label_smoothing=eps)`; with
    `alpha = 1` it is label smoothing with `eps = (1 - a) * K / (K - 1)`.
    A temperature `T > 1` makes it differ: both distributions are softened.

    Args:
        labels: integer class ids or one-hot labels (see `cross_entropy`).
        logits: tensor `(batch, num_classes)`, unnormalised scores.
        alpha: float in [0, 1]. Weight of the virtual-teacher term.
            Defaults to `0.1`.
        temperature: float > 0. `T`, applied to both distributions.
            Defaults to `20.0`.
        true_class_probability: float in `[1/K, 1)`. `a`. Defaults to
            `0.99`.
        scale_by_temperature_squared: bool. Multiply the KL by `T^2`
            (Hinton et al., 2015). Defaults to `False`, the paper's equation.

    Returns:
        A dict of float32 tensors `(batch,)`: `"cross_entropy"`,
        `"distillation"` (the KL, unweighted) and `"total"`.

    Example:

    >>> import numpy as np
    >>> terms = teacher_free_objective(
    ...     np.array([0]), np.array([[2.0, 0.0]]), alpha=1.0,
    ...     temperature=1.0, true_class_probability=0.9,
    ... )
    >>> round(float(np.asarray(terms["total"])[0]), 4)  # KL(u || p)
    0.0018

    References:
        Yuan, Tay, Li, Wang, Feng. "Revisiting Knowledge Distillation via
        Label Smoothing Regularization", CVPR 2020, equations (8)-(9).
        https://arxiv.org/abs/1909.11723
    """
    teacher_logits = virtual_teacher_logits(
        labels, logits, true_class_probability
    )
    return distillation_objective(
        labels,
        logits,
        teacher_logits,
        alpha=alpha,
        temperature=temperature,
        scale_by_temperature_squared=scale_by_temperature_squared,
    )


def class_wise_objective(
    labels, logits, partner_logits, temperature=4.0, distillation_weight=1.0
):
    """Per-sample class-wise self-knowledge distillation loss (CS-KD).

    `CE(y, z) + lambda * T^2 * KL(softmax(z' / T) || softmax(z / T))`

    where `z` are the model's logits for a sample `x` and `z'` its logits
    for another sample `x'` of the same class: the model's prediction on one
    sample of a class is the target of its prediction on another, which
    makes the predictions within a class consistent. `z'` passes through
    `stop_gradient` (the authors compute it under `torch.no_grad`).

    Args:
        labels: integer class ids or one-hot labels of `x` (see
            `cross_entropy`).
        logits: tensor `(batch, num_classes)`, the logits for `x`.
        partner_logits: tensor `(batch, num_classes)`, the logits for the
            same-class partners `x'`; receives no gradient.
        temperature: float > 0 or scalar tensor. `T`. Defaults to `4.0`
            (the paper's).
        distillation_weight: float >= 0 or scalar tensor. `lambda`.
            Defaults to `1.0` (the paper's).

    Returns:
        A dict of float32 tensors `(batch,)`: `"cross_entropy"`,
        `"distillation"` (`T^2 * KL`, unweighted) and `"total"`.

    Example:

    >>> import numpy as np
    >>> terms = class_wise_objective(
    ...     np.array([0]), np.array([[1.0, 0.0]]), np.array([[1.0, 0.0]])
    ... )
    >>> round(float(np.asarray(terms["distillation"])[0]), 4)  # same logits
    0.0

    References:
        Yun, Park, Lee, Shin. "Regularizing Class-wise Predictions via
        Self-knowledge Distillation", CVPR 2020, equation (1)-(2).
        https://arxiv.org/abs/2003.13964
    """
    _check_python_number(
        check_non_negative, "distillation_weight", distillation_weight
    )
    cross_entropy_term = cross_entropy(labels, logits)
    kl = softened_kl_divergence(partner_logits, logits, temperature=temperature)
    return {
        "cross_entropy": cross_entropy_term,
        "distillation": kl,
        "total": cross_entropy_term + _as_float32(distillation_weight) * kl,
    }


@keras.saving.register_keras_serializable(package="keras_selfdistill")
class TeacherFreeLoss(keras.losses.Loss):
    """Teacher-free knowledge distillation as a Keras loss: no teacher model.

    A drop-in replacement for `keras.losses.SparseCategoricalCrossentropy`
    or `CategoricalCrossentropy(from_logits=True)` on any model (functional,
    Sequential, subclassed): `model.compile(loss=TeacherFreeLoss())`. The
    model learns from the labels and from a hand-made virtual teacher that
    puts probability `a` on the true class (Yuan et al., 2020, Tf-KD_reg):

    `L = (1 - alpha) * CE(y, z) + alpha * KL(softmax(log(u) / T) || softmax(z / T))`

    `u_k = a` for the true class, `(1 - a) / (K - 1)` otherwise
    (`teacher_free_objective` computes it).

    **Label smoothing.** At `temperature=1` this is exactly label smoothing
    up to a constant (so with the same gradients):
    `CategoricalCrossentropy(from_logits=True, label_smoothing=eps)` with
    `eps = alpha * (1 - a) * K / (K - 1)`; `alpha=1` gives
    `eps = (1 - a) * K / (K - 1)`. The loss values differ by
    `alpha * H(u)`, the entropy of the virtual teacher. A temperature above
    1 softens the teacher and the model's prediction alike, which label
    smoothing cannot express.

    `y_pred` must be logits (the model's last layer without a softmax);
    labels may be integer class ids or one-hot vectors. The values are
    fixed at construction (a compiled step reads them once).

    Args:
        alpha: float in [0, 1]. Weight of the virtual-teacher term.
            Defaults to `0.1`.
        temperature: float > 0. Softens the teacher and the prediction.
            Defaults to `20.0`.
        true_class_probability: float in (0, 1), and at least `1/K` for `K`
            classes (checked on the first call). `a`. Defaults to `0.99`
            (the authors' code).
        scale_by_temperature_squared: bool. Multiply the KL by `T^2`.
            Defaults to `False` (the paper's equation).
        reduction: as in `keras.losses.Loss`. Defaults to
            `"sum_over_batch_size"`.
        name: str. Defaults to `"teacher_free"`.
        dtype: as in `keras.losses.Loss`.

    Example:

    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> model.compile(optimizer="adam", loss=TeacherFreeLoss(alpha=0.5))
    >>> history = model.fit(
    ...     np.zeros((8, 4)), np.array([0, 1, 2, 0, 1, 2, 0, 1]), verbose=0
    ... )

    References:
        Yuan, Tay, Li, Wang, Feng. "Revisiting Knowledge Distillation via
        Label Smoothing Regularization", CVPR 2020, equations (8)-(9).
        https://arxiv.org/abs/1909.11723
    """

    def __init__(
        self,
        alpha=0.1,
        temperature=20.0,
        true_class_probability=0.99,
        scale_by_temperature_squared=False,
        reduction="sum_over_batch_size",
        name="teacher_free",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        check_unit_interval("alpha", alpha)
        check_positive("temperature", temperature)
        check_true_class_probability(true_class_probability)
        self.alpha = float(alpha)
        self.temperature = float(temperature)
        self.true_class_probability = float(true_class_probability)
        self.scale_by_temperature_squared = bool(scale_by_temperature_squared)

    def call(self, y_true, y_pred):
        return teacher_free_objective(
            y_true,
            y_pred,
            alpha=self.alpha,
            temperature=self.temperature,
            true_class_probability=self.true_class_probability,
            scale_by_temperature_squared=self.scale_by_temperature_squared,
        )["total"]

    def get_config(self):
        return {
            **super().get_config(),
            "alpha": self.alpha,
            "temperature": self.temperature,
            "true_class_probability": self.true_class_probability,
            "scale_by_temperature_squared": self.scale_by_temperature_squared,
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
    "TeacherFreeLoss",
    "check_true_class_probability",
    "class_wise_objective",
    "cross_entropy",
    "distillation_objective",
    "feature_distance",
    "labels_are_one_hot",
    "labels_only_terms",
    "last_mini_batch_loss",
    "mutual_learning_loss",
    "peer_teacher_logits",
    "progressive_self_distillation_loss",
    "self_distillation_loss",
    "softened_kl_divergence",
    "teacher_free_objective",
    "virtual_teacher_logits",
    "weighted_batch_mean",
]



# DINO's math lives in its own module (one job: the multi-crop loss, the
# centre, the temperature); re-exported here with the rest of the losses.
from keras_selfdistill.dino_loss import dino_loss_terms  # noqa: E402,F401
from keras_selfdistill.dino_loss import teacher_temperature_at  # noqa: E402,F401
from keras_selfdistill.dino_loss import updated_center  # noqa: E402,F401

__all__ += ["dino_loss_terms", "teacher_temperature_at", "updated_center"]
