"""Self-distillation vs a plain CNN on Fashion-MNIST, offline, on a CPU.

The main demo of keras-selfdistill. It trains the same small CNN twice for
the same number of epochs — once plainly, once as a `SelfDistillModel` with
two `AuxiliaryHead`s (Be Your Own Teacher) — and prints the test accuracy of
every head, of the heads' ensemble and of early exit, next to the baseline.

Data: the original Fashion-MNIST files from Debian's `dataset-fashion-mnist`
package (`/usr/share/datasets/fashion-mnist/`); where they are absent it falls
back to `keras.datasets.fashion_mnist.load_data()` (a download).

Both models train with Adam and a learning rate that decays to 0 at the last
step (a constant rate leaves the final weights swinging by several points
from one step to the next), and the demo evaluates the final weights. One
run is one seed: after its own table it prints the multi-seed table of
`benchmarks/fashion_mnist_evidence.py` from docs/results, the evidence.

Run (about 3 minutes on 2 idle CPU cores, 2026-12-03):

    python examples/fashion_mnist_demo.py

or `bash scripts/demo.sh` to install everything first.
"""

import argparse
import math
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fashion_mnist import fashion_mnist_source  # noqa: E402
from fashion_mnist import load_fashion_mnist  # noqa: E402

from keras_selfdistill import SelfDistillModel  # noqa: E402

NUM_CLASSES = 10


def conv_block(x, filters, name):
    for index in range(2):
        x = keras.layers.Conv2D(
            filters, 3, padding="same", use_bias=False, name=f"{name}_conv{index}"
        )(x)
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn{index}")(x)
        x = keras.layers.ReLU(name=f"{name}_relu{index}")(x)
    return x


def build_cnn(width=16):
    """A 3-stage CNN (28x28 -> 14x14 -> 7x7), returning logits.

    Args:
        width: int. Channels of the first stage; doubled at each stage.

    Returns:
        A functional `keras.Model`; the heads go on the pooled outputs of
        stages 1 and 2 (`stage1_pool`, 14x14, and `stage2_pool`, 7x7).
    """
    inputs = keras.Input((28, 28, 1), name="image")
    x = conv_block(inputs, width, "stage1")
    x = keras.layers.MaxPooling2D(name="stage1_pool")(x)
    x = conv_block(x, width * 2, "stage2")
    x = keras.layers.MaxPooling2D(name="stage2_pool")(x)
    x = conv_block(x, width * 4, "stage3")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    logits = keras.layers.Dense(NUM_CLASSES, name="logits")(x)
    return keras.Model(inputs, logits, name="cnn")


def build_self_distilled(width=16, **hyperparameters):
    """The same CNN with BYOT heads after stages 1 and 2."""
    return SelfDistillModel.from_backbone(
        build_cnn(width),
        taps=["stage1_pool", "stage2_pool"],
        **hyperparameters,
    )


def load_data(train_samples):
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist()
    x_train = (x_train[..., None] / 255.0).astype("float32")
    x_test = (x_test[..., None] / 255.0).astype("float32")
    if train_samples:
        x_train, y_train = x_train[:train_samples], y_train[:train_samples]
    return (x_train, y_train.astype("int32")), (x_test, y_test.astype("int32"))


def accuracy(logits, labels):
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def cosine_to_zero(learning_rate, samples, batch_size, epochs):
    """Adam's learning rate: cosine decay from `learning_rate` to 0 at the
    last step, so the final weights are not a snapshot of a noisy iterate."""
    steps = epochs * math.ceil(samples / batch_size)
    return keras.optimizers.schedules.CosineDecay(learning_rate, steps, alpha=0.0)


def train(model, data, args):
    (x_train, y_train), _ = data
    schedule = cosine_to_zero(
        args.learning_rate, len(x_train), args.batch_size, args.epochs
    )
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        metrics=["accuracy"],
        jit_compile=args.jit_compile,
        **({} if isinstance(model, SelfDistillModel) else {
            "loss": keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        }),
    )
    start = time.perf_counter()
    model.fit(
        x_train,
        y_train,
        batch_size=args.batch_size,
        epochs=args.epochs,
        verbose=args.verbose,
    )
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--train-samples", type=int, default=0,
                        help="Use only the first N training images (0 = all 60,000).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--exit-threshold", type=float, default=0.9)
    parser.add_argument("--jit-compile", default="auto",
                        help="'auto', 'true' or 'false' (XLA is slower on CPU).")
    parser.add_argument("--verbose", type=int, default=2)
    args = parser.parse_args(argv)
    args.jit_compile = {"true": True, "false": False}.get(
        str(args.jit_compile).lower(), "auto"
    )

    print(f"Fashion-MNIST from: {fashion_mnist_source()}")
    data = load_data(args.train_samples)
    (x_train, _), (x_test, y_test) = data
    print(f"train {len(x_train)} / test {len(x_test)} images, "
          f"{args.epochs} epochs, seed {args.seed}, backend {keras.backend.backend()}")

    keras.utils.set_random_seed(args.seed)
    plain = build_cnn(args.width)
    print("\n== plain CNN ==")
    plain_seconds = train(plain, data, args)
    plain_accuracy = accuracy(plain.predict(x_test, verbose=0), y_test)

    keras.utils.set_random_seed(args.seed)
    model = build_self_distilled(args.width)
    print("\n== self-distilled CNN (Be Your Own Teacher) ==")
    distilled_seconds = train(model, data, args)
    head_logits = model.predict_heads(x_test, verbose=0)
    ensemble = np.mean(np.stack(head_logits), axis=0)
    early = model.predict_early_exit(
        x_test, threshold=args.exit_threshold, verbose=0
    )

    rows = [("plain CNN (baseline)", plain_accuracy)]
    for name, logits in zip(model.head_names[:-1], head_logits[:-1]):
        rows.append((f"self-distilled {name} (shallow)", accuracy(logits, y_test)))
    rows.append(("self-distilled deepest (served)", accuracy(head_logits[-1], y_test)))
    rows.append(("self-distilled ensemble of heads", accuracy(ensemble, y_test)))
    rows.append(
        (f"self-distilled early exit @ {args.exit_threshold}",
         accuracy(early.logits, y_test))
    )
    print("\n| model | test accuracy | vs baseline |")
    print("| --- | ---: | ---: |")
    for name, value in rows:
        delta = (value - plain_accuracy) * 100
        print(f"| {name} | {value * 100:.2f} % | {delta:+.2f} pt |")
    fractions = ", ".join(
        f"{name} {fraction * 100:.1f} %"
        for name, fraction in zip(model.head_names, early.exit_fractions)
    )
    print(f"\nEarly exit @ {args.exit_threshold}: samples leaving at {fractions}")
    print(f"Training time: plain {plain_seconds:.0f} s, self-distilled "
          f"{distilled_seconds:.0f} s ({distilled_seconds / plain_seconds:.2f}x, "
          "includes the heads' extra compute and one-off tracing)")
    print_evidence(EVIDENCE_PAGE, until="\nPer seed")
    print_evidence(CIFAR10_PAGE, until="\nCommand:")


RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "results")
#: The multi-seed results pages the demo prints after its single run: this
#: task (where self-distillation does not help), then CIFAR-10's overfitting
#: regime (where it does).
EVIDENCE_PAGE = os.path.join(RESULTS, "fashion_mnist_evidence.md")
CIFAR10_PAGE = os.path.join(RESULTS, "cifar10_pooled.md")


def print_evidence(path, until):
    """Prints a results page of the evidence harness up to the line that
    starts with `until` (its summary, without the per-seed tables)."""
    print("\nOne run is one seed. The evidence, several paired seeds "
          f"({os.path.relpath(path)}):\n")
    if not os.path.exists(path):
        print(f"(not found: {os.path.relpath(path)}; see benchmarks/)")
        return
    with open(path) as page:
        text = page.read()
    print(text.split(until)[0].strip())


if __name__ == "__main__":
    main()
