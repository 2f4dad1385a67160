"""`SelfEnsembleTeacher`: a student taught by its own recent snapshots."""

import keras
from keras import ops

from keras_selfdistill.models.temporal_teacher import TemporalTeacherBase
from keras_selfdistill.models.copies import companion_copy
from keras_selfdistill.models.copies import mean_logits_model
from keras_selfdistill.validation import check_integer

_AVERAGES = ("parameters", "outputs")


@keras.saving.register_keras_serializable(package="keras_selfdistill")
class SelfEnsembleTeacher(TemporalTeacherBase):
    """A student distilled from the ensemble of its last `K` snapshots.

    Self-ensemble self-distillation (Xu et al., 2020) in plain
    `model.fit`. Every `snapshot_interval` optimizer steps the student's
    weights are copied into a ring of `K = num_snapshots` snapshots
    `theta_{t_1} .. theta_{t_K}` (the most recent ones); the teacher is their
    ensemble, in one of the paper's two forms:

    - `average="parameters"` (self-distillation-averaged, SDA): one model
      with the mean weights, `t = f(x; 1/K * sum_k theta_{t_k})`;
    - `average="outputs"` (self-distillation-voted, SDV): the mean of the
      snapshots' logits, `t = 1/K * sum_k f(x; theta_{t_k})` (`K` forward
      passes per step).

    The student learns

    `L = (1 - alpha) * CE(y, s) + alpha * T^2 * KL(softmax(t/T) || softmax(s/T))`

    with the teacher a `stop_gradient` target computed with
    `training=False`. The paper matches logits with a mean squared error;
    this package uses its one softened KL for every model (for large `T`
    the KL gradient approaches logit matching, Hinton et al. 2015, 2.1).

    All snapshots start as the student's initial weights, so until `K`
    snapshots have been taken the oldest slots still hold `theta_0`. Every
    floating-point weight is copied, `BatchNormalization` statistics
    included. The snapshot is taken inside the train step (see
    `TemporalTeacherBase` for when), with all state in variables, so it is
    exact under `jit_compile=True`. Memory: `K` copies of the student (plus
    one averaged copy for `"parameters"`); time: a copy-and-select over
    every snapshot's weights per step.

    `predict` returns the student's logits; `export_teacher()` the teacher as
    a plain `keras.Model`. The history reports `accuracy` (student) and
    `teacher_accuracy`, `cross_entropy_loss` and `distillation_loss`.

    Args:
        student: a built `keras.Model` (functional, Sequential, or
            subclassed with `get_config`; functional or Sequential for
            `export_teacher()` with `average="outputs"`) mapping inputs to
            logits `(batch, num_classes)`. It is trained in place.
        num_snapshots: int >= 1. `K`. Defaults to `5`.
        average: `"parameters"` or `"outputs"`. What the teacher averages.
            Defaults to `"parameters"`.
        snapshot_interval: int >= 1. Optimizer steps between snapshots
            (`1`: the last `K` steps, as in the paper; the number of steps
            per epoch: the last `K` epochs). Defaults to `1`.
        alpha: float in [0, 1]. Weight of the teacher term (a
            non-trainable variable; schedulable). Defaults to `0.5`.
        temperature: float > 0. Defaults to `1.0`.
        scale_by_temperature_squared: bool. Defaults to `True`.
        **kwargs: base model arguments (`name`, `trainable`, `dtype`).

    Example:

    ```python
    model = SelfEnsembleTeacher(student, num_snapshots=3, average="outputs",
                                snapshot_interval=steps_per_epoch)
    model.compile(optimizer="adam", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=10)
    teacher = model.export_teacher()
    ```

    References:
        Xu, Zhou, Qiu, Huang. "Improving BERT Fine-Tuning via Self-Ensemble
        and Self-Distillation", 2020, section 3 (SDA and SDV).
        https://arxiv.org/abs/2002.10345
    """

    def __init__(
        self,
        student,
        num_snapshots=5,
        average="parameters",
        snapshot_interval=1,
        alpha=0.5,
        temperature=1.0,
        scale_by_temperature_squared=True,
        **kwargs,
    ):
        check_integer("num_snapshots", num_snapshots, 1)
        check_integer("snapshot_interval", snapshot_interval, 1)
        if average not in _AVERAGES:
            raise ValueError(
                f"`average` must be one of {list(_AVERAGES)}. "
                f"Received: average={average!r}"
            )
        super().__init__(
            student,
            alpha=alpha,
            temperature=temperature,
            scale_by_temperature_squared=scale_by_temperature_squared,
            **kwargs,
        )
        self.num_snapshots = num_snapshots
        self.average = average
        self.snapshot_interval = snapshot_interval
        # Each copy with its own layer names: no two variables of the model
        # share a path (see `companion_copy`).
        self.snapshots = [
            companion_copy(student, f"snapshot_{index}")
            for index in range(num_snapshots)
        ]
        self.teacher = (
            companion_copy(student, "averaged_teacher")
            if average == "parameters"
            else None
        )
        counter = dict(shape=(), dtype="int32", initializer="zeros", trainable=False)
        # Optimizer steps taken into account, and the ring slot to write next.
        self.snapshot_steps = self.add_weight(name="snapshot_steps", **counter)
        self.next_snapshot_slot = self.add_weight(
            name="next_snapshot_slot", **counter
        )
        self.built = True

    def fold_student_weights(self, pending):
        pending = ops.cast(pending, "int32")
        steps = self.snapshot_steps + pending
        self.snapshot_steps.assign(steps)
        take = ops.logical_and(
            ops.equal(pending, 1),
            ops.equal(ops.mod(steps, self.snapshot_interval), 0),
        )
        slot = ops.convert_to_tensor(self.next_snapshot_slot)
        student_variables = self.student_variables_to_average()
        for index, snapshot in enumerate(self.snapshots):
            write = ops.logical_and(take, ops.equal(slot, index))
            for snapshot_variable, student_variable in zip(
                self.matching_variables(snapshot), student_variables
            ):
                snapshot_variable.assign(
                    ops.where(
                        write,
                        ops.cast(student_variable, snapshot_variable.dtype),
                        # The value, not the variable: jax.numpy.where does
                        # not take a Keras variable under `jit`.
                        snapshot_variable.value,
                    )
                )
        self.next_snapshot_slot.assign(
            ops.mod(slot + ops.cast(take, "int32"), self.num_snapshots)
        )
        if self.teacher is None:
            return
        snapshot_variables = [self.matching_variables(s) for s in self.snapshots]
        for position, teacher_variable in enumerate(
            self.matching_variables(self.teacher)
        ):
            stacked = ops.stack(
                [ops.cast(variables[position], "float32")
                 for variables in snapshot_variables]
            )
            teacher_variable.assign(
                ops.cast(ops.mean(stacked, axis=0), teacher_variable.dtype)
            )

    def teacher_logits(self, inputs):
        if self.teacher is not None:
            return self.teacher(inputs, training=False)
        logits = [
            ops.cast(snapshot(inputs, training=False), "float32")
            for snapshot in self.snapshots
        ]
        return ops.mean(ops.stack(logits), axis=0)

    def export_teacher(self):
        """The teacher as a plain `keras.Model`, sharing its weights.

        For `average="parameters"`, the averaged copy of the student; for
        `"outputs"`, a functional model averaging the snapshots' logits
        (the student must be functional or Sequential).

        Returns:
            A `keras.Model` from the student's inputs to the teacher's
            logits.
        """
        if self.teacher is not None:
            return self.teacher
        return mean_logits_model(self.snapshots, f"{self.name}_voted_teacher")

    def get_config(self):
        config = super().get_config()
        config.update(
            num_snapshots=self.num_snapshots,
            average=self.average,
            snapshot_interval=self.snapshot_interval,
        )
        return config
