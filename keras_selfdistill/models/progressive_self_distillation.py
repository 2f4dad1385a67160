"""`ProgressiveSelfDistillation`: PS-KD, a model taught by its own last-epoch predictions."""

import keras
from keras import ops

from keras_selfdistill import losses
from keras_selfdistill.models.student_wrapper import StudentWrapper
from keras_selfdistill.models.hyperparameters import Hyperparameter
from keras_selfdistill.models.labels import bound_arguments
from keras_selfdistill.models.graph import check_logits_student
from keras_selfdistill.models.graph import known_num_classes
from keras_selfdistill.sample_index import INPUTS_KEY
from keras_selfdistill.sample_index import SAMPLE_INDEX_KEY
from keras_selfdistill.sample_index import check_sample_index_values
from keras_selfdistill.sample_index import checked_sample_index
from keras_selfdistill.sample_index import concrete_values
from keras_selfdistill.sample_index import is_indexed
from keras_selfdistill.sample_index import missing_index_error
from keras_selfdistill.sample_index import model_inputs
from keras_selfdistill.validation import check_integer
from keras_selfdistill.validation import check_unit_interval


def checked_num_classes(student, num_classes):
    """The student's class count: read from its output, or `num_classes`
    (required for a subclassed student), checked against each other.

    Raises:
        ValueError: if neither is known, or they differ.
    """
    known = known_num_classes(student)
    if num_classes is None:
        if known is None:
            raise ValueError(
                f"The number of classes of '{student.name}' cannot be read "
                "from its outputs (a subclassed model): pass `num_classes`. "
                "Received: num_classes=None"
            )
        return int(known)
    check_integer("num_classes", num_classes, 1)
    if known is not None and known != num_classes:
        raise ValueError(
            f"`num_classes` must match the student's output, {known} "
            f"classes. Received: num_classes={num_classes}"
        )
    return num_classes


@keras.saving.register_keras_serializable(package="keras_selfdistill")
class ProgressiveSelfDistillation(StudentWrapper):
    """Progressive self-knowledge distillation (PS-KD) in plain `model.fit`.

    The model learns from targets that move from the labels toward its own
    predictions: in epoch `t = 1..T` sample `i` is trained on

    `(1 - alpha_t) * y_i + alpha_t * p_{t-1}(x_i)`,  `alpha_t = alpha * t / T`

    where `p_{t-1}(x_i)` is the model's softmax for that sample in the
    previous epoch (recorded during that epoch's training step) and `alpha`
    is `alpha_T`, the weight at the last epoch. In the first epoch there is
    no previous prediction and the target is the label. The loss is
    `keras_selfdistill.losses.progressive_self_distillation_loss`.

    **State.** Two non-trainable variables, saved with the weights (so
    `keras.callbacks.BackupAndRestore` and `.keras` files resume exactly):
    `previous_predictions`, an `(num_samples, num_classes)` table holding
    each sample's last softmax, and `epochs_seen`, `(num_samples,)`, how many
    training steps have seen each sample. Each training step reads a sample's
    row and count, then writes its new prediction and adds one to its count:
    one table suffices, because a sample is read before it is overwritten,
    and the count is the sample's own epoch stamp. So the model needs no
    epoch callback: `fit(epochs=10)` and ten calls of `fit(epochs=1)` train
    the same way, with the data in any order. (If some samples are seen more
    often than others, e.g. `steps_per_epoch` shorter than the data, each
    sample's `t` is its own count.) `alpha_t` stops growing at `t = T`.

    **Inputs.** Training batches carry each sample's index, `x =
    {"inputs": images, "sample_index": indices}`, indices in
    `[0, num_samples)`, each at most once per batch; `with_sample_index`
    builds it for arrays and `tf.data`. Indices in arrays given to `fit` are
    checked before training, and in every step that runs eagerly
    (`run_eagerly=True`; torch without `jit_compile`). A compiled step
    cannot raise on values: a sample with an index out of range makes the
    step's loss NaN (and writes nothing to the tables), so
    `keras.callbacks.TerminateOnNaN` stops training at once; that step's
    update has already made the weights NaN, so resume from a backup.

    **Serving.** `predict` and `model(x)` return the student's logits for
    plain inputs (an indexed dict is also accepted); `evaluate` and
    validation report the cross-entropy against the labels (no table is read
    or written; `distillation_loss` is 0). `model.student` is the trained
    model.

    Args:
        student: a built `keras.Model` (functional, Sequential or
            subclassed) mapping inputs to logits `(batch, num_classes)`. It
            is trained in place.
        num_samples: int >= 1. Number of training samples (rows of the
            table).
        total_epochs: int >= 1. `T`, the number of epochs of the schedule.
        alpha: float in [0, 1]. `alpha_T`, the weight of the previous
            predictions at the last epoch. A non-trainable variable.
            Defaults to `0.8` (the paper's value for CIFAR-100).
        num_classes: int or `None`. Read from the student's output; required
            for a subclassed student. Defaults to `None`.
        **kwargs: base model arguments (`name`, `trainable`, `dtype`).

    Example:

    ```python
    model = ProgressiveSelfDistillation(classifier, num_samples=len(x_train),
                              total_epochs=30, alpha=0.8)
    model.compile(optimizer="adam", metrics=["accuracy"])
    model.fit(with_sample_index(x_train), y_train, epochs=30,
              validation_data=(x_val, y_val))
    model.predict(x_test)  # plain images
    ```

    References:
        Kim, Ji, Yoon, Hwang. "Self-Knowledge Distillation with Progressive
        Refinement of Targets", ICCV 2021, equations (3)-(5).
        https://arxiv.org/abs/2006.12000
    """

    alpha = Hyperparameter(check_unit_interval)

    def __init__(
        self,
        student,
        num_samples: int,
        total_epochs: int,
        alpha: float = 0.8,
        num_classes=None,
        **kwargs,
    ):
        kwargs.setdefault("name", "progressive_self_distillation")
        super().__init__(**kwargs)
        check_logits_student(student)
        check_integer("num_samples", num_samples, 1)
        check_integer("total_epochs", total_epochs, 1)
        self.num_classes = checked_num_classes(student, num_classes)
        self.num_samples = num_samples
        self.total_epochs = total_epochs
        self.alpha = alpha
        self.student = student
        self.previous_predictions = self._state(
            "previous_predictions", (num_samples, self.num_classes), "float32"
        )
        self.epochs_seen = self._state("epochs_seen", (num_samples,), "int32")
        self.built = True

    def _state(self, name, shape, dtype):
        return self.add_weight(
            name=name, shape=shape, dtype=dtype, initializer="zeros",
            trainable=False, autocast=False,
        )

    # -- the two paths --------------------------------------------------- #

    def training_outputs(self, inputs, training=None):
        model_name = type(self).__name__
        if not is_indexed(inputs):
            if training:
                raise missing_index_error(
                    model_name, f"inputs of type {type(inputs).__name__}"
                    + (f" with keys {sorted(inputs)}" if isinstance(inputs, dict)
                       else "")
                )
            return {"logits": [self.student(inputs, training=training)]}
        logits = self.student(inputs[INPUTS_KEY], training=training)
        if not training:
            return {"logits": [logits]}
        index = checked_sample_index(inputs[SAMPLE_INDEX_KEY], model_name)
        values = concrete_values(index)
        if values is not None:
            check_sample_index_values(values, self.num_samples)
        previous, alpha = self.read_and_record(index, logits)
        return {
            "logits": [logits],
            "previous_probabilities": previous,
            "alpha": alpha,
        }

    def inference_outputs(self, inputs, training=None):
        return self.student(model_inputs(inputs), training=training)

    def read_and_record(self, index, logits):
        """Each sample's previous prediction and `alpha_t`, then records its
        new prediction and count.

        Args:
            index: int32 tensor `(batch,)`.
            logits: tensor `(batch, num_classes)`, this step's.

        Returns:
            `(previous_probabilities, alpha_t)`: float32 `(batch,
            num_classes)` and `(batch,)`; `alpha_t` is 0 at a sample's first
            epoch and NaN for an index out of range.
        """
        valid = ops.logical_and(index >= 0, index < self.num_samples)
        safe_index = ops.where(valid, index, 0)
        table = ops.convert_to_tensor(self.previous_predictions)
        counts = ops.convert_to_tensor(self.epochs_seen)
        previous = ops.take(table, safe_index, axis=0)
        seen = ops.cast(ops.take(counts, safe_index, axis=0), "float32")
        total = float(self.total_epochs)
        # Epoch t = seen + 1 (counted from 1); the first has no target.
        alpha_t = self.alpha * ops.minimum(seen + 1.0, total) / total
        alpha_t = ops.where(seen > 0, alpha_t, 0.0)
        alpha_t = ops.where(valid, alpha_t, float("nan"))
        probabilities = ops.softmax(
            ops.stop_gradient(ops.cast(logits, "float32")), axis=-1
        )
        self._record(safe_index, valid, probabilities, table, counts)
        return previous, alpha_t

    def _record(self, safe_index, valid, probabilities, table, counts):
        # `scatter` sums rows at repeated indices: out-of-range samples are
        # sent to row 0 with zero values and a zero written-flag, so they
        # change nothing; each valid index appears once per batch.
        shape = (self.num_samples,)
        rows = ops.expand_dims(safe_index, -1)
        written = ops.scatter(rows, ops.cast(valid, "float32"), shape) > 0
        new_rows = ops.scatter(
            rows,
            probabilities * ops.expand_dims(ops.cast(valid, "float32"), -1),
            shape + (self.num_classes,),
        )
        self.previous_predictions.assign(
            ops.where(ops.expand_dims(written, -1), new_rows, table)
        )
        self.epochs_seen.assign(
            counts + ops.scatter(rows, ops.cast(valid, "int32"), shape)
        )

    # -- training -------------------------------------------------------- #

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        self.check_training_batch(y, y_pred)
        logits = y_pred["logits"][0]
        if "previous_probabilities" in y_pred:
            terms = losses.progressive_self_distillation_loss(
                y, logits, y_pred["previous_probabilities"], y_pred["alpha"]
            )
        else:
            terms = losses.labels_only_terms(y, logits)
        return self.reduce_and_report(terms, sample_weight, ops.shape(logits)[0])

    def fit(self, *args, **kwargs):
        arguments = bound_arguments(keras.Model.fit, self, args, kwargs)
        self.check_training_inputs(arguments.get("x"))
        return super().fit(*args, **kwargs)

    def check_training_inputs(self, x):
        """Refuses array inputs to `fit` without sample indices, or with
        indices out of range (datasets are checked as they are read).

        Args:
            x: the `x` given to `fit`.

        Raises:
            ValueError: naming what was received and the layout expected.
        """
        if is_indexed(x):
            check_sample_index_values(x[SAMPLE_INDEX_KEY], self.num_samples)
            return
        if isinstance(x, (list, tuple, dict)) or hasattr(x, "__array__"):
            shape = getattr(x, "shape", None)
            raise missing_index_error(
                type(self).__name__,
                f"x of type {type(x).__name__}"
                + (f" with shape {tuple(shape)}" if shape is not None else ""),
            )

    # -- serialization --------------------------------------------------- #

    def get_config(self):
        return {
            **self.student_config(),
            "num_samples": self.num_samples,
            "total_epochs": self.total_epochs,
            "num_classes": self.num_classes,
        }
