"""`EMATeacher`: a student distilled from a moving average of its own weights."""

import keras
from keras import ops

from keras_selfdistill.models.copies import companion_copy
from keras_selfdistill.models.hyperparameters import Hyperparameter
from keras_selfdistill.models.temporal_teacher import TemporalTeacherBase
from keras_selfdistill.validation import check_unit_interval


@keras.saving.register_keras_serializable(package="keras_selfdistill")
class EMATeacher(TemporalTeacherBase):
    """A student distilled from an exponential moving average of itself.

    The momentum (mean) teacher of Tarvainen & Valpola (2017) and DINO
    (Caron et al., 2021) for supervised training in plain `model.fit`: a
    copy of the student whose weights `xi` follow the student's weights
    `theta` with momentum `m`, and whose predictions the student learns
    alongside the labels:

    `xi_0 = theta_0`,  `xi_t = m_t * xi_{t-1} + (1 - m_t) * theta_t`

    `L = (1 - alpha) * CE(y, s) + alpha * T^2 * KL(softmax(t/T) || softmax(s/T))`

    where `theta_t` is the student after `t` optimizer steps, `s` the
    student's logits and `t` the teacher's (a `stop_gradient` target,
    computed with `training=False`). Step `t + 1` learns from `xi_t`; after
    `fit` returns, `model.teacher` holds `xi_N`. `m_t` is the value of
    `model.momentum` when `theta_t` is taken in (at the start of the next
    step or validation pass, or when `fit` returns); `MomentumScheduler`
    sets it to `schedule(t)` right after step `t`. Every floating-point
    weight is averaged, including `BatchNormalization` moving statistics
    (see `averaged_variables`).

    All state (teacher weights, `momentum`, `alpha`, `temperature`, the
    update flag) lives in Keras variables, updated inside the train step,
    so it is exact under `jit_compile=True` and saved with the model. See
    `TemporalTeacherBase` for exactly when the update runs.

    `predict` returns the student's logits; `model.teacher` is the teacher
    as a plain `keras.Model`. `compile(metrics=["accuracy"])` reports the
    student's `accuracy` and the teacher's `teacher_accuracy`; the history
    also has `cross_entropy_loss` and `distillation_loss`. The teacher's
    layers are the student's, renamed `f"{student.name}_ema_teacher_{name}"`
    (a functional or Sequential student), so that no two variables of the
    model share a path (see `companion_copy`).

    Args:
        student: a built `keras.Model` (functional, Sequential, or
            subclassed with `get_config`) mapping inputs to logits
            `(batch, num_classes)`. It is trained in place.
        momentum: float in [0, 1]. `m` above: `1` freezes the teacher at the
            student's initial weights, `0` copies the student after every
            step. Held in a non-trainable variable: `model.momentum = 0.999`
            between steps reaches a compiled step. Defaults to `0.996`
            (DINO's starting value).
        alpha: float in [0, 1]. Weight of the teacher term. Defaults to
            `0.5`.
        temperature: float > 0. Defaults to `1.0`.
        scale_by_temperature_squared: bool. Multiply the teacher term by
            `T^2` (Hinton et al., 2015). Defaults to `True`.
        **kwargs: base model arguments (`name`, `trainable`, `dtype`).

    Example:

    ```python
    student = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10),
    ])
    model = EMATeacher(student, momentum=0.99, alpha=0.5)
    model.compile(optimizer="adam", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=5,
              callbacks=[MomentumScheduler(start=0.99, end=1.0)])
    model.teacher.evaluate(...)  # a plain keras.Model
    ```

    References:
        Tarvainen, Valpola. "Mean teachers are better role models", NeurIPS
        2017, equation (1). https://arxiv.org/abs/1703.01780

        Caron et al. "Emerging Properties in Self-Supervised Vision
        Transformers" (DINO), ICCV 2021, section 3.1 (momentum teacher,
        cosine schedule from 0.996 to 1). https://arxiv.org/abs/2104.14294
    """

    momentum = Hyperparameter(check_unit_interval)

    def __init__(
        self,
        student,
        momentum=0.996,
        alpha=0.5,
        temperature=1.0,
        scale_by_temperature_squared=True,
        **kwargs,
    ):
        super().__init__(
            student,
            alpha=alpha,
            temperature=temperature,
            scale_by_temperature_squared=scale_by_temperature_squared,
            **kwargs,
        )
        self.momentum = momentum
        self.teacher = companion_copy(student, "ema_teacher")
        self._set_untracked(
            "_weight_pairs",
            list(
                zip(
                    self.matching_variables(self.teacher),
                    self.student_variables_to_average(),
                )
            ),
        )
        self.built = True

    def fold_student_weights(self, pending):
        # keep = m when pending, 1 otherwise: one branch-free update that
        # leaves the teacher bit-for-bit unchanged when nothing is pending.
        momentum = ops.convert_to_tensor(self.momentum)
        keep = 1.0 - pending * (1.0 - momentum)
        for teacher_variable, student_variable in self._weight_pairs:
            teacher_value = ops.cast(teacher_variable, "float32")
            student_value = ops.cast(student_variable, "float32")
            teacher_variable.assign(
                ops.cast(
                    keep * teacher_value + (1.0 - keep) * student_value,
                    teacher_variable.dtype,
                )
            )

    def teacher_logits(self, inputs):
        return self.teacher(inputs, training=False)

    def export_teacher(self):
        """The EMA teacher, `model.teacher`: a plain `keras.Model`."""
        return self.teacher

    def reset_teacher(self):
        """Sets the teacher to the student's current weights (`xi = theta`)."""
        for teacher_variable, student_variable in self._weight_pairs:
            # A copy: on JAX, assigning the array itself would make two
            # variables share one buffer, which a train step (donating its
            # state) refuses.
            teacher_variable.assign(ops.copy(student_variable.value))
        self.teacher_update_pending.assign(0.0)
