"""Distiller and BornAgain on Fashion-MNIST: accuracy and step-time ratios.

Trains, for each seed, a CNN teacher on the labels, then a small CNN student
four ways: on the labels alone (plain `model.fit`), with knowledge
distillation from the teacher (`Distiller`), the same with the teacher's
logits cached (`Distiller.cache_teacher_logits`), and as born-again
generations (`BornAgain`). Prints the test accuracy of each method (mean ±
std over seeds), then per-step training times on the same models (CPU or
whatever device Keras uses, `jit_compile` off unless `--jit`):

- Distiller / plain student fit step,
- cached-teacher Distiller / plain student fit step,
- Distiller / `keras.distillation.Distiller` step (same teacher, student,
  temperature and weights; Keras's configured with `KLDivergence()` so both
  compute softmax-KL times T^2),

and a check of the KD term on one seeded batch: numpy vs ours vs
`keras.distillation.LogitsDistillation` with its default loss.

Data: the Debian package `dataset-fashion-mnist` (IDX files under
/usr/share/datasets/fashion-mnist), read offline by
`examples/fashion_mnist.py`.

Small run (a couple of minutes on 2 CPU cores):

    python benchmarks/distillation_benchmark.py --seeds 2 --epochs 1 --samples 2000

Full run: `--seeds 5 --epochs 10 --samples 60000`.
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
from fashion_mnist import DEBIAN_FASHION_MNIST_DIR  # noqa: E402
from fashion_mnist import load_fashion_mnist  # noqa: E402

from keras_selfdistill import losses  # noqa: E402
from keras_selfdistill.models.born_again import BornAgain  # noqa: E402
from keras_selfdistill.models.distiller import Distiller  # noqa: E402

def load_data(data_dir, samples, test_samples):
    """Images as float32 (n, 28, 28, 1) in [0, 1], labels as int32.

    The same fixed random subsets for every seed, so seeds differ only in
    initialisation and batch order.
    """
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist(
        data_dir, allow_download=False
    )

    def subset(images, labels, count):
        order = np.random.default_rng(0).permutation(len(labels))[:count]
        images = (images[order, ..., None] / 255.0).astype("float32")
        return images, labels[order].astype("int32")

    return subset(x_train, y_train, samples), subset(x_test, y_test, test_samples)


def build_teacher():
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(32, 3, activation="relu")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(64, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(128, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x), name="teacher")


def build_student():
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(32, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x), name="student")


def compile_plain(model, args):
    model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=args.jit,
    )


def accuracy(model, images, labels):
    logits = model.predict(images, batch_size=1024, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def run_seed(seed, train, test, args):
    """Test accuracy of every method for one seed."""
    (x_train, y_train), (x_test, y_test) = train, test
    fit_arguments = dict(batch_size=args.batch_size, verbose=0, shuffle=True)
    results = {}

    keras.utils.set_random_seed(seed)
    teacher = build_teacher()
    compile_plain(teacher, args)
    teacher.fit(x_train, y_train, epochs=args.teacher_epochs, **fit_arguments)
    results["teacher"] = accuracy(teacher, x_test, y_test)

    keras.utils.set_random_seed(seed)
    student = build_student()
    compile_plain(student, args)
    student.fit(x_train, y_train, epochs=args.epochs, **fit_arguments)
    results["student, labels only"] = accuracy(student, x_test, y_test)

    for cached in (False, True):
        keras.utils.set_random_seed(seed)
        distiller = Distiller(
            teacher, build_student(), alpha=args.alpha, temperature=args.temperature
        )
        distiller.compile(
            optimizer=keras.optimizers.Adam(args.learning_rate),
            metrics=["accuracy"],
            jit_compile=args.jit,
        )
        x = distiller.cache_teacher_logits(x_train) if cached else x_train
        distiller.fit(x, y_train, epochs=args.epochs, **fit_arguments)
        name = "student, KD (Distiller" + (", cached teacher)" if cached else ")")
        results[name] = accuracy(distiller.student, x_test, y_test)

    keras.utils.set_random_seed(seed)
    born_again = BornAgain(
        build_student,
        generations=args.generations,
        alpha=args.ban_alpha,
        temperature=args.ban_temperature,
    )
    born_again.compile(
        optimizer=lambda: keras.optimizers.Adam(args.learning_rate),
        metrics=["accuracy"],
        jit_compile=args.jit,
    )
    born_again.fit(x_train, y_train, epochs=args.epochs, **fit_arguments)
    for index in range(args.generations):
        results[f"student, BornAgain generation {index}"] = accuracy(
            born_again.generation(index), x_test, y_test
        )
    results[f"student, BornAgain ensemble of {args.generations}"] = accuracy(
        born_again.ensemble(), x_test, y_test
    )
    return results, teacher


class StepTimer(keras.callbacks.Callback):
    """Wall time and process CPU time of each training step.

    CPU time (all of this process's threads) measures the work a step does;
    unlike wall time it barely moves when other jobs share the cores.
    """

    def __init__(self):
        super().__init__()
        self.wall = []
        self.cpu = []

    def on_train_batch_begin(self, batch, logs=None):
        self._start = (time.perf_counter(), time.process_time())

    def on_train_batch_end(self, batch, logs=None):
        self.wall.append(time.perf_counter() - self._start[0])
        self.cpu.append(time.process_time() - self._start[1])


def step_times(teacher, x, y, args):
    """Step times (s) of each training set-up on the same models.

    Returns:
        A dict from set-up name to `{"wall": s, "cpu": s}`: the median over
        the timed rounds of the round's mean step time.
    """
    keras.utils.set_random_seed(0)
    # Each set-up gets its own student with the same initial weights.
    initial = build_student().get_weights()

    def fresh_student():
        student = build_student()
        student.set_weights(initial)
        return student

    plain = fresh_student()
    compile_plain(plain, args)

    def our_distiller():
        distiller = Distiller(
            teacher, fresh_student(), alpha=args.alpha, temperature=args.temperature
        )
        distiller.compile(
            optimizer=keras.optimizers.Adam(args.learning_rate),
            metrics=["accuracy"],
            jit_compile=args.jit,
        )
        return distiller

    ours, ours_cached = our_distiller(), our_distiller()
    cached_x = ours_cached.cache_teacher_logits(x)
    theirs = keras.distillation.Distiller(
        teacher=teacher,
        student=fresh_student(),
        distillation_losses=keras.distillation.LogitsDistillation(
            temperature=args.temperature, loss=keras.losses.KLDivergence()
        ),
        student_loss_weight=1.0 - args.alpha,
    )
    theirs.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=args.jit,
    )
    setups = {
        "plain student fit": (plain, x),
        "Distiller (teacher every step)": (ours, x),
        "Distiller, cached teacher": (ours_cached, cached_x),
        "keras.distillation.Distiller": (theirs, x),
    }
    samples = {name: {"wall": [], "cpu": []} for name in setups}
    for repeat in range(args.timing_repeats + 1):
        # Interleaved, so a busy neighbour slows every set-up alike; the
        # first round (tracing, warm-up) is left out.
        for name, (model, inputs) in setups.items():
            timer = StepTimer()
            model.fit(
                inputs, y, batch_size=args.batch_size, epochs=1, verbose=0,
                shuffle=False, callbacks=[timer],
            )
            if repeat:
                for clock in ("wall", "cpu"):
                    steps = getattr(timer, clock)[args.timing_warmup :]
                    samples[name][clock].append(statistics.mean(steps))
    # Per set-up and clock: the median over rounds of the round's mean step
    # time (a mean per round smooths single slow steps; the median over
    # rounds drops rounds a neighbour's job slowed down).
    return {
        name: {clock: statistics.median(times) for clock, times in clocks.items()}
        for name, clocks in samples.items()
    }


def kd_term_check(temperature):
    """The KD term on one seeded batch: numpy, ours, Keras's default."""
    rng = np.random.default_rng(0)
    teacher_logits = rng.normal(scale=3.0, size=(8, 10)).astype("float32")
    student_logits = rng.normal(scale=3.0, size=(8, 10)).astype("float64")

    def log_softmax(z):
        z = z - z.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))

    t = log_softmax(teacher_logits.astype("float64") / temperature)
    s = log_softmax(student_logits / temperature)
    reference = float(np.mean((np.exp(t) * (t - s)).sum(-1)) * temperature**2)
    ours = float(
        np.mean(
            keras.ops.convert_to_numpy(
                losses.softened_kl_divergence(
                    teacher_logits, student_logits.astype("float32"), temperature
                )
            )
        )
    )
    keras_default = float(
        keras.ops.convert_to_numpy(
            keras.distillation.LogitsDistillation(temperature=temperature).compute_loss(
                teacher_logits, student_logits.astype("float32")
            )
        )
    )
    return reference, ours, keras_default


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5, help="student epochs")
    parser.add_argument("--teacher-epochs", type=int, default=None,
                        help="defaults to --epochs")
    parser.add_argument("--samples", type=int, default=60000,
                        help="training images used (of 60,000)")
    parser.add_argument("--test-samples", type=int, default=10000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--alpha", type=float, default=0.9)
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--generations", type=int, default=3)
    parser.add_argument("--ban-alpha", type=float, default=0.5)
    parser.add_argument("--ban-temperature", type=float, default=1.0)
    parser.add_argument("--timing-steps", type=int, default=30,
                        help="training steps per timing run")
    parser.add_argument("--timing-repeats", type=int, default=8,
                        help="interleaved timing rounds (after one warm-up)")
    parser.add_argument("--timing-warmup", type=int, default=3,
                        help="first steps of each timing run left out")
    parser.add_argument("--jit", action="store_true", help="jit_compile=True")
    parser.add_argument("--data-dir", default=DEBIAN_FASHION_MNIST_DIR)
    args = parser.parse_args()
    args.teacher_epochs = args.teacher_epochs or args.epochs

    train, test = load_data(args.data_dir, args.samples, args.test_samples)
    print(
        f"Fashion-MNIST: {len(train[1])} training / {len(test[1])} test images; "
        f"{args.seeds} seeds; teacher {args.teacher_epochs} epochs, students "
        f"{args.epochs} epochs; batch {args.batch_size}; Keras "
        f"{keras.__version__} ({keras.backend.backend()}), jit_compile={args.jit}; "
        f"KD alpha={args.alpha} T={args.temperature}; BornAgain "
        f"alpha={args.ban_alpha} T={args.ban_temperature}"
    )
    started = time.time()
    per_method = {}
    teacher = None
    for seed in range(args.seeds):
        results, teacher = run_seed(seed, train, test, args)
        for method, value in results.items():
            per_method.setdefault(method, []).append(value)
        print(f"seed {seed} done ({time.time() - started:.0f} s)", flush=True)

    print(f"\n| method ({build_teacher().count_params():,}-parameter teacher, "
          f"{build_student().count_params():,}-parameter student) "
          f"| test accuracy, mean ± std over {args.seeds} seeds |")
    print("| --- | --- |")
    for method, values in per_method.items():
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"| {method} | {statistics.mean(values):.4f} ± {spread:.4f} |")

    steps = args.timing_steps * args.batch_size
    repeats = -(-steps // len(train[1]))
    x = np.concatenate([train[0]] * repeats)[:steps]
    y = np.concatenate([train[1]] * repeats)[:steps]
    times = step_times(teacher, x, y, args)
    plain = times["plain student fit"]
    print(
        f"\n| training step, batch {args.batch_size} (median over "
        f"{args.timing_repeats} interleaved rounds of the mean of "
        f"{args.timing_steps - args.timing_warmup} steps) | wall ms | wall ratio "
        "| CPU ms | CPU ratio |"
    )
    print("| --- | --- | --- | --- | --- |")
    for name, clocks in times.items():
        print(
            f"| {name} | {1000 * clocks['wall']:.2f} | "
            f"{clocks['wall'] / plain['wall']:.3f} x plain | "
            f"{1000 * clocks['cpu']:.2f} | {clocks['cpu'] / plain['cpu']:.3f} x plain |"
        )
    ours, theirs = times["Distiller (teacher every step)"], times[
        "keras.distillation.Distiller"
    ]
    print(
        f"| ours / keras.distillation.Distiller | | {ours['wall'] / theirs['wall']:.3f} "
        f"| | {ours['cpu'] / theirs['cpu']:.3f} |"
    )

    reference, ours_kd, keras_kd = kd_term_check(args.temperature)
    print(
        f"\nKD term on a seeded batch (T={args.temperature}): numpy "
        f"KL*T^2 = {reference:.4f}, ours = {ours_kd:.4f}, "
        f"keras LogitsDistillation(default loss) = {keras_kd:.4f}"
    )
    print(f"total {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
