"""Online distillation on Fashion-MNIST: accuracy and step-time ratios.

For each seed, trains the same small CNN five ways and reports its test
accuracy (mean ± std over seeds):

- on the labels alone (plain `model.fit`), twice with different seeds, and
  the two models' logit ensemble (what mutual learning's ensemble should be
  compared with);
- `MutualLearning` with two such peers: each peer, and their ensemble;
- `EMATeacher`: the student and its exponential-moving-average teacher;
- `SelfEnsembleTeacher`, parameter-averaged (SDA) and output-voted (SDV)
  over the last `--snapshots` steps: the student and the teacher.

Then the per-step training time of each wrapper divided by one plain
model's, measured on the same data in interleaved rounds (CPU, or whatever
device Keras uses; `jit_compile` off unless `--jit`).

Data: Fashion-MNIST through `examples/fashion_mnist.py`
(the Debian package `dataset-fashion-mnist`, read offline).

Small run (a few minutes on 2 CPU cores; 16 steps per epoch, so the EMA
momentum is lowered to 0.9, an averaging window of about 10 steps):

    python benchmarks/online_distillation_benchmark.py \
        --seeds 2 --epochs 1 --samples 2000 --momentum 0.9

Full run: `--seeds 5 --epochs 10 --samples 60000` (4,690 steps; the
default momentum 0.99 averages over about 100 steps).
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
from fashion_mnist import load_fashion_mnist  # noqa: E402

from keras_selfdistill.models.ema_teacher import EMATeacher  # noqa: E402
from keras_selfdistill.models.mutual_learning import MutualLearning  # noqa: E402
from keras_selfdistill.models.self_ensemble import SelfEnsembleTeacher  # noqa: E402


def load_data(samples, test_samples):
    """Images as float32 (n, 28, 28, 1) in [0, 1], labels as int32."""
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist(allow_download=False)

    def prepare(images, labels, count):
        order = np.random.default_rng(0).permutation(len(labels))[:count]
        images = (images[order, ..., None] / 255.0).astype("float32")
        return images, labels[order].astype("int32")

    return (
        prepare(x_train, y_train, samples),
        prepare(x_test, y_test, test_samples),
    )


def build_model(name="model"):
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(32, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x), name=name)


def make_setups(args):
    """Fresh, compiled models for every method: name -> (fit model, parts)."""
    optimizer = lambda: keras.optimizers.Adam(args.learning_rate)  # noqa: E731
    setups = {}

    plain = build_model("plain")
    plain.compile(
        optimizer=optimizer(),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=args.jit,
    )
    setups["plain"] = plain

    mutual = MutualLearning(
        [build_model("peer_0"), build_model("peer_1")],
        alpha=args.alpha,
        temperature=args.temperature,
    )
    setups["mutual learning"] = mutual

    setups["EMA teacher"] = EMATeacher(
        build_model("student"),
        momentum=args.momentum,
        alpha=args.alpha,
        temperature=args.temperature,
    )
    for average, label in (("parameters", "SDA"), ("outputs", "SDV")):
        setups[f"self-ensemble {label}"] = SelfEnsembleTeacher(
            build_model("student"),
            num_snapshots=args.snapshots,
            average=average,
            alpha=args.alpha,
            temperature=args.temperature,
        )
    for name, model in setups.items():
        if name != "plain":
            model.compile(
                optimizer=optimizer(), metrics=["accuracy"], jit_compile=args.jit
            )
    return setups


def accuracy(model, images, labels):
    logits = model.predict(images, batch_size=1024, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def run_seed(seed, train, test, args):
    """Test accuracy of every method for one seed."""
    (x_train, y_train), (x_test, y_test) = train, test
    fit_arguments = dict(
        epochs=args.epochs, batch_size=args.batch_size, verbose=0, shuffle=True
    )
    results = {}
    plain_logits = []
    for index, plain_seed in enumerate((seed, seed + 1000)):
        keras.utils.set_random_seed(plain_seed)
        plain = build_model("plain")
        plain.compile(
            optimizer=keras.optimizers.Adam(args.learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=args.jit,
        )
        plain.fit(x_train, y_train, **fit_arguments)
        plain_logits.append(plain.predict(x_test, batch_size=1024, verbose=0))
        if index == 0:
            results["plain model (labels only)"] = accuracy(plain, x_test, y_test)
    results["ensemble of 2 independently trained plain models"] = float(
        np.mean(np.argmax(np.mean(plain_logits, axis=0), -1) == y_test)
    )

    keras.utils.set_random_seed(seed)
    setups = make_setups(args)
    mutual = setups["mutual learning"]
    mutual.fit(x_train, y_train, **fit_arguments)
    for index in range(2):
        results[f"MutualLearning peer {index}"] = accuracy(
            mutual.peer(index), x_test, y_test
        )
    results["MutualLearning ensemble (mean logits)"] = accuracy(
        mutual, x_test, y_test
    )

    for name in ("EMA teacher", "self-ensemble SDA", "self-ensemble SDV"):
        model = setups[name]
        model.fit(x_train, y_train, **fit_arguments)
        label = {
            "EMA teacher": f"EMATeacher (momentum {args.momentum})",
            "self-ensemble SDA": f"SelfEnsembleTeacher parameters, K={args.snapshots}",
            "self-ensemble SDV": f"SelfEnsembleTeacher outputs, K={args.snapshots}",
        }[name]
        results[f"{label}: student"] = accuracy(model.student, x_test, y_test)
        results[f"{label}: teacher"] = accuracy(
            model.export_teacher(), x_test, y_test
        )
    return results


class StepTimer(keras.callbacks.Callback):
    """Wall time of each training step (batch begin to batch end)."""

    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def step_times(x, y, args):
    """Median and minimum step time (s) of every method."""
    keras.utils.set_random_seed(0)
    setups = make_setups(args)
    samples = {name: [] for name in setups}
    for repeat in range(args.timing_repeats + 1):
        # Interleaved, so a busy neighbour slows every set-up alike; the
        # first round (tracing, warm-up) is left out.
        for name, model in setups.items():
            timer = StepTimer()
            model.fit(x, y, batch_size=args.batch_size, epochs=1, verbose=0,
                      shuffle=False, callbacks=[timer])
            if repeat:
                samples[name].extend(timer.times[args.timing_warmup:])
    return {
        name: (statistics.median(times), min(times))
        for name, times in samples.items()
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--samples", type=int, default=60000,
                        help="training images used (of 60,000)")
    parser.add_argument("--test-samples", type=int, default=10000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--momentum", type=float, default=0.99,
                        help="EMATeacher momentum")
    parser.add_argument("--snapshots", type=int, default=3,
                        help="SelfEnsembleTeacher num_snapshots (K)")
    parser.add_argument("--timing-steps", type=int, default=30,
                        help="training steps per timing run")
    parser.add_argument("--timing-repeats", type=int, default=5,
                        help="interleaved timing rounds (after one warm-up)")
    parser.add_argument("--timing-warmup", type=int, default=3,
                        help="first steps of each timing run left out")
    parser.add_argument("--jit", action="store_true", help="jit_compile=True")
    args = parser.parse_args()

    train, test = load_data(args.samples, args.test_samples)
    print(
        f"Fashion-MNIST: {len(train[1])} training / {len(test[1])} test images; "
        f"{args.seeds} seeds; {args.epochs} epochs; batch {args.batch_size}; "
        f"Adam {args.learning_rate}; Keras {keras.__version__} "
        f"({keras.backend.backend()}), jit_compile={args.jit}; alpha="
        f"{args.alpha} T={args.temperature}; EMA momentum {args.momentum}; "
        f"self-ensemble K={args.snapshots} (every step)"
    )
    started = time.time()
    per_method = {}
    for seed in range(args.seeds):
        for method, value in run_seed(seed, train, test, args).items():
            per_method.setdefault(method, []).append(value)
        print(f"seed {seed} done ({time.time() - started:.0f} s)", flush=True)

    print(f"\n| method ({build_model().count_params():,}-parameter CNN) "
          f"| test accuracy, mean ± std over {args.seeds} seeds |")
    print("| --- | --- |")
    for method, values in per_method.items():
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"| {method} | {statistics.mean(values):.4f} ± {spread:.4f} |")

    steps = args.timing_steps * args.batch_size
    repeats = -(-steps // len(train[1]))
    x = np.concatenate([train[0]] * repeats)[:steps]
    y = np.concatenate([train[1]] * repeats)[:steps]
    times = step_times(x, y, args)
    plain_median, plain_min = times["plain"]
    print(
        f"\n| training step (batch {args.batch_size}; {args.timing_repeats} "
        f"interleaved rounds x {args.timing_steps - args.timing_warmup} steps) "
        "| median ms | median ratio | min ms | min ratio |"
    )
    print("| --- | --- | --- | --- | --- |")
    for name, (median, minimum) in times.items():
        print(
            f"| {name} | {1000 * median:.2f} | {median / plain_median:.3f} x plain "
            f"| {1000 * minimum:.2f} | {minimum / plain_min:.3f} x plain |"
        )
    print(f"total {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
