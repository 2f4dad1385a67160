"""One small instance of every distillation model, for tests run over them all.

Each builder returns an uncompiled model on 8x8x1 digits with 10 classes, in
the most complete configuration the family has (feature terms, hints,
several peers, snapshots), so a test over `FAMILIES` exercises every loss
term. Builders create their layers when called, so they pick up the global
dtype policy and random seed in effect.
"""

import keras

from keras_selfdistill import AuxiliaryHead
from keras_selfdistill import Distiller
from keras_selfdistill import EMATeacher
from keras_selfdistill import MutualLearning
from keras_selfdistill import SelfDistillModel
from keras_selfdistill import SelfEnsembleTeacher

NUM_CLASSES = 10
INPUT_SHAPE = (8, 8, 1)


def classifier(width, name, batch_norm=False):
    """A tiny MLP; its hidden layer is named "hidden" ("hidden_norm" after
    batch normalisation)."""
    inputs = keras.Input(INPUT_SHAPE)
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(width, activation="relu", name="hidden")(x)
    if batch_norm:
        x = keras.layers.BatchNormalization(name="hidden_norm")(x)
    return keras.Model(inputs, keras.layers.Dense(NUM_CLASSES, name="logits")(x), name=name)


def self_distill_model(head_batch_norm=True):
    """Three heads; head_2 is narrower than the deepest, so it has a learned
    feature projection. `head_batch_norm=False` leaves batch normalisation
    out of the heads (for comparisons with replicas that each normalise
    their own slice of the batch)."""
    inputs = keras.Input(INPUT_SHAPE)
    x1 = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x2 = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x1)
    x3 = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(x2)
    head_1 = AuxiliaryHead(
        NUM_CLASSES, num_downsampling=2, use_batch_norm=head_batch_norm, name="head_1"
    )(x1)
    head_2 = AuxiliaryHead(
        NUM_CLASSES, width=16, use_batch_norm=head_batch_norm, name="head_2"
    )(x2)
    logits = keras.layers.Dense(NUM_CLASSES, name="logits")(
        keras.layers.GlobalAveragePooling2D()(x3)
    )
    return SelfDistillModel(
        inputs, [head_1, head_2, logits], feature_weight=2.0, alpha=0.5,
        temperature=3.0,
    )


def distiller():
    """Logits and a hint with an adapter (student 8 wide, teacher 32)."""
    return Distiller(
        classifier(32, "teacher", batch_norm=True),
        classifier(8, "student"),
        alpha=0.7,
        temperature=3.0,
        feature_pairs=[("hidden_norm", "hidden")],
    )


def mutual_learning():
    return MutualLearning(
        [classifier(16, "first"), classifier(8, "second")], alpha=0.5, temperature=2.0
    )


def ema_teacher():
    return EMATeacher(classifier(16, "student", batch_norm=True), momentum=0.9)


def self_ensemble_teacher():
    return SelfEnsembleTeacher(classifier(16, "student"), num_snapshots=2)


#: Every model family of the package, by class name.
FAMILIES = {
    "SelfDistillModel": self_distill_model,
    "Distiller": distiller,
    "MutualLearning": mutual_learning,
    "EMATeacher": ema_teacher,
    "SelfEnsembleTeacher": self_ensemble_teacher,
}
