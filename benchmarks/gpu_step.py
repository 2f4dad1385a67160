"""Images per second and peak memory of a training step, ready for a GPU.

The design card's target is a Colab GPU with TensorFlow and XLA. For each
network (a CIFAR ResNet-18 and `keras.applications.ResNet50V2`, both on
32x32x3 inputs, 100 classes) and each setting (`jit_compile` off/on,
`float32`/`mixed_float16`), this times four training steps:

- `plain`: the network alone with cross-entropy;
- `SelfDistillModel`: the same network with heads after three stages;
- `Distiller, cached`: the network as a student, teacher logits precomputed
  (`cache_teacher_logits`): no teacher forward pass;
- `Distiller, live`: the same, with the teacher (a second copy of the
  network) run in every step.

and prints, per row, the median step time, the spread of the repeats
(min-max), images/s, the ratio to `plain` in the same setting, and the
peak accelerator memory of that model's steps (`-` where the backend or a
CPU cannot say). Models run interleaved, `--repeats` times.

    python benchmarks/gpu_step.py                      # one GPU: a few minutes
    python benchmarks/gpu_step.py --networks resnet18 --settings float32+jit,mixed_float16+jit
    python benchmarks/gpu_step.py --smoke              # CPU, seconds (CI runs this)

`--smoke` runs every code path (both networks, jit, mixed precision, all
four arms) with a tiny ResNet-18, a few steps and one repeat, so that the
first run on a lent GPU cannot fail on a typo. Its numbers mean nothing.
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# This checkout's library, not whichever one is installed.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_selfdistill import Distiller  # noqa: E402
from keras_selfdistill import SelfDistillModel  # noqa: E402
from step_overhead import StepTimer  # noqa: E402

NUM_CLASSES = 100
ARMS = ("plain", "SelfDistillModel", "Distiller, cached", "Distiller, live")
#: name -> (jit_compile, dtype policy)
SETTINGS = {
    "float32": (False, "float32"),
    "float32+jit": (True, "float32"),
    "mixed_float16": (False, "mixed_float16"),
    "mixed_float16+jit": (True, "mixed_float16"),
}


# ---------------------------------------------------------------------- #
# Networks.
# ---------------------------------------------------------------------- #


def basic_block(x, filters, stride, name):
    """A ResNet basic block (two 3x3 convolutions and a shortcut)."""
    shortcut = x
    x = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                            name=f"{name}_conv1")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn1")(x)
    x = keras.layers.ReLU(name=f"{name}_relu1")(x)
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn2")(x)
    if stride != 1 or shortcut.shape[-1] != filters:
        shortcut = keras.layers.Conv2D(filters, 1, strides=stride, use_bias=False,
                                       name=f"{name}_shortcut")(shortcut)
        shortcut = keras.layers.BatchNormalization(name=f"{name}_shortcut_bn")(shortcut)
    x = keras.layers.Add(name=f"{name}_add")([x, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(x)


def cifar_resnet18(width: int = 64) -> keras.Model:
    """ResNet-18 for 32x32 inputs (3x3 stem, no max-pool), widths w..8w.

    Its stages end in layers `stage1_out` ... `stage4_out`.
    """
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = keras.layers.ReLU(name="stem_relu")(keras.layers.BatchNormalization(name="stem_bn")(x))
    for stage, multiplier in enumerate((1, 2, 4, 8), start=1):
        stride = 1 if stage == 1 else 2
        x = basic_block(x, width * multiplier, stride, f"stage{stage}_block1")
        x = basic_block(x, width * multiplier, 1, f"stage{stage}")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    # float32 logits under mixed precision, as Keras's guide recommends.
    logits = keras.layers.Dense(NUM_CLASSES, dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name="resnet18")


def resnet50v2() -> keras.Model:
    """`keras.applications.ResNet50V2`, random weights, 32x32 inputs, logits."""
    return keras.applications.ResNet50V2(
        weights=None, input_shape=(32, 32, 3), classes=NUM_CLASSES, classifier_activation=None)


#: name -> (builder(width), the layers that get heads)
NETWORKS = {
    "resnet18": (cifar_resnet18, ["stage1_out", "stage2_out", "stage3_out"]),
    "resnet50v2": (lambda width: resnet50v2(),
                   ["conv2_block3_out", "conv3_block4_out", "conv4_block6_out"]),
}


# ---------------------------------------------------------------------- #
# The four arms.
# ---------------------------------------------------------------------- #


def crossentropy():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def build_arms(network: str, width: int, jit_compile: bool) -> dict:
    """`{arm: compiled model}` for one network and one setting."""
    build, taps = NETWORKS[network]
    plain = build(width)
    plain.compile(optimizer="sgd", loss=crossentropy(), jit_compile=jit_compile)
    distilled = SelfDistillModel.from_backbone(build(width), taps=taps)
    teacher = build(width)
    arms = {
        "plain": plain,
        "SelfDistillModel": distilled,
        "Distiller, cached": Distiller(teacher=teacher, student=build(width)),
        "Distiller, live": Distiller(teacher=teacher, student=build(width)),
    }
    for name in ARMS[1:]:
        arms[name].compile(optimizer="sgd", jit_compile=jit_compile)
    return arms


def training_inputs(arm: str, model, images):
    """What `fit` gets as `x`: cached teacher logits for the cached arm."""
    if arm == "Distiller, cached":
        return model.cache_teacher_logits(images, batch_size=256)
    return images


# ---------------------------------------------------------------------- #
# Measuring.
# ---------------------------------------------------------------------- #


def reset_peak_memory() -> None:
    """Starts a new peak-memory window on the first accelerator, if any."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU"):
            tf.config.experimental.reset_memory_stats("GPU:0")
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()


def peak_memory_bytes():
    """Peak accelerator memory since `reset_peak_memory`, or `None`.

    JAX keeps one process-wide peak (it cannot be reset), so its number is
    the peak so far, not per model.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU"):
            return tf.config.experimental.get_memory_info("GPU:0")["peak"]
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            return torch.cuda.max_memory_allocated()
    elif backend == "jax":
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        return stats.get("peak_bytes_in_use")
    return None


def time_arm(arm, model, x, labels, batch_size, warmup):
    """Median step time of one `fit` epoch after `warmup` steps, and the
    peak memory of that epoch."""
    timer = StepTimer()
    reset_peak_memory()
    model.fit(x, labels, batch_size=batch_size, epochs=1, verbose=0, shuffle=False,
              callbacks=[timer])
    return statistics.median(timer.durations[warmup:]), peak_memory_bytes()


def measure_setting(network, setting, args, images, labels) -> dict:
    """`{arm: {"steps": [median per repeat], "peak": bytes or None}}`."""
    jit_compile, policy = SETTINGS[setting]
    keras.mixed_precision.set_global_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        arms = build_arms(network, args.width, jit_compile)
        inputs = {arm: training_inputs(arm, model, images) for arm, model in arms.items()}
        results = {arm: dict(steps=[], peak=None) for arm in arms}
        for _ in range(args.repeats):
            for arm, model in arms.items():
                step, peak = time_arm(arm, model, inputs[arm], labels, args.batch_size,
                                      args.warmup)
                results[arm]["steps"].append(step)
                results[arm]["peak"] = max(filter(None, [peak, results[arm]["peak"]]),
                                           default=None)
        return results
    finally:
        keras.mixed_precision.set_global_policy("float32")


# ---------------------------------------------------------------------- #
# Reporting.
# ---------------------------------------------------------------------- #


def table_rows(network, setting, results, batch_size) -> list:
    """Markdown rows: median step, spread, images/s, ratio, peak memory."""
    plain = statistics.median(results["plain"]["steps"])
    rows = []
    for arm, result in results.items():
        steps = result["steps"]
        median = statistics.median(steps)
        peak = result["peak"]
        rows.append(
            f"| {network} | {setting} | {arm} | {median * 1e3:.1f} | "
            f"{min(steps) * 1e3:.1f}-{max(steps) * 1e3:.1f} | {batch_size / median:.0f} | "
            f"{median / plain:.2f}x | {'-' if peak is None else f'{peak / 2**20:.0f}'} |")
    return rows


def device_description() -> str:
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return f"{len(gpus)} GPU(s)" if gpus else "CPU"
    if backend == "jax":
        import jax

        return str(jax.devices()[0])
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--networks", default="resnet18,resnet50v2",
                        help=f"comma-separated, from {sorted(NETWORKS)}")
    parser.add_argument("--settings", default=",".join(SETTINGS),
                        help=f"comma-separated, from {list(SETTINGS)}")
    parser.add_argument("--width", type=int, default=64, help="ResNet-18's first width")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per repeat")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    args.networks = check_choices("--networks", args.networks, NETWORKS)
    args.settings = check_choices("--settings", args.settings, SETTINGS)
    return args


def check_choices(flag, value, allowed) -> list:
    """Splits a comma-separated flag; a name not in `allowed` is an error."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in allowed]
    if unknown or not names:
        raise SystemExit(f"{flag}: unknown or empty {unknown or value!r}; "
                         f"choose from {list(allowed)}")
    return names


def plan(args) -> list:
    """The `(network, setting)` pairs to run; `--smoke` shrinks everything."""
    if not args.smoke:
        return [(network, setting) for network in args.networks for setting in args.settings]
    args.width, args.batch_size, args.steps, args.warmup, args.repeats = 4, 4, 2, 1, 1
    return [("resnet18", "float32"), ("resnet18", "mixed_float16+jit"),
            ("resnet50v2", "float32")]


def main(argv=None) -> list:
    """Runs the plan and prints the table; returns its rows."""
    args = parse_arguments(argv)
    work = plan(args)
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    count = args.batch_size * (args.steps + args.warmup)
    images = rng.uniform(size=(count, 32, 32, 3)).astype("float32")
    labels = rng.integers(0, NUM_CLASSES, size=count).astype("int32")
    rows = []
    for network, setting in work:
        results = measure_setting(network, setting, args, images, labels)
        rows += table_rows(network, setting, results, args.batch_size)
        print(rows[-len(results)], "...", flush=True)
    print(f"\nbackend {keras.backend.backend()}, device {device_description()}, batch "
          f"{args.batch_size}, {args.repeats} interleaved repeats of {args.steps} timed steps "
          f"after {args.warmup} warm-up steps, smoke={args.smoke}, "
          f"{time.perf_counter() - start:.0f} s in all\n")
    print("| network | setting | model | median step (ms) | repeats min-max (ms) | images/s "
          "| vs plain | peak memory (MiB) |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    print("\n".join(rows))
    return rows


if __name__ == "__main__":
    main()
