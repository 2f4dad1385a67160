"""The evidence harness's head-free arms: label smoothing, teacher-free KD,
CS-KD, PS-KD and DLB, each the `plain` arm's model with another loss or
other batches (`harness.Arm`). Every evidence script adds them with
`**headfree_arms(plain, ...)`."""

import keras
import numpy as np

import harness
from harness import Arm
from harness import with_loss
from keras_selfdistill import ClassWiseSelfDistillation
from keras_selfdistill import LastBatchSelfDistillation
from keras_selfdistill import ProgressiveSelfDistillation
from keras_selfdistill import TeacherFreeLoss
from keras_selfdistill import last_batch_repeat_order
from keras_selfdistill import with_sample_index
from keras_selfdistill.class_pairs import pair_by_class


def headfree_arms(plain, num_samples: int = 0, epochs: int = 0, batch_size: int = 128) -> dict:
    """Arms that change only the loss or the batches of the `plain` model.

    - `label_smoothing`: cross-entropy with label smoothing 0.1, the fair
      baseline of the teacher-free loss.
    - `tf_kd`: `TeacherFreeLoss` with `alpha=0.1, temperature=20,
      true_class_probability=0.99` (the library's defaults).
    - `cs_kd`: `ClassWiseSelfDistillation` with the paper's `T=4`,
      `lambda=1`; every sample paired with an image of its class
      (`class_paired_epoch_inputs`).
    - `ps_kd`: `ProgressiveSelfDistillation`, `alpha_T=0.8` over all
      `epochs`; each image carries its sample index.
    - `dlb`: `LastBatchSelfDistillation`, `T=3`, `alpha=1`: batches of
      `2 * batch_size`, half repeated from the previous step.

    Args:
        plain: callable returning a new plain `keras.Model` (logits).
        num_samples: int. Training images (PS-KD's table size).
        epochs: int. Training epochs (PS-KD's `total_epochs`).
        batch_size: int. The recipe's batch size (DLB's new half).

    Returns:
        dict `name -> build()`.
    """
    def label_smoothing():
        return with_loss(plain(), SparseLabelSmoothing(0.1))

    def tf_kd():
        return with_loss(plain(), TeacherFreeLoss())

    def cs_kd():
        return ClassWiseSelfDistillation(plain(), temperature=4.0, distillation_weight=1.0)

    def ps_kd():
        return ProgressiveSelfDistillation(plain(), num_samples=num_samples,
                                           total_epochs=epochs, alpha=0.8)

    def dlb():
        return LastBatchSelfDistillation(plain(), batch_size=2 * batch_size,
                                         alpha=1.0, temperature=3.0)

    return dict(label_smoothing=label_smoothing, tf_kd=tf_kd,
                cs_kd=Arm(cs_kd, epoch_inputs=class_paired_epoch_inputs),
                ps_kd=Arm(ps_kd, epoch_inputs=ps_kd_epoch_inputs),
                dlb=Arm(dlb, epoch_inputs=dlb_epoch_inputs,
                        steps_per_epoch=dlb_steps_per_epoch))


def class_paired_epoch_inputs(order, x_train, y_train, recipe: "Recipe", rng):
    """CS-KD's epoch: the plain epoch, every augmented image paired with a
    random augmented image of its class.

    The partners come from a generator seeded by the epoch's order, not from
    `rng`, so the order and augmentation of later epochs stay those of the
    other arms of the seed.
    """
    images, labels, batch_size = harness.plain_epoch_inputs(order, x_train, y_train, recipe, rng)
    x, y = pair_by_class(images, labels, seed=np.random.default_rng(order))
    return x, y, batch_size


class SparseLabelSmoothing(keras.losses.Loss):
    """`CategoricalCrossentropy(from_logits=True, label_smoothing=eps)` on
    integer class ids (Keras's sparse cross-entropy has no smoothing)."""

    def __init__(self, label_smoothing: float, name="label_smoothing"):
        super().__init__(name=name)
        self.label_smoothing = label_smoothing
        self.cross_entropy = keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=label_smoothing, reduction=None)

    def call(self, y_true, y_pred):
        class_ids = keras.ops.reshape(keras.ops.cast(y_true, "int32"), (-1,))
        one_hot = keras.ops.one_hot(class_ids, y_pred.shape[-1])
        return self.cross_entropy(one_hot, y_pred)


def ps_kd_epoch_inputs(order, x_train, y_train, recipe, rng):
    """PS-KD's epoch: the plain epoch, each image with its sample index."""
    images, labels, batch_size = harness.plain_epoch_inputs(order, x_train, y_train, recipe, rng)
    return with_sample_index(images, order), labels, batch_size


def dlb_epoch_inputs(order, x_train, y_train, recipe, rng):
    """DLB's epoch: batches of `2 * recipe.batch_size`, the first half
    repeating the previous batch's new half, every image augmented where it
    occurs (so the repeated half is re-augmented). Each step takes
    `recipe.batch_size` new samples, as a plain step does; the last
    `len(order) % recipe.batch_size` samples of the epoch's order are left
    out."""
    batch_size = 2 * recipe.batch_size
    plan = last_batch_repeat_order(order, batch_size)
    images = x_train[plan]
    if recipe.augment is not None:
        images = recipe.augment(images, rng)
    return with_sample_index(images, plan), y_train[plan], batch_size


def dlb_steps_per_epoch(num_samples, recipe):
    """One step per `recipe.batch_size` new samples (remainder dropped)."""
    return num_samples // recipe.batch_size
