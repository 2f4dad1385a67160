"""The DINO math: the multi-crop cross-entropy, the centre, the temperature.

Pure `keras.ops` functions (no state, no layers) that `keras_selfdistill.DINO`
calls; `keras_selfdistill.losses` re-exports them, so the package's loss
math stays in one place to look for. Everything is computed in float32 and
the teacher side passes through `keras.ops.stop_gradient`.
"""

from keras import ops

#: Added to the L2 norms DINO divides by (`torch.nn.functional.normalize`).
NORM_EPSILON = 1e-12


def _as_float32(x):
    return ops.cast(x, "float32")


def dino_loss_terms(
    student_logits,
    teacher_logits,
    center,
    student_temperature=0.1,
    teacher_temperature=0.04,
):
    """DINO's loss and the two numbers that show collapse.

    The teacher sees the `G` global crops, the student every crop (the `G`
    global crops first, then the local ones). Each teacher crop `i` is
    centred and sharpened, and the student's prediction on every **other**
    crop `v != i` learns it:

    `P_t^i = softmax((t_i - c) / tau_t)`,  `P_s^v = softmax(s_v / tau_s)`

    `loss = 1 / #pairs * sum_{i < G} sum_{v != i} mean_batch H(P_t^i, P_s^v)`

    with `H(p, q) = -sum_k p_k log q_k`. Also returned, for the history:
    the mean entropy `H(P_t)` of the teacher's distributions (near `log K`:
    uniform collapse; near 0: one-hot collapse) and the mean
    `KL(P_t^i || P_s^v) = H(P_t^i, P_s^v) - H(P_t^i)` over the same pairs.

    Args:
        student_logits: float tensor `(V, batch, K)`: the student's head
            outputs for the `V >= 2` crops, the global ones first.
        teacher_logits: float tensor `(G, batch, K)`: the teacher's head
            outputs for the `G` global crops (`2 <= G <= V`, or `G = V = 1`
            is refused). Treated as a constant.
        center: float tensor `(K,)` or `(1, K)`: the centre `c`, a constant.
        student_temperature: float or scalar tensor > 0. `tau_s`. Defaults
            to `0.1`.
        teacher_temperature: float or scalar tensor > 0. `tau_t`. Defaults
            to `0.04`.

    Returns:
        dict of float32 scalars: `"loss"`, `"teacher_entropy"`,
        `"kl_divergence"`.

    Example:

    >>> import numpy as np
    >>> student = np.zeros((3, 2, 4), "float32")
    >>> teacher = np.zeros((2, 2, 4), "float32")
    >>> terms = dino_loss_terms(student, teacher, np.zeros(4, "float32"))
    >>> round(float(terms["loss"]), 4)  # uniform vs uniform: log 4
    1.3863

    References:
        Caron et al. "Emerging Properties in Self-Supervised Vision
        Transformers" (DINO), ICCV 2021, equations (1)-(4) and Algorithm 1.
        https://arxiv.org/abs/2104.14294
    """
    num_global, num_views = _crop_counts(student_logits, teacher_logits)
    teacher_log_probabilities = _teacher_log_probabilities(
        teacher_logits, center, teacher_temperature
    )
    student_log_probabilities = ops.log_softmax(
        _as_float32(student_logits) / _as_float32(student_temperature), axis=-1
    )
    cross, entropy = _cross_entropies(
        teacher_log_probabilities, student_log_probabilities
    )
    # Every (teacher crop i, student crop v) pair but v = i.
    pairs = 1.0 - ops.eye(num_global, num_views, dtype="float32")
    count = float(num_global * num_views - num_global)
    return {
        "loss": ops.sum(cross * pairs) / count,
        "teacher_entropy": ops.mean(entropy),
        "kl_divergence": ops.sum((cross - entropy[:, None]) * pairs) / count,
    }


def _crop_counts(student_logits, teacher_logits):
    """`(G, V)`, the teacher's and the student's crop counts, checked."""
    num_views = student_logits.shape[0]
    num_global = teacher_logits.shape[0]
    if num_views is None or num_global is None or num_global > num_views:
        raise ValueError(
            "`teacher_logits` must hold at most as many crops as "
            "`student_logits` (axis 0, known statically). Received: "
            f"teacher_logits shape {tuple(teacher_logits.shape)}, "
            f"student_logits shape {tuple(student_logits.shape)}"
        )
    if num_views < 2:
        raise ValueError(
            "DINO needs at least two crops (the student learns crop v from "
            "the teacher's crop i != v). Received: student_logits with "
            f"{num_views} crop(s)."
        )
    return num_global, num_views


def _teacher_log_probabilities(teacher_logits, center, teacher_temperature):
    """`log softmax((t - c) / tau_t)`, `(G, batch, K)`, with no gradient."""
    center = ops.reshape(ops.stop_gradient(_as_float32(center)), (1, 1, -1))
    teacher = ops.stop_gradient(_as_float32(teacher_logits))
    return ops.log_softmax(
        (teacher - center) / _as_float32(teacher_temperature), axis=-1
    )


def _cross_entropies(teacher_log_probabilities, student_log_probabilities):
    """`cross[i, v]`: batch mean of `H(P_t^i, P_s^v)`, `(G, V)`; and
    `entropy[i]`: batch mean of `H(P_t^i)`, `(G,)`."""
    teacher_probabilities = ops.exp(teacher_log_probabilities)
    cross = -ops.mean(
        ops.einsum(
            "ibk,vbk->ivb", teacher_probabilities, student_log_probabilities
        ),
        axis=-1,
    )
    entropy = -ops.mean(
        ops.sum(teacher_probabilities * teacher_log_probabilities, axis=-1),
        axis=-1,
    )
    return cross, entropy


def updated_center(center, teacher_logits, center_momentum=0.9):
    """The centre after one step: `c <- m * c + (1 - m) * mean(t)`.

    The mean is over every teacher output of the step (all global crops of
    the batch). DINO takes it over the global batch of all devices; this
    function sees the batch it is given (see `DINO` for multi-replica
    training).

    Args:
        center: float tensor `(K,)`. The current centre.
        teacher_logits: float tensor `(..., K)`. The teacher's head outputs.
        center_momentum: float or scalar tensor in [0, 1]. `m`. Defaults to
            `0.9`.

    Returns:
        float32 tensor `(K,)`.

    Example:

    >>> import numpy as np
    >>> center = updated_center(
    ...     np.zeros(2, "float32"), np.ones((3, 2), "float32"), 0.9)
    >>> [round(float(value), 4) for value in center]
    [0.1, 0.1]

    References:
        Caron et al. (DINO), ICCV 2021, equation (4).
        https://arxiv.org/abs/2104.14294
    """
    teacher = ops.stop_gradient(_as_float32(teacher_logits))
    num_outputs = teacher.shape[-1]
    batch_mean = ops.mean(ops.reshape(teacher, (-1, num_outputs)), axis=0)
    momentum = _as_float32(center_momentum)
    center = ops.reshape(_as_float32(center), (num_outputs,))
    return momentum * center + (1.0 - momentum) * batch_mean


def teacher_temperature_at(
    epoch, warmup_teacher_temperature=0.04, teacher_temperature=0.07,
    warmup_epochs=30,
):
    """DINO's teacher temperature at an epoch: a linear warm-up, then flat.

    `tau_t(e) = tau_0 + (tau_1 - tau_0) * min(e, W) / W` for `W > 0`, and
    `tau_1` for `W = 0` (the official `np.linspace(tau_0, tau_1, W)` reaches
    `tau_1` at epoch `W - 1`; here it does at epoch `W`).

    Args:
        epoch: int, float or scalar tensor >= 0. The epoch (0-based).
        warmup_teacher_temperature: float > 0. `tau_0`. Defaults to `0.04`.
        teacher_temperature: float > 0. `tau_1`. Defaults to `0.07`.
        warmup_epochs: int >= 0. `W`. Defaults to `30`.

    Returns:
        float32 scalar tensor.

    Example:

    >>> [round(float(teacher_temperature_at(e, 0.04, 0.07, 3)), 3)
    ...  for e in (0, 1, 3, 9)]
    [0.04, 0.05, 0.07, 0.07]

    References:
        Caron et al. (DINO), ICCV 2021, section 3.1 and appendix
        (`warmup_teacher_temp`). https://arxiv.org/abs/2104.14294
    """
    if warmup_epochs <= 0:
        return ops.convert_to_tensor(float(teacher_temperature), "float32")
    progress = ops.minimum(_as_float32(epoch), float(warmup_epochs)) / float(
        warmup_epochs
    )
    return warmup_teacher_temperature + (
        teacher_temperature - warmup_teacher_temperature
    ) * progress


def l2_normalize(x, axis=-1):
    """`x / max(||x||, 1e-12)` along `axis`, as `torch.nn.functional.normalize`.

    Args:
        x: float tensor.
        axis: int. Defaults to `-1`.

    Returns:
        A tensor of `x`'s shape.
    """
    norm = ops.sqrt(ops.sum(ops.square(x), axis=axis, keepdims=True))
    return x / ops.maximum(norm, NORM_EPSILON)


__all__ = [
    "dino_loss_terms",
    "l2_normalize",
    "teacher_temperature_at",
    "updated_center",
]

