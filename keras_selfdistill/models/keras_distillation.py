"""Keras's `keras.distillation` arguments, translated for `Distiller`.

`keras.distillation.Distiller(teacher, student, distillation_losses=...,
distillation_loss_weights=..., student_loss_weight=...)` minimises

`s * CE(y, student) + (1 - s) * sum_i w_i * loss_i`

and `keras_selfdistill.Distiller` minimises

`(1 - alpha) * CE(y, student) + alpha * T^2 * KL + feature_weight * hint`.

With one `LogitsDistillation` of weight 1 (a KL divergence), the two are the
same objective for `alpha = 1 - s`, `temperature = T` and, for each
`FeatureDistillation` (mean squared error between named layers) of weight
`w`, `feature_weight = (1 - s) * w`. Anything else is refused with the
exact translation. Keras's own computation differs in two places this
translation does not copy (docs/migrating_from_keras_distillation.md): its
default `LogitsDistillation()` takes the KL of the logits, not of the
softened probabilities, and its `compute_loss` ignores `sample_weight`.
"""

import keras

#: `student_loss_weight`'s default in `keras.distillation.Distiller`.
KERAS_STUDENT_LOSS_WEIGHT = 0.5


def _is_kl(loss) -> bool:
    return (
        loss == "kl_divergence"
        or loss is keras.losses.kl_divergence
        or isinstance(loss, keras.losses.KLDivergence)
    )


def _is_mse(loss) -> bool:
    return (
        loss in ("mse", "mean_squared_error")
        or loss is keras.losses.mean_squared_error
        or isinstance(loss, keras.losses.MeanSquaredError)
    )


def translate_keras_arguments(
    distillation_losses,
    distillation_loss_weights,
    student_loss_weight,
    alpha,
    temperature,
    feature_pairs,
    feature_weight,
):
    """`alpha`, `temperature`, `feature_pairs`, `feature_weight` for
    `Distiller` from `keras.distillation`'s arguments.

    Args:
        distillation_losses: `None`, a `keras.distillation.DistillationLoss`
            or a list of them.
        distillation_loss_weights: `None` or a list of floats, one per loss.
        student_loss_weight: `None` or a float in [0, 1].
        alpha: `None` or float: `Distiller`'s own argument, if given.
        temperature: `None` or float.
        feature_pairs: `None` or list of pairs.
        feature_weight: `None` or float.

    Returns:
        A dict with keys `alpha`, `temperature`, `feature_pairs`,
        `feature_weight`; `None` values mean "the Distiller's default".

    Raises:
        ValueError: when an argument has no exact counterpart; the message
            shows the translation that does exist.
    """
    _check_student_loss_weight(student_loss_weight, alpha)
    if distillation_losses is None:
        if distillation_loss_weights is not None:
            raise ValueError(
                "`distillation_loss_weights` weighs `distillation_losses`, "
                "which is not given. Received: "
                f"distillation_loss_weights={distillation_loss_weights!r}"
            )
        if student_loss_weight is not None:
            alpha = 1.0 - float(student_loss_weight)
        return {"alpha": alpha, "temperature": temperature,
                "feature_pairs": feature_pairs, "feature_weight": feature_weight}
    labels_weight = (
        KERAS_STUDENT_LOSS_WEIGHT if student_loss_weight is None
        else float(student_loss_weight)
    )
    logits_items, pairs, pair_weights = _split_losses(
        distillation_losses, distillation_loss_weights
    )
    logits_loss = _logits_term(
        logits_items, labels_weight, temperature,
        distillation_loss_weights, student_loss_weight,
    )
    _check_feature_terms(
        pairs, pair_weights, feature_pairs, feature_weight,
        distillation_loss_weights,
    )
    return {
        "alpha": 1.0 - labels_weight,
        "temperature": float(logits_loss.temperature),
        "feature_pairs": pairs or feature_pairs,
        "feature_weight": (
            (1.0 - labels_weight) * pair_weights[0] if pairs else feature_weight
        ),
    }


def _check_student_loss_weight(student_loss_weight, alpha) -> None:
    if student_loss_weight is None:
        return
    if isinstance(student_loss_weight, bool) or not isinstance(
        student_loss_weight, (int, float)
    ) or not 0.0 <= student_loss_weight <= 1.0:
        raise ValueError(
            "`student_loss_weight` (keras.distillation's weight of the "
            "labels) must be a number in [0, 1]. Received: "
            f"student_loss_weight={student_loss_weight!r}"
        )
    if alpha is not None:
        raise ValueError(
            "Pass `alpha` (the weight of the teacher term) or "
            "`student_loss_weight` (keras.distillation's weight of the "
            "labels, alpha = 1 - student_loss_weight), not both. "
            f"Received: alpha={alpha!r}, "
            f"student_loss_weight={student_loss_weight!r}"
        )


def _split_losses(distillation_losses, distillation_loss_weights):
    """`([(LogitsDistillation, weight)], hint pairs, hint weights)`."""
    items = (
        list(distillation_losses)
        if isinstance(distillation_losses, (list, tuple))
        else [distillation_losses]
    )
    weights = (
        [1.0] * len(items)
        if distillation_loss_weights is None
        else list(distillation_loss_weights)
    )
    if len(weights) != len(items):
        raise ValueError(
            "`distillation_loss_weights` needs one weight per distillation "
            f"loss. Received: {len(items)} losses and "
            f"distillation_loss_weights={distillation_loss_weights!r}"
        )
    logits_items, pairs, pair_weights = [], [], []
    for item, weight in zip(items, weights):
        if isinstance(item, keras.distillation.LogitsDistillation):
            logits_items.append((item, float(weight)))
        elif isinstance(item, keras.distillation.FeatureDistillation):
            pairs.append(_hint_pair(item))
            pair_weights.append(float(weight))
        else:
            raise ValueError(
                "`distillation_losses` must be keras.distillation."
                "LogitsDistillation and/or FeatureDistillation objects. "
                f"Received: {item!r} of type {type(item).__name__}"
            )
    return logits_items, pairs, pair_weights


def _hint_pair(feature_loss):
    """`(teacher_layer_name, student_layer_name)` of a FeatureDistillation."""
    if not _is_mse(feature_loss.loss) or not (
        feature_loss.teacher_layer_name and feature_loss.student_layer_name
    ):
        raise ValueError(
            "A FeatureDistillation translates to a hint pair "
            "(feature_pairs=[(teacher_layer_name, student_layer_name)]) with "
            "the mean squared error; both layer names are needed and the "
            "loss must be 'mse'. Received: FeatureDistillation(loss="
            f"{feature_loss.loss!r}, teacher_layer_name="
            f"{feature_loss.teacher_layer_name!r}, student_layer_name="
            f"{feature_loss.student_layer_name!r})"
        )
    return (feature_loss.teacher_layer_name, feature_loss.student_layer_name)


def _logits_term(logits_items, labels_weight, temperature,
                 distillation_loss_weights, student_loss_weight):
    """The one LogitsDistillation, checked to be Distiller's KL term."""
    if len(logits_items) != 1:
        raise ValueError(
            "Distiller's objective has exactly one logits term (the KL "
            "divergence); `distillation_losses` must hold one "
            f"LogitsDistillation. Received: {len(logits_items)}. For hints "
            "without a teacher term, use Distiller(teacher, student, "
            "alpha=0.0, feature_pairs=[...], feature_weight=w)."
        )
    logits_loss, logits_weight = logits_items[0]
    if not all(_is_kl(loss) for loss in keras.tree.flatten(logits_loss.loss)):
        raise ValueError(
            "Distiller's logits term is the KL divergence of the softened "
            "predictions (times T^2); a LogitsDistillation with another loss "
            "has no counterpart. Received: LogitsDistillation(loss="
            f"{logits_loss.loss!r})"
        )
    if logits_weight != 1.0:
        scale = labels_weight + (1.0 - labels_weight) * logits_weight
        raise ValueError(
            "A LogitsDistillation weight other than 1 has no exact "
            "counterpart: keras.distillation's loss is then "
            f"{scale:g} times Distiller's with alpha="
            f"{(1.0 - labels_weight) * logits_weight / scale:g} (the same "
            "gradients at a learning rate divided by "
            f"{scale:g}). Use those. Received: "
            f"distillation_loss_weights={distillation_loss_weights!r}, "
            f"student_loss_weight={student_loss_weight!r}"
        )
    if temperature is not None and temperature != logits_loss.temperature:
        raise ValueError(
            "`temperature` and the LogitsDistillation's temperature differ. "
            f"Received: temperature={temperature!r}, "
            f"LogitsDistillation(temperature={logits_loss.temperature!r})"
        )
    return logits_loss


def _check_feature_terms(pairs, pair_weights, feature_pairs, feature_weight,
                         distillation_loss_weights) -> None:
    """FeatureDistillation hints must not clash with Distiller's own."""
    if not pairs:
        return
    if feature_pairs is not None:
        raise ValueError(
            "Give hint layers as `feature_pairs` or as FeatureDistillation "
            f"objects, not both. Received: feature_pairs={feature_pairs!r}"
        )
    if len(set(pair_weights)) != 1:
        raise ValueError(
            "Distiller has one `feature_weight` for every hint pair; the "
            "FeatureDistillation weights must be equal. Received: "
            f"distillation_loss_weights={distillation_loss_weights!r}"
        )
    if feature_weight is not None:
        raise ValueError(
            "`feature_weight` is set by the FeatureDistillation weights "
            "((1 - student_loss_weight) * weight); pass one of them. "
            f"Received: feature_weight={feature_weight!r}"
        )


def check_label_loss(loss) -> None:
    """Accepts a `compile(loss=...)` that is the Distiller's own label term:
    cross-entropy from logits, plain; refuses anything else, saying why.

    Args:
        loss: what was passed to `compile(loss=...)`.

    Raises:
        ValueError: for any other loss.
    """
    plain = {
        "from_logits": True,
        "label_smoothing": 0.0,
        "axis": -1,
        "ignore_class": None,
        "reduction": "sum_over_batch_size",
    }
    if isinstance(
        loss,
        (keras.losses.SparseCategoricalCrossentropy,
         keras.losses.CategoricalCrossentropy),
    ):
        config = loss.get_config()
        if all(config.get(key, value) == value for key, value in plain.items()):
            return
    raise ValueError(
        "Distiller's label term is fixed: the cross-entropy of the "
        "student's logits (integer or one-hot labels), weighted by "
        "1 - alpha (keras.distillation's student_loss_weight). "
        "compile(loss=...) may only repeat it: "
        "keras.losses.SparseCategoricalCrossentropy(from_logits=True) or "
        "CategoricalCrossentropy(from_logits=True), or leave loss=None. "
        f"Received: loss={loss!r}"
    )
