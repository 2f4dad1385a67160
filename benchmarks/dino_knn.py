"""Does DINO learn features without labels? k-NN and linear probes on CIFAR-10.

Three arms on the same small ResNet (3 stages, 128-d global-pooled features),
each with the same seed (so the same initialisation):

- `random`: the backbone at its random initialisation;
- `dino`: `keras_selfdistill.DINO` trained on the training images **without
  their labels** (multi-crop 2 x 32 + `--local-crops` x 16, AdamW with a
  cosine learning rate, `clipnorm=3.0`, teacher momentum cosine from
  `--momentum` to 1, teacher temperature 0.04 -> 0.07); the teacher's
  backbone is evaluated (`export_backbone("teacher")`), as in the paper;
- `supervised`: the backbone plus a linear classifier trained with the labels
  (cross-entropy, crop + flip, Adam, cosine learning rate), for a reference.

Evaluation (labels used here only): weighted k-NN (k = 20, cosine similarity,
votes weighted by `exp(similarity / 0.07)`, as in the DINO paper's
`eval_knn.py`) with the training images' features as the bank, and a linear
probe (softmax regression on the standardised frozen features, full batch),
both scored on a held-out split: the last `--test-per-class` images of every
class of the file (never seen by any arm). CPU time (`time.process_time`)
per arm.

Data: `--cifar10` or `$KSD_CIFAR10` (`shared/data/cifar10_train_jpeg.npz`);
`--dataset fashion_mnist` reads the Debian package's files offline (the
first `--train-images` training images; the first `--test-per-class` of
every class of the test split held out), with 28-pixel global and
12-pixel local crops. `--backbone vit` swaps the ResNet for a tiny pre-norm
ViT (`small_vit`: 4x4 patches, learned position embeddings resized to each
crop's token grid, mean-pooled tokens).

    KSD_CIFAR10=../shared/data/cifar10_train_jpeg.npz \\
        python benchmarks/dino_knn.py --train-images 5000 --epochs 30
    python benchmarks/dino_knn.py --dataset fashion_mnist --width 16 \\
        --train-images 2000 --epochs 30 --batch-size 64 --local-crops 4 \\
        --teacher-temperature 0.04 --seeds 0 1 2
    python benchmarks/dino_knn.py --smoke      # synthetic data, seconds

References: Caron et al., "Emerging Properties in Self-Supervised Vision
Transformers", ICCV 2021 (ViT-S/16 on ImageNet: k-NN 74.5 %, linear 77.0 %).
"""

import argparse
import json
import os
import sys
import time

import keras
import numpy as np
from keras import ops

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_selfdistill import DINO  # noqa: E402
from keras_selfdistill import MultiCrop  # noqa: E402
from keras_selfdistill.callbacks import MomentumScheduler  # noqa: E402

CIFAR_MEAN = np.array([0.4914, 0.4822, 0.4465], dtype="float32")
CIFAR_STD = np.array([0.2023, 0.1994, 0.2010], dtype="float32")
FASHION_MEAN = np.array([0.2860], dtype="float32")
FASHION_STD = np.array([0.3530], dtype="float32")
#: Per dataset: image side, channels, normalisation, local crop side (the
#: paper's 96/224 ratio: 16 for 32, 12 for 28).
DATASETS = {
    "cifar10": dict(size=32, mean=CIFAR_MEAN, std=CIFAR_STD, local_size=16),
    "fashion_mnist": dict(size=28, mean=FASHION_MEAN, std=FASHION_STD,
                          local_size=12),
}


def load_cifar10(path, train_images, test_per_class):
    """`((x_train, y_train), (x_test, y_test))`, float32 images in [0, 1]."""
    from cifar10_evidence import decode_jpegs
    from cifar10_evidence import split_indices

    archive = np.load(path)
    labels = archive["labels"].astype("int32")
    train, test = split_indices(labels, train_images, test_per_class)

    def images(indices):
        pixels = decode_jpegs(archive["jpeg_bytes"], archive["offsets"], indices)
        return (pixels.astype("float32") / 255.0).astype("float32")

    return (images(train), labels[train]), (images(test), labels[test])


def load_fashion_mnist_split(train_images, test_per_class):
    """Fashion-MNIST from the Debian package (offline): the first
    `train_images` training images, and the first `test_per_class` images of
    every class of the official test split; `(batch, 28, 28, 1)` in [0, 1]."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "examples"))
    from fashion_mnist import load_fashion_mnist

    (x_train, y_train), (x_test, y_test) = load_fashion_mnist(allow_download=False)
    test = np.sort(np.concatenate([np.flatnonzero(y_test == label)[:test_per_class]
                                   for label in range(10)]))

    def images(pixels):
        return (pixels[..., None].astype("float32") / 255.0).astype("float32")

    return ((images(x_train[:train_images]), y_train[:train_images].astype("int32")),
            (images(x_test[test]), y_test[test].astype("int32")))


def synthetic_data(train_images, test_images, seed=0, size=32, channels=3):
    """Ten classes of coloured blobs, for `--smoke`."""
    rng = np.random.default_rng(seed)
    colours = rng.uniform(size=(10, channels)).astype("float32")
    low, high = size // 4, 3 * size // 4

    def make(count):
        labels = rng.integers(0, 10, count).astype("int32")
        images = rng.uniform(0, 0.3, size=(count, size, size, channels)).astype("float32")
        images[:, low:high, low:high, :] += colours[labels][:, None, None, :] * 0.7
        return np.clip(images, 0, 1), labels

    return make(train_images), make(test_images)


def small_resnet(width=32, name="resnet", mean=CIFAR_MEAN, std=CIFAR_STD):
    """3 stages (width, 2 width, 4 width), one residual block each, BN,
    global average pooling: images in [0, 1] of any size -> (batch, 4 width).
    `mean`, `std`: per-channel normalisation (their length sets the channels)."""
    inputs = keras.Input((None, None, len(mean)))
    x = keras.layers.Normalization(mean=mean, variance=std**2)(inputs)
    x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    x = keras.layers.ReLU()(x)
    for stage, filters in enumerate((width, 2 * width, 4 * width)):
        strides = 1 if stage == 0 else 2
        shortcut = x
        y = keras.layers.Conv2D(filters, 3, strides=strides, padding="same",
                                use_bias=False)(x)
        y = keras.layers.BatchNormalization(momentum=0.9)(y)
        y = keras.layers.ReLU()(y)
        y = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
        y = keras.layers.BatchNormalization(momentum=0.9)(y)
        if strides != 1 or shortcut.shape[-1] != filters:
            shortcut = keras.layers.Conv2D(filters, 1, strides=strides,
                                           use_bias=False)(shortcut)
            shortcut = keras.layers.BatchNormalization(momentum=0.9)(shortcut)
        x = keras.layers.ReLU()(keras.layers.Add()([y, shortcut]))
    features = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, features, name=name)


@keras.saving.register_keras_serializable(package="dino_knn")
class GridPositionEmbedding(keras.layers.Layer):
    """Learned position embeddings for a `grid` x `grid` patch grid, added to
    patch tokens `(batch, rows, cols, dim)`; a smaller (or larger) grid gets
    them resized bilinearly, as DINO's `interpolate_pos_encoding` does for
    its local crops (bicubic there). The token grid must be static when
    called on data (it is: crops have fixed sizes)."""

    def __init__(self, grid, **kwargs):
        super().__init__(**kwargs)
        self.grid = grid

    def build(self, input_shape):
        self.embedding = self.add_weight(
            shape=(1, self.grid, self.grid, input_shape[-1]), name="embedding",
            initializer=keras.initializers.TruncatedNormal(stddev=0.02))

    def call(self, tokens):
        rows, cols = tokens.shape[1], tokens.shape[2]
        if rows is None or cols is None:
            return tokens  # symbolic shape inference only
        embedding = ops.convert_to_tensor(self.embedding)
        if (rows, cols) != (self.grid, self.grid):
            embedding = ops.image.resize(embedding, (rows, cols),
                                         interpolation="bilinear")
        return tokens + embedding

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "grid": self.grid}


def small_vit(dim=64, depth=4, heads=4, patch=4, image_size=32, mlp_ratio=2,
              name="vit", mean=CIFAR_MEAN, std=CIFAR_STD):
    """A tiny pre-norm ViT from public Keras layers: `patch` x `patch`
    patches (a strided convolution) to `dim`-d tokens, learned position
    embeddings for the `image_size` grid (resized for other crop sizes:
    32 px -> 8 x 8 = 64 tokens, 16 px local crops -> 4 x 4 = 16), `depth`
    blocks of `x + MHA(LN(x))`, `x + MLP(LN(x))` (GELU, hidden
    `mlp_ratio * dim`), then the mean over tokens, layer-normalised:
    images in [0, 1] of any side divisible by `patch` -> `(batch, dim)`."""
    inputs = keras.Input((None, None, len(mean)))
    x = keras.layers.Normalization(mean=mean, variance=std**2)(inputs)
    x = keras.layers.Conv2D(dim, patch, strides=patch, name="patch_embedding")(x)
    x = GridPositionEmbedding(image_size // patch, name="position_embedding")(x)
    x = keras.layers.Reshape((-1, dim))(x)
    for block in range(depth):
        y = keras.layers.LayerNormalization(epsilon=1e-6)(x)
        y = keras.layers.MultiHeadAttention(heads, dim // heads,
                                            name=f"attention_{block}")(y, y)
        x = keras.layers.Add()([x, y])
        y = keras.layers.LayerNormalization(epsilon=1e-6)(x)
        y = keras.layers.Dense(mlp_ratio * dim, activation="gelu")(y)
        y = keras.layers.Dense(dim)(y)
        x = keras.layers.Add()([x, y])
    x = keras.layers.GlobalAveragePooling1D()(x)
    features = keras.layers.LayerNormalization(epsilon=1e-6)(x)
    return keras.Model(inputs, features, name=name)


def make_backbone(args):
    """The `--backbone` for `--dataset`, at the current random seed."""
    spec = DATASETS[args.dataset]
    if args.backbone == "vit":
        return small_vit(dim=args.vit_dim, depth=args.vit_depth,
                         heads=args.vit_heads, patch=args.vit_patch,
                         image_size=spec["size"], mean=spec["mean"],
                         std=spec["std"])
    return small_resnet(args.width, mean=spec["mean"], std=spec["std"])


def features_of(backbone, images, batch_size=500):
    return np.asarray(backbone.predict(images, batch_size=batch_size, verbose=0),
                      dtype="float64")


def weighted_knn_accuracy(train_features, train_labels, test_features, test_labels,
                          k=20, temperature=0.07, num_classes=10):
    """The DINO paper's weighted k-NN: cosine similarity, the `k` nearest
    training features vote for their labels with weight
    `exp(similarity / temperature)`."""
    def normalise(x):
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    bank, queries = normalise(train_features), normalise(test_features)
    correct = 0
    for start in range(0, len(queries), 500):
        similarity = queries[start:start + 500] @ bank.T
        nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(similarity, nearest, axis=1)
        votes = np.zeros((len(top), num_classes))
        np.add.at(votes, (np.arange(len(top))[:, None], train_labels[nearest]),
                  np.exp(top / temperature))
        correct += int(np.sum(votes.argmax(1) == test_labels[start:start + 500]))
    return correct / len(queries)


def linear_probe_accuracy(train_features, train_labels, test_features, test_labels,
                          num_classes=10, steps=500, learning_rate=0.5,
                          weight_decay=1e-4):
    """Softmax regression on standardised frozen features (full-batch
    gradient descent with momentum 0.9, in numpy): test accuracy."""
    mean = train_features.mean(0)
    std = train_features.std(0) + 1e-6
    x, x_test = (train_features - mean) / std, (test_features - mean) / std
    weights = np.zeros((x.shape[1], num_classes))
    bias = np.zeros(num_classes)
    velocity_w, velocity_b = np.zeros_like(weights), np.zeros_like(bias)
    targets = np.eye(num_classes)[train_labels]
    for _ in range(steps):
        logits = x @ weights + bias
        logits -= logits.max(1, keepdims=True)
        probabilities = np.exp(logits)
        probabilities /= probabilities.sum(1, keepdims=True)
        error = (probabilities - targets) / len(x)
        grad_w = x.T @ error + weight_decay * weights
        grad_b = error.sum(0)
        velocity_w = 0.9 * velocity_w - learning_rate * grad_w
        velocity_b = 0.9 * velocity_b - learning_rate * grad_b
        weights += velocity_w
        bias += velocity_b
    return float(np.mean(np.argmax(x_test @ weights + bias, 1) == test_labels))


def probes(backbone, data):
    (x_train, y_train), (x_test, y_test) = data
    train_features = features_of(backbone, x_train)
    test_features = features_of(backbone, x_test)
    return {
        "knn": weighted_knn_accuracy(train_features, y_train, test_features, y_test),
        "linear": linear_probe_accuracy(train_features, y_train, test_features, y_test),
    }


def train_dino(args, x_train, seed):
    keras.utils.set_random_seed(seed)
    backbone = make_backbone(args)
    spec = DATASETS[args.dataset]
    model = DINO(
        backbone,
        output_dim=args.output_dim,
        hidden_dim=args.hidden_dim,
        bottleneck_dim=args.bottleneck_dim,
        multi_crop=MultiCrop(global_size=spec["size"], local_size=spec["local_size"],
                             num_local_crops=args.local_crops, seed=seed),
        warmup_teacher_temperature_epochs=max(1, args.epochs // 3),
        teacher_temperature=args.teacher_temperature,
        momentum=args.momentum,
    )
    steps = args.epochs * int(np.ceil(len(x_train) / args.batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, steps, alpha=0.0, warmup_target=args.learning_rate,
        warmup_steps=max(1, steps // 10))
    # --smoke: no tracing (two steps cost less eagerly than traced).
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=0.04,
                                                   clipnorm=3.0),
                  run_eagerly=args.smoke)
    history = model.fit(x_train, batch_size=args.batch_size, epochs=args.epochs,
                        verbose=2 if not args.smoke else 0,
                        callbacks=[MomentumScheduler(start=args.momentum)])
    print(f"DINO trained: {len(x_train)} images, {args.epochs} epochs", flush=True)
    return model.export_backbone("teacher"), {
        key: [round(float(v), 4) for v in values]
        for key, values in history.history.items()
    }


def crop_and_flip(images, rng):
    size = images.shape[1]
    padded = np.pad(images, ((0, 0), (4, 4), (4, 4), (0, 0)), mode="reflect")
    out = np.empty_like(images)
    for i, (top, left) in enumerate(rng.integers(0, 9, size=(len(images), 2))):
        crop = padded[i, top:top + size, left:left + size]
        out[i] = crop[:, ::-1] if rng.random() < 0.5 else crop
    return out


def train_supervised(args, x_train, y_train, seed):
    keras.utils.set_random_seed(seed)
    backbone = make_backbone(args)
    inputs = keras.Input(x_train.shape[1:])
    classifier = keras.Model(inputs, keras.layers.Dense(10)(backbone(inputs)))
    steps_per_epoch = int(np.ceil(len(x_train) / args.batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(
        args.learning_rate, args.epochs * steps_per_epoch, alpha=0.0)
    classifier.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=5e-4),
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                       metrics=["accuracy"])
    rng = np.random.default_rng(seed)
    for epoch in range(args.epochs):
        order = rng.permutation(len(x_train))
        classifier.fit(crop_and_flip(x_train[order], rng), y_train[order],
                       batch_size=args.batch_size, epochs=1, shuffle=False,
                       verbose=0)
    return backbone


def run(args):
    spec = DATASETS[args.dataset]
    if args.smoke:
        data = synthetic_data(args.train_images, 100, size=spec["size"],
                              channels=len(spec["mean"]))
    elif args.dataset == "fashion_mnist":
        data = load_fashion_mnist_split(args.train_images, args.test_per_class)
    else:
        data = load_cifar10(args.cifar10, args.train_images, args.test_per_class)
    (x_train, y_train), _ = data
    results = {"command": "python " + " ".join(sys.argv), "arms": {},
               "settings": {k: v for k, v in vars(args).items() if k != "cifar10"}}
    for seed in args.seeds:
        for arm in args.arms:
            start_cpu, start_wall = time.process_time(), time.time()
            history = None
            if arm == "random":
                keras.utils.set_random_seed(seed)
                backbone = make_backbone(args)
            elif arm == "dino":
                backbone, history = train_dino(args, x_train, seed)
            else:
                backbone = train_supervised(args, x_train, y_train, seed)
            train_cpu = time.process_time() - start_cpu
            scores = probes(backbone, data)
            row = dict(seed=seed, **scores, train_cpu_s=round(train_cpu, 1),
                       wall_s=round(time.time() - start_wall, 1))
            if history is not None:
                row["dino_history_last"] = {k: v[-1] for k, v in history.items()}
                row["dino_history"] = history
            results["arms"].setdefault(arm, []).append(row)
            print(f"{arm} seed {seed}: k-NN {scores['knn']:.4f} "
                  f"linear {scores['linear']:.4f} train CPU {train_cpu:.0f} s",
                  flush=True)
    return results


def render_table(results):
    lines = ["| arm | seeds | k-NN (k=20) | linear probe | train CPU s |",
             "| --- | --- | --- | --- | --- |"]
    for arm, rows in results["arms"].items():
        def stat(key):
            values = np.array([row[key] for row in rows]) * 100
            if len(values) == 1:
                return f"{values[0]:.1f} %"
            se = values.std(ddof=1) / np.sqrt(len(values))
            return f"{values.mean():.1f} ± {se:.1f} %"
        cpu = np.mean([row["train_cpu_s"] for row in rows])
        lines.append(f"| {arm} | {len(rows)} | {stat('knn')} | {stat('linear')} | "
                     f"{cpu:.0f} |")
    return "\n".join(lines)


def render_paired_table(results):
    """Per seed, every arm's k-NN and linear probe side by side, then the
    paired differences (mean ± standard error over seeds, and how many seeds
    are better): `""` unless all three arms ran on two seeds or more."""
    arms = results["arms"]
    if set(arms) != {"random", "dino", "supervised"} or len(arms["dino"]) < 2:
        return ""
    by_seed = {arm: {row["seed"]: row for row in rows} for arm, rows in arms.items()}
    seeds = [row["seed"] for row in arms["dino"]]
    lines = ["| seed | DINO k-NN | random k-NN | supervised k-NN | DINO linear | "
             "random linear | supervised linear | DINO train CPU s |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for seed in seeds:
        cells = [f"{100 * by_seed[arm][seed][key]:.1f} %"
                 for key in ("knn", "linear") for arm in ("dino", "random", "supervised")]
        lines.append(f"| {seed} | " + " | ".join(cells)
                     + f" | {by_seed['dino'][seed]['train_cpu_s']:.0f} |")
    for better, worse in (("dino", "random"), ("supervised", "dino")):
        for key in ("knn", "linear"):
            gaps = np.array([100 * (by_seed[better][seed][key] - by_seed[worse][seed][key])
                             for seed in seeds])
            se = gaps.std(ddof=1) / np.sqrt(len(gaps))
            lines.append(f"{better} - {worse}, {key}: {gaps.mean():+.1f} ± {se:.1f} pt "
                         f"({int(np.sum(gaps > 0))}/{len(gaps)} seeds above)")
    return "\n".join(lines)


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cifar10", default=os.environ.get("KSD_CIFAR10"))
    parser.add_argument("--dataset", default="cifar10", choices=sorted(DATASETS),
                        help="fashion_mnist: the Debian package's files, offline")
    parser.add_argument("--backbone", default="resnet", choices=["resnet", "vit"])
    parser.add_argument("--vit-dim", type=int, default=64)
    parser.add_argument("--vit-depth", type=int, default=4)
    parser.add_argument("--vit-heads", type=int, default=4)
    parser.add_argument("--vit-patch", type=int, default=4)
    parser.add_argument("--train-images", type=int, default=5000)
    parser.add_argument("--test-per-class", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--output-dim", type=int, default=1024)
    parser.add_argument("--hidden-dim", type=int, default=512)
    parser.add_argument("--bottleneck-dim", type=int, default=128)
    parser.add_argument("--local-crops", type=int, default=4)
    parser.add_argument("--momentum", type=float, default=0.99)
    parser.add_argument("--teacher-temperature", type=float, default=0.07,
                        help="tau_t after the warm-up from 0.04 (a third of the epochs)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--arms", nargs="+", default=["random", "dino", "supervised"],
                        choices=["random", "dino", "supervised"])
    parser.add_argument("--output", default=None, help="JSON results path")
    parser.add_argument("--smoke", action="store_true",
                        help="synthetic data, tiny sizes: checks the script runs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.train_images, args.epochs, args.batch_size = 64, 1, 32
        args.width, args.output_dim, args.hidden_dim = 4, 32, 16
        args.bottleneck_dim, args.local_crops = 8, 1
        args.vit_dim, args.vit_depth, args.vit_heads = 8, 1, 2
    elif args.dataset == "cifar10" and not args.cifar10:
        parser.error("give --cifar10 PATH or set KSD_CIFAR10 (or use --smoke)")
    return args


def main(argv=None):
    args = parse_arguments(argv)
    results = run(args)
    print(render_table(results))
    paired = render_paired_table(results)
    if paired:
        print(paired)
    if args.output:
        with open(args.output, "w") as file:
            json.dump(results, file, indent=1)
    return results


if __name__ == "__main__":
    main()
