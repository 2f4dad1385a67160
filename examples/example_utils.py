"""What the CIFAR examples share: arguments, data, ResNets, the SGD recipe.

Not part of the library. The examples are TensorFlow programs (they read
CIFAR with `tensorflow_datasets` through `tf.data`), so unlike the library
this module imports TensorFlow.

Every example gets the same command-line arguments (`argument_parser`)
and the same recipe, the one of the Be Your Own Teacher authors' released
code: SGD with learning rate 0.1 and momentum 0.9, weight decay 5e-4 on
every weight, batch 128, the learning rate divided by 10 at a third and two
thirds of training and 10 epochs before the end, random crop (4-pixel
padding) and horizontal flip.
"""

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

# Several models are trained and evaluated in one process: their
# functions are traced separately, which is expected, so TensorFlow's
# retracing warnings are noise here.
tf.get_logger().setLevel("ERROR")

# Per-channel statistics of the CIFAR training images (in [0, 1]), as in the
# BYOT authors' code.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)

#: What `--smoke` sets: seconds on a CPU, every code path of a full run.
SMOKE_SETTINGS = dict(
    epochs=1, width=4, blocks_per_stage=1, batch_size=16, train_examples=64,
    test_examples=32,
)

# PyTorch's defaults, which the reference code trains with: batch-norm
# momentum 0.1 (Keras: 0.9) and epsilon 1e-5, He-normal initialisation with
# fan-out.
_BATCH_NORM = dict(momentum=0.9, epsilon=1e-5)
_CONV_INIT = keras.initializers.VarianceScaling(
    2.0, mode="fan_out", distribution="untruncated_normal"
)


# ---------------------------------------------------------------------- #
# Arguments.
# ---------------------------------------------------------------------- #


def argument_parser(description: str, epochs: int) -> argparse.ArgumentParser:
    """An example's parser, with the arguments every example takes.

    Args:
        description: str. The example's one-line description.
        epochs: int. The example's default number of epochs.

    Returns:
        An `argparse.ArgumentParser`; add the example's own arguments and
        pass `parser.parse_args(argv)` to `resolve_arguments`.
    """
    parser = argparse.ArgumentParser(
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_common_arguments(parser, epochs)
    return parser


def add_common_arguments(parser: argparse.ArgumentParser, epochs: int) -> None:
    """Adds the arguments every example takes.

    Args:
        parser: the example's parser.
        epochs: int. The example's default number of epochs.
    """
    parser.add_argument(
        "--smoke", action="store_true",
        help="a few steps on a tiny subset with tiny widths: checks that "
             "everything runs (seconds on a CPU), says nothing about accuracy",
    )
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"training epochs (default {epochs}; 1 with --smoke)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="batch size (default 128; 16 with --smoke)")
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=5e-4,
                        help="L2 weight decay on every weight, as PyTorch's SGD "
                             "weight_decay (default 5e-4)")
    parser.add_argument(
        "--lr-drops", type=str, default=None,
        help="comma-separated epochs at which the learning rate is divided by "
             "10 (default: epochs//3, 2*epochs//3 and epochs-10)",
    )
    parser.add_argument("--width", type=int, default=None,
                        help="channels of the first ResNet stage (default 64; "
                             "4 with --smoke)")
    parser.add_argument("--blocks-per-stage", type=int, default=None,
                        help="residual blocks in every ResNet stage (default: "
                             "the depth's own, e.g. 2 for ResNet18; 1 with --smoke)")
    parser.add_argument("--train-examples", type=int, default=None,
                        help="train on the first N training images (default all)")
    parser.add_argument("--test-examples", type=int, default=None,
                        help="evaluate on the first N test images (default all)")
    parser.add_argument(
        "--jit-compile", choices=("auto", "on", "off"), default="auto",
        help="XLA compilation of the train step; auto: on when a GPU is visible",
    )
    parser.add_argument("--run-eagerly", action="store_true",
                        help="do not trace or compile the steps (debugging, "
                             "and the offline tests' smoke runs)")
    parser.add_argument("--data-dir", default=None,
                        help="tensorflow_datasets data directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=None,
                        help="Keras fit verbosity (default 2: a line per "
                             "epoch; 0 with --smoke)")
    parser.set_defaults(default_epochs=epochs)


def resolve_arguments(args: argparse.Namespace) -> argparse.Namespace:
    """Fills the defaults that depend on `--smoke`, and checks the rest."""
    smoke = args.smoke
    defaults = dict(SMOKE_SETTINGS) if smoke else dict(
        epochs=args.default_epochs, width=64, blocks_per_stage=None,
        batch_size=128, train_examples=None, test_examples=None,
    )
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.verbose is None:
        args.verbose = 0 if smoke else 2
    if args.lr_drops is None:
        args.lr_drops = default_lr_drops(args.epochs)
    else:
        args.lr_drops = [int(epoch) for epoch in args.lr_drops.split(",") if epoch]
    return args


def default_lr_drops(epochs: int) -> list:
    """The BYOT authors' schedule: /10 at 1/3, 2/3 and 10 epochs before the end."""
    candidates = (epochs // 3, 2 * epochs // 3, epochs - 10)
    return sorted({epoch for epoch in candidates if 0 < epoch < epochs})


def compile_options(args) -> dict:
    """`compile` arguments from `--jit-compile` and `--run-eagerly`.

    `--jit-compile auto` turns XLA on where a GPU is visible (Colab), off on
    a CPU. `--run-eagerly` skips tracing the steps altogether: slower per
    step, but no tracing cost, which is what a few-step smoke run pays for.
    """
    if args.run_eagerly:
        return dict(jit_compile=False, run_eagerly=True)
    if args.jit_compile == "auto":
        return dict(jit_compile=bool(tf.config.list_physical_devices("GPU")))
    return dict(jit_compile=args.jit_compile == "on")


def describe(args, compile_options: dict) -> str:
    """One line with the settings of a run, for the log."""
    gpus = tf.config.list_physical_devices("GPU")
    device = f"{len(gpus)} GPU(s)" if gpus else "CPU"
    options = ", ".join(f"{key}={value}" for key, value in compile_options.items())
    return (
        f"{device}, Keras {keras.__version__} ({keras.backend.backend()}), "
        f"{options}; epochs={args.epochs}, "
        f"batch={args.batch_size}, SGD lr={args.learning_rate} "
        f"momentum={args.momentum} weight_decay={args.weight_decay}, "
        f"lr/10 at epochs {args.lr_drops}, width={args.width}"
        + (f", {args.blocks_per_stage} block(s) per stage" if args.blocks_per_stage else "")
        + (" [SMOKE RUN: accuracy means nothing]" if args.smoke else "")
    )


def start_run(args, dataset: str):
    """What every example does first: seeds, picks the compile options,
    logs the settings and loads the data.

    Args:
        args: resolved arguments (`resolve_arguments`).
        dataset: str. `"cifar10"` or `"cifar100"`.

    Returns:
        `(compile_options, data)`: the `compile` keyword arguments and a
        `CifarData`.
    """
    keras.utils.set_random_seed(args.seed)
    options = compile_options(args)
    print(describe(args, options), flush=True)
    return options, CifarData(dataset, args)


# ---------------------------------------------------------------------- #
# Data.
# ---------------------------------------------------------------------- #


def _normalize(image, label):
    image = tf.cast(image, "float32") / 255.0
    image = (image - CIFAR_MEAN) / CIFAR_STD
    return image, tf.cast(label, "int32")


def _augment(image, label):
    # Random crop with 4 pixels of padding, and a horizontal flip.
    image = tf.image.resize_with_crop_or_pad(image, 40, 40)
    image = tf.image.random_crop(image, (32, 32, 3))
    image = tf.image.random_flip_left_right(image)
    return image, label


class CifarData:
    """CIFAR-10 or CIFAR-100 as `tf.data` pipelines.

    Attributes:
        train: dataset of augmented, normalised `(image, label)` batches,
            reshuffled every epoch.
        test: dataset of normalised `(image, label)` batches, in order.
        test_images: the same test batches without labels (for `predict`).
        test_labels: int array of every test label, in order.
        num_classes: int.
    """

    def __init__(self, name: str, args):
        def load(split, examples):
            if examples:
                split = f"{split}[:{examples}]"
            dataset, info = tfds.load(
                name, split=split, as_supervised=True, with_info=True,
                data_dir=args.data_dir,
            )
            # `take` as well as the split slice: tfds.testing.mock_data
            # ignores slices.
            return (dataset.take(examples) if examples else dataset), info

        autotune = tf.data.AUTOTUNE
        train, info = load("train", args.train_examples)
        test, _ = load("test", args.test_examples)
        self.num_classes = info.features["label"].num_classes
        self.train = (
            train.cache()
            .shuffle(10_000, seed=args.seed, reshuffle_each_iteration=True)
            .map(_augment, num_parallel_calls=autotune)
            .map(_normalize, num_parallel_calls=autotune)
            .batch(args.batch_size)
            .prefetch(autotune)
        )
        self.test = (
            test.map(_normalize, num_parallel_calls=autotune)
            .batch(args.batch_size)
            .cache()
            .prefetch(autotune)
        )
        self.test_images = self.test.map(lambda image, label: image)
        self.test_labels = np.concatenate(
            [labels.numpy() for _, labels in self.test]
        )


# ---------------------------------------------------------------------- #
# Models.
# ---------------------------------------------------------------------- #


def _conv(filters, kernel_size, strides, name):
    return keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same", use_bias=False,
        kernel_initializer=_CONV_INIT, name=name,
    )


def _norm(name):
    return keras.layers.BatchNormalization(name=name, **_BATCH_NORM)


def _basic_block(x, filters, strides, name):
    shortcut = x
    y = _conv(filters, 3, strides, f"{name}_conv1")(x)
    y = keras.layers.ReLU(name=f"{name}_relu1")(_norm(f"{name}_bn1")(y))
    y = _norm(f"{name}_bn2")(_conv(filters, 3, 1, f"{name}_conv2")(y))
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv(filters, 1, strides, f"{name}_shortcut")(x)
        shortcut = _norm(f"{name}_shortcut_bn")(shortcut)
    return keras.layers.Add(name=f"{name}_add")([y, shortcut])


def _bottleneck_block(x, filters, strides, name):
    shortcut = x
    y = _conv(filters, 1, 1, f"{name}_conv1")(x)
    y = keras.layers.ReLU(name=f"{name}_relu1")(_norm(f"{name}_bn1")(y))
    y = _conv(filters, 3, strides, f"{name}_conv2")(y)
    y = keras.layers.ReLU(name=f"{name}_relu2")(_norm(f"{name}_bn2")(y))
    y = _norm(f"{name}_bn3")(_conv(4 * filters, 1, 1, f"{name}_conv3")(y))
    if strides != 1 or x.shape[-1] != 4 * filters:
        shortcut = _conv(4 * filters, 1, strides, f"{name}_shortcut")(x)
        shortcut = _norm(f"{name}_shortcut_bn")(shortcut)
    return keras.layers.Add(name=f"{name}_add")([y, shortcut])


_RESNETS = {
    18: (_basic_block, (2, 2, 2, 2)),
    34: (_basic_block, (3, 4, 6, 3)),
    50: (_bottleneck_block, (3, 4, 6, 3)),
}


def cifar_resnet(
    depth: int, num_classes: int, width: int = 64, blocks_per_stage=None, name=None
):
    """A ResNet for 32x32 images, as in the BYOT authors' code.

    A 3x3 stem convolution with stride 1 (no max-pooling), four stages of
    basic (18, 34) or bottleneck (50) blocks with `width * (1, 2, 4, 8)`
    channels at 32, 16, 8 and 4 pixels, global average pooling and a dense
    classifier returning logits. The output of stage `i` is the layer
    `stage{i}_out` (a tap for heads).

    Args:
        depth: 18, 34 or 50.
        num_classes: int.
        width: int. Channels of the first stage. Defaults to 64.
        blocks_per_stage: int or `None`. Blocks in every stage instead of
            the depth's own (`--smoke` uses 1). Defaults to `None`.
        name: str or `None`. Defaults to `"resnet{depth}"`.

    Returns:
        A functional `keras.Model` from `(32, 32, 3)` images to logits.
    """
    block, stage_blocks = _RESNETS[depth]
    if blocks_per_stage:
        stage_blocks = (blocks_per_stage,) * 4
    inputs = keras.Input((32, 32, 3), name="image")
    x = _conv(width, 3, 1, "stem_conv")(inputs)
    x = keras.layers.ReLU(name="stem_relu")(_norm("stem_bn")(x))
    for stage, blocks in enumerate(stage_blocks, start=1):
        filters = width * 2 ** (stage - 1)
        for index in range(blocks):
            strides = 2 if stage > 1 and index == 0 else 1
            x = block(x, filters, strides, f"stage{stage}_block{index + 1}")
            last = index == blocks - 1
            x = keras.layers.ReLU(
                name=f"stage{stage}_out" if last else f"stage{stage}_block{index + 1}_out"
            )(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name=name or f"resnet{depth}")


def resnet(depth: int, num_classes: int, args, name=None):
    """`cifar_resnet` with the width and blocks of the command line."""
    return cifar_resnet(
        depth, num_classes, width=args.width,
        blocks_per_stage=args.blocks_per_stage, name=name,
    )


def add_weight_decay(model, weight_decay: float) -> None:
    """PyTorch-style (coupled) weight decay on every trainable weight.

    PyTorch's `SGD(weight_decay=wd)`, which the reference code uses, adds
    `wd * w` to every gradient before momentum: the gradient of
    `wd / 2 * ||w||^2`. Keras's `SGD(weight_decay=...)` decays decoupled from
    the gradient, which with momentum 0.9 is about ten times weaker, so the
    penalty goes into the loss instead, on every trainable variable (kernels,
    biases, batch-norm scales and offsets, as in PyTorch). The library's
    models add these penalties to their loss (`model.losses`).

    Args:
        model: a built `keras.Model`.
        weight_decay: float. `wd`.
    """
    if weight_decay:
        regularizer = keras.regularizers.L2(weight_decay / 2)
        for variable in model.trainable_variables:
            variable.regularizer = regularizer


def sgd(args):
    """The recipe's optimizer: SGD with momentum (a new one per call)."""
    return keras.optimizers.SGD(args.learning_rate, momentum=args.momentum)


def learning_rate_schedule(args):
    """Divides the learning rate by 10 at each epoch of `args.lr_drops`."""
    drops = list(args.lr_drops)

    def schedule(epoch, learning_rate=None):
        return args.learning_rate * 0.1 ** sum(epoch >= drop for drop in drops)

    return keras.callbacks.LearningRateScheduler(schedule)


def plain_compile(model, args, compile_options):
    """Compiles a model for plain training on the labels."""
    model.compile(
        optimizer=sgd(args),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        **compile_options,
    )


# ---------------------------------------------------------------------- #
# Reporting.
# ---------------------------------------------------------------------- #


def accuracy(logits, labels) -> float:
    """Top-1 accuracy of logits `(samples, classes)` against class ids."""
    return float(np.mean(np.asarray(logits).argmax(axis=-1) == labels))


def print_table(title: str, header, rows) -> None:
    """Prints a Markdown table (so it can be pasted into docs/results)."""
    print(f"\n{title}\n")
    print("| " + " | ".join(header) + " |")
    print("| " + " | ".join("---" for _ in header) + " |")
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")
    print(flush=True)


def percent(value) -> str:
    """`0.7823` -> `"78.23"`; `None` -> `"-"`."""
    return "-" if value is None else f"{100 * value:.2f}"


class Timer:
    """Wall-clock seconds since construction."""

    def __init__(self):
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        """Seconds elapsed."""
        return time.perf_counter() - self.start
