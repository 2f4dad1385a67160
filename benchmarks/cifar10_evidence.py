"""CIFAR-10 evidence on a CPU: plain vs deep supervision vs self-distillation.

Trains a small CIFAR ResNet (3 stages, widths w/2w/4w) through the evidence
harness (`benchmarks/harness.py`) as three paired arms per seed:

- `plain`: the backbone alone, cross-entropy;
- `heads_ce`: `SelfDistillModel` with heads after stages 1 and 2, `alpha=0`,
  `feature_weight=0` (deep supervision: every head on the labels only);
- `sd`: `SelfDistillModel` with the library's defaults; its heads' ensemble
  (mean of logits) is reported as `sd ensemble`;
- on request (`--arms`): `sd_byot_heads`; the head-free `label_smoothing`
  (epsilon 0.1), `tf_kd` (`TeacherFreeLoss` defaults), `cs_kd`
  (`ClassWiseSelfDistillation`, T 4, lambda 1); `ps_kd`
  (`ProgressiveSelfDistillation`, alpha_T 0.8 over all epochs) and `dlb`
  (`LastBatchSelfDistillation`, T 3, alpha 1: batches of twice `--batch-size`, half
  repeated from the previous step and re-augmented, so the same number of
  steps and new samples per step as `plain`, twice the images per step);
  `sd_gradient_<scale>` (`sd` with `head_gradient_scale`); `sd_doubling`
  (`sd` with `head_width="doubling"`: the paper's heads, whose blocks double
  the tapped channels instead of starting at the deepest width); `teacher` (the
  ResNet twice as wide), `kd` (`Distiller` from that teacher, alpha 0.9,
  T 4) and `born_again` (generation 1 of `BornAgain`, taught by the `plain`
  arm of the same seed, alpha 0.5, T 1; with the generations' ensemble).

SGD (momentum 0.9, weight decay 5e-4), cosine decay to 0, random crop
(4-pixel zero padding) + horizontal flip, final-epoch weights.

Data: the 50,000 CIFAR-10 training images of `shared/data/cifar10_train_jpeg.npz`
(path from `--cifar10` or the `KSD_CIFAR10` environment variable). The file is
sorted by class, so "the last 10,000 images" would be two classes: the test
split is instead the last 1,000 images of every class (positions 4000-4999
within each class, 10,000 images), and training uses the first
`--train-images / 10` images of every class. Both are printed with the results.

    KSD_CIFAR10=../shared/data/cifar10_train_jpeg.npz python benchmarks/cifar10_evidence.py
    python benchmarks/cifar10_evidence.py --cifar10 PATH --smoke    # seconds
"""

import argparse
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

# This checkout's library, not whichever one is installed.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from headfree_arms import headfree_arms  # noqa: E402
from online_arms import online_arms  # noqa: E402
from teacher_arms import teacher_arms  # noqa: E402

from keras_selfdistill import SelfDistillModel  # noqa: E402

NUM_CLASSES = 10
TAPS = ["stage1_out", "stage2_out"]
# Per-channel statistics of the CIFAR training images (in [0, 1]).
CIFAR_MEAN = np.array([0.4914, 0.4822, 0.4465], dtype="float32")
CIFAR_STD = np.array([0.2023, 0.1994, 0.2010], dtype="float32")
# PyTorch's batch-norm defaults (momentum 0.1 there is 0.9 here), He fan-out.
_BATCH_NORM = dict(momentum=0.9, epsilon=1e-5)
_CONV_INIT = keras.initializers.VarianceScaling(
    2.0, mode="fan_out", distribution="untruncated_normal")


# ---------------------------------------------------------------------- #
# Data.
# ---------------------------------------------------------------------- #


def decode_jpegs(jpeg_bytes: np.ndarray, offsets: np.ndarray, indices) -> np.ndarray:
    """Decodes the images at `indices` to uint8 `(n, 32, 32, 3)`."""
    import tensorflow as tf

    return np.stack([
        tf.io.decode_jpeg(jpeg_bytes[offsets[i]:offsets[i + 1]].tobytes(), channels=3).numpy()
        for i in indices
    ])


def split_indices(labels: np.ndarray, train_images: int, test_per_class: int):
    """Stratified split of a class-sorted file: the last `test_per_class` images
    of every class are the test split, training takes the first
    `train_images // classes` of every class."""
    classes = np.unique(labels)
    per_class_train = train_images // len(classes)
    train, test = [], []
    for label in classes:
        members = np.flatnonzero(labels == label)
        if per_class_train > len(members) - test_per_class:
            raise ValueError(f"Not enough images of class {label} for "
                             f"train_images={train_images}, test_per_class={test_per_class}")
        train.append(members[:per_class_train])
        test.append(members[len(members) - test_per_class:])
    return np.concatenate(train), np.concatenate(test)


def load_cifar10(path: str, train_images: int, test_per_class: int = 1000):
    """`((x_train, y_train), (x_test, y_test))`, normalised float32 images."""
    archive = np.load(path)
    labels = archive["labels"].astype("int32")
    train, test = split_indices(labels, train_images, test_per_class)

    def images(indices):
        pixels = decode_jpegs(archive["jpeg_bytes"], archive["offsets"], indices)
        return ((pixels.astype("float32") / 255.0 - CIFAR_MEAN) / CIFAR_STD).astype("float32")

    return (images(train), labels[train]), (images(test), labels[test])


def crop_and_flip(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random 32x32 crop of the image padded by 4 zeros, and a random
    horizontal flip, for every image of a batch `(n, 32, 32, c)`."""
    n, height, width, _ = images.shape
    padded = np.pad(images, ((0, 0), (4, 4), (4, 4), (0, 0)))
    top = rng.integers(0, 9, size=n)
    left = rng.integers(0, 9, size=n)
    rows = top[:, None] + np.arange(height)
    columns = left[:, None] + np.arange(width)
    flip = rng.random(n) < 0.5
    columns[flip] = columns[flip, ::-1]
    return padded[np.arange(n)[:, None, None], rows[:, :, None], columns[:, None, :]]


def flip(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random horizontal flip of every image of a batch `(n, 32, 32, c)`."""
    flipped = rng.random(len(images)) < 0.5
    images = images.copy()
    images[flipped] = images[flipped, :, ::-1]
    return images


AUGMENTATIONS = {"crop_flip": crop_and_flip, "flip": flip, "none": None}


# ---------------------------------------------------------------------- #
# Models.
# ---------------------------------------------------------------------- #


def _conv(filters, strides, name, kernel_size=3):
    return keras.layers.Conv2D(filters, kernel_size, strides=strides, padding="same",
                               use_bias=False, kernel_initializer=_CONV_INIT, name=name)


def _norm(name):
    return keras.layers.BatchNormalization(name=name, **_BATCH_NORM)


def _basic_block(x, filters, strides, name):
    y = keras.layers.ReLU(name=f"{name}_relu1")(_norm(f"{name}_bn1")(
        _conv(filters, strides, f"{name}_conv1")(x)))
    y = _norm(f"{name}_bn2")(_conv(filters, 1, f"{name}_conv2")(y))
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _norm(f"{name}_shortcut_bn")(
            _conv(filters, strides, f"{name}_shortcut", kernel_size=1)(x))
    return keras.layers.Add(name=f"{name}_add")([y, shortcut])


def cifar_resnet(width: int = 16, blocks_per_stage: int = 3) -> keras.Model:
    """A CIFAR ResNet (He et al., 2016): `6 * blocks_per_stage + 2` layers.

    A 3x3 stem, three stages of basic blocks with `width`, `2 * width` and
    `4 * width` channels at 32, 16 and 8 pixels, global average pooling and
    a dense classifier returning logits. `blocks_per_stage=3` is ResNet-20.
    Stage outputs are the layers `stage1_out`, `stage2_out`, `stage3_out`.
    """
    inputs = keras.Input((32, 32, 3), name="image")
    x = keras.layers.ReLU(name="stem_relu")(_norm("stem_bn")(_conv(width, 1, "stem_conv")(inputs)))
    for stage in (1, 2, 3):
        for index in range(blocks_per_stage):
            strides = 2 if stage > 1 and index == 0 else 1
            x = _basic_block(x, width * 2 ** (stage - 1), strides, f"stage{stage}_block{index + 1}")
            last = index == blocks_per_stage - 1
            x = keras.layers.ReLU(
                name=f"stage{stage}_out" if last else f"stage{stage}_block{index + 1}_out")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    logits = keras.layers.Dense(NUM_CLASSES, name="logits")(x)
    return keras.Model(inputs, logits, name=f"resnet{6 * blocks_per_stage + 2}")


def arms(width: int, blocks_per_stage: int, num_samples: int = 0, epochs: int = 0,
         batch_size: int = 128) -> dict:
    """The arms' builders: `plain`, `heads_ce` (deep supervision), `sd`,
    `sd_byot_heads` (`sd` with the authors' head blocks), `sd_doubling`
    (`sd` with `head_width="doubling"`), `sd_gradient_0.3`
    etc. (`sd` with `head_gradient_scale`), and the head-free
    `label_smoothing`, `tf_kd` (teacher-free KD), `cs_kd` (class-wise
    self-distillation), `ps_kd` (needs `num_samples` and `epochs`) and `dlb`
    (batches of `2 * batch_size`, half of them repeated), and the online and
    temporal teachers `mutual_learning` (two peers) and `ema_teacher`, and
    the taught arms `teacher` (twice as wide), `kd` (from `teacher`) and
    `born_again` (from `plain`)."""
    def plain():
        return cifar_resnet(width, blocks_per_stage)

    def heads_ce():
        return SelfDistillModel.from_backbone(plain(), taps=TAPS, alpha=0.0, feature_weight=0.0)

    def sd():
        return SelfDistillModel.from_backbone(plain(), taps=TAPS)

    def sd_byot_heads():
        # The authors' heads: two separable convolutions per step and the
        # attention gate (AuxiliaryHead(block="double", attention=True)).
        return SelfDistillModel.from_backbone(
            plain(), taps=TAPS, head_block="double", head_attention=True
        )

    def sd_doubling():
        # The paper's widths: each head block doubles the tapped channels.
        return SelfDistillModel.from_backbone(plain(), taps=TAPS, head_width="doubling")

    def sd_gradient(scale):
        # The heads' gradient into the backbone scaled by `scale`.
        return lambda: SelfDistillModel.from_backbone(
            plain(), taps=TAPS, head_gradient_scale=scale
        )

    return dict(plain=plain, heads_ce=heads_ce, sd=sd, sd_byot_heads=sd_byot_heads,
                sd_doubling=sd_doubling,
                **{f"sd_gradient_{scale}": sd_gradient(scale)
                   for scale in harness.HEAD_GRADIENT_SCALES},
                **headfree_arms(plain, num_samples=num_samples, epochs=epochs,
                                batch_size=batch_size),
                **online_arms(plain),
                **teacher_arms(plain, lambda: cifar_resnet(2 * width, blocks_per_stage)))


# ---------------------------------------------------------------------- #
# Main.
# ---------------------------------------------------------------------- #


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--cifar10", default=os.environ.get("KSD_CIFAR10"),
                        help="cifar10_train_jpeg.npz (default: $KSD_CIFAR10)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--train-images", type=int, default=5000,
                        help="first N/10 images of every class")
    parser.add_argument("--test-per-class", type=int, default=1000,
                        help="last N images of every class are the test split")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--blocks-per-stage", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--train-eval-images", type=int, default=2000,
                        help="evenly spaced training images for inference-mode accuracy")
    parser.add_argument("--augment", choices=sorted(AUGMENTATIONS), default="crop_flip")
    parser.add_argument("--arms", default="plain,heads_ce,sd")
    parser.add_argument("--output", default="benchmarks/results/cifar10_evidence.json")
    parser.add_argument("--markdown", default=None, help="also write the tables here")
    parser.add_argument("--smoke", action="store_true",
                        help="at most 2 seeds, 1 epoch, 40 images, width 4: checks that it runs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.seeds, args.epochs, args.train_images = min(args.seeds, 2), 1, 40
        args.test_per_class, args.width, args.batch_size = 2, 4, 16
    if not args.cifar10:
        parser.error("give --cifar10 PATH or set KSD_CIFAR10")
    return args


def main(argv=None):
    args = parse_arguments(argv)
    unknown = sorted(set(args.arms.split(",")) - set(arms(1, 1)))
    if unknown:
        raise ValueError(f"Unknown arms {unknown}; the arms are {sorted(arms(1, 1))}. "
                         f"Received: --arms {args.arms}")
    data = load_cifar10(args.cifar10, args.train_images, args.test_per_class)
    recipe = harness.Recipe(
        epochs=args.epochs, batch_size=args.batch_size, optimizer="sgd",
        learning_rate=args.learning_rate, momentum=0.9, weight_decay=args.weight_decay,
        augment=AUGMENTATIONS[args.augment], train_eval_samples=args.train_eval_images, run_eagerly=args.smoke)
    settings = dict(
        data=f"CIFAR-10 from {os.path.basename(args.cifar10)}; train: first "
             f"{args.train_images // NUM_CLASSES} images of every class "
             f"({len(data[0][0])}); test: last {args.test_per_class} images of every "
             f"class ({len(data[1][0])}), held out of the 50,000 training images",
        model=f"ResNet-{6 * args.blocks_per_stage + 2}, widths {args.width}/"
              f"{2 * args.width}/{4 * args.width}, heads at {TAPS}",
        smoke=args.smoke)
    every_arm = arms(args.width, args.blocks_per_stage, num_samples=len(data[0][0]),
                     epochs=args.epochs, batch_size=args.batch_size)
    builders = {name: build for name, build in every_arm.items()
                if name in args.arms.split(",")}
    if os.path.dirname(args.output):
        os.makedirs(os.path.dirname(args.output), exist_ok=True)
    command = harness.command_line(__file__, sys.argv[1:] if argv is None else argv)
    results = harness.run_arms(builders, recipe, data, range(args.seeds), settings,
                               save_to=args.output, command=command)
    page = harness.render_markdown(results)
    print("\n" + page, flush=True)
    if args.markdown:
        with open(args.markdown, "w") as file:
            file.write(page)
    return results


if __name__ == "__main__":
    main()
