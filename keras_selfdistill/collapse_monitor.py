"""`CollapseMonitor`: a warning when DINO's teacher collapses."""

import math
import warnings

import keras

from keras_selfdistill.validation import check_number


@keras.saving.register_keras_serializable(package="keras_selfdistill")
class CollapseMonitor(keras.callbacks.Callback):
    """Warns when the teacher's output entropy nears `log K` or 0.

    Self-distillation without labels has two trivial solutions, which DINO's
    centring and sharpening hold off against each other (Caron et al., 2021,
    section 5.3): **uniform collapse** (the teacher outputs the same flat
    distribution for every image: entropy `log K`, centring alone) and
    **one-hot collapse** (one output dominates for every image: entropy 0,
    sharpening alone). In both, `kl_divergence` falls to 0, since the
    student copies a constant. At the end of each epoch this callback reads
    `logs["teacher_entropy"]` (reported by `DINO`) and warns (a
    `RuntimeWarning`) when it is above `(1 - margin) * log K` or below
    `margin * log K`; with `stop_training=True` it also stops `fit`.

    Args:
        margin: float in (0, 0.5). Fraction of `log K` counted as "near".
            Defaults to `0.02`.
        stop_training: bool. Stop `fit` on a warning. Defaults to `False`.
        num_outputs: int or `None`. `K`; `None` reads `model.head.output_dim`.
            Defaults to `None`.

    Example:

    ```python
    model.fit(images, epochs=100, callbacks=[CollapseMonitor()])
    ```

    References:
        Caron et al. "Emerging Properties in Self-Supervised Vision
        Transformers" (DINO), ICCV 2021, section 5.3 and figure 7.
        https://arxiv.org/abs/2104.14294
    """

    def __init__(self, margin=0.02, stop_training=False, num_outputs=None):
        super().__init__()
        check_number("margin", margin, 0.0, 0.5, False, "in (0, 0.5)")
        if margin == 0.5:  # check_number's upper bound is inclusive
            raise ValueError(f"`margin` must be in (0, 0.5). Received: margin={margin!r}")
        if num_outputs is not None and (
            isinstance(num_outputs, bool)
            or not isinstance(num_outputs, int)
            or num_outputs < 2
        ):
            raise ValueError(
                "`num_outputs` must be an integer >= 2 or None. Received: "
                f"num_outputs={num_outputs!r}"
            )
        self.margin = margin
        self.stop_training = bool(stop_training)
        self.num_outputs = num_outputs
        #: `(epoch, "uniform" | "one-hot", entropy)` for every warning.
        self.collapses = []

    def _log_k(self) -> float:
        num_outputs = self.num_outputs
        if num_outputs is None:
            head = getattr(self.model, "head", None)
            num_outputs = getattr(head, "output_dim", None)
        if num_outputs is None:
            raise ValueError(
                "CollapseMonitor needs K: give num_outputs=... or use it with "
                "a model whose `head.output_dim` is K (DINO). Received: "
                f"model of type {type(self.model).__name__}"
            )
        return math.log(num_outputs)

    def on_epoch_end(self, epoch, logs=None):
        if not logs or "teacher_entropy" not in logs:
            return
        entropy = float(logs["teacher_entropy"])
        log_k = self._log_k()
        kind = None
        if entropy >= (1.0 - self.margin) * log_k:
            kind = "uniform"
        elif entropy <= self.margin * log_k:
            kind = "one-hot"
        if kind is None:
            return
        self.collapses.append((epoch, kind, entropy))
        warnings.warn(
            f"Epoch {epoch + 1}: the teacher's output entropy is "
            f"{entropy:.4f}, {'near log K' if kind == 'uniform' else 'near 0'} "
            f"(log K = {log_k:.4f}): a sign of {kind} collapse. "
            + (
                "Centring dominates: lower the teacher temperature or the "
                "centre momentum."
                if kind == "uniform"
                else "Sharpening dominates: raise the teacher temperature, "
                "check the centre is updated, or lower the learning rate."
            ),
            RuntimeWarning,
            stacklevel=2,
        )
        if self.stop_training:
            self.model.stop_training = True

    def get_config(self):
        return {
            "margin": self.margin,
            "stop_training": self.stop_training,
            "num_outputs": self.num_outputs,
        }
