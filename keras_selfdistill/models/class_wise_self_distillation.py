"""`ClassWiseSelfDistillation`: CS-KD, a model taught by itself on same-class
samples."""

import keras
from keras import ops

from keras_selfdistill import losses
from keras_selfdistill.class_pairs import INPUTS_KEY
from keras_selfdistill.class_pairs import PARTNER_INPUTS_KEY
from keras_selfdistill.class_pairs import is_paired_batch
from keras_selfdistill.models.student_wrapper import StudentWrapper
from keras_selfdistill.models.graph import check_logits_student
from keras_selfdistill.models.graph import known_num_classes
from keras_selfdistill.models.hyperparameters import Hyperparameter
from keras_selfdistill.validation import check_non_negative
from keras_selfdistill.validation import check_positive


def _described(x):
    """The keys of a dict, else the shape of a tensor, for an error message."""
    if isinstance(x, dict):
        return f" with keys {sorted(x)}"
    shape = getattr(x, "shape", None)
    return "" if shape is None else f" with shape {tuple(shape)}"


@keras.saving.register_keras_serializable(package="keras_selfdistill")
class ClassWiseSelfDistillation(StudentWrapper):
    """Class-wise self-knowledge distillation (CS-KD) in plain `model.fit`.

    The model's prediction on one sample of a class teaches its prediction
    on another sample of the same class (Yun et al., 2020). No teacher, no
    extra head: each training sample `x` comes with a partner `x'` of its
    class, and with logits `z = f(x)`, `z' = f(x')`:

    `L = CE(y, z) + lambda * T^2 * KL(softmax(z' / T) || softmax(z / T))`

    averaged over the batch with `sample_weight`. `z'` is a target
    (`stop_gradient`): the partner's forward pass receives no gradient, as
    the authors compute it under `torch.no_grad`. Both passes run in training
    mode (the partner's updates batch-normalisation statistics too, as in
    the authors' code). Each step costs two forward passes and one backward
    pass. The math is `keras_selfdistill.losses.class_wise_objective`.

    **Data.** Training batches must be paired:
    `({"inputs": x, "partner_inputs": x_partner}, y)`, with `y` the labels
    of `x`. `keras_selfdistill.class_pairs` makes them from numpy arrays
    (`pair_by_class`), as a `PyDataset` that draws new partners each epoch
    (`ClassPairedBatches`), or as indices for `tf.data`
    (`class_partner_indices`). `fit` on unpaired batches raises. `evaluate`
    and validation take either: on plain `(x, y)` the reported `loss` is the
    cross-entropy and `distillation_loss` is 0 (there is no partner).

    What is served: `predict` and `__call__` return the student's logits on
    plain inputs; `model.student` is the trained model itself.
    `compile(metrics=["accuracy"])` reports the student's metrics under
    their plain names; the history also has `cross_entropy_loss` and
    `distillation_loss` (`T^2 * KL`, before `distillation_weight`).

    Args:
        student: a built `keras.Model` (functional, Sequential, or
            subclassed with `get_config`) mapping inputs to logits
            `(batch, num_classes)`. It is trained in place.
        temperature: float > 0. `T`. Held in a non-trainable variable, so
            `model.temperature = 2.0` reaches a compiled step. Defaults to
            `4.0` (the paper's).
        distillation_weight: float >= 0. `lambda`. Also a variable.
            Defaults to `1.0` (the paper's).
        **kwargs: base model arguments (`name`, `trainable`, `dtype`).

    Example:

    ```python
    from keras_selfdistill.class_pairs import ClassPairedBatches

    model = ClassWiseSelfDistillation(classifier, temperature=4.0)
    model.compile(optimizer="adam", metrics=["accuracy"])
    model.fit(ClassPairedBatches(x_train, y_train, batch_size=64), epochs=5,
              validation_data=(x_val, y_val))
    model.student.save("classifier.keras")  # a plain keras.Model
    ```

    References:
        Yun, Park, Lee, Shin. "Regularizing Class-wise Predictions via
        Self-knowledge Distillation", CVPR 2020, equations (1)-(2).
        https://arxiv.org/abs/2003.13964
    """

    temperature = Hyperparameter(check_positive)
    distillation_weight = Hyperparameter(check_non_negative)

    def __init__(self, student, temperature=4.0, distillation_weight=1.0, **kwargs):
        super().__init__(**kwargs)
        check_logits_student(student)
        self.num_classes = known_num_classes(student)  # For `fit`'s check.
        self.temperature = temperature
        self.distillation_weight = distillation_weight
        self.student = student
        self.built = True

    # -- forward pass ---------------------------------------------------- #

    def training_outputs(self, inputs, training=None):
        if not is_paired_batch(inputs):
            return {"logits": [self.student(inputs, training=training)]}
        logits = self.student(inputs[INPUTS_KEY], training=training)
        partner_logits = self.student(inputs[PARTNER_INPUTS_KEY], training=training)
        return {
            "logits": [logits],
            "partner_logits": ops.stop_gradient(partner_logits),
        }

    def inference_outputs(self, inputs, training=None):
        if is_paired_batch(inputs):
            raise ValueError(
                f"{type(self).__name__} serves the student on plain inputs; "
                "a paired batch ({'inputs': ..., 'partner_inputs': ...}) is "
                "for fit and evaluate. Received: a paired batch. Pass "
                "x['inputs'] instead."
            )
        return self.student(inputs, training=training)

    def train_step(self, *args):
        """Keras's `train_step` on a paired batch (see the class docstring).

        Raises:
            ValueError: for a batch without partners.
        """
        x, _, _ = keras.utils.unpack_x_y_sample_weight(args[-1])
        if not is_paired_batch(x):
            raise ValueError(
                f"{type(self).__name__} trains on batches where every "
                "sample has a same-class partner: ({'inputs': x, "
                "'partner_inputs': x_partner}, y). Make them with "
                "keras_selfdistill.class_pairs (ClassPairedBatches, "
                "pair_by_class, class_partner_indices). Received: inputs of "
                f"type {type(x).__name__}{_described(x)}."
            )
        return super().train_step(*args)

    # -- training -------------------------------------------------------- #

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        self.check_training_batch(y, y_pred)
        logits = y_pred["logits"][0]
        if "partner_logits" in y_pred:
            terms = losses.class_wise_objective(
                y,
                logits,
                y_pred["partner_logits"],
                temperature=self.temperature,
                distillation_weight=self.distillation_weight,
            )
        else:
            terms = losses.labels_only_terms(y, logits)
        return self.reduce_and_report(terms, sample_weight, ops.shape(logits)[0])
