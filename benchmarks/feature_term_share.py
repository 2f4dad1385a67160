"""How much of SelfDistillModel's loss is the feature term, per backbone width?

The feature term of Be Your Own Teacher is `feature_weight * ||F_i - F_C||^2`
per shallow head. Summed over the features' dimensions, its size grows with
the width of the deepest features: 64 on the evidence ResNet-20, 1,280 to
2,048 on keras.applications backbones. This script attaches heads (three
shallow ones; two on the ResNet-20, as the evidence harness does) to each
backbone (32x32 inputs, 10 classes, no pretrained weights), trains a few SGD
steps on CIFAR-10 images with each candidate reduction of the feature term,
and prints the terms and the feature term's share of the loss at the first
and the last step:

- `sum`, weight 0.03: the paper's (and the 0.1 default);
- `mean`, weight 2.0: divided by the width, weighted so that a 64-wide
  model (the evidence ResNet-20) gets about the paper's weight
  (0.03 x 64 = 1.92).

A default "means the same" on every backbone when the share is about the
same. Command (about 10 minutes on one core):

    KSD_CIFAR10=../shared/data/cifar10_train_jpeg.npz \\
        python benchmarks/feature_term_share.py --steps 20

`--smoke` runs the ResNet-20 for 2 steps on random images.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_selfdistill import SelfDistillModel  # noqa: E402
from keras_selfdistill import TrainingInputs  # noqa: E402

#: name -> (builder, taps shallow to deep).
BACKBONES = {
    "ResNet-20 (evidence)": (
        lambda: __import__("cifar10_evidence").cifar_resnet(16, 3),
        ["stage1_out", "stage2_out"],
    ),
    "ResNet50V2": (
        lambda: keras.applications.ResNet50V2(**_application_arguments()),
        ["conv2_block3_out", "conv3_block4_out", "conv4_block6_out"],
    ),
    "MobileNetV2": (
        lambda: keras.applications.MobileNetV2(**_application_arguments()),
        ["block_2_add", "block_5_add", "block_12_add"],
    ),
    "EfficientNetB0": (
        lambda: keras.applications.EfficientNetB0(**_application_arguments()),
        ["block2b_add", "block3b_add", "block5c_add"],
    ),
}
#: candidate -> (reduction, feature_weight).
CANDIDATES = {"sum, 0.03": ("sum", 0.03), "mean, 2.0": ("mean", 2.0)}


def _application_arguments():
    return dict(weights=None, input_shape=(32, 32, 3), classes=10,
                classifier_activation=None)


def load_images(path, count, seed):
    """`count` CIFAR-10 training images and labels (random if `path` is None)."""
    rng = np.random.default_rng(seed)
    if path is None:
        return (rng.normal(size=(count, 32, 32, 3)).astype("float32"),
                rng.integers(0, 10, count).astype("int32"))
    from cifar10_evidence import load_cifar10

    (images, labels), _ = load_cifar10(path, train_images=count, test_per_class=10)
    return images, labels


def measure(name, candidate, images, labels, steps, batch_size):
    """History of the loss terms over `steps` SGD steps, one row per step."""
    builder, taps = BACKBONES[name]
    reduction, weight = CANDIDATES[candidate]
    keras.utils.set_random_seed(0)
    model = SelfDistillModel.from_backbone(
        builder(), taps, feature_weight=weight, feature_reduction=reduction)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    width = _deepest_width(model, images[:2])
    history = model.fit(images, labels, batch_size=batch_size, epochs=steps,
                        steps_per_epoch=1, verbose=0).history
    return width, history


def _deepest_width(model, images):
    outputs = model(TrainingInputs(images), training=False)
    return int(outputs["features"][-1].shape[-1])


def share_row(name, candidate, width, history, step):
    reduction, weight = CANDIDATES[candidate]
    cross_entropy = history["cross_entropy_loss"][step]
    distillation = history["distillation_loss"][step]
    feature = weight * history["feature_loss"][step]
    total = history["loss"][step]
    return (f"| {name} | {width} | {candidate} | {step + 1} | {cross_entropy:.2f} | "
            f"{distillation:.2f} | {feature:.2f} | {total:.2f} | "
            f"{100 * feature / total:.0f} % |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.environ.get("KSD_CIFAR10"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    names = list(BACKBONES)
    if args.smoke:
        args.data, args.steps, names = None, 2, names[:1]
    images, labels = load_images(args.data, args.steps * args.batch_size, seed=0)
    print("| backbone | deepest width | feature term | step | cross-entropy "
          "(all heads) | KL (shallow) | weighted feature | loss | feature share |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for name in names:
        for candidate in CANDIDATES:
            start = time.process_time()
            width, history = measure(name, candidate, images, labels,
                                     args.steps, args.batch_size)
            for step in (0, args.steps - 1):
                print(share_row(name, candidate, width, history, step), flush=True)
            print(f"<!-- {name}, {candidate}: {time.process_time() - start:.0f} CPU s -->",
                  flush=True)


if __name__ == "__main__":
    main()
