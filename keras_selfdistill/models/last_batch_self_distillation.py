"""`LastBatchSelfDistillation`: DLB, a model taught by its own logits of the last step."""

import keras
from keras import ops

from keras_selfdistill import losses
from keras_selfdistill.last_batch_repeats import check_batch_size
from keras_selfdistill.models.student_wrapper import StudentWrapper
from keras_selfdistill.models.hyperparameters import Hyperparameter
from keras_selfdistill.models.labels import bound_arguments
from keras_selfdistill.models.progressive_self_distillation import checked_num_classes
from keras_selfdistill.models.graph import check_logits_student
from keras_selfdistill.sample_index import INPUTS_KEY
from keras_selfdistill.sample_index import SAMPLE_INDEX_KEY
from keras_selfdistill.sample_index import checked_sample_index
from keras_selfdistill.sample_index import is_indexed
from keras_selfdistill.sample_index import missing_index_error
from keras_selfdistill.sample_index import model_inputs
from keras_selfdistill.validation import check_non_negative
from keras_selfdistill.validation import check_positive


@keras.saving.register_keras_serializable(package="keras_selfdistill")
class LastBatchSelfDistillation(StudentWrapper):
    """Self-distillation from the last mini-batch (DLB) in plain `model.fit`.

    Each batch of `batch_size = 2 * n` samples holds `n` samples that repeat
    the new half of the previous batch, then `n` new ones (see
    `LastBatchRepeats`). The logits the model gave the repeated samples in
    the previous step, `z^{t-1}`, are soft targets for their logits now:

    `L = CE(y, z^t) + alpha * T^2 * KL(softmax(z^{t-1}/T) || softmax(z^t/T))`

    the cross-entropy over the whole batch, the KL over the repeated half
    (`keras_selfdistill.losses.last_mini_batch_loss`). The targets are
    constants (`stop_gradient`): only the current pass is trained.

    **State.** Two non-trainable variables, saved with the weights:
    `previous_logits` `(n, num_classes)`, the logits of the last training
    step's new half, and `previous_sample_index` `(n,)`, their sample
    indices (-1 before the first step). Each training step compares its
    repeated half's indices with `previous_sample_index`: a sample has a
    target only where they are equal, so the first step (and the first step
    of a pass that does not continue the previous one) trains on the
    cross-entropy alone, and a batch that is not laid out as DLB expects
    never gets the wrong targets. Then the step stores its new half's logits
    and indices. All of it runs inside the compiled step (`jit_compile=True`
    too).

    **Inputs.** Training batches are `({"inputs": x, "sample_index": i},
    y)` with exactly `batch_size` samples, the repeated half first:
    `LastBatchRepeats` (arrays), `repeat_last_half_batches` (`tf.data`) or
    `last_batch_repeat_order` (an index plan for arrays you batch yourself)
    build them. Pass `shuffle=False` to `fit` for arrays and `PyDataset`s
    (Keras would reorder the batches; `fit` refuses otherwise). `predict`, `model(x)`, `evaluate` and
    validation take plain inputs (an indexed dict is also accepted);
    `evaluate` reports the cross-entropy, and reads and writes no state.

    Args:
        student: a built `keras.Model` (functional, Sequential or
            subclassed) mapping inputs to logits `(batch, num_classes)`. It
            is trained in place.
        batch_size: even int >= 2. Samples per training batch, both halves.
        alpha: float >= 0. Weight of the KL term. A non-trainable variable.
            Defaults to `1.0` (the paper's).
        temperature: float > 0. Defaults to `3.0` (the paper's).
        num_classes: int or `None`. Read from the student's output; required
            for a subclassed student. Defaults to `None`.
        **kwargs: base model arguments (`name`, `trainable`, `dtype`).

    Example:

    ```python
    model = LastBatchSelfDistillation(classifier, batch_size=64)
    model.compile(optimizer="adam", metrics=["accuracy"])
    model.fit(LastBatchRepeats(x_train, y_train, batch_size=64), epochs=10,
              shuffle=False, validation_data=(x_val, y_val))
    ```

    References:
        Shen, Xu, Yang, Li, Guo. "Self-Distillation from the Last Mini-Batch
        for Consistency Regularization", CVPR 2022, section 3.2.
        https://arxiv.org/abs/2203.16172
    """

    alpha = Hyperparameter(check_non_negative)
    temperature = Hyperparameter(check_positive)

    def __init__(
        self,
        student,
        batch_size: int,
        alpha: float = 1.0,
        temperature: float = 3.0,
        num_classes=None,
        **kwargs,
    ):
        kwargs.setdefault("name", "last_batch_self_distillation")
        super().__init__(**kwargs)
        check_logits_student(student)
        check_batch_size(batch_size)
        self.num_classes = checked_num_classes(student, num_classes)
        self.batch_size = batch_size
        self.alpha = alpha
        self.temperature = temperature
        self.student = student
        half = batch_size // 2
        self.previous_logits = self.add_weight(
            name="previous_logits", shape=(half, self.num_classes),
            dtype="float32", initializer="zeros", trainable=False,
            autocast=False,
        )
        self.previous_sample_index = self.add_weight(
            name="previous_sample_index", shape=(half,), dtype="int32",
            initializer=keras.initializers.Constant(-1), trainable=False,
            autocast=False,
        )
        self.built = True

    # -- the two paths --------------------------------------------------- #

    def training_outputs(self, inputs, training=None):
        model_name = type(self).__name__
        if not is_indexed(inputs):
            if training:
                raise missing_index_error(
                    model_name, f"inputs of type {type(inputs).__name__}"
                )
            return {"logits": [self.student(inputs, training=training)]}
        logits = self.student(inputs[INPUTS_KEY], training=training)
        if not training:
            return {"logits": [logits]}
        index = checked_sample_index(inputs[SAMPLE_INDEX_KEY], model_name)
        self._check_batch(logits)
        previous, target_mask = self.read_and_record(index, logits)
        return {
            "logits": [logits],
            "previous_logits": previous,
            "target_mask": target_mask,
        }

    def _check_batch(self, logits):
        rows = logits.shape[0]
        if rows is not None and rows != self.batch_size:
            raise ValueError(
                f"{type(self).__name__} trains on batches of exactly "
                f"batch_size={self.batch_size} samples (the repeated half, "
                "then the new half); the DLB batch helpers drop remainders. "
                f"Received: a batch of {rows} samples."
            )

    def inference_outputs(self, inputs, training=None):
        return self.student(model_inputs(inputs), training=training)

    def read_and_record(self, index, logits):
        """The stored targets and which repeated samples they belong to,
        then stores this step's new half.

        Args:
            index: int32 tensor `(batch_size,)`.
            logits: tensor `(batch_size, num_classes)`, this step's.

        Returns:
            `(previous_logits, target_mask)`: float32 `(n, num_classes)` and
            `(n,)`, 1 where the repeated sample is the stored one.
        """
        half = self.batch_size // 2
        # A copy: the loss reads it after the assignment below, and a
        # variable's tensor on TensorFlow and torch would show the new value.
        previous = ops.copy(ops.convert_to_tensor(self.previous_logits))
        stored_index = ops.convert_to_tensor(self.previous_sample_index)
        repeated = index[:half]
        target_mask = ops.cast(
            ops.logical_and(repeated == stored_index, repeated >= 0), "float32"
        )
        self.previous_logits.assign(
            ops.stop_gradient(ops.cast(logits[half:], "float32"))
        )
        self.previous_sample_index.assign(index[half:])
        return previous, target_mask

    # -- training -------------------------------------------------------- #

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        self.check_training_batch(y, y_pred)
        logits = y_pred["logits"][0]
        if "previous_logits" in y_pred:
            terms = losses.last_mini_batch_loss(
                y, logits, y_pred["previous_logits"], y_pred["target_mask"],
                alpha=self.alpha, temperature=self.temperature,
                sample_weight=sample_weight,
            )
        else:
            terms = {
                key: losses.weighted_batch_mean(value, sample_weight)
                for key, value in losses.labels_only_terms(y, logits).items()
            }
        self.update_loss_trackers(terms, ops.shape(logits)[0])
        return self.add_extra_losses(terms["total"])

    def fit(self, *args, **kwargs):
        arguments = bound_arguments(keras.Model.fit, self, args, kwargs)
        self.check_training_inputs(arguments)
        return super().fit(*args, **kwargs)

    def check_training_inputs(self, arguments):
        """Refuses array inputs to `fit` without sample indices, and any
        batching by Keras that breaks the DLB layout: Keras shuffles arrays
        and the batch order of a `PyDataset` unless `shuffle=False`.

        Args:
            arguments: `fit`'s arguments by name.

        Raises:
            ValueError: naming what was received and what is expected.
        """
        x = arguments.get("x")
        shuffle = arguments.get("shuffle", True)
        if isinstance(x, keras.utils.PyDataset):
            if shuffle:
                raise ValueError(
                    "DLB batches must reach the model in order (each repeats "
                    "half of the one before), and Keras shuffles a "
                    "PyDataset's batches unless told not to: pass "
                    "shuffle=False (`LastBatchRepeats` shuffles the samples "
                    f"itself). Received: shuffle={shuffle!r}"
                )
            return
        if not is_indexed(x):
            if isinstance(x, (list, tuple, dict)) or hasattr(x, "__array__"):
                raise missing_index_error(
                    type(self).__name__, f"x of type {type(x).__name__}"
                )
            return
        batch_size = arguments.get("batch_size")
        if hasattr(x[SAMPLE_INDEX_KEY], "__array__") and (
            batch_size != self.batch_size or shuffle
        ):
            raise ValueError(
                "Arrays laid out by `last_batch_repeat_order` must be fit "
                f"with batch_size={self.batch_size} and shuffle=False, so "
                "that each batch is one repeated half and one new half. "
                f"Received: batch_size={batch_size!r}, shuffle={shuffle!r}"
            )

    # -- serialization --------------------------------------------------- #

    def get_config(self):
        return {
            **self.student_config(),
            "batch_size": self.batch_size,
            "num_classes": self.num_classes,
        }
