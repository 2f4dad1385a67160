"""`TemporalTeacherBase`: a student taught by its own weights over time.

What `EMATeacher` and `SelfEnsembleTeacher` share: a teacher made from the
student's own weights, refreshed inside the compiled train step, and the
Hinton loss against it.
"""

import keras
from keras import ops

from keras_selfdistill import losses
from keras_selfdistill.models.student_wrapper import StudentWrapper
from keras_selfdistill.models.graph import check_logits_student
from keras_selfdistill.models.graph import known_num_classes
from keras_selfdistill.models.hyperparameters import Hyperparameter
from keras_selfdistill.validation import check_positive
from keras_selfdistill.validation import check_unit_interval


def averaged_variables(variables):
    """The student variables a weight-averaging teacher averages.

    Every floating-point weight, trainable or not: kernels and biases, and
    also `BatchNormalization` moving means and variances (as timm's
    `ModelEmaV2` does), so the teacher's normalisation statistics belong to
    its averaged weights. Integer state (seed generators, counters) is not a
    weight and is not averaged.

    Args:
        variables: list of `keras.Variable`s (a model's `weights`).

    Returns:
        The indices of the float variables.
    """
    return [
        index
        for index, variable in enumerate(variables)
        if "float" in str(variable.dtype)
    ]


class FullPrecisionCall(keras.layers.Layer):
    """Runs `function(x)` with mixed-precision autocasting turned off.

    Inside a model's call under a mixed policy (`"mixed_float16"`,
    `"mixed_bfloat16"`), Keras casts every float variable it reads to the
    compute dtype. A layer built with `autocast=False` turns that off for
    its own call, so the variables `function` reads and writes keep their
    stored float32 values: an average over steps then accumulates at
    float32 precision, not float16's (whose resolution is coarser than a
    momentum-0.99 step).

    Args:
        function: callable taking and returning a tensor.
        **kwargs: base layer arguments (`name`).
    """

    def __init__(self, function, **kwargs):
        super().__init__(dtype="float32", autocast=False, trainable=False, **kwargs)
        self.function = function
        self.built = True

    def call(self, x):
        return self.function(x)


class TemporalTeacherBase(StudentWrapper):
    """Base class: a student taught by its own weights over time.

    Subclasses hold the teacher state in non-trainable variables, implement
    `fold_student_weights(pending)` (take the student's current weights into
    the teacher state when `pending` is 1, change nothing when it is 0),
    `teacher_logits(inputs)` and `export_teacher()`, and call
    `super().__init__` first.

    **When the teacher is updated.** The update belongs after each
    optimizer step, but the optimizer step is the last thing a Keras train
    step does and cannot be hooked portably (on JAX the step is a pure
    function). So the update is deferred to the next moment the student's
    new weights are read: the start of the next `fit`/`evaluate` step's
    forward pass, before the teacher's prediction. A non-trainable flag
    (`teacher_update_pending`) says whether an optimizer step has happened
    since the last update; it is set by each training forward pass and
    cleared by each update, so every student state is taken exactly once,
    whatever runs next (a train step, a validation step, or the explicit
    `update_teacher()` that `fit` and `train_on_batch` call when they
    return). The targets every step sees, and the state after `fit`, are
    those of an update after every optimizer step; the flag is saved with the
    weights, so an interrupted or reloaded run stays exact.

    Args:
        student: a built `keras.Model` from inputs to logits
            `(batch, num_classes)`.
        alpha: float in [0, 1]. Weight of the teacher term. Defaults to
            `0.5`.
        temperature: float > 0. Defaults to `1.0`.
        scale_by_temperature_squared: bool. Defaults to `True`.
        **kwargs: base model arguments (`name`, `trainable`, `dtype`).
    """

    alpha = Hyperparameter(check_unit_interval)
    temperature = Hyperparameter(check_positive)

    def __init__(
        self,
        student,
        alpha=0.5,
        temperature=1.0,
        scale_by_temperature_squared=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_logits_student(student)
        self.num_classes = known_num_classes(student)  # For `fit`'s check.
        self.alpha = alpha
        self.temperature = temperature
        self.scale_by_temperature_squared = bool(scale_by_temperature_squared)
        self.student = student
        self.teacher_update_pending = self.add_weight(
            name="teacher_update_pending",
            shape=(),
            dtype="float32",
            initializer="zeros",
            trainable=False,
            autocast=False,
        )
        self._set_untracked(
            "_averaged_indices", averaged_variables(student.weights)
        )
        # Untracked: it has no weights and is no part of the saved model.
        self._set_untracked(
            "_full_precision_fold",
            FullPrecisionCall(self._fold_and_return, name="teacher_update"),
        )

    def _fold_and_return(self, pending):
        self.fold_student_weights(pending)
        return pending

    def fold_pending_student_weights(self):
        """`fold_student_weights(teacher_update_pending)`, reading and
        writing the weights at their float32 precision under any dtype
        policy (see `FullPrecisionCall`)."""
        self._full_precision_fold(
            ops.convert_to_tensor(self.teacher_update_pending)
        )

    def student_variables_to_average(self):
        """The student variables the teacher follows (see
        `averaged_variables`)."""
        weights = self.student.weights
        return [weights[index] for index in self._averaged_indices]

    def matching_variables(self, model):
        """`model`'s variables paired with `student_variables_to_average`."""
        weights = model.weights
        return [weights[index] for index in self._averaged_indices]

    # -- what the subclass provides ------------------------------------ #

    def fold_student_weights(self, pending):
        """Takes the student's weights into the teacher when `pending` is 1."""
        raise NotImplementedError

    def teacher_logits(self, inputs):
        """The teacher's logits `(batch, num_classes)` for `inputs`."""
        raise NotImplementedError

    def export_teacher(self):
        """The teacher as a plain `keras.Model` (shares the teacher state)."""
        raise NotImplementedError

    # -- the update ------------------------------------------------------ #

    def update_teacher(self):
        """Takes the student's latest weights into the teacher now, if an
        optimizer step happened since the last update; else does nothing.

        `fit` and `train_on_batch` call it when they return, so you only
        need it after stepping the optimizer some other way.
        """
        self.fold_pending_student_weights()
        self.teacher_update_pending.assign(0.0)

    def fit(self, *args, **kwargs):
        history = super().fit(*args, **kwargs)
        self.update_teacher()
        return history

    def train_on_batch(self, *args, **kwargs):
        logs = super().train_on_batch(*args, **kwargs)
        self.update_teacher()
        return logs

    # -- forward pass ---------------------------------------------------- #

    def training_outputs(self, inputs, training=None):
        # Order matters (and is kept inside a compiled step: each backend
        # orders reads and writes of the same variable as written): take the
        # weights left by the last optimizer step, then predict.
        self.fold_pending_student_weights()
        self.teacher_update_pending.assign(1.0 if training else 0.0)
        student_logits = self.student(inputs, training=training)
        return {"logits": [student_logits, self.teacher_logits(inputs)]}

    def inference_outputs(self, inputs, training=None):
        return self.student(inputs, training=training)

    # -- training -------------------------------------------------------- #

    @property
    def metric_head_names(self):
        return ["student", "teacher"]

    @property
    def served_head_name(self):
        return "student"

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        self.check_training_batch(y, y_pred)
        student_logits, teacher_logits = y_pred["logits"]
        terms = losses.distillation_objective(
            y,
            student_logits,
            teacher_logits,
            alpha=self.alpha,
            temperature=self.temperature,
            scale_by_temperature_squared=self.scale_by_temperature_squared,
        )
        return self.reduce_and_report(terms, sample_weight, ops.shape(student_logits)[0])

    # -- serialization --------------------------------------------------- #

    def get_config(self):
        return {
            **self.student_config(),
            "scale_by_temperature_squared": self.scale_by_temperature_squared,
        }
