"""Every bad input the library refuses, in one table, and the doc made from it.

Each row names the class or function, the bad input in words, a function
that builds it (and so raises), the exception type, and two literal excerpts
of the message: the part that says what is allowed and the part that names
the value received. The test asserts the type and both excerpts; the
per-model test files keep only the behaviour around an error (e.g. a failed
construction leaves the teacher trainable), not the error itself.

`docs/bad_inputs.md` is generated from the same rows:

    python tests/test_bad_inputs.py      # rewrites docs/bad_inputs.md

and `test_docs_are_generated_from_this_table` fails when the two drift.
"""

import dataclasses
import os
import pathlib
import re
import sys
from typing import Callable

if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from keras_selfdistill import AuxiliaryHead  # noqa: E402
from keras_selfdistill import BornAgain  # noqa: E402
from keras_selfdistill import ClassWiseSelfDistillation  # noqa: E402
from keras_selfdistill import Distiller  # noqa: E402
from keras_selfdistill import EMATeacher  # noqa: E402
from keras_selfdistill import LastBatchRepeats  # noqa: E402
from keras_selfdistill import LastBatchSelfDistillation  # noqa: E402
from keras_selfdistill import MutualLearning  # noqa: E402
from keras_selfdistill import CoDistillation  # noqa: E402
from keras_selfdistill.callbacks import CheckpointExchange  # noqa: E402
from keras_selfdistill import ProgressiveSelfDistillation  # noqa: E402
from keras_selfdistill import SelfDistillModel  # noqa: E402
from keras_selfdistill import SelfEnsembleTeacher  # noqa: E402
from keras_selfdistill import TeacherFreeLoss  # noqa: E402
from keras_selfdistill import last_batch_repeat_order  # noqa: E402
from keras_selfdistill import repeat_last_half_batches  # noqa: E402
from keras_selfdistill import with_sample_index  # noqa: E402
from keras_selfdistill import CollapseMonitor  # noqa: E402
from keras_selfdistill import DINO  # noqa: E402
from keras_selfdistill import DINOHead  # noqa: E402
from keras_selfdistill import MultiCrop  # noqa: E402
from keras_selfdistill import losses  # noqa: E402
from keras_selfdistill.callbacks import CosineSchedule  # noqa: E402
from keras_selfdistill.callbacks import HyperparameterScheduler  # noqa: E402
from keras_selfdistill.callbacks import LinearSchedule  # noqa: E402
from keras_selfdistill.callbacks import MomentumScheduler  # noqa: E402
from keras_selfdistill.class_pairs import ClassPairedBatches  # noqa: E402
from keras_selfdistill.class_pairs import class_partner_indices  # noqa: E402
from keras_selfdistill.class_pairs import pair_by_class  # noqa: E402

DOC_PATH = pathlib.Path(__file__).resolve().parents[1] / "docs" / "bad_inputs.md"
#: Stands for the test's temporary directory in `received` excerpts.
TMP = "<tmp>"
NUM_CLASSES = 10
IMAGES = np.random.default_rng(0).uniform(size=(16, 8, 8, 1)).astype("float32")
LABELS = np.arange(16, dtype="int32") % NUM_CLASSES
RUNNING_AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@dataclasses.dataclass(frozen=True)
class BadInput:
    """One row: a bad input and the error it must raise.

    Attributes:
        owner: str. The class, method or function that refuses it.
        description: str. The bad input, in words (the doc's first column).
        make: callable `(tmp_path) -> None` that builds the bad input and so
            raises.
        error: the exception type.
        allowed: str. Literal excerpt of the message saying what is allowed.
        received: str. Literal excerpt naming the wrong value (`<tmp>`
            stands for `tmp_path`).
        needs_non_root: bool. Skip when running as root (who can write to
            read-only directories).
    """

    owner: str
    description: str
    make: Callable
    error: type
    allowed: str
    received: str
    needs_non_root: bool = False


# ---------------------------------------------------------------------- #
# Tiny models and data: every row builds its own, in milliseconds.
# ---------------------------------------------------------------------- #


def backbone(final_activation=None, name="plain"):
    """Two conv stages on 8x8x1 images and a logits classifier."""
    inputs = keras.Input((8, 8, 1))
    x1 = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="stage1")(inputs)
    x2 = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu",
                             name="stage2")(x1)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(x2)
    logits = keras.layers.Dense(NUM_CLASSES, activation=final_activation,
                                name="logits")(pooled)
    return keras.Model(inputs, logits, name=name)


def backbone_ending_in_a_softmax_layer():
    plain = backbone()
    probabilities = keras.layers.Softmax(name="probabilities")(plain.output)
    return keras.Model(plain.input, probabilities, name="softmax_layer")


def backbone_with_a_shared_layer():
    """`shared` is called twice: which call a head would see is ambiguous."""
    shared = keras.layers.Conv2D(1, 3, padding="same", name="shared")
    inputs = keras.Input((8, 8, 1))
    x = shared(shared(inputs))
    logits = keras.layers.Dense(NUM_CLASSES, name="logits")(
        keras.layers.GlobalAveragePooling2D()(x)
    )
    return keras.Model(inputs, logits, name="shared_twice")


def two_output_block():
    inputs = keras.Input((8, 8, 4))
    halves = [keras.layers.Conv2D(2, 1, name=f"half_{i}")(inputs) for i in (1, 2)]
    return keras.Model(inputs, halves, name="split")


def backbone_with_a_two_output_layer():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", name="stage1")(inputs)
    first, second = two_output_block()(x)
    x = keras.layers.Concatenate()([first, second])
    logits = keras.layers.Dense(NUM_CLASSES, name="logits")(
        keras.layers.GlobalAveragePooling2D()(x)
    )
    return keras.Model(inputs, logits, name="two_output_layer")


class SubclassedBlock(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(4, 3, padding="same", name="hidden_conv")

    def call(self, inputs):
        return self.conv(inputs)


def backbone_with_a_subclassed_model():
    inputs = keras.Input((8, 8, 1))
    logits = keras.layers.Dense(NUM_CLASSES, name="logits")(
        keras.layers.GlobalAveragePooling2D()(SubclassedBlock(name="block")(inputs))
    )
    return keras.Model(inputs, logits, name="wraps_subclassed")


def backbone_ending_in_a_merge():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", name="stage1")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(x)
    logits = keras.layers.Add(name="sum_of_classifiers")([
        keras.layers.Dense(NUM_CLASSES, name="left")(pooled),
        keras.layers.Dense(NUM_CLASSES, name="right")(pooled),
    ])
    return keras.Model(inputs, logits, name="merged")


def backbone_with_two_outputs():
    plain = backbone()
    extra = keras.layers.Dense(3, name="extra")(plain.get_layer("pool").output)
    return keras.Model(plain.input, [plain.output, extra], name="two_outputs")


class Subclassed(keras.Model):
    """A subclassed classifier: no symbolic graph to attach heads to."""

    def __init__(self, name="subclassed"):
        super().__init__(name=name)
        self.flatten = keras.layers.Flatten()
        self.dense = keras.layers.Dense(NUM_CLASSES, name="dense")

    def call(self, inputs):
        return self.dense(self.flatten(inputs))


def built_subclassed(name="subclassed"):
    model = Subclassed(name=name)
    model(IMAGES[:1])
    return model


def unbuilt_sequential(name="unbuilt"):
    return keras.Sequential(
        [keras.layers.Flatten(), keras.layers.Dense(NUM_CLASSES, name="dense")],
        name=name,
    )


def mlp(name="mlp", num_classes=NUM_CLASSES, shape=(8, 8, 1), width=8,
        activation=None):
    """Flatten, a hidden layer named "hidden", logits named "logits"."""
    inputs = keras.Input(shape)
    x = keras.layers.Flatten(name="flatten")(inputs)
    x = keras.layers.Dense(width, activation="relu", name="hidden")(x)
    logits = keras.layers.Dense(num_classes, activation=activation, name="logits")(x)
    return keras.Model(inputs, logits, name=name)


def mlp_with_a_two_output_layer(name):
    inputs = keras.Input((8, 8, 1))
    halves = keras.layers.Lambda(
        lambda x: (x[..., :1], x[..., :1]), name="pair"
    )(inputs)
    x = keras.layers.Flatten()(keras.layers.Add()(list(halves)))
    return keras.Model(inputs, keras.layers.Dense(NUM_CLASSES)(x), name=name)


def conv_classifier(name, strides):
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, strides=strides, padding="same", name="conv")(inputs)
    logits = keras.layers.Dense(NUM_CLASSES)(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, logits, name=name)


def build_mlp():
    return mlp(name="generation")


def self_distill(**kwargs):
    return SelfDistillModel.from_backbone(backbone(), taps=["stage1"], **kwargs)


def distiller(**kwargs):
    return Distiller(mlp("teacher", width=16), mlp("student"), **kwargs)


def mutual(**kwargs):
    return MutualLearning([mlp("first"), mlp("second")], **kwargs)


def ema(**kwargs):
    return EMATeacher(mlp("student"), **kwargs)


def self_ensemble(**kwargs):
    return SelfEnsembleTeacher(mlp("student"), num_snapshots=2, **kwargs)


def born_again(generations=1, make_model=build_mlp, **compile_kwargs):
    model = BornAgain(make_model, generations=generations)
    model.compile(optimizer="sgd", run_eagerly=True, **compile_kwargs)
    return model


#: Every model trained by `fit`, by name, for the rows about labels and data.
MODELS = {
    "SelfDistillModel": self_distill,
    "Distiller": distiller,
    "MutualLearning": mutual,
    "EMATeacher": ema,
    "SelfEnsembleTeacher": self_ensemble,
    "BornAgain": born_again,
}


def fit(make_model, x=IMAGES, y=LABELS, metrics=None, **fit_kwargs):
    """Compiles (eagerly: the error comes at the first step) and fits."""
    model = make_model()
    if not isinstance(model, BornAgain):
        model.compile(optimizer="sgd", metrics=metrics, run_eagerly=True)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, **fit_kwargs)


class ImagesOnly(keras.utils.PyDataset):
    """A dataset whose batches are `(x,)`: inputs and no labels."""

    def __len__(self):
        return 2

    def __getitem__(self, index):
        return (IMAGES[index * 8:(index + 1) * 8],)


def one_hot(labels, num_classes):
    return np.eye(num_classes, dtype="float32")[labels % num_classes]


def scheduler_on(model, scheduler, epoch=None):
    scheduler.set_model(model)
    if epoch is None:
        scheduler.on_train_begin()
    else:
        scheduler.on_epoch_begin(epoch)


def save_weights(model, path):
    model.save_weights(str(path))
    return str(path)


def load_other_heads(tmp):
    path = save_weights(
        SelfDistillModel.from_backbone(backbone(), taps=["stage1", "stage2"]),
        tmp / "two_heads.weights.h5",
    )
    self_distill().load_weights(path)


def load_backbone_weights(tmp):
    path = save_weights(backbone(), tmp / "backbone.weights.h5")
    self_distill().load_weights(path)


def load_other_student(tmp):
    path = save_weights(
        Distiller(mlp("teacher", width=16), mlp("student", width=4)),
        tmp / "narrow_student.weights.h5",
    )
    distiller().load_weights(path)


def file_at(tmp, name):
    path = tmp / name
    path.write_text("")
    return path


def read_only_directory(tmp):
    path = tmp / "read_only"
    path.mkdir()
    path.chmod(0o500)
    return path


def resume_with_other_settings(tmp):
    first = BornAgain(build_mlp, generations=2, alpha=0.6)
    first.compile(optimizer="sgd")
    first.checkpoint_dir = str(tmp)
    first._write_manifest()
    other = BornAgain(build_mlp, generations=2, alpha=0.9)
    other.compile(optimizer="sgd")
    other.fit(IMAGES, LABELS, verbose=0, checkpoint_dir=tmp)


def peers_sharing_a_layer():
    shared = keras.layers.Dense(NUM_CLASSES, name="shared_classifier")
    inputs = keras.Input((4,))
    first = keras.Model(inputs, shared(inputs), name="first")
    second = keras.Model(inputs, shared(keras.layers.Dense(4)(inputs)), name="second")
    return MutualLearning([first, second])


def built_optimizer():
    optimizer = keras.optimizers.Adam()
    optimizer.build([keras.Variable(1.0)])
    return optimizer


def images_generator():
    yield IMAGES


def class_wise(**kwargs):
    return ClassWiseSelfDistillation(mlp("student"), **kwargs)


def progressive(student=None, **kwargs):
    student = mlp("student") if student is None else student
    return ProgressiveSelfDistillation(student, num_samples=16, total_epochs=2, **kwargs)


def last_batch(student=None, batch_size=8, **kwargs):
    student = mlp("student") if student is None else student
    return LastBatchSelfDistillation(student, batch_size=batch_size, **kwargs)


#: The head-free models: each needs its own data layout to fit.
HEADFREE_MODELS = {
    "ClassWiseSelfDistillation": class_wise,
    "ProgressiveSelfDistillation": progressive,
    "LastBatchSelfDistillation": last_batch,
}

#: Two samples of each of 8 classes: every sample has a same-class partner.
PAIRED_LABELS = np.arange(16, dtype="int32") % 8


def compiled(model):
    model.compile(optimizer="sgd", run_eagerly=True)
    return model


def fit_indexed(model, x, y, **fit_kwargs):
    """Fits a model whose batches carry sample indices, eagerly."""
    fit_kwargs.setdefault("batch_size", 8)
    compiled(model).fit(x, y, epochs=1, verbose=0, **fit_kwargs)


def train_on_indexed_batch(model, sample_index, rows=2):
    batch = {"inputs": IMAGES[:rows], "sample_index": sample_index}
    compiled(model).train_on_batch(batch, LABELS[:rows])


def dlb_plan_fit(y=LABELS, **fit_kwargs):
    """The arrays of `last_batch_repeat_order`, fit with `fit_kwargs`."""
    plan = last_batch_repeat_order(np.arange(16), 8)
    fit_indexed(last_batch(), with_sample_index(IMAGES[plan], plan), y[plan],
                **fit_kwargs)


# ---------------------------------------------------------------------- #
# The table.
# ---------------------------------------------------------------------- #

BAD_INPUTS = [
    # -- SelfDistillModel.from_backbone: taps and backbones ------------- #
    BadInput(
        "SelfDistillModel.from_backbone", "a tap name that is not a layer (a typo)",
        lambda tmp: SelfDistillModel.from_backbone(backbone(), taps=["stage_1"]),
        ValueError, "Close matches: ['stage1'", "Received: taps=['stage_1']",
    ),
    BadInput(
        "SelfDistillModel.from_backbone", "a tap name with no close match",
        lambda tmp: SelfDistillModel.from_backbone(backbone(), taps=["zzz"]),
        ValueError, "'stage1', 'stage2', 'pool', 'logits']", "Received: taps=['zzz']",
    ),
    BadInput(
        "SelfDistillModel.from_backbone",
        "a tap on a layer inside a nested subclassed model",
        lambda tmp: SelfDistillModel.from_backbone(
            backbone_with_a_subclassed_model(), taps=["hidden_conv"]
        ),
        ValueError, "tap a layer of a functional or Sequential model",
        "Layer 'hidden_conv' is inside the subclassed model 'block'",
    ),
    BadInput(
        "SelfDistillModel.from_backbone",
        "a classifier whose features cannot be found (it merges two inputs)",
        lambda tmp: SelfDistillModel.from_backbone(
            backbone_ending_in_a_merge(), taps=["stage1"]
        ),
        ValueError, "Name the layer whose output are the features: features=",
        "classifier 'sum_of_classifiers' (it reads 2 inputs)",
    ),
    BadInput(
        "SelfDistillModel.from_backbone", "`features` naming no layer of the backbone",
        lambda tmp: SelfDistillModel.from_backbone(
            backbone(), taps=["stage1"], features="pooling"
        ),
        ValueError, "must name a layer on the way to the output",
        "Received: features='pooling'",
    ),
    BadInput(
        "SelfDistillModel.from_backbone", "taps given as one string",
        lambda tmp: SelfDistillModel.from_backbone(backbone(), taps="stage1"),
        ValueError, "must be a non-empty list of layer names",
        "Received: taps='stage1'",
    ),
    BadInput(
        "SelfDistillModel.from_backbone", "taps=None",
        lambda tmp: SelfDistillModel.from_backbone(backbone(), taps=None),
        ValueError, "must be a non-empty list of layer names", "Received: taps=None",
    ),
    BadInput(
        "SelfDistillModel.from_backbone", "an empty list of taps",
        lambda tmp: SelfDistillModel.from_backbone(backbone(), taps=[]),
        ValueError, "must be a non-empty list of layer names", "Received: taps=[]",
    ),
    BadInput(
        "SelfDistillModel.from_backbone", "a tap that is not a name",
        lambda tmp: SelfDistillModel.from_backbone(backbone(), taps=[3]),
        ValueError, "must be a list of layer names (str)",
        "Received: taps=[3], with 3 of type int",
    ),
    BadInput(
        "SelfDistillModel.from_backbone", "taps in the wrong order (deeper first)",
        lambda tmp: SelfDistillModel.from_backbone(backbone(), taps=["stage2", "stage1"]),
        ValueError, "ordered shallow to deep",
        "Received: taps=['stage2', 'stage1']; in backbone order they are "
        "['stage1', 'stage2']",
    ),
    BadInput(
        "SelfDistillModel.from_backbone", "the same tap twice",
        lambda tmp: SelfDistillModel.from_backbone(backbone(), taps=["stage1", "stage1"]),
        ValueError, "`taps` must be distinct", "Received: taps=['stage1', 'stage1']",
    ),
    BadInput(
        "SelfDistillModel.from_backbone",
        "a tap that is not before the output (the classifier itself)",
        lambda tmp: SelfDistillModel.from_backbone(backbone(), taps=["logits"]),
        ValueError, "taps must be layers before it, on the path from the inputs",
        "Layer 'logits' makes the backbone's output",
    ),
    BadInput(
        "SelfDistillModel.from_backbone", "a tap on a layer called twice (shared)",
        lambda tmp: SelfDistillModel.from_backbone(
            backbone_with_a_shared_layer(), taps=["shared"]
        ),
        ValueError, "Tap a layer that is called once",
        "Layer 'shared' is called 2 times in 'shared_twice'",
    ),
    BadInput(
        "SelfDistillModel.from_backbone", "a tap on a layer with several outputs",
        lambda tmp: SelfDistillModel.from_backbone(
            backbone_with_a_two_output_layer(), taps=["split"]
        ),
        ValueError, "a head needs one tensor",
        "Layer 'split' has 2 outputs (shapes [(None, 8, 8, 2), (None, 8, 8, 2)])",
    ),
    BadInput(
        "SelfDistillModel.from_backbone", "a subclassed backbone",
        lambda tmp: SelfDistillModel.from_backbone(built_subclassed(), taps=["dense"]),
        ValueError, "wire the heads with the functional API",
        "Received: Subclassed 'subclassed', which has no symbolic inputs",
    ),
    BadInput(
        "SelfDistillModel.from_backbone", "a Sequential started without keras.Input",
        lambda tmp: SelfDistillModel.from_backbone(unbuilt_sequential(), taps=["dense"]),
        ValueError, "a Sequential built with a keras.Input",
        "Received: Sequential 'unbuilt', which has no symbolic inputs",
    ),
    BadInput(
        "SelfDistillModel.from_backbone", "a path instead of a model",
        lambda tmp: SelfDistillModel.from_backbone("resnet.keras", taps=["stage1"]),
        ValueError, "needs a functional keras.Model",
        "Received: backbone='resnet.keras' of type str",
    ),
    BadInput(
        "SelfDistillModel.from_backbone", "a backbone with two outputs",
        lambda tmp: SelfDistillModel.from_backbone(backbone_with_two_outputs(), ["stage1"]),
        ValueError, "a backbone with one output (the logits)",
        "Received a backbone with 2 outputs",
    ),
    BadInput(
        "SelfDistillModel.from_backbone", "a backbone ending in Dense(activation='softmax')",
        lambda tmp: SelfDistillModel.from_backbone(backbone("softmax"), taps=["stage1"]),
        ValueError, "Build the classifier without the softmax",
        "The output of layer 'logits' outputs softmax probabilities",
    ),
    BadInput(
        "SelfDistillModel.from_backbone", "a backbone ending in a Softmax layer",
        lambda tmp: SelfDistillModel.from_backbone(
            backbone_ending_in_a_softmax_layer(), taps=["stage1"]
        ),
        ValueError, "distillation needs logits",
        "The output of layer 'probabilities' outputs softmax probabilities",
    ),
    BadInput(
        "SelfDistillModel.from_backbone", "head_width=0",
        lambda tmp: self_distill(head_width=0),
        ValueError, "`head_width` must be an integer >= 1", "Received: head_width=0",
    ),
    BadInput(
        "SelfDistillModel.from_backbone", "head_width as the block structure's name",
        lambda tmp: self_distill(head_width="double"),
        ValueError, "or 'doubling'", "Received: head_width='double'",
    ),
    BadInput(
        "SelfDistillModel.from_backbone", "head_num_downsampling neither 'auto' nor a count",
        lambda tmp: self_distill(head_num_downsampling="max"),
        ValueError, "must be 'auto' or an integer >= 0",
        "Received: head_num_downsampling='max'",
    ),
    BadInput(
        "SelfDistillModel.from_backbone", "head_block='triple'",
        lambda tmp: self_distill(head_block="triple"),
        ValueError, "`head_block` must be one of 'single', 'double'",
        "Received: head_block='triple'",
    ),
    BadInput(
        "SelfDistillModel.from_backbone", "head_attention='yes'",
        lambda tmp: self_distill(head_attention="yes"),
        ValueError, "`head_attention` must be True or False",
        "Received: head_attention='yes'",
    ),
    BadInput(
        "SelfDistillModel.from_backbone", "head_gradient_scale negative",
        lambda tmp: self_distill(head_gradient_scale=-0.5),
        ValueError, "`head_gradient_scale` must be in [0, 1]",
        "Received: head_gradient_scale=-0.5",
    ),
    BadInput(
        "SelfDistillModel.from_backbone", "the 0.1.0 name head_downsampling",
        lambda tmp: self_distill(head_downsampling=2),
        ValueError, "is now `head_num_downsampling`", "Received: head_downsampling=2",
    ),
    # -- SelfDistillModel: outputs and hyper-parameters ----------------- #
    BadInput(
        "SelfDistillModel", "one output (no shallow head)",
        lambda tmp: (lambda plain: SelfDistillModel(plain.input, [plain.output]))(
            backbone()),
        ValueError, "needs a list of at least 2 logits outputs",
        "Received: 1 output(s)",
    ),
    BadInput(
        "SelfDistillModel", "one output tensor instead of a list",
        lambda tmp: (lambda plain: SelfDistillModel(plain.input, plain.output))(
            backbone()),
        ValueError, "needs a list of at least 2 logits outputs",
        "Received: 1 output(s)",
    ),
    BadInput(
        "SelfDistillModel", "heads with different class counts",
        lambda tmp: (lambda inputs: SelfDistillModel(inputs, [
            AuxiliaryHead(3, name="head_1")(inputs),
            keras.layers.Dense(5, name="logits")(inputs),
        ]))(keras.Input((4,))),
        ValueError, "the same, known number of classes",
        "Received class counts {'head_1': 3, 'logits': 5}",
    ),
    BadInput(
        "SelfDistillModel", "an output that is a feature map, not logits",
        lambda tmp: (lambda inputs: SelfDistillModel(inputs, [
            keras.layers.Conv2D(8, 3, name="feature_map")(inputs),
            keras.layers.Dense(NUM_CLASSES, name="logits")(
                keras.layers.Flatten()(inputs)),
        ]))(keras.Input((8, 8, 1))),
        ValueError, "Every output must be logits of shape (batch, num_classes)",
        "Received: output of layer 'feature_map' with shape (None, 6, 6, 8)",
    ),
    BadInput(
        "SelfDistillModel", "a Softmax layer as an output",
        lambda tmp: (lambda inputs: SelfDistillModel(inputs, [
            AuxiliaryHead(3, name="head_1")(inputs),
            keras.layers.Softmax(name="probabilities")(keras.layers.Dense(3)(inputs)),
        ]))(keras.Input((4,))),
        ValueError, "needs logits",
        "The output of layer 'probabilities' outputs softmax probabilities",
    ),
    BadInput(
        "SelfDistillModel", "alpha above 1",
        lambda tmp: self_distill(alpha=1.5),
        ValueError, "`alpha` must be in [0, 1]", "Received: alpha=1.5",
    ),
    BadInput(
        "SelfDistillModel", "alpha as a string",
        lambda tmp: self_distill(alpha="0.3"),
        ValueError, "`alpha` must be a number in [0, 1]", "Received: alpha='0.3'",
    ),
    BadInput(
        "SelfDistillModel", "alpha as an array of values",
        lambda tmp: self_distill(alpha=np.array([0.3, 0.3])),
        ValueError, "`alpha` must be a scalar", "Received: alpha with shape (2,)",
    ),
    BadInput(
        "SelfDistillModel", "temperature 0",
        lambda tmp: self_distill(temperature=0.0),
        ValueError, "`temperature` must be > 0", "Received: temperature=0.0",
    ),
    BadInput(
        "SelfDistillModel", "temperature infinite",
        lambda tmp: self_distill(temperature=float("inf")),
        ValueError, "`temperature` must be finite", "Received: temperature=inf",
    ),
    BadInput(
        "SelfDistillModel", "temperature None",
        lambda tmp: self_distill(temperature=None),
        ValueError, "`temperature` must be a number > 0", "Received: temperature=None",
    ),
    BadInput(
        "SelfDistillModel", "negative feature_weight",
        lambda tmp: self_distill(feature_weight=-0.5),
        ValueError, "`feature_weight` must be >= 0", "Received: feature_weight=-0.5",
    ),
    BadInput(
        "SelfDistillModel", "an unknown feature_reduction",
        lambda tmp: self_distill(feature_reduction="max"),
        ValueError, "`feature_reduction` must be one of ['sum', 'mean']",
        "Received: feature_reduction='max'",
    ),
    BadInput(
        "SelfDistillModel", "feature_weight NaN",
        lambda tmp: self_distill(feature_weight=float("nan")),
        ValueError, "`feature_weight` must be >= 0", "Received: feature_weight=nan",
    ),
    BadInput(
        "SelfDistillModel", "feature_weight as a string",
        lambda tmp: self_distill(feature_weight="0.03"),
        ValueError, "`feature_weight` must be a number >= 0",
        "Received: feature_weight='0.03'",
    ),
    BadInput(
        "SelfDistillModel", "assigning alpha = 2 after construction (a schedule)",
        lambda tmp: setattr(self_distill(), "alpha", 2),
        ValueError, "`alpha` must be in [0, 1]", "Received: alpha=2",
    ),
    # -- Distiller ------------------------------------------------------- #
    BadInput(
        "Distiller", "teacher and student with different class counts",
        lambda tmp: Distiller(mlp("t", num_classes=5), mlp("s")),
        ValueError, "must predict the same classes",
        "Received: teacher 't' with 5 classes, student 's' with 10 classes",
    ),
    BadInput(
        "Distiller", "teacher and student with different input shapes",
        lambda tmp: Distiller(mlp("t", shape=(28, 28, 1)), mlp("s")),
        ValueError, "must take the same inputs",
        "Received: teacher input shapes [(None, 28, 28, 1)], student input "
        "shapes [(None, 8, 8, 1)]",
    ),
    BadInput(
        "Distiller", "both alpha and keras.distillation's student_loss_weight",
        lambda tmp: Distiller(mlp("t"), mlp("s"), alpha=0.5, student_loss_weight=0.5),
        ValueError, "alpha = 1 - student_loss_weight",
        "Received: alpha=0.5, student_loss_weight=0.5",
    ),
    BadInput(
        "Distiller", "a LogitsDistillation weighted other than 1",
        lambda tmp: Distiller(
            mlp("t"), mlp("s"),
            distillation_losses=keras.distillation.LogitsDistillation(),
            distillation_loss_weights=[2.0], student_loss_weight=0.5,
        ),
        ValueError, "1.5 times Distiller's with alpha=0.666667",
        "Received: distillation_loss_weights=[2.0], student_loss_weight=0.5",
    ),
    BadInput(
        "Distiller", "a LogitsDistillation with another loss than the KL",
        lambda tmp: Distiller(
            mlp("t"), mlp("s"),
            distillation_losses=keras.distillation.LogitsDistillation(loss="mse"),
        ),
        ValueError, "KL divergence of the softened predictions",
        "Received: LogitsDistillation(loss=",
    ),
    BadInput(
        "Distiller", "compile(loss=...) other than cross-entropy from logits",
        lambda tmp: Distiller(mlp("t"), mlp("s")).compile(
            optimizer="adam", loss="sparse_categorical_crossentropy"
        ),
        ValueError, "SparseCategoricalCrossentropy(from_logits=True)",
        "Received: loss='sparse_categorical_crossentropy'",
    ),
    BadInput(
        "Distiller", "a teacher ending in softmax",
        lambda tmp: Distiller(mlp("soft_teacher", activation="softmax"), mlp("s")),
        ValueError, "distillation needs logits",
        "The teacher 'soft_teacher' outputs softmax probabilities",
    ),
    BadInput(
        "Distiller", "a student ending in softmax",
        lambda tmp: Distiller(mlp("t"), mlp("soft_student", activation="softmax")),
        ValueError, "distillation needs logits",
        "The student 'soft_student' outputs softmax probabilities",
    ),
    BadInput(
        "Distiller", "a teacher that is not built (so not trained)",
        lambda tmp: Distiller(unbuilt_sequential("unbuilt_teacher"), mlp("s")),
        ValueError, "Start a Sequential with keras.Input(shape)",
        "The teacher 'unbuilt_teacher' is not built",
    ),
    BadInput(
        "Distiller", "a student that is not built",
        lambda tmp: Distiller(mlp("t"), unbuilt_sequential("unbuilt_student")),
        ValueError, "Start a Sequential with keras.Input(shape)",
        "The student 'unbuilt_student' is not built",
    ),
    BadInput(
        "Distiller", "a subclassed teacher",
        lambda tmp: Distiller(built_subclassed("subclassed_teacher"), mlp("s")),
        ValueError, "Use a functional or Sequential model, or wrap a subclassed one",
        "The teacher 'subclassed_teacher' (Subclassed) has no symbolic inputs",
    ),
    BadInput(
        "Distiller", "a path instead of a teacher model",
        lambda tmp: Distiller("teacher.keras", mlp("s")),
        ValueError, "The teacher must be a keras.Model",
        "Received: teacher='teacher.keras' of type str",
    ),
    BadInput(
        "Distiller", "the same model as teacher and student",
        lambda tmp: (lambda model: Distiller(model, model))(mlp("same_model")),
        ValueError, "Pass a separate student model",
        "are the same model object ('same_model')",
    ),
    BadInput(
        "Distiller", "alpha above 1", lambda tmp: distiller(alpha=1.5),
        ValueError, "`alpha` must be in [0, 1]", "Received: alpha=1.5",
    ),
    BadInput(
        "Distiller", "alpha as a string", lambda tmp: distiller(alpha="0.9"),
        ValueError, "`alpha` must be a number in [0, 1]", "Received: alpha='0.9'",
    ),
    BadInput(
        "Distiller", "alpha below 0", lambda tmp: distiller(alpha=-0.1),
        ValueError, "`alpha` must be in [0, 1]", "Received: alpha=-0.1",
    ),
    BadInput(
        "Distiller", "temperature 0", lambda tmp: distiller(temperature=0),
        ValueError, "`temperature` must be > 0", "Received: temperature=0",
    ),
    BadInput(
        "Distiller", "temperature as a string", lambda tmp: distiller(temperature="4"),
        ValueError, "`temperature` must be a number > 0", "Received: temperature='4'",
    ),
    BadInput(
        "Distiller", "negative feature_weight", lambda tmp: distiller(feature_weight=-1.0),
        ValueError, "`feature_weight` must be >= 0", "Received: feature_weight=-1.0",
    ),
    BadInput(
        "Distiller", "feature_weight as a string",
        lambda tmp: distiller(feature_weight="1"),
        ValueError, "`feature_weight` must be a number >= 0",
        "Received: feature_weight='1'",
    ),
    BadInput(
        "Distiller", "a hint layer name with a typo (teacher side)",
        lambda tmp: distiller(feature_pairs=[("hiden", "hidden")]),
        ValueError, "Close matches: ['hidden']",
        "Layer 'hiden' is not in the teacher 'teacher'",
    ),
    BadInput(
        "Distiller", "a hint layer name with no close match (student side)",
        lambda tmp: distiller(feature_pairs=[("hidden", "conv9")]),
        ValueError, "Its layers are: [",
        "Layer 'conv9' is not in the student 'student'",
    ),
    BadInput(
        "Distiller", "feature_pairs as one pair instead of a list of pairs",
        lambda tmp: distiller(feature_pairs=("hidden", "hidden")),
        ValueError, "must be a list of (teacher_layer_name, student_layer_name) pairs",
        "Received: feature_pairs=('hidden', 'hidden')",
    ),
    BadInput(
        "Distiller", "a hint layer given as a number",
        lambda tmp: distiller(feature_pairs=[(3, "hidden")]),
        ValueError, "pairs of strings", "Received: feature_pairs=[(3, 'hidden')]",
    ),
    BadInput(
        "Distiller", "hint layers with different spatial shapes",
        lambda tmp: Distiller(conv_classifier("t", 1), conv_classifier("s", 2),
                              feature_pairs=[("conv", "conv")]),
        ValueError, "must have the same shape except the channel axis",
        "Received: teacher layer 'conv' with shape (None, 8, 8, 4), student "
        "layer 'conv' with shape (None, 4, 4, 4)",
    ),
    BadInput(
        "Distiller", "a hint on a layer with several outputs",
        lambda tmp: Distiller(mlp_with_a_two_output_layer("t"), mlp("s"),
                              feature_pairs=[("pair", "hidden")]),
        ValueError, "a hint needs a layer with one output tensor",
        "Layer 'pair' of the teacher 't' has 2 outputs",
    ),
    BadInput(
        "Distiller.cache_teacher_logits", "a dataset instead of arrays",
        lambda tmp: distiller().cache_teacher_logits(ImagesOnly()),
        ValueError, "needs the inputs as arrays",
        "Received: x of type ImagesOnly",
    ),
    BadInput(
        "Distiller.cache_teacher_logits", "a generator instead of arrays",
        lambda tmp: distiller().cache_teacher_logits(images_generator()),
        ValueError, "needs the inputs as arrays", "Received: x of type generator",
    ),
    BadInput(
        "Distiller.cache_teacher_logits", "caching with hint pairs",
        lambda tmp: distiller(feature_pairs=[("hidden", "hidden")]).cache_teacher_logits(
            IMAGES
        ),
        ValueError, "Cached teacher logits cannot be used with feature_pairs",
        "feature_pairs=[['hidden', 'hidden']]",
    ),
    # -- MutualLearning -------------------------------------------------- #
    BadInput(
        "MutualLearning", "one peer",
        lambda tmp: MutualLearning([mlp("only")]),
        ValueError, "needs a list of at least 2 peer models", "Received: 1 peer(s)",
    ),
    BadInput(
        "MutualLearning", "an empty list of peers",
        lambda tmp: MutualLearning([]),
        ValueError, "needs a list of at least 2 peer models", "Received: 0 peer(s)",
    ),
    BadInput(
        "MutualLearning", "peers with different class counts",
        lambda tmp: MutualLearning([mlp("ten"), mlp("five", num_classes=5)]),
        ValueError, "must predict the same, known number of classes",
        "Received class counts {'ten': 10, 'five': 5}",
    ),
    BadInput(
        "MutualLearning", "peers with different input shapes",
        lambda tmp: MutualLearning([mlp("a"), mlp("b", shape=(28, 28, 1))]),
        ValueError, "Every peer must take the same inputs",
        "{'a': ((8, 8, 1),), 'b': ((28, 28, 1),)}",
    ),
    BadInput(
        "MutualLearning", "two peers with the same name",
        lambda tmp: MutualLearning([mlp("twin"), mlp("twin")]),
        ValueError, "Peers must have distinct names", "Received peer names ['twin', 'twin']",
    ),
    BadInput(
        "MutualLearning", "a peer named like a history key",
        lambda tmp: MutualLearning([mlp("ensemble"), mlp("b")]),
        ValueError, "are reserved for history keys",
        "Received peer names ['ensemble', 'b']",
    ),
    BadInput(
        "MutualLearning", "a peer that is not a model",
        lambda tmp: MutualLearning([mlp("a"), "b"]),
        ValueError, "Each peer must be a keras.Model", "Received: peers[1] of type str",
    ),
    BadInput(
        "MutualLearning", "a peer that is not built",
        lambda tmp: MutualLearning([mlp("a"), unbuilt_sequential("unbuilt_peer")]),
        ValueError, "(or a Sequential built with a keras.Input)",
        "Received: peers[1] 'unbuilt_peer' of type Sequential without symbolic inputs",
    ),
    BadInput(
        "MutualLearning", "peers sharing a layer",
        lambda tmp: peers_sharing_a_layer(),
        ValueError, "Peers must not share weights",
        "sharing weight 'shared_classifier/kernel'",
    ),
    BadInput(
        "MutualLearning", "a peer ending in softmax",
        lambda tmp: MutualLearning([mlp("soft", activation="softmax"), mlp("b")]),
        ValueError, "distillation needs logits", "Peer 'soft' outputs softmax",
    ),
    BadInput(
        "MutualLearning", "alpha above 1", lambda tmp: mutual(alpha=1.5),
        ValueError, "`alpha` must be in [0, 1]", "Received: alpha=1.5",
    ),
    BadInput(
        "MutualLearning", "alpha as a string", lambda tmp: mutual(alpha="0.5"),
        ValueError, "`alpha` must be a number in [0, 1]", "Received: alpha='0.5'",
    ),
    BadInput(
        "MutualLearning", "temperature 0", lambda tmp: mutual(temperature=0.0),
        ValueError, "`temperature` must be > 0", "Received: temperature=0.0",
    ),
    BadInput(
        "MutualLearning", "temperature as a string", lambda tmp: mutual(temperature="1"),
        ValueError, "`temperature` must be a number > 0", "Received: temperature='1'",
    ),
    BadInput(
        "MutualLearning.peer", "a peer index out of range",
        lambda tmp: mutual().peer(2),
        ValueError, "`index` must be an integer in [0, 2) or a peer name",
        "Received: index=2",
    ),
    BadInput(
        "MutualLearning.peer", "an unknown peer name",
        lambda tmp: mutual().peer("third"),
        ValueError, "The peers are ['first', 'second']", "Received: index='third'",
    ),
    # -- EMATeacher and SelfEnsembleTeacher ------------------------------ #
    BadInput(
        "EMATeacher", "momentum above 1", lambda tmp: ema(momentum=1.5),
        ValueError, "`momentum` must be in [0, 1]", "Received: momentum=1.5",
    ),
    BadInput(
        "EMATeacher", "assigning momentum = -0.1 (a schedule)",
        lambda tmp: setattr(ema(), "momentum", -0.1),
        ValueError, "`momentum` must be in [0, 1]", "Received: momentum=-0.1",
    ),
    BadInput(
        "EMATeacher", "momentum as a string", lambda tmp: ema(momentum="0.99"),
        ValueError, "`momentum` must be a number in [0, 1]", "Received: momentum='0.99'",
    ),
    BadInput(
        "EMATeacher", "alpha above 1", lambda tmp: ema(alpha=2),
        ValueError, "`alpha` must be in [0, 1]", "Received: alpha=2",
    ),
    BadInput(
        "EMATeacher", "alpha as a string", lambda tmp: ema(alpha="0.5"),
        ValueError, "`alpha` must be a number in [0, 1]", "Received: alpha='0.5'",
    ),
    BadInput(
        "EMATeacher", "temperature 0", lambda tmp: ema(temperature=0),
        ValueError, "`temperature` must be > 0", "Received: temperature=0",
    ),
    BadInput(
        "EMATeacher", "temperature as a string", lambda tmp: ema(temperature="1"),
        ValueError, "`temperature` must be a number > 0", "Received: temperature='1'",
    ),
    BadInput(
        "EMATeacher", "a path instead of a student model", lambda tmp: EMATeacher("student"),
        ValueError, "must be a keras.Model mapping inputs to logits",
        "Received: student of type str",
    ),
    BadInput(
        "EMATeacher", "a student ending in softmax",
        lambda tmp: EMATeacher(mlp("soft", activation="softmax")),
        ValueError, "distillation needs logits", "Student 'soft' outputs softmax",
    ),
    BadInput(
        "EMATeacher", "a student that is not built",
        lambda tmp: EMATeacher(unbuilt_sequential()),
        ValueError, "must be built (have its weights)",
        "Received: unbuilt student 'unbuilt'",
    ),
    BadInput(
        "SelfEnsembleTeacher", "num_snapshots 0",
        lambda tmp: SelfEnsembleTeacher(mlp("student"), num_snapshots=0),
        ValueError, "`num_snapshots` must be an integer >= 1",
        "Received: num_snapshots=0",
    ),
    BadInput(
        "SelfEnsembleTeacher", "snapshot_interval 0",
        lambda tmp: self_ensemble(snapshot_interval=0),
        ValueError, "`snapshot_interval` must be an integer >= 1",
        "Received: snapshot_interval=0",
    ),
    BadInput(
        "SelfEnsembleTeacher", "an unknown average",
        lambda tmp: self_ensemble(average="median"),
        ValueError, "`average` must be one of ['parameters', 'outputs']",
        "Received: average='median'",
    ),
    BadInput(
        "SelfEnsembleTeacher", "alpha above 1", lambda tmp: self_ensemble(alpha=2.0),
        ValueError, "`alpha` must be in [0, 1]", "Received: alpha=2.0",
    ),
    BadInput(
        "SelfEnsembleTeacher", "temperature negative",
        lambda tmp: self_ensemble(temperature=-1),
        ValueError, "`temperature` must be > 0", "Received: temperature=-1",
    ),
    BadInput(
        "SelfEnsembleTeacher", "alpha as a string", lambda tmp: self_ensemble(alpha="0.5"),
        ValueError, "`alpha` must be a number in [0, 1]", "Received: alpha='0.5'",
    ),
    BadInput(
        "SelfEnsembleTeacher", "temperature as a string",
        lambda tmp: self_ensemble(temperature="1"),
        ValueError, "`temperature` must be a number > 0", "Received: temperature='1'",
    ),
    BadInput(
        "SelfEnsembleTeacher", "a student ending in softmax",
        lambda tmp: SelfEnsembleTeacher(mlp("soft", activation="softmax")),
        ValueError, "distillation needs logits", "Student 'soft' outputs softmax",
    ),
    # -- BornAgain ------------------------------------------------------- #
    BadInput(
        "BornAgain", "generations 0", lambda tmp: BornAgain(build_mlp, generations=0),
        ValueError, "`generations` must be an integer >= 1", "Received: generations=0",
    ),
    BadInput(
        "BornAgain", "generations negative",
        lambda tmp: BornAgain(build_mlp, generations=-2),
        ValueError, "`generations` must be an integer >= 1", "Received: generations=-2",
    ),
    BadInput(
        "BornAgain", "generations not a whole number",
        lambda tmp: BornAgain(build_mlp, generations=1.5),
        ValueError, "`generations` must be an integer >= 1", "Received: generations=1.5",
    ),
    BadInput(
        "BornAgain", "generations=True", lambda tmp: BornAgain(build_mlp, generations=True),
        ValueError, "`generations` must be an integer >= 1", "Received: generations=True",
    ),
    BadInput(
        "BornAgain", "alpha above 1", lambda tmp: BornAgain(build_mlp, alpha=2.0),
        ValueError, "`alpha` must be in [0, 1]", "Received: alpha=2.0",
    ),
    BadInput(
        "BornAgain", "temperature negative",
        lambda tmp: BornAgain(build_mlp, temperature=-1.0),
        ValueError, "`temperature` must be > 0", "Received: temperature=-1.0",
    ),
    BadInput(
        "BornAgain", "alpha as a string", lambda tmp: BornAgain(build_mlp, alpha="0.5"),
        ValueError, "`alpha` must be a number in [0, 1]", "Received: alpha='0.5'",
    ),
    BadInput(
        "BornAgain", "temperature as a string",
        lambda tmp: BornAgain(build_mlp, temperature="1"),
        ValueError, "`temperature` must be a number > 0", "Received: temperature='1'",
    ),
    BadInput(
        "BornAgain", "a path instead of build_model",
        lambda tmp: BornAgain("model.keras"),
        ValueError, "must be a callable with no arguments",
        "Received: build_model='model.keras'",
    ),
    BadInput(
        "BornAgain.fit", "checkpoint_dir that is a file",
        lambda tmp: born_again().fit(IMAGES, LABELS, verbose=0,
                                     checkpoint_dir=file_at(tmp, "not_a_directory")),
        ValueError, "`checkpoint_dir` must be a directory, but it is a file",
        f"Received: checkpoint_dir='{TMP}/not_a_directory'",
    ),
    BadInput(
        "BornAgain.fit", "checkpoint_dir that cannot be created (under a file)",
        lambda tmp: born_again().fit(IMAGES, LABELS, verbose=0,
                                     checkpoint_dir=file_at(tmp, "a_file") / "sub"),
        ValueError, "must be a directory this process can create and write to",
        f"Received: checkpoint_dir='{TMP}/a_file/sub'",
    ),
    BadInput(
        "BornAgain.fit", "checkpoint_dir that is read-only",
        lambda tmp: born_again().fit(IMAGES, LABELS, verbose=0,
                                     checkpoint_dir=read_only_directory(tmp)),
        ValueError, "must be a directory this process can create and write to",
        f"Received: checkpoint_dir='{TMP}/read_only'",
        needs_non_root=True,
    ),
    BadInput(
        "BornAgain.fit", "checkpoint_dir of a run with other settings",
        resume_with_other_settings,
        ValueError, "Use the same settings to resume, or another checkpoint_dir",
        "alpha=0.6 there, 0.9 here",
    ),
    BadInput(
        "BornAgain.fit", "build_model returning something else than a model",
        lambda tmp: born_again(make_model=lambda: "not a model").fit(IMAGES, LABELS),
        ValueError, "`build_model` must return a keras.Model",
        "returned 'not a model' of type str",
    ),
    BadInput(
        "BornAgain.fit", "build_model returning a softmax model",
        lambda tmp: born_again(
            make_model=lambda: mlp("softmax_model", activation="softmax")
        ).fit(IMAGES, LABELS),
        ValueError, "distillation needs logits", "'softmax_model' outputs softmax",
    ),
    BadInput(
        "BornAgain.fit", "build_model returning an unbuilt model",
        lambda tmp: born_again(make_model=unbuilt_sequential).fit(IMAGES, LABELS),
        ValueError, "Start a Sequential with keras.Input(shape)",
        "The model from build_model 'unbuilt' is not built",
    ),
    BadInput(
        "BornAgain.fit", "build_model returning the same model twice",
        lambda tmp: (lambda model: born_again(generations=2, make_model=lambda: model).fit(
            IMAGES, LABELS, batch_size=16, verbose=0))(mlp("student")),
        ValueError, "must return a new model on every call",
        "returned the model 'student' of an earlier generation",
    ),
    BadInput(
        "BornAgain.fit", "fit before compile",
        lambda tmp: BornAgain(build_mlp).fit(IMAGES, LABELS),
        ValueError, "Call `compile(optimizer=..., metrics=...)`", "before `fit`",
    ),
    BadInput(
        "BornAgain.compile", "an optimizer callable returning a number",
        lambda tmp: BornAgain(build_mlp).compile(optimizer=lambda: 0.1),
        ValueError, "must return a keras.optimizers.Optimizer", "Received: it returned 0.1",
    ),
    BadInput(
        "BornAgain.compile", "an optimizer callable returning a used optimizer",
        lambda tmp: (lambda shared: BornAgain(build_mlp).compile(
            optimizer=lambda: shared))(built_optimizer()),
        ValueError, "must return a new optimizer on each call",
        "returned an optimizer already in use",
    ),
    BadInput(
        "BornAgain.generation", "a generation index out of range",
        lambda tmp: BornAgain(build_mlp, generations=3).generation(5),
        ValueError, "`index` must be an integer in [0, 3)", "Received: index=5",
    ),
    BadInput(
        "BornAgain.generation", "a generation not trained yet",
        lambda tmp: BornAgain(build_mlp, generations=3).generation(1),
        ValueError, "finished generations: []", "Received: index=1",
    ),
    BadInput(
        "BornAgain.ensemble", "an ensemble before any generation is trained",
        lambda tmp: BornAgain(build_mlp).ensemble(),
        ValueError, "must be a non-empty list of finished generation indices",
        "Received: generations=[]",
    ),
    BadInput(
        "BornAgain.from_checkpoint", "a directory BornAgain did not write",
        lambda tmp: BornAgain.from_checkpoint(tmp),
        ValueError, "not a directory written by BornAgain.fit",
        f"No born_again.json in checkpoint_dir='{TMP}'",
    ),
    # -- ClassWiseSelfDistillation (CS-KD) and class_pairs ---------------- #
    BadInput(
        "ClassWiseSelfDistillation", "a path instead of a student model",
        lambda tmp: ClassWiseSelfDistillation("student"),
        ValueError, "must be a keras.Model mapping inputs to logits",
        "Received: student of type str",
    ),
    BadInput(
        "ClassWiseSelfDistillation", "a student that is not built",
        lambda tmp: ClassWiseSelfDistillation(unbuilt_sequential()),
        ValueError, "must be built (have its weights)",
        "Received: unbuilt student 'unbuilt'",
    ),
    BadInput(
        "ClassWiseSelfDistillation", "a student ending in softmax",
        lambda tmp: ClassWiseSelfDistillation(mlp("soft", activation="softmax")),
        ValueError, "distillation needs logits", "Student 'soft' outputs softmax",
    ),
    BadInput(
        "ClassWiseSelfDistillation", "a student with two outputs",
        lambda tmp: ClassWiseSelfDistillation(backbone_with_two_outputs()),
        ValueError, "must have one output of logits (batch, num_classes)",
        "Received: output shape(s) [(None, 10), (None, 3)]",
    ),
    BadInput(
        "ClassWiseSelfDistillation", "temperature 0", lambda tmp: class_wise(temperature=0),
        ValueError, "`temperature` must be > 0", "Received: temperature=0",
    ),
    BadInput(
        "ClassWiseSelfDistillation", "temperature as a string",
        lambda tmp: class_wise(temperature="4"),
        ValueError, "`temperature` must be a number > 0", "Received: temperature='4'",
    ),
    BadInput(
        "ClassWiseSelfDistillation", "a negative distillation_weight",
        lambda tmp: class_wise(distillation_weight=-1.0),
        ValueError, "`distillation_weight` must be >= 0",
        "Received: distillation_weight=-1.0",
    ),
    BadInput(
        "ClassWiseSelfDistillation", "assigning distillation_weight = inf (a schedule)",
        lambda tmp: setattr(class_wise(), "distillation_weight", float("inf")),
        ValueError, "`distillation_weight` must be finite",
        "Received: distillation_weight=inf",
    ),
    BadInput(
        "ClassWiseSelfDistillation", "a paired batch to model(x) (serving takes plain inputs)",
        lambda tmp: class_wise()(pair_by_class(IMAGES, PAIRED_LABELS, seed=0)[0]),
        ValueError, "serves the student on plain inputs", "Received: a paired batch",
    ),
    BadInput(
        "ClassWiseSelfDistillation.fit", "plain arrays: samples without partners",
        lambda tmp: compiled(class_wise()).fit(IMAGES, PAIRED_LABELS, batch_size=8,
                                               verbose=0),
        ValueError, "every sample has a same-class partner: ({'inputs': x, "
        "'partner_inputs': x_partner}, y)", "with shape (8, 8, 8, 1)",
    ),
    BadInput(
        "ClassWiseSelfDistillation.fit", "a dict with a misspelled partner key",
        lambda tmp: compiled(class_wise()).fit(
            {"inputs": IMAGES, "partner": IMAGES}, PAIRED_LABELS, batch_size=8,
            verbose=0),
        ValueError, "every sample has a same-class partner",
        "with keys ['inputs', 'partner']",
    ),
    BadInput(
        "class_pairs.class_partner_indices", "a class with a single sample",
        lambda tmp: class_partner_indices(np.array([0, 0, 7, 1, 1])),
        ValueError, "Every class needs at least 2 samples",
        "Received: classes with a single sample: [7]",
    ),
    BadInput(
        "class_pairs.class_partner_indices", "one-hot labels",
        lambda tmp: class_partner_indices(np.eye(3)[[0, 1, 2, 0]]),
        ValueError, "integer class ids, one per sample (shape (samples,) or (samples, 1))",
        "Received: labels with shape (4, 3)",
    ),
    BadInput(
        "class_pairs.class_partner_indices", "float labels that are not whole numbers",
        lambda tmp: class_partner_indices(np.array([0.0, 0.5, 1.0, 1.0])),
        ValueError, "needs integer class ids >= 0",
        "Received: labels of dtype float64 with values [0.0, 0.5, 1.0, 1.0]",
    ),
    BadInput(
        "class_pairs.class_partner_indices", "string labels",
        lambda tmp: class_partner_indices(np.array(["cat", "dog", "cat", "dog"])),
        ValueError, "needs integer class ids >= 0", "Received: labels of dtype <U3",
    ),
    BadInput(
        "class_pairs.class_partner_indices", "negative labels",
        lambda tmp: class_partner_indices(np.array([-1, -1, 0, 0], "int32")),
        ValueError, "needs integer class ids >= 0",
        "Received: labels of dtype int32 with values [-1, -1, 0, 0]",
    ),
    BadInput(
        "class_pairs.ClassPairedBatches", "batch_size 0",
        lambda tmp: ClassPairedBatches(IMAGES, PAIRED_LABELS, batch_size=0),
        ValueError, "`batch_size` must be an integer >= 1", "Received: batch_size=0",
    ),
    BadInput(
        "class_pairs.ClassPairedBatches", "labels with a single-sample class",
        lambda tmp: ClassPairedBatches(IMAGES, LABELS, batch_size=8),
        ValueError, "Every class needs at least 2 samples",
        "Received: classes with a single sample: [6, 7, 8, 9]",
    ),
    # -- ProgressiveSelfDistillation (PS-KD) and sample indices ---------- #
    BadInput(
        "ProgressiveSelfDistillation", "a path instead of a student model",
        lambda tmp: progressive("student"),
        ValueError, "must be a keras.Model mapping inputs to logits",
        "Received: student of type str",
    ),
    BadInput(
        "ProgressiveSelfDistillation", "a student that is not built",
        lambda tmp: progressive(unbuilt_sequential()),
        ValueError, "must be built (have its weights)",
        "Received: unbuilt student 'unbuilt'",
    ),
    BadInput(
        "ProgressiveSelfDistillation", "num_samples 0",
        lambda tmp: ProgressiveSelfDistillation(mlp("student"), num_samples=0,
                                                total_epochs=2),
        ValueError, "`num_samples` must be an integer >= 1", "Received: num_samples=0",
    ),
    BadInput(
        "ProgressiveSelfDistillation", "total_epochs 2.5",
        lambda tmp: ProgressiveSelfDistillation(mlp("student"), num_samples=16,
                                                total_epochs=2.5),
        ValueError, "`total_epochs` must be an integer >= 1",
        "Received: total_epochs=2.5",
    ),
    BadInput(
        "ProgressiveSelfDistillation", "alpha above 1", lambda tmp: progressive(alpha=1.5),
        ValueError, "`alpha` must be in [0, 1]", "Received: alpha=1.5",
    ),
    BadInput(
        "ProgressiveSelfDistillation", "num_classes that differs from the student's output",
        lambda tmp: progressive(num_classes=3),
        ValueError, "must match the student's output, 10 classes",
        "Received: num_classes=3",
    ),
    BadInput(
        "ProgressiveSelfDistillation", "num_classes 0",
        lambda tmp: progressive(built_subclassed(), num_classes=0),
        ValueError, "`num_classes` must be an integer >= 1", "Received: num_classes=0",
    ),
    BadInput(
        "ProgressiveSelfDistillation", "a subclassed student without num_classes",
        lambda tmp: progressive(built_subclassed()),
        ValueError, "cannot be read from its outputs (a subclassed model): pass "
        "`num_classes`", "Received: num_classes=None",
    ),
    BadInput(
        "ProgressiveSelfDistillation.fit", "arrays without sample indices",
        lambda tmp: fit_indexed(progressive(), IMAGES, LABELS),
        ValueError, "x = {'inputs': images, 'sample_index': indices}",
        "Received: x of type ndarray with shape (16, 8, 8, 1)",
    ),
    BadInput(
        "ProgressiveSelfDistillation.fit", "an array sample index out of range",
        lambda tmp: fit_indexed(progressive(), with_sample_index(
            IMAGES, np.where(np.arange(16) == 7, 16, np.arange(16))), LABELS),
        ValueError, "Sample indices must be in [0, 16) (the model's num_samples=16)",
        "Received: x['sample_index'] with value 16 at position 7 (1 of 16 out of range)",
    ),
    BadInput(
        "ProgressiveSelfDistillation.train_on_batch",
        "a negative sample index in an eager step",
        lambda tmp: train_on_indexed_batch(progressive(), np.array([0, -1])),
        ValueError, "Sample indices must be in [0, 16)",
        "with value -1 at position 1",
    ),
    BadInput(
        "ProgressiveSelfDistillation.train_on_batch", "sample indices of shape (batch, 2)",
        lambda tmp: train_on_indexed_batch(progressive(), np.zeros((2, 2), "int32")),
        ValueError, "one integer sample index per sample, shape (batch,)",
        "Received: sample_index with shape (2, 2)",
    ),
    BadInput(
        "ProgressiveSelfDistillation.train_on_batch", "float sample indices",
        lambda tmp: train_on_indexed_batch(progressive(), np.array([0.0, 1.0], "float32")),
        ValueError, "sample indices must be integers",
        "Received: sample_index of dtype float32",
    ),
    BadInput(
        "with_sample_index", "an index with the wrong number of rows",
        lambda tmp: with_sample_index(np.zeros((3, 2)), np.arange(2)),
        ValueError, "must be integers of shape (samples,) = (3,)",
        "Received: sample_index with shape (2,) and dtype int64",
    ),
    BadInput(
        "with_sample_index", "a path instead of arrays or a dataset",
        lambda tmp: with_sample_index("images"),
        ValueError, "takes numpy arrays (or a dict/list of them with the same number "
        "of rows) or an unbatched tf.data.Dataset", "Received: x of type str",
    ),
    # -- LastBatchSelfDistillation (DLB) and its batches ----------------- #
    BadInput(
        "LastBatchSelfDistillation", "a path instead of a student model",
        lambda tmp: last_batch("student"),
        ValueError, "must be a keras.Model mapping inputs to logits",
        "Received: student of type str",
    ),
    BadInput(
        "LastBatchSelfDistillation", "a student that is not built",
        lambda tmp: last_batch(unbuilt_sequential()),
        ValueError, "must be built (have its weights)",
        "Received: unbuilt student 'unbuilt'",
    ),
    BadInput(
        "LastBatchSelfDistillation", "an odd batch_size",
        lambda tmp: last_batch(batch_size=15),
        ValueError, "`batch_size` must be an even integer >= 2",
        "Received: batch_size=15",
    ),
    BadInput(
        "LastBatchSelfDistillation", "negative alpha", lambda tmp: last_batch(alpha=-1.0),
        ValueError, "`alpha` must be >= 0", "Received: alpha=-1.0",
    ),
    BadInput(
        "LastBatchSelfDistillation", "temperature 0", lambda tmp: last_batch(temperature=0),
        ValueError, "`temperature` must be > 0", "Received: temperature=0",
    ),
    BadInput(
        "LastBatchSelfDistillation", "a subclassed student without num_classes",
        lambda tmp: last_batch(built_subclassed()),
        ValueError, "pass `num_classes`", "Received: num_classes=None",
    ),
    BadInput(
        "LastBatchSelfDistillation.fit", "arrays without sample indices",
        lambda tmp: fit_indexed(last_batch(), IMAGES, LABELS, shuffle=False),
        ValueError, "x = {'inputs': images, 'sample_index': indices}",
        "Received: x of type ndarray",
    ),
    BadInput(
        "LastBatchSelfDistillation.fit", "a LastBatchRepeats without shuffle=False",
        lambda tmp: compiled(last_batch()).fit(LastBatchRepeats(IMAGES, LABELS, 8),
                                               verbose=0),
        ValueError, "pass shuffle=False", "Received: shuffle=True",
    ),
    BadInput(
        "LastBatchSelfDistillation.fit", "planned arrays with another batch_size",
        lambda tmp: dlb_plan_fit(batch_size=16, shuffle=False),
        ValueError, "must be fit with batch_size=8 and shuffle=False",
        "Received: batch_size=16, shuffle=False",
    ),
    BadInput(
        "LastBatchSelfDistillation.fit", "planned arrays with Keras's shuffle",
        lambda tmp: dlb_plan_fit(),
        ValueError, "must be fit with batch_size=8 and shuffle=False",
        "Received: batch_size=8, shuffle=True",
    ),
    BadInput(
        "LastBatchSelfDistillation.train_on_batch", "a batch of another size",
        lambda tmp: train_on_indexed_batch(last_batch(), np.arange(4), rows=4),
        ValueError, "trains on batches of exactly batch_size=8 samples",
        "Received: a batch of 4 samples.",
    ),
    *[
        BadInput(
            "last_batch_repeat_order", f"batch_size {size!r}",
            lambda tmp, size=size: last_batch_repeat_order(np.arange(8), size),
            ValueError, "`batch_size` must be an even integer >= 2",
            f"Received: batch_size={size!r}",
        )
        for size in (3, 0, 4.0, True)
    ],
    BadInput(
        "last_batch_repeat_order", "fewer samples than half a batch",
        lambda tmp: last_batch_repeat_order(np.arange(1), 4),
        ValueError, "A pass needs at least half a batch (2 samples) of new samples",
        "Received: 1 samples with batch_size=4",
    ),
    BadInput(
        "last_batch_repeat_order", "a previous_half of the wrong size",
        lambda tmp: last_batch_repeat_order(np.arange(6), 6, previous_half=[1, 2]),
        ValueError, "`previous_half` must hold batch_size // 2 = 3 indices",
        "Received: previous_half with shape (2,)",
    ),
    BadInput(
        "LastBatchRepeats", "fewer labels than inputs",
        lambda tmp: LastBatchRepeats(IMAGES, LABELS[:15], 8),
        ValueError, "must have one row per sample", "Received: 16 inputs, 15 labels",
    ),
    BadInput(
        "LastBatchRepeats", "an odd batch_size",
        lambda tmp: LastBatchRepeats(IMAGES, LABELS, 7),
        ValueError, "`batch_size` must be an even integer >= 2", "Received: batch_size=7",
    ),
    BadInput(
        "repeat_last_half_batches", "an odd batch_size (checked before the dataset is read)",
        lambda tmp: repeat_last_half_batches(None, 5),
        ValueError, "`batch_size` must be an even integer >= 2", "Received: batch_size=5",
    ),
    # -- compile --------------------------------------------------------- #
    *[
        BadInput(
            f"{name}.compile", "a loss (the model computes its own)",
            lambda tmp, make=make: make().compile(
                optimizer="sgd", loss="sparse_categorical_crossentropy"
            ),
            ValueError, "must be None",
            "Received: loss='sparse_categorical_crossentropy'",
        )
        for name, make in {**MODELS, **HEADFREE_MODELS}.items()
        # Distiller takes the loss keras.distillation code passes (its own
        # label term) and refuses the rest: a row of its own.
        if name != "Distiller"
    ],
    BadInput(
        "SelfDistillModel.compile", "metrics as a dict",
        lambda tmp: self_distill().compile(metrics={"logits": "accuracy"}),
        ValueError, "`metrics` must be a list, e.g. metrics=['accuracy']",
        "Received: metrics={'logits': 'accuracy'}",
    ),
    BadInput(
        "SelfDistillModel.compile", "an unknown metric name",
        lambda tmp: self_distill().compile(metrics=["acuracy"]),
        ValueError, "Use 'accuracy', 'crossentropy', a name that keras.metrics.get()",
        "Unknown metric 'acuracy'",
    ),
    # -- labels and data, for every model trained by fit ----------------- #
    *[
        BadInput(
            f"{name}.fit", f"integer label {NUM_CLASSES} for {NUM_CLASSES} classes",
            lambda tmp, make=make: fit(make, y=np.full(16, NUM_CLASSES)),
            ValueError, f"must be class ids in [0, {NUM_CLASSES})",
            f"Received: y with value {NUM_CLASSES} at index 0",
        )
        for name, make in MODELS.items()
    ],
    *[
        BadInput(
            f"{name}.fit", "one-hot labels with 3 classes for a 10-class model",
            lambda tmp, make=make: fit(make, y=one_hot(LABELS, 3)),
            ValueError, "one-hot vectors of shape (batch, 10)",
            "Received: labels with shape (8, 3)",
        )
        for name, make in MODELS.items()
    ],
    *[
        BadInput(
            f"{name}.fit", "a dataset yielding (x,) only: no labels",
            lambda tmp, make=make: fit(make, x=ImagesOnly(), y=None),
            ValueError, "the data must yield (inputs, labels)",
            "Received: y=None",
        )
        for name, make in MODELS.items()
    ],
    BadInput(
        "SelfDistillModel.fit", "a negative label",
        lambda tmp: fit(self_distill, y=np.full(16, -1)),
        ValueError, "must be class ids in [0, 10)", "Received: y with value -1",
    ),
    BadInput(
        "SelfDistillModel.fit", "float labels that are not whole numbers",
        lambda tmp: fit(self_distill, y=np.full(16, 0.5)),
        ValueError, "must be class ids in [0, 10)", "Received: y with value 0.5",
    ),
    BadInput(
        "SelfDistillModel.fit", "validation labels out of range",
        lambda tmp: fit(self_distill, validation_data=(IMAGES, LABELS + 5)),
        ValueError, "must be class ids in [0, 10)",
        "Received: validation_data labels with value 10 at index 5",
    ),
    BadInput(
        "SelfDistillModel.fit", "labels of shape (batch, 2): neither ids nor one-hot",
        lambda tmp: fit(self_distill, y=np.zeros((16, 2), "int32")),
        ValueError, "integer class ids of shape (batch,) or (batch, 1)",
        "Received: labels with shape (8, 2)",
    ),
    BadInput(
        "SelfDistillModel.fit", "arrays without labels",
        lambda tmp: fit(self_distill, y=None),
        ValueError, "the data must yield (inputs, labels)", "Received: y=None",
    ),
    BadInput(
        "SelfDistillModel.fit", "one-hot labels with SparseCategoricalAccuracy",
        lambda tmp: fit(self_distill, y=one_hot(LABELS, NUM_CLASSES),
                        metrics=[keras.metrics.SparseCategoricalAccuracy()]),
        ValueError, "needs integer class ids",
        "Received: labels with shape (8, 10)",
    ),
    BadInput(
        "Distiller.fit", "integer labels with CategoricalAccuracy",
        lambda tmp: fit(distiller, metrics=["categorical_accuracy"]),
        ValueError, "needs one-hot labels", "Received: labels with shape (8,)",
    ),
    BadInput(
        "MutualLearning.fit", "a cross-entropy metric reading probabilities",
        lambda tmp: fit(mutual, metrics=["sparse_categorical_crossentropy"]),
        ValueError, "every head of this model outputs logits",
        "Received: metric SparseCategoricalCrossentropy(from_logits=False)",
    ),
    BadInput(
        "ClassWiseSelfDistillation.fit", f"integer label {NUM_CLASSES} for {NUM_CLASSES} classes",
        lambda tmp: compiled(class_wise()).fit(
            *pair_by_class(IMAGES, np.full(16, NUM_CLASSES), seed=0), batch_size=8,
            verbose=0),
        ValueError, f"must be class ids in [0, {NUM_CLASSES})",
        f"Received: y with value {NUM_CLASSES} at index 0",
    ),
    BadInput(
        "ProgressiveSelfDistillation.fit", f"integer label {NUM_CLASSES} for {NUM_CLASSES} classes",
        lambda tmp: fit_indexed(progressive(), with_sample_index(IMAGES),
                                np.full(16, NUM_CLASSES)),
        ValueError, f"must be class ids in [0, {NUM_CLASSES})",
        f"Received: y with value {NUM_CLASSES} at index 0",
    ),
    BadInput(
        "LastBatchSelfDistillation.fit", f"integer label {NUM_CLASSES} for {NUM_CLASSES} classes",
        lambda tmp: dlb_plan_fit(y=np.full(16, NUM_CLASSES), shuffle=False),
        ValueError, f"must be class ids in [0, {NUM_CLASSES})",
        f"Received: y with value {NUM_CLASSES} at index 0",
    ),
    # -- load_weights ---------------------------------------------------- #
    BadInput(
        "SelfDistillModel.load_weights", "weights saved with other heads",
        load_other_heads,
        ValueError, "Load a file saved by a model built the same way",
        f"Received: filepath='{TMP}/two_heads.weights.h5'",
    ),
    BadInput(
        "SelfDistillModel.load_weights", "the plain backbone's weights",
        load_backbone_weights,
        ValueError, "nothing was loaded",
        f"Received: filepath='{TMP}/backbone.weights.h5'",
    ),
    BadInput(
        "Distiller.load_weights", "weights saved with another student",
        load_other_student,
        ValueError, "Load a file saved by a model built the same way",
        f"Received: filepath='{TMP}/narrow_student.weights.h5'",
    ),
    # -- schedules ------------------------------------------------------- #
    BadInput(
        "HyperparameterScheduler", "a hyper-parameter the model does not have",
        lambda tmp: scheduler_on(mutual(), HyperparameterScheduler("momentum", float)),
        ValueError, "Its hyper-parameters are ['alpha', 'temperature']",
        "Received: name='momentum'",
    ),
    BadInput(
        "HyperparameterScheduler", "a schedule value out of range",
        lambda tmp: scheduler_on(mutual(), HyperparameterScheduler("alpha", lambda e: 1.5),
                                 epoch=0),
        ValueError, "`alpha` must be in [0, 1]", "gave 1.5 at epoch 0",
    ),
    BadInput(
        "HyperparameterScheduler", "per='batch'",
        lambda tmp: HyperparameterScheduler("alpha", float, per="batch"),
        ValueError, "`per` must be one of ['epoch', 'step']", "Received: per='batch'",
    ),
    BadInput(
        "HyperparameterScheduler", "a number instead of a schedule",
        lambda tmp: HyperparameterScheduler("alpha", 0.5),
        ValueError, "`schedule` must be a callable (int) -> float",
        "Received: schedule=0.5",
    ),
    BadInput(
        "HyperparameterScheduler", "an empty name",
        lambda tmp: HyperparameterScheduler("", float),
        ValueError, "must be the name of a hyper-parameter", "Received: name=''",
    ),
    BadInput(
        "MomentumScheduler", "start momentum above 1",
        lambda tmp: MomentumScheduler(start=1.2),
        ValueError, "`start` must be in [0, 1]", "Received: start=1.2",
    ),
    BadInput(
        "MomentumScheduler", "total_steps 0", lambda tmp: MomentumScheduler(total_steps=0),
        ValueError, "`total_steps` must be an integer >= 1", "Received: total_steps=0",
    ),
    BadInput(
        "CosineSchedule", "total_steps not a whole number",
        lambda tmp: CosineSchedule(0.0, 1.0, total_steps=2.5),
        ValueError, "`total_steps` must be an integer >= 1", "Received: total_steps=2.5",
    ),
    BadInput(
        "LinearSchedule", "start as a string", lambda tmp: LinearSchedule("a", 1.0, 3),
        ValueError, "`start` must be a number finite", "Received: start='a'",
    ),
    # -- AuxiliaryHead --------------------------------------------------- #
    BadInput(
        "AuxiliaryHead", "num_classes 0", lambda tmp: AuxiliaryHead(num_classes=0),
        ValueError, "`num_classes` must be an integer >= 1", "Received: num_classes=0",
    ),
    BadInput(
        "AuxiliaryHead", "num_classes not a whole number",
        lambda tmp: AuxiliaryHead(num_classes=2.5),
        ValueError, "`num_classes` must be an integer >= 1", "Received: num_classes=2.5",
    ),
    BadInput(
        "AuxiliaryHead", "negative width", lambda tmp: AuxiliaryHead(3, width=-4),
        ValueError, "`width` must be an integer >= 1", "Received: width=-4",
    ),
    BadInput(
        "AuxiliaryHead", "negative num_downsampling",
        lambda tmp: AuxiliaryHead(3, num_downsampling=-1),
        ValueError, "`num_downsampling` must be an integer >= 0",
        "Received: num_downsampling=-1",
    ),
    BadInput(
        "AuxiliaryHead", "kernel_size 0", lambda tmp: AuxiliaryHead(3, kernel_size=0),
        ValueError, "`kernel_size` must be an integer >= 1", "Received: kernel_size=0",
    ),
    BadInput(
        "AuxiliaryHead", "batch_norm_momentum 1",
        lambda tmp: AuxiliaryHead(3, batch_norm_momentum=1.0),
        ValueError, "`batch_norm_momentum` must be a number in [0, 1)",
        "Received: batch_norm_momentum=1.0",
    ),
    BadInput(
        "AuxiliaryHead", "gradient_scale above 1",
        lambda tmp: AuxiliaryHead(3, gradient_scale=2.0),
        ValueError, "`gradient_scale` must be in [0, 1]",
        "Received: gradient_scale=2.0",
    ),
    BadInput(
        "AuxiliaryHead", "a data format in another framework's spelling",
        lambda tmp: AuxiliaryHead(3, data_format="NCHW"),
        ValueError, "`data_format` must be one of ['channels_last', 'channels_first']",
        "Received: data_format='NCHW'",
    ),
    BadInput(
        "AuxiliaryHead", "channels-first map whose channel axis is unknown",
        lambda tmp: AuxiliaryHead(3, data_format="channels_first").build((None, None, 8, 8)),
        ValueError, "AuxiliaryHead needs a known channel dimension",
        "input_shape=(None, None, 8, 8), data_format='channels_first'",
    ),
    BadInput(
        "AuxiliaryHead", "a block structure that does not exist",
        lambda tmp: AuxiliaryHead(3, block="triple"),
        ValueError, "`block` must be one of 'single', 'double'",
        "Received: block='triple'",
    ),
    BadInput(
        "AuxiliaryHead", "block as a boolean instead of a name",
        lambda tmp: AuxiliaryHead(3, block=True),
        ValueError, "`block` must be one of 'single', 'double'",
        "Received: block=True",
    ),
    BadInput(
        "AuxiliaryHead", "attention as a string",
        lambda tmp: AuxiliaryHead(3, attention="sigmoid"),
        ValueError, "`attention` must be True or False",
        "Received: attention='sigmoid'",
    ),
    BadInput(
        "AuxiliaryHead", "attention on a 3-D sequence",
        lambda tmp: AuxiliaryHead(3, attention=True).build((None, 12, 4)),
        ValueError, "attention=True needs 4-D images (batch, height, width, channels)",
        "Received: input_shape=(None, 12, 4), a 3-D input",
    ),
    BadInput(
        "AuxiliaryHead", "attention on images of unknown size",
        lambda tmp: AuxiliaryHead(3, attention=True).build((None, None, None, 4)),
        ValueError, "attention=True needs a known height and width",
        "Received: input_shape=(None, None, None, 4)",
    ),
    BadInput(
        "AuxiliaryHead", "a 6-D input",
        lambda tmp: AuxiliaryHead(3).build((None, 2, 2, 2, 2, 2)),
        ValueError, "AuxiliaryHead accepts 2-D features",
        "Received: input_shape=(None, 2, 2, 2, 2, 2)",
    ),
    # -- losses ---------------------------------------------------------- #
    BadInput(
        "losses.cross_entropy", "one-hot labels with another class count",
        lambda tmp: losses.cross_entropy(one_hot(LABELS[:6], 3), np.zeros((6, 5))),
        ValueError, "one-hot vectors of shape (batch, 5) to match the model's 5 classes",
        "Received: labels with shape (6, 3) for logits with shape (6, 5)",
    ),
    BadInput(
        "losses.softened_kl_divergence", "temperature 0",
        lambda tmp: losses.softened_kl_divergence(np.zeros((2, 3)), np.zeros((2, 3)), 0.0),
        ValueError, "`temperature` must be > 0", "Received: temperature=0.0",
    ),
    BadInput(
        "losses.softened_kl_divergence", "temperature NaN",
        lambda tmp: losses.softened_kl_divergence(
            np.zeros((2, 3)), np.zeros((2, 3)), float("nan")
        ),
        ValueError, "`temperature` must be > 0", "Received: temperature=nan",
    ),
    BadInput(
        "losses.softened_kl_divergence", "temperature infinite",
        lambda tmp: losses.softened_kl_divergence(
            np.zeros((2, 3)), np.zeros((2, 3)), float("inf")
        ),
        ValueError, "`temperature` must be finite", "Received: temperature=inf",
    ),
    BadInput(
        "losses.distillation_objective", "alpha above 1",
        lambda tmp: losses.distillation_objective(
            LABELS[:2] % 3, np.zeros((2, 3)), np.zeros((2, 3)), alpha=1.5),
        ValueError, "`alpha` must be in [0, 1]", "Received: alpha=1.5",
    ),
    BadInput(
        "losses.feature_distance", "features of different shapes",
        lambda tmp: losses.feature_distance(np.zeros((6, 4)), np.zeros((6, 3))),
        ValueError, "must have the same shape after projection",
        "Received: student_features.shape=(6, 4), teacher_features.shape=(6, 3)",
    ),
    BadInput(
        "losses.feature_distance", "an unknown reduction",
        lambda tmp: losses.feature_distance(np.zeros((2, 3)), np.zeros((2, 3)), "max"),
        ValueError, "`reduction` must be 'sum' or 'mean'", "Received: reduction='max'",
    ),
    BadInput(
        "losses.self_distillation_loss", "one head",
        lambda tmp: losses.self_distillation_loss(LABELS[:2] % 3, [np.zeros((2, 3))]),
        ValueError, "needs at least 2 heads", "Received: 1 head(s)",
    ),
    BadInput(
        "losses.self_distillation_loss", "an unknown feature_reduction",
        lambda tmp: losses.self_distillation_loss(
            LABELS[:2] % 3, [np.zeros((2, 3))] * 2, [np.zeros((2, 4))] * 2,
            feature_reduction="none"),
        ValueError, "`feature_reduction` must be one of ['sum', 'mean']",
        "Received: feature_reduction='none'",
    ),
    BadInput(
        "losses.self_distillation_loss", "negative feature_weight",
        lambda tmp: losses.self_distillation_loss(
            LABELS[:2] % 3, [np.zeros((2, 3))] * 2, feature_weight=-1.0),
        ValueError, "`feature_weight` must be >= 0", "Received: feature_weight=-1.0",
    ),
    BadInput(
        "losses.mutual_learning_loss", "one peer",
        lambda tmp: losses.mutual_learning_loss(LABELS[:2] % 3, [np.zeros((2, 3))]),
        ValueError, "Mutual learning needs at least 2 peers",
        "Received: 1 peer logits",
    ),
    BadInput(
        "TeacherFreeLoss", "alpha above 1", lambda tmp: TeacherFreeLoss(alpha=1.5),
        ValueError, "`alpha` must be in [0, 1]", "Received: alpha=1.5",
    ),
    BadInput(
        "TeacherFreeLoss", "temperature 0", lambda tmp: TeacherFreeLoss(temperature=0.0),
        ValueError, "`temperature` must be > 0", "Received: temperature=0.0",
    ),
    BadInput(
        "TeacherFreeLoss", "true_class_probability 1 (the other classes get log 0)",
        lambda tmp: TeacherFreeLoss(true_class_probability=1.0),
        ValueError, "`true_class_probability` must be in (0, 1): at 1",
        "Received: true_class_probability=1.0",
    ),
    BadInput(
        "TeacherFreeLoss", "a negative true_class_probability",
        lambda tmp: TeacherFreeLoss(true_class_probability=-0.2),
        ValueError, "`true_class_probability` must be in (0, 1)",
        "Received: true_class_probability=-0.2",
    ),
    BadInput(
        "TeacherFreeLoss", "true_class_probability as a string",
        lambda tmp: TeacherFreeLoss(true_class_probability="high"),
        ValueError, "`true_class_probability` must be a number in (0, 1)",
        "Received: true_class_probability='high'",
    ),
    BadInput(
        "TeacherFreeLoss", "true_class_probability below 1/K (checked on the first call)",
        lambda tmp: TeacherFreeLoss(true_class_probability=0.1)(
            LABELS[:2] % 5, np.zeros((2, 5), "float32")),
        ValueError, "must be at least 1 / num_classes = 0.2 for 5 classes",
        "Received: true_class_probability=0.1",
    ),
    BadInput(
        "losses.check_true_class_probability", "below 1/K for the number of classes",
        lambda tmp: losses.check_true_class_probability(0.05, num_classes=10),
        ValueError, "must be at least 1 / num_classes = 0.1 for 10 classes",
        "Received: true_class_probability=0.05",
    ),
    BadInput(
        "losses.virtual_teacher_logits", "logits with one class",
        lambda tmp: losses.virtual_teacher_logits(np.array([0]), np.zeros((1, 1))),
        ValueError, "needs a known number of classes >= 2",
        "Received: logits with shape (1, 1)",
    ),
    BadInput(
        "losses.class_wise_objective", "a negative distillation_weight",
        lambda tmp: losses.class_wise_objective(
            LABELS[:2] % 3, np.zeros((2, 3)), np.zeros((2, 3)), distillation_weight=-1),
        ValueError, "`distillation_weight` must be >= 0",
        "Received: distillation_weight=-1",
    ),
    BadInput(
        "losses.progressive_self_distillation_loss", "alpha above 1",
        lambda tmp: losses.progressive_self_distillation_loss(
            LABELS[:2] % 3, np.zeros((2, 3)), np.full((2, 3), 1 / 3), alpha=1.5),
        ValueError, "`alpha` must be in [0, 1]", "Received: alpha=1.5",
    ),
    BadInput(
        "losses.last_mini_batch_loss", "negative alpha",
        lambda tmp: losses.last_mini_batch_loss(
            LABELS[:2] % 3, np.zeros((2, 3)), np.zeros((1, 3)), np.ones(1), alpha=-1.0),
        ValueError, "`alpha` must be >= 0", "Received: alpha=-1.0",
    ),
    BadInput(
        "losses.last_mini_batch_loss", "logits that are not twice the stored rows",
        lambda tmp: losses.last_mini_batch_loss(
            LABELS[:3] % 3, np.zeros((3, 3)), np.zeros((1, 3)), np.ones(1)),
        ValueError, "`logits` must have twice as many rows as `previous_logits`",
        "Received: logits with shape (3, 3), previous_logits with shape (1, 3)",
    ),
    # -- CoDistillation and CheckpointExchange --------------------------- #
    BadInput(
        "CoDistillation", "one peer and no remote peers",
        lambda tmp: CoDistillation(mlp("only")),
        ValueError, "needs at least 2 peers in all",
        "Received: 1 peer(s) and remote_peers=0",
    ),
    BadInput(
        "CoDistillation", "refresh_steps of 0",
        lambda tmp: CoDistillation([mlp("a"), mlp("b")], refresh_steps=0),
        ValueError, "`refresh_steps` must be an integer >= 1",
        "Received: refresh_steps=0",
    ),
    BadInput(
        "CoDistillation", "a negative burn-in",
        lambda tmp: CoDistillation([mlp("a"), mlp("b")], burn_in_steps=-1),
        ValueError, "`burn_in_steps` must be an integer >= 0",
        "Received: burn_in_steps=-1",
    ),
    BadInput(
        "CoDistillation", "a fractional number of remote peers",
        lambda tmp: CoDistillation(mlp("a"), remote_peers=1.5),
        ValueError, "`remote_peers` must be an integer >= 0",
        "Received: remote_peers=1.5",
    ),
    BadInput(
        "CoDistillation.mark_remote_snapshot_loaded", "an index past the remote snapshots",
        lambda tmp: CoDistillation(mlp("a"), remote_peers=1).mark_remote_snapshot_loaded(1),
        ValueError, "must be an integer in [0, 1) (the remote snapshots)",
        "Received: index=1",
    ),
    BadInput(
        "callbacks.CheckpointExchange", "a group number out of range",
        lambda tmp: CheckpointExchange(str(tmp), group=2, num_groups=2),
        ValueError, "`group` must be an integer in [0, 2)", "Received: group=2",
    ),
    BadInput(
        "callbacks.CheckpointExchange", "a single group",
        lambda tmp: CheckpointExchange(str(tmp), group=0, num_groups=1),
        ValueError, "`num_groups` must be an integer >= 2", "Received: num_groups=1",
    ),
    BadInput(
        "callbacks.CheckpointExchange", "a model with the wrong number of remote peers",
        lambda tmp: fit(
            lambda: CoDistillation(mlp("a"), remote_peers=1),
            callbacks=[CheckpointExchange(str(tmp), group=0, num_groups=3)],
        ),
        ValueError, "a CoDistillation with one peer and remote_peers=2",
        "Received: a CoDistillation with 1 peer(s) and remote_peers=1.",
    ),
    BadInput(
        "callbacks.CheckpointExchange", "a model that is not a CoDistillation",
        lambda tmp: fit(
            mutual, callbacks=[CheckpointExchange(str(tmp), group=0, num_groups=2)]
        ),
        ValueError, "CheckpointExchange trains one group",
        "Received: a MutualLearning.",
    ),
]


def dino_backbone(output_rank=2):
    """Images (any size) to 4 features; `output_rank=4` keeps the map."""
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    if output_rank == 2:
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, x, name="dino_backbone")


def small_dino(**kwargs):
    return DINO(dino_backbone(), output_dim=8, hidden_dim=8, bottleneck_dim=4,
                multi_crop=MultiCrop(8, 4, 1, seed=0), **kwargs)


def fit_dino_with_labels():
    model = small_dino()
    model.compile(optimizer="sgd")
    model.fit(IMAGES[:4, :, :, :1].repeat(3, -1), LABELS[:4], verbose=0)


DINO_BAD_INPUTS = [
    BadInput(
        "DINO", "a backbone that is not a keras.Model",
        lambda tmp: DINO(keras.layers.Dense(4)),
        ValueError, "`backbone` must be a built keras.Model mapping images to features",
        "Received: Dense",
    ),
    BadInput(
        "DINO", "a backbone returning a feature map, not a vector",
        lambda tmp: DINO(dino_backbone(output_rank=4)),
        ValueError, "`backbone` must have one output of features (batch, D)",
        "Received: output shape(s) [(None, None, None, 4)]",
    ),
    BadInput(
        "DINO", "an unknown served network",
        lambda tmp: small_dino(serve="ema"),
        ValueError, "`serve` must be one of ['teacher', 'student']",
        "Received: serve='ema'",
    ),
    BadInput(
        "DINO", "a non-positive teacher temperature",
        lambda tmp: small_dino(teacher_temperature=0.0),
        ValueError, "`teacher_temperature` must be > 0",
        "Received: teacher_temperature=0.0",
    ),
    BadInput(
        "DINO", "a negative freeze length",
        lambda tmp: small_dino(freeze_last_layer_epochs=-1),
        ValueError, "`freeze_last_layer_epochs` must be an integer >= 0",
        "Received: freeze_last_layer_epochs=-1",
    ),
    BadInput(
        "DINO.fit", "labels (DINO learns without them)",
        lambda tmp: fit_dino_with_labels(),
        ValueError, "DINO learns without labels: call fit(images)",
        "Received: y of type ndarray",
    ),
    BadInput(
        "DINO.compile", "metrics (there are no labels)",
        lambda tmp: small_dino().compile(metrics=["accuracy"]),
        ValueError, "DINO trains without labels, so `metrics` must be None",
        "Received: metrics=['accuracy']",
    ),
    BadInput(
        "DINO.export_backbone", "an unknown network",
        lambda tmp: small_dino().export_backbone("ema"),
        ValueError, "`which` must be one of ['teacher', 'student']",
        "Received: which='ema'",
    ),
    BadInput(
        "DINOHead", "zero outputs",
        lambda tmp: DINOHead(0),
        ValueError, "`output_dim` must be an integer >= 1", "Received: output_dim=0",
    ),
    BadInput(
        "MultiCrop", "a scale range the wrong way round",
        lambda tmp: MultiCrop(global_scale=(0.9, 0.4)),
        ValueError, "`global_scale` must be a pair (low, high) with 0 < low <= high <= 1",
        "Received: global_scale=(0.9, 0.4)",
    ),
    BadInput(
        "MultiCrop", "a negative number of local crops",
        lambda tmp: MultiCrop(num_local_crops=-2),
        ValueError, "`num_local_crops` must be an integer >= 0",
        "Received: num_local_crops=-2",
    ),
    BadInput(
        "MultiCrop", "a batch that is not of images",
        lambda tmp: MultiCrop(8, 4, 1)(np.zeros((2, 8), "float32")),
        ValueError, "MultiCrop takes a batch of images (batch, height, width, channels)",
        "Received: images of shape (2, 8)",
    ),
    BadInput(
        "CollapseMonitor", "a margin of half log K or more",
        lambda tmp: CollapseMonitor(margin=0.5),
        ValueError, "`margin` must be in (0, 0.5)", "Received: margin=0.5",
    ),
    BadInput(
        "losses.dino_loss_terms", "a single crop",
        lambda tmp: losses.dino_loss_terms(np.zeros((1, 2, 3)), np.zeros((1, 2, 3)),
                                           np.zeros(3)),
        ValueError, "DINO needs at least two crops",
        "Received: student_logits with 1 crop(s)",
    ),
]
BAD_INPUTS = BAD_INPUTS + DINO_BAD_INPUTS


def row_id(row):
    text = f"{row.owner} {row.description}".lower()
    return re.sub(r"[^a-z0-9]+", "_", text).strip("_")


ROW_IDS = [row_id(row) for row in BAD_INPUTS]
assert len(set(ROW_IDS)) == len(ROW_IDS), "Two rows describe the same input."


@pytest.mark.parametrize(
    "row",
    [
        pytest.param(
            row,
            id=identifier,
            marks=pytest.mark.skipif(
                row.needs_non_root and RUNNING_AS_ROOT,
                reason="root can write to read-only directories",
            ),
        )
        for row, identifier in zip(BAD_INPUTS, ROW_IDS)
    ],
)
def test_bad_input_raises_naming_the_value_and_what_is_allowed(row, tmp_path):
    with pytest.raises(row.error, match=re.escape(row.allowed)) as raised:
        row.make(tmp_path)
    message = str(raised.value)
    received = row.received.replace(TMP, str(tmp_path))
    assert received in message, f"{received!r} is not in the message:\n{message}"


def test_the_table_covers_every_public_model_and_the_issue_minimum():
    owners = {row.owner.split(".")[0] for row in BAD_INPUTS}
    for name in ("SelfDistillModel", "Distiller", "MutualLearning", "EMATeacher",
                 "SelfEnsembleTeacher", "BornAgain", "AuxiliaryHead",
                 "ClassWiseSelfDistillation", "ProgressiveSelfDistillation",
                 "LastBatchSelfDistillation", "TeacherFreeLoss", "CoDistillation"):
        assert name in owners
    assert len(BAD_INPUTS) >= 30


# ---------------------------------------------------------------------- #
# Behaviour around an error.
# ---------------------------------------------------------------------- #


def test_a_refused_distiller_leaves_the_teacher_trainable():
    teacher = conv_classifier("teacher", strides=1)
    with pytest.raises(ValueError):  # The hint shapes: the last check made.
        Distiller(teacher, conv_classifier("student", strides=2),
                  feature_pairs=[("conv", "conv")])
    assert teacher.trainable


def test_a_refused_build_model_trains_nothing():
    model = born_again(make_model=lambda: mlp("soft", activation="softmax"))
    with pytest.raises(ValueError):
        model.fit(IMAGES, LABELS, verbose=0)
    assert model.models == []


def test_a_tap_on_a_layer_first_called_in_another_graph_uses_the_backbones_call():
    conv = keras.layers.Conv2D(4, 3, padding="same", name="reused")
    conv(keras.Input((8, 8, 1)))  # `conv.output` is this call, not the backbone's.
    inputs = keras.Input((8, 8, 1))
    logits = keras.layers.Dense(NUM_CLASSES, name="logits")(
        keras.layers.GlobalAveragePooling2D()(conv(inputs))
    )
    model = SelfDistillModel.from_backbone(keras.Model(inputs, logits), taps=["reused"])
    heads = model.predict_heads(IMAGES[:2], verbose=0)
    assert [head.shape for head in heads] == [(2, NUM_CLASSES)] * 2


# ---------------------------------------------------------------------- #
# docs/bad_inputs.md, generated from the table.
# ---------------------------------------------------------------------- #


def _code(text):
    """`text` as a Markdown code span that survives a table cell."""
    text = text.replace("|", "\\|")
    longest = max((len(run) for run in re.findall("`+", text)), default=0)
    fence = "`" * (longest + 1)
    padding = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{padding}{text}{padding}{fence}"


def render_markdown(rows=BAD_INPUTS):
    """The text of `docs/bad_inputs.md`."""
    lines = [
        "# Bad inputs and the errors they raise",
        "",
        "<!-- Generated by `python tests/test_bad_inputs.py` from the table in",
        "tests/test_bad_inputs.py; do not edit by hand. -->",
        "",
        "Every wrong configuration below fails at once, before any training "
        "step, with a message that names the value received and says what is "
        "allowed. Each row is a test: it builds the bad input, and asserts the "
        "exception type and both quoted excerpts of the message.",
        "",
        f"{len(rows)} bad inputs. `<tmp>` stands for the directory a path was "
        "made in.",
        "",
        "What is *not* an error: a `keras.Sequential` started with "
        "`keras.Input` works as a backbone, teacher, student or peer; integer "
        "and one-hot (or soft) labels both work with every model, as do the "
        "`'accuracy'` and `'crossentropy'` metrics; a tap on a layer that was "
        "first called in another graph is attached where the backbone calls "
        "it.",
    ]
    owners = []
    for row in rows:
        if row.owner not in owners:
            owners.append(row.owner)
    for owner in owners:
        lines += [
            "",
            f"## {owner}",
            "",
            "| Bad input | Raises | The message says what is allowed | and names what was received |",
            "| --- | --- | --- | --- |",
        ]
        for row in rows:
            if row.owner == owner:
                lines.append(
                    f"| {row.description} | `{row.error.__name__}` | "
                    f"{_code(row.allowed)} | {_code(row.received)} |"
                )
    return "\n".join(lines) + "\n"


def test_docs_are_generated_from_this_table():
    assert DOC_PATH.exists(), "Run `python tests/test_bad_inputs.py`."
    assert DOC_PATH.read_text() == render_markdown(), (
        "docs/bad_inputs.md is out of date: run `python tests/test_bad_inputs.py`."
    )


if __name__ == "__main__":
    DOC_PATH.write_text(render_markdown())
    print(f"Wrote {DOC_PATH} ({len(BAD_INPUTS)} bad inputs).", file=sys.stderr)
