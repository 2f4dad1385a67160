"""What does a step of each distillation model cost against a plain one?

Per backend, in its own process (TensorFlow with `jit_compile=False`, JAX
with `jit_compile=True`, torch eager), this times training steps of:

- `plain`: the `step_overhead.py` backbone (width `--width`), cross-entropy.
- `Distiller (cached)`: the same network as the student of a `Distiller`
  whose teacher (twice as wide) ran once beforehand
  (`cache_teacher_logits`); each step runs the student alone.
- `MutualLearning K=2`: two such networks trained together; compared with
  2 x `plain` (K separate steps of one peer).
- `EMATeacher`: the network and its moving-average copy (forward pass of
  the teacher, the average update every step).
- `ResNet50V2 plain` / `ResNet50V2 SelfDistillModel`: keras.applications
  `ResNet50V2(weights=None)` at 32x32x3, 100 classes, plain and with heads
  on `conv3_block4_out` and `conv4_block6_out` (`--resnet`; slow).

Timing: the median step of a `fit` epoch after warm-up steps (a callback
times each step, in wall time and in the process's CPU time), all arms of a
backend interleaved, `--repeats` times; the table prints the median over
repeats and the min-max of the per-repeat ratios (a repeat's arms saw the
same load). On a shared machine, read the CPU-time ratios.

Peak memory (`--memory`): each arm in a fresh process, which builds and
compiles the model, records its peak resident set size (`ru_maxrss`), runs
warm-up plus `--steps` steps and records it again; the table prints the
growth (MiB): what training adds on top of the built model and data
(activations and gradients of a step, optimizer slots, the compiled step;
on JAX also XLA's compilation).

    TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 \\
    XLA_FLAGS=--xla_cpu_multi_thread_eigen=false \\
    taskset -c 0 python benchmarks/family_step_cost.py --resnet --memory

`--data-format channels_first` builds every model channels first (torch's
native layout for convolutions); `--arms "...|SelfDistillModel, doubling
heads"` adds `from_backbone(..., head_width="doubling")`.

`--smoke` runs the small arms for two steps on TensorFlow (the CI test).
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

BACKENDS = ("tensorflow", "jax", "torch")
SMALL_ARMS = ("plain", "Distiller (cached)", "MutualLearning K=2", "EMATeacher")
#: The models of step_overhead.py, for `--arms` (not run by default).
STEP_OVERHEAD_ARMS = ("heads, CE only", "SelfDistillModel")
#: `SelfDistillModel` with `head_width="doubling"` (the paper's narrower heads).
DOUBLING_ARM = "SelfDistillModel, doubling heads"
RESNET_ARMS = ("ResNet50V2 plain", "ResNet50V2 SelfDistillModel")
RESNET_TAPS = ["conv3_block4_out", "conv4_block6_out"]


def build_arm(name, width, num_classes):
    """The compiled model of arm `name` and a function giving its `fit`
    inputs for images `x`."""
    import keras  # noqa: PLC0415

    import step_overhead  # noqa: PLC0415
    from keras_selfdistill import Distiller  # noqa: PLC0415
    from keras_selfdistill import EMATeacher  # noqa: PLC0415
    from keras_selfdistill import MutualLearning  # noqa: PLC0415
    from keras_selfdistill import SelfDistillModel  # noqa: PLC0415

    crossentropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def named_backbone(network_width, model_name):
        backbone = step_overhead.build_backbone(network_width)
        backbone.name = model_name
        return backbone

    jit_compile = keras.backend.backend() == "jax"
    same_inputs = lambda x: x  # noqa: E731
    if name in STEP_OVERHEAD_ARMS:
        model = step_overhead.build_models(width)[name]
        model.compile(optimizer="sgd", jit_compile=jit_compile,
                      loss=[crossentropy] * 3 if name == "heads, CE only" else None)
        return model, same_inputs
    if name == DOUBLING_ARM:
        model = SelfDistillModel.from_backbone(
            step_overhead.build_backbone(width), taps=step_overhead.TAPS,
            head_width="doubling",
        )
        model.compile(optimizer="sgd", jit_compile=jit_compile)
        return model, same_inputs
    if name == "plain":
        model = named_backbone(width, "plain")
        model.compile(optimizer="sgd", loss=crossentropy, jit_compile=jit_compile)
        return model, same_inputs
    if name == "Distiller (cached)":
        model = Distiller(named_backbone(2 * width, "teacher"),
                          named_backbone(width, "student"))
        model.compile(optimizer="sgd", jit_compile=jit_compile)
        return model, lambda x: model.cache_teacher_logits(x, batch_size=64)
    if name == "MutualLearning K=2":
        model = MutualLearning([named_backbone(width, "peer_1"),
                                named_backbone(width, "peer_2")])
        model.compile(optimizer="sgd", jit_compile=jit_compile)
        return model, same_inputs
    if name == "EMATeacher":
        model = EMATeacher(named_backbone(width, "student"))
        model.compile(optimizer="sgd", jit_compile=jit_compile)
        return model, same_inputs
    channels_first = keras.config.image_data_format() == "channels_first"
    resnet = keras.applications.ResNet50V2(
        weights=None, input_shape=(3, 32, 32) if channels_first else (32, 32, 3),
        classes=num_classes,
        classifier_activation=None,
    )
    if name == "ResNet50V2 plain":
        resnet.compile(optimizer="sgd", loss=crossentropy, jit_compile=jit_compile)
        return resnet, same_inputs
    if name == "ResNet50V2 SelfDistillModel":
        model = SelfDistillModel.from_backbone(resnet, taps=RESNET_TAPS)
        model.compile(optimizer="sgd", jit_compile=jit_compile)
        return model, same_inputs
    raise ValueError(f"Unknown arm. Received: name={name!r}")


def data(count, num_classes, seed=0):
    import keras  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    images = rng.uniform(size=(count, 32, 32, 3)).astype("float32")
    if keras.config.image_data_format() == "channels_first":
        images = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    labels = rng.integers(0, num_classes, size=count).astype("int32")
    return images, labels


def set_single_thread(data_format="channels_last"):
    """One compute thread (torch's setting; the environment sets the
    others), and Keras's image data format for the models built next."""
    import keras  # noqa: PLC0415

    keras.config.set_image_data_format(data_format)
    if keras.backend.backend() == "torch":
        import torch  # noqa: PLC0415

        torch.set_num_threads(1)


def timed_steps(model, x, y, batch_size, warmup):
    """Median wall time and median CPU time (all threads of this process)
    of the steps after `warmup`.

    On a machine shared with other jobs the CPU time is the steadier of the
    two: it leaves out the time the process waited for a core (with one
    compute thread per backend, it is the work of the step).
    """
    import keras  # noqa: PLC0415

    walls, cpus = [], []

    class StepTimer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.start = (time.perf_counter(), time.process_time())

        def on_train_batch_end(self, batch, logs=None):
            walls.append(time.perf_counter() - self.start[0])
            cpus.append(time.process_time() - self.start[1])

    model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=False,
              callbacks=[StepTimer()])
    return statistics.median(walls[warmup:]), statistics.median(cpus[warmup:])


def measure_time(args):
    """In a process whose KERAS_BACKEND is set: median steps of every arm."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import keras  # noqa: PLC0415

    set_single_thread(args.data_format)
    arms = chosen_arms(args)
    plan = {}
    for name in arms:
        keras.utils.set_random_seed(0)
        resnet = name in RESNET_ARMS
        batch_size = args.resnet_batch_size if resnet else args.batch_size
        steps = args.resnet_steps if resnet else args.steps
        images, labels = data(batch_size * (steps + args.warmup), 100)
        model, inputs = build_arm(name, args.width, 100)
        targets = labels
        if len(getattr(model, "outputs", None) or []) > 1:  # heads, CE only
            targets = [labels] * len(model.outputs)
        plan[name] = (model, inputs(images), targets, batch_size)
    step = {name: [] for name in plan}
    cpu = {name: [] for name in plan}
    for _ in range(args.repeats):
        for name, (model, x, y, batch_size) in plan.items():
            wall_time, cpu_time = timed_steps(model, x, y, batch_size, args.warmup)
            step[name].append(wall_time)
            cpu[name].append(cpu_time)
    return {"backend": keras.backend.backend(), "step": step, "cpu": cpu}


def chosen_arms(args):
    if args.arms:
        return args.arms.split("|")
    return list(SMALL_ARMS) + (list(RESNET_ARMS) if args.resnet else [])


def measure_memory(args):
    """In a fresh process: peak RSS growth (MiB) of training arm `args.arm`."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import keras  # noqa: PLC0415

    set_single_thread(args.data_format)
    keras.utils.set_random_seed(0)
    resnet = args.arm in RESNET_ARMS
    batch_size = args.resnet_batch_size if resnet else args.batch_size
    steps = args.resnet_steps if resnet else args.steps
    images, labels = data(batch_size * (steps + args.warmup), 100)
    model, inputs = build_arm(args.arm, args.width, 100)
    x = inputs(images)
    built = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model.fit(x, labels, batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
    trained = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"arm": args.arm, "built_mib": built / 1024, "growth_mib": (trained - built) / 1024}


def run_child(backend, argv):
    environment = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    completed = subprocess.run(
        [sys.executable, os.path.abspath(__file__), *argv],
        env=environment, capture_output=True, text=True, check=False,
    )
    for line in completed.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"{backend} {argv} failed:\n{completed.stderr[-3000:]}")


def ratio_summary(steps, reference, factor=1.0):
    ratios = [s / (factor * r) for s, r in zip(steps, reference)]
    median = statistics.median(steps) / (factor * statistics.median(reference))
    return f"{median:.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"


def print_tables(timings, memories, args):
    print(f"width {args.width}, batch {args.batch_size} ({args.resnet_batch_size} for "
          f"ResNet50V2), {args.steps} ({args.resnet_steps}) timed steps after "
          f"{args.warmup} warm-up steps, {args.repeats} interleaved repeats; "
          f"TensorFlow jit off, JAX jit on, torch eager; one thread; {args.data_format}")
    print("\nwall: median step; CPU: median CPU time of a step (all threads "
          "of the process); ratios: of the medians, (min-max of the per-repeat "
          "ratios)")
    print("\n| backend | arm | wall (ms) | wall ratio | CPU (ms) | CPU ratio | against |")
    print("| --- | --- | ---: | ---: | ---: | ---: | --- |")
    references = {
        "Distiller (cached)": ("plain", 1.0, "plain"),
        "MutualLearning K=2": ("plain", 2.0, "2 x plain"),
        "EMATeacher": ("plain", 1.0, "plain"),
        "ResNet50V2 SelfDistillModel": ("ResNet50V2 plain", 1.0, "ResNet50V2 plain"),
        "heads, CE only": ("plain", 1.0, "plain"),
        "SelfDistillModel": ("plain", 1.0, "plain"),
        DOUBLING_ARM: ("plain", 1.0, "plain"),
    }
    for result in timings:
        step, cpu = result["step"], result["cpu"]
        for name, values in step.items():
            wall_ratio, cpu_ratio, against = "", "", ""
            if name in references:
                reference, factor, against = references[name]
                wall_ratio = ratio_summary(values, step[reference], factor)
                cpu_ratio = ratio_summary(cpu[name], cpu[reference], factor)
            print(f"| {result['backend']} | {name} | {statistics.median(values) * 1e3:.1f} "
                  f"| {wall_ratio} | {statistics.median(cpu[name]) * 1e3:.1f} "
                  f"| {cpu_ratio} | {against} |")
    for result in timings:
        step, cpu = result["step"], result["cpu"]
        if "SelfDistillModel" in step and "heads, CE only" in step:
            print(f"\n{result['backend']}: SelfDistillModel / heads, CE only: wall "
                  f"{ratio_summary(step['SelfDistillModel'], step['heads, CE only'])}, "
                  f"CPU {ratio_summary(cpu['SelfDistillModel'], cpu['heads, CE only'])}")
    if not memories:
        return
    print("\nPeak RSS growth of a training run (MiB; fresh process per arm; "
          "after build+compile -> after warm-up + timed steps)")
    print("\n| backend | arm | RSS after build (MiB) | peak growth in training (MiB) |")
    print("| --- | --- | ---: | ---: |")
    for backend, rows in memories.items():
        for row in rows:
            print(f"| {backend} | {row['arm']} | {row['built_mib']:.0f} | "
                  f"{row['growth_mib']:.0f} |")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--resnet", action="store_true",
                        help="also time keras.applications ResNet50V2 (slow)")
    parser.add_argument("--resnet-batch-size", type=int, default=16)
    parser.add_argument("--resnet-steps", type=int, default=5)
    parser.add_argument("--arms", default=None,
                        help="arms separated by '|' instead of the default set, "
                             "e.g. 'plain|heads, CE only|SelfDistillModel'")
    parser.add_argument("--data-format", default="channels_last",
                        choices=("channels_last", "channels_first"),
                        help="Keras's image data format of every model "
                             "(channels_first is torch's native layout)")
    parser.add_argument("--memory", action="store_true",
                        help="also measure peak RSS, one fresh process per arm")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny, in this process: the small arms for 2 steps, "
                             "1 repeat, and the memory code path on `plain`")
    parser.add_argument("--measure-time", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--arm", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.backends, args.width, args.batch_size, args.steps = "tensorflow", 4, 4, 2
        args.warmup, args.repeats, args.resnet = 1, 1, False
    if args.measure_time:
        print("RESULT " + json.dumps(measure_time(args)), flush=True)
        return
    if args.arm:
        print("RESULT " + json.dumps(measure_memory(args)), flush=True)
        return
    forwarded = [f"--width={args.width}", f"--batch-size={args.batch_size}",
                 f"--steps={args.steps}", f"--warmup={args.warmup}",
                 f"--repeats={args.repeats}", f"--data-format={args.data_format}",
                 f"--resnet-batch-size={args.resnet_batch_size}",
                 f"--resnet-steps={args.resnet_steps}"] + (
                     ["--resnet"] if args.resnet else []) + (
                     [f"--arms={args.arms}"] if args.arms else [])
    arms = chosen_arms(args)
    if args.smoke:
        # In this process (the CI test's TensorFlow pass): the code paths of
        # the children, without their start-up time.
        args.arm = arms[0]
        timings, memories = [measure_time(args)], {"tensorflow": [measure_memory(args)]}
        print_tables(timings, memories, args)
        return timings, memories
    timings, memories = [], {}
    for backend in args.backends.split(","):
        print(f"timing {backend} ...", file=sys.stderr, flush=True)
        timings.append(run_child(backend, forwarded + ["--measure-time"]))
        if args.memory:
            memories[backend] = [
                run_child(backend, forwarded + [f"--arm={arm}"]) for arm in arms
            ]
    print_tables(timings, memories, args)
    return timings, memories


if __name__ == "__main__":
    main()
