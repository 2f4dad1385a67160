"""DINO on CIFAR-10 without labels, then a weighted k-NN on the teacher's features.

`keras_selfdistill.DINO` trains a small ResNet with no labels: a student
learns, from 2 global (32x32) and N local (16x16) crops of each image, to
predict what its momentum teacher predicts from the global crops
(Caron et al., ICCV 2021):

    L = mean_{i global, v != i} H(softmax((t_i - c) / tau_t), softmax(s_v / tau_s))

Recipe: AdamW (learning rate warmed up then cosine to 0, weight decay 0.04,
clipnorm 3.0), teacher momentum cosine from 0.99 to 1 (`MomentumScheduler`),
teacher temperature 0.04 -> 0.07 over the first third of training,
`K = 4096` outputs, `CollapseMonitor` watching the teacher's entropy. The
labels are used only at the end: weighted k-NN (k = 20, cosine,
`exp(sim / 0.07)` votes) of the test images against the training images,
on the teacher's backbone features (`model.export_backbone("teacher")`).

No accuracy was measured for this script here (no GPU, no network on this
repository's machines); the CPU evidence run is
`benchmarks/dino_knn.py` (docs/results/dino_cifar10.md).

Run in Colab (Runtime > Change runtime type > GPU), in a cell:

    !git clone <URL of this repository> keras-selfdistill
    %cd keras-selfdistill
    !pip install -q -e ".[examples]"
    !python examples/dino_cifar10.py --epochs 100

`--smoke` runs a few steps offline on synthetic images (no
tensorflow_datasets, no download): check it first.

References:
    Caron et al. "Emerging Properties in Self-Supervised Vision
    Transformers", ICCV 2021. https://arxiv.org/abs/2104.14294
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_selfdistill import CollapseMonitor  # noqa: E402
from keras_selfdistill import DINO  # noqa: E402
from keras_selfdistill import MultiCrop  # noqa: E402
from keras_selfdistill.callbacks import MomentumScheduler  # noqa: E402

MEAN = np.array([0.4914, 0.4822, 0.4465], dtype="float32")
STD = np.array([0.2023, 0.1994, 0.2010], dtype="float32")


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--smoke", action="store_true",
                        help="a few steps on synthetic images, offline: checks "
                             "that everything runs, says nothing about accuracy")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--width", type=int, default=64,
                        help="channels of the first ResNet stage")
    parser.add_argument("--output-dim", type=int, default=4096, help="K")
    parser.add_argument("--local-crops", type=int, default=6)
    parser.add_argument("--teacher-momentum", type=float, default=0.99)
    parser.add_argument("--jit-compile", choices=("auto", "on", "off"), default="auto")
    parser.add_argument("--run-eagerly", action="store_true")
    parser.add_argument("--data-dir", default=None,
                        help="tensorflow_datasets data directory")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.smoke:
        args.epochs, args.batch_size, args.width = 1, 16, 4
        args.output_dim, args.local_crops = 32, 2
    return args


def load_cifar10(args):
    """`((x_train, y_train), (x_test, y_test))`, float32 images in [0, 1]."""
    if args.smoke:
        rng = np.random.default_rng(args.seed)
        colours = rng.uniform(size=(10, 3)).astype("float32")

        def make(count):
            labels = rng.integers(0, 10, count).astype("int32")
            images = rng.uniform(0, 0.3, (count, 32, 32, 3)).astype("float32")
            images[:, 8:24, 8:24] += 0.7 * colours[labels][:, None, None]
            return np.clip(images, 0, 1), labels

        return make(64), make(40)
    import tensorflow_datasets as tfds

    def split(name):
        images, labels = tfds.as_numpy(tfds.load(
            "cifar10", split=name, batch_size=-1, as_supervised=True,
            data_dir=args.data_dir))
        return images.astype("float32") / 255.0, labels.astype("int32")

    return split("train"), split("test")


def small_resnet(width):
    """Images in [0, 1] of any size -> (batch, 4 * width) features."""
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Normalization(mean=MEAN, variance=STD**2)(inputs)
    x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization(momentum=0.9)(x))
    for stage, filters in enumerate((width, 2 * width, 4 * width)):
        strides = 1 if stage == 0 else 2
        y = keras.layers.Conv2D(filters, 3, strides=strides, padding="same",
                                use_bias=False)(x)
        y = keras.layers.ReLU()(keras.layers.BatchNormalization(momentum=0.9)(y))
        y = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
        y = keras.layers.BatchNormalization(momentum=0.9)(y)
        if stage:
            x = keras.layers.Conv2D(filters, 1, strides=strides, use_bias=False)(x)
            x = keras.layers.BatchNormalization(momentum=0.9)(x)
        x = keras.layers.ReLU()(keras.layers.Add()([x, y]))
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x),
                       name="resnet")


def weighted_knn_accuracy(bank, bank_labels, queries, labels, k=20, temperature=0.07):
    """DINO's k-NN: cosine similarity, `exp(sim / T)`-weighted votes."""
    bank = bank / np.linalg.norm(bank, axis=1, keepdims=True).clip(1e-12)
    queries = queries / np.linalg.norm(queries, axis=1, keepdims=True).clip(1e-12)
    k = min(k, len(bank))
    correct = 0
    for start in range(0, len(queries), 1000):
        similarity = queries[start:start + 1000] @ bank.T
        nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        weights = np.exp(np.take_along_axis(similarity, nearest, 1) / temperature)
        votes = np.zeros((len(nearest), 10))
        np.add.at(votes, (np.arange(len(nearest))[:, None], bank_labels[nearest]), weights)
        correct += int((votes.argmax(1) == labels[start:start + 1000]).sum())
    return correct / len(queries)


def main(argv=None):
    """Trains DINO and prints the k-NN accuracy of the teacher's features."""
    args = parse_arguments(argv)
    keras.utils.set_random_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = load_cifar10(args)
    if args.run_eagerly:
        options = dict(run_eagerly=True)
    elif args.jit_compile == "auto":
        options = dict(jit_compile="auto")
    else:
        options = dict(jit_compile=args.jit_compile == "on")
    model = DINO(
        small_resnet(args.width),
        output_dim=args.output_dim,
        hidden_dim=max(64, 8 * args.width),
        bottleneck_dim=max(8, 2 * args.width),
        multi_crop=MultiCrop(num_local_crops=args.local_crops, seed=args.seed),
        warmup_teacher_temperature_epochs=max(1, args.epochs // 3),
        momentum=args.teacher_momentum,
    )
    steps = args.epochs * -(-len(x_train) // args.batch_size)
    learning_rate = keras.optimizers.schedules.CosineDecay(
        0.0, steps, warmup_target=args.learning_rate, warmup_steps=max(1, steps // 10))
    model.compile(optimizer=keras.optimizers.AdamW(
        learning_rate, weight_decay=0.04, clipnorm=3.0), **options)
    start = time.time()
    history = model.fit(
        x_train, batch_size=args.batch_size, epochs=args.epochs,
        verbose=0 if args.smoke else 2,
        callbacks=[MomentumScheduler(start=args.teacher_momentum), CollapseMonitor()])
    print(f"trained in {time.time() - start:.0f} s", flush=True)
    teacher = model.export_backbone("teacher")
    knn = weighted_knn_accuracy(
        teacher.predict(x_train, batch_size=512, verbose=0), y_train,
        teacher.predict(x_test, batch_size=512, verbose=0), y_test)
    print(f"weighted k-NN (k=20) test accuracy of the teacher's features: "
          f"{100 * knn:.2f} %" + (" [SMOKE RUN]" if args.smoke else ""))
    return {"knn": knn, "history": history.history}


if __name__ == "__main__":
    main()
