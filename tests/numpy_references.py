"""Reference implementations in plain numpy (float64), for hand-checking the
loss module and every model's loss.

Test code only: the library itself computes with `keras.ops`.
"""

import numpy as np


def numpy_log_softmax(logits):
    """`log softmax(logits)` along the last axis, in float64."""
    logits = np.asarray(logits, dtype="float64")
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def numpy_cross_entropy(labels, logits):
    """Per-sample cross-entropy from logits; integer or one-hot labels."""
    log_probs = numpy_log_softmax(logits)
    labels = np.asarray(labels)
    if labels.ndim == log_probs.ndim and labels.shape[-1] == log_probs.shape[-1]:
        return -(labels * log_probs).sum(axis=-1)
    class_ids = labels.reshape(-1).astype(int)
    return -log_probs[np.arange(len(class_ids)), class_ids]


def numpy_softened_kl(teacher_logits, student_logits, temperature, squared=True):
    """Per-sample `KL(softmax(t/T) || softmax(s/T)) [* T^2]`."""
    teacher = numpy_log_softmax(np.asarray(teacher_logits) / temperature)
    student = numpy_log_softmax(np.asarray(student_logits) / temperature)
    kl = (np.exp(teacher) * (teacher - student)).sum(axis=-1)
    return kl * temperature**2 if squared else kl


def numpy_feature_distance(student_features, teacher_features, reduction="sum"):
    """Per-sample squared L2 distance (`"mean"`: divided by the width)."""
    difference = np.asarray(student_features, "float64") - np.asarray(
        teacher_features, "float64"
    )
    squared = difference.reshape(len(difference), -1) ** 2
    return squared.mean(axis=-1) if reduction == "mean" else squared.sum(axis=-1)


def numpy_self_distillation_loss(
    labels,
    head_logits,
    head_features,
    alpha,
    temperature,
    feature_weight,
    sample_weight=None,
    squared=False,
    feature_reduction="mean",
):
    """Be Your Own Teacher's total loss, written out term by term.

    Returns:
        A float: the batch mean (weighted as Keras does) of
        `CE(y, z_C) + sum_{i<C} (1-a) CE(y, z_i) + a T^2 KL(z_C || z_i)
        + lambda d(F_i, F_C)`, `d` the squared distance averaged (or summed)
        over the feature dimensions.
    """
    deepest = head_logits[-1]
    per_sample = numpy_cross_entropy(labels, deepest)
    for index, logits in enumerate(head_logits[:-1]):
        per_sample = per_sample + (1 - alpha) * numpy_cross_entropy(labels, logits)
        per_sample = per_sample + alpha * numpy_softened_kl(
            deepest, logits, temperature, squared
        )
        if head_features is not None:
            per_sample = per_sample + feature_weight * numpy_feature_distance(
                head_features[index], head_features[-1], feature_reduction
            )
    if sample_weight is not None:
        per_sample = per_sample * np.asarray(sample_weight).reshape(-1)
    return float(per_sample.mean())


def numpy_mutual_learning_loss(
    labels, peer_logits, alpha, temperature, sample_weight=None, squared=True
):
    """Deep mutual learning's loss with `K` peers, term by term, per peer.

    Returns:
        A list of floats, one per peer: the batch mean of `(1-a) CE(y, z_i)
        + a T^2 KL(p_bar_i || softmax(z_i/T))`, `p_bar_i` the mean of the
        other peers' softened predictions. The model's loss is their sum.
    """
    probabilities = [
        np.exp(numpy_log_softmax(np.asarray(z, "float64") / temperature))
        for z in peer_logits
    ]
    weights = (
        np.ones(len(np.asarray(peer_logits[0])))
        if sample_weight is None
        else np.asarray(sample_weight, "float64").reshape(-1)
    )
    totals = []
    for index, logits in enumerate(peer_logits):
        teacher = np.mean(
            [p for other, p in enumerate(probabilities) if other != index], axis=0
        )
        student = numpy_log_softmax(np.asarray(logits, "float64") / temperature)
        kl = (teacher * (np.log(teacher) - student)).sum(axis=-1)
        if squared:
            kl = kl * temperature**2
        per_sample = (1 - alpha) * numpy_cross_entropy(labels, logits) + alpha * kl
        totals.append(float((per_sample * weights).mean()))
    return totals


def numpy_virtual_teacher(labels, num_classes, true_class_probability):
    """Teacher-free KD's virtual teacher `u`, one row per sample, written
    out: `a` on the true class, `(1 - a) / (K - 1)` on every other."""
    labels = np.asarray(labels).reshape(-1).astype(int)
    others = (1.0 - true_class_probability) / (num_classes - 1)
    teacher = np.full((len(labels), num_classes), others, dtype="float64")
    teacher[np.arange(len(labels)), labels] = true_class_probability
    return teacher


def numpy_teacher_free_loss(
    labels, logits, alpha, temperature, true_class_probability, squared=False
):
    """Per-sample Tf-KD_reg: `(1 - a) CE + a KL(u^(1/T)/Z || softmax(z/T))`,
    the softened teacher computed from the probabilities `u` directly."""
    logits = np.asarray(logits, "float64")
    teacher = numpy_virtual_teacher(labels, logits.shape[-1], true_class_probability)
    softened = teacher ** (1.0 / temperature)
    softened = softened / softened.sum(axis=-1, keepdims=True)
    student = numpy_log_softmax(logits / temperature)
    kl = (softened * (np.log(softened) - student)).sum(axis=-1)
    if squared:
        kl = kl * temperature**2
    return (1 - alpha) * numpy_cross_entropy(labels, logits) + alpha * kl


def numpy_class_wise_loss(labels, logits, partner_logits, temperature, weight):
    """Per-sample CS-KD: `CE(y, z) + lambda T^2 KL(softmax(z'/T) || softmax(z/T))`."""
    return numpy_cross_entropy(labels, logits) + weight * numpy_softened_kl(
        partner_logits, logits, temperature
    )


def numpy_progressive_self_distillation(labels, logits, previous_probabilities, alpha):
    """PS-KD per sample: cross-entropy against the soft target
    `(1 - alpha) * one_hot(y) + alpha * p_prev`, built explicitly."""
    log_probs = numpy_log_softmax(logits)
    one_hot = np.eye(log_probs.shape[-1])[np.asarray(labels).reshape(-1)]
    alpha = np.asarray(alpha, "float64").reshape(-1, 1)
    target = (1 - alpha) * one_hot + alpha * np.asarray(previous_probabilities, "float64")
    return -(target * log_probs).sum(axis=-1)


def numpy_last_mini_batch_loss(labels, logits, previous_logits, target_mask, alpha, temperature):
    """DLB: `mean CE(y, z)` over the batch plus `alpha * T^2 * KL` averaged
    over the repeated samples (the first half) that have a target."""
    logits = np.asarray(logits, "float64")
    half = len(previous_logits)
    kl = numpy_softened_kl(previous_logits, logits[:half], temperature, squared=True)
    mask = np.asarray(target_mask, "float64")
    distillation = (kl * mask).sum() / max(mask.sum(), 1.0)
    return float(numpy_cross_entropy(labels, logits).mean() + alpha * distillation)


def numpy_co_distillation_loss(
    labels,
    peer_logits,
    teacher_logits,
    teacher_mask,
    alpha,
    temperature,
    sample_weight=None,
    squared=True,
):
    """Co-distillation's loss with stale teachers, per peer.

    Returns:
        A list of floats, one per peer: the batch mean of `(1-a_i) CE(y, z_i)
        + a_i T^2 KL(p_bar_i || softmax(z_i/T))`, `p_bar_i` the mean of the
        softened predictions of the teachers `teacher_mask[i]` selects, and
        `a_i = alpha` when it selects any, else 0.
    """
    probabilities = [
        np.exp(numpy_log_softmax(np.asarray(t, "float64") / temperature))
        for t in teacher_logits
    ]
    weights = (
        np.ones(len(np.asarray(peer_logits[0])))
        if sample_weight is None
        else np.asarray(sample_weight, "float64").reshape(-1)
    )
    totals = []
    for index, logits in enumerate(peer_logits):
        chosen = [p for p, m in zip(probabilities, teacher_mask[index]) if m]
        peer_alpha = alpha if chosen else 0.0
        per_sample = (1 - peer_alpha) * numpy_cross_entropy(labels, logits)
        if chosen:
            teacher = np.mean(chosen, axis=0)
            student = numpy_log_softmax(np.asarray(logits, "float64") / temperature)
            kl = (teacher * (np.log(teacher) - student)).sum(axis=-1)
            if squared:
                kl = kl * temperature**2
            per_sample = per_sample + peer_alpha * kl
        totals.append(float((per_sample * weights).mean()))
    return totals
