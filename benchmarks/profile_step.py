"""Where does the extra time of a self-distillation step go? Profiles it.

Runs `--repeats` x `--steps` training steps (interleaved) of the three models of `step_overhead.py`
(`plain`, the same heads trained with cross-entropy only `heads, CE only`,
and `SelfDistillModel`) under the backend's own profiler, and prints, per
model and per step, the op time grouped as:

- `backbone conv`, `head conv`: convolutions and dense matmuls (forward and
  backward), split by whether the op belongs to an `AuxiliaryHead` or
  projection (`head_`/`projection` in its name scope);
- `batch norm`; `loss terms` (softmax, log-softmax, KL, cross-entropy,
  feature terms, the total);
- `metrics/trackers` (metric and loss-tracker state updates);
- `optimizer update`; `other ops` (activations, adds, pooling, copies);
- `python/dispatch`: the step's wall time minus the op time above (Python,
  Keras's train step, the framework's executor and dispatch, and on a
  shared machine the time spent waiting for a core).

A second table gives each op group's share of the op time and that share
times the step's CPU time (all threads of the process): on a loaded machine
op durations stretch with the wall time, shares much less.

then the differences `SelfDistillModel - plain` and `SelfDistillModel -
heads, CE only` per group. Profilers:

- TensorFlow: `tf.profiler.experimental` (the trace TensorBoard shows); the
  op events of the step's graph, named by their name scope.
- JAX: `jax.profiler.trace`; the XLA thunks of the compiled step, named by
  the HLO instructions' `op_name` metadata (the Keras name scope).
- torch: `torch.profiler`; top-level aten ops (forward and autograd), each
  layer's forward wrapped in a `record_function` with the layer's name so
  its ops can be attributed; backward ops are grouped by type only.

A profiler slows the step down (torch most); read the groups as shares, and
take ratios from `step_overhead.py`. Run single-threaded, like the timing:

    TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 \\
    XLA_FLAGS=--xla_cpu_multi_thread_eigen=false \\
    taskset -c 0 python benchmarks/profile_step.py --backend tensorflow
"""

import argparse
import collections
import glob
import os
import re
import statistics
import sys
import tempfile
import time

BACKENDS = ("tensorflow", "jax", "torch")
GROUPS = (
    "backbone conv",
    "head conv",
    "batch norm",
    "loss terms",
    "metrics/trackers",
    "optimizer update",
    "other ops",
    "python/dispatch",
)

_OPTIMIZER = re.compile(r"(^|/)(sgd|adam|optimizer)(_\d+)?/|_foreach|optimizer")
_METRIC = re.compile(
    r"metric|accuracy|tracker|assignaddvariableop|div_no_nan|reduction_metrics"
)
_LOSS = re.compile(
    r"loss|softmax|crossentropy|cross_entropy|kl_|_kl|/kl|feature_|logsumexp|"
    r"nll|\btotal\b|xlogy|log\b"
)
_CONV = re.compile(r"conv|depthwise|matmul|dot|addmm|\bmm\b|aten::mm|linear|ynn_fusion")
_BATCH_NORM = re.compile(r"batch_norm|batchnorm|_bn\d|fusedbatchnorm|rsqrt")
_HEAD = re.compile(r"head_\d|projection|auxiliary")


def classify(text: str) -> str:
    """The group of an op described by `text` (its name, type and scope)."""
    text = text.lower()
    if _OPTIMIZER.search(text):
        return "optimizer update"
    if _METRIC.search(text):
        return "metrics/trackers"
    if _CONV.search(text):
        return "head conv" if _HEAD.search(text) else "backbone conv"
    if _BATCH_NORM.search(text):
        return "batch norm"
    if _LOSS.search(text):
        return "loss terms"
    return "other ops"


# --------------------------------------------------------------------- #
# Profilers: each returns {group: seconds} over the profiled steps, and the
# top ops for reading.
# --------------------------------------------------------------------- #


def _xspace(logdir):
    from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: PLC0415

    paths = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True))
    space = xplane_pb2.XSpace()
    with open(paths[-1], "rb") as file:
        space.ParseFromString(file.read())
    return space


def profile_tensorflow(run, logdir):
    import tensorflow as tf  # noqa: PLC0415

    tf.profiler.experimental.start(logdir)
    wall = run()
    tf.profiler.experimental.stop()
    ops = collections.Counter()
    for plane in _xspace(logdir).planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                # Op events are "scope/op_name:OpType"; executor events have "::".
                if ":" in name and "::" not in name:
                    ops[name] += event.duration_ps * 1e-12
    return wall, ops


def _hlo_op_names(space):
    """{(program id, HLO instruction name): its op_name metadata (the Keras
    name scope)} for the train steps; a fusion without one gets its fused
    instructions'."""
    from tensorflow.compiler.xla.service import hlo_pb2  # noqa: PLC0415

    names = {}
    for plane in space.planes:
        if plane.name != "/host:metadata":
            continue
        stat_names = {key: value.name for key, value in plane.stat_metadata.items()}
        for metadata in plane.event_metadata.values():
            if "train" not in metadata.name:
                continue
            # Every model's step is a module named jit_train_step, with the
            # same instruction names: key them by program id.
            program = next((stat.int64_value or stat.uint64_value
                            for stat in metadata.stats
                            if stat_names.get(stat.metadata_id) == "program_id"), None)
            for stat in metadata.stats:
                if not stat.bytes_value:
                    continue
                proto = hlo_pb2.HloProto()
                proto.ParseFromString(stat.bytes_value)
                computations = {c.id: c for c in proto.hlo_module.computations}
                for computation in computations.values():
                    for instruction in computation.instructions:
                        scope = instruction.metadata.op_name
                        if not scope and instruction.opcode == "fusion":
                            scope = " ".join(
                                inner.metadata.op_name
                                for called in instruction.called_computation_ids
                                for inner in computations[called].instructions
                                if inner.metadata.op_name
                            )
                        names.setdefault((program, instruction.name), scope)
    return names


def profile_jax(run, logdir):
    import jax  # noqa: PLC0415

    with jax.profiler.trace(logdir):
        wall = run()
    space = _xspace(logdir)
    op_names = _hlo_op_names(space)
    ops = collections.Counter()
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        stat_names = {key: value.name for key, value in plane.stat_metadata.items()}
        for line in plane.lines:
            if "XLAEigen" not in line.name and "XLAPjRt" not in line.name:
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                program = next((stat.int64_value or stat.uint64_value
                                for stat in event.stats
                                if stat_names.get(stat.metadata_id) == "program_id"), None)
                if name.startswith("ThunkExecutor") or (program, name) not in op_names:
                    continue
                scope = op_names[(program, name)][:300]
                ops[f"{name} [{scope}]"] += event.duration_ps * 1e-12
    return wall, ops


def profile_torch(run, logdir):
    del logdir
    import keras  # noqa: PLC0415
    import torch  # noqa: PLC0415

    # Name every leaf layer's forward ops by the layer (and its parents).
    original_call = keras.layers.Layer.__call__

    def named_call(layer, *args, **kwargs):
        with torch.profiler.record_function(f"layer:{layer.name}"):
            return original_call(layer, *args, **kwargs)

    keras.layers.Layer.__call__ = named_call
    try:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            wall = run()
    finally:
        keras.layers.Layer.__call__ = original_call
    # Top-level ops only: an aten op or autograd node inside another one
    # (by time, on the same thread) is part of its parent's time.
    counted = [
        event for event in prof.events()
        if event.name.startswith("aten::") or "evaluate_function" in event.name
    ]
    counted.sort(key=lambda event: (event.thread, event.time_range.start,
                                    -event.time_range.end))
    ops = collections.Counter()
    open_until = {}
    for event in counted:
        if event.time_range.start < open_until.get(event.thread, -1):
            continue
        open_until[event.thread] = event.time_range.end
        scopes, parent = [], event.cpu_parent
        while parent is not None:
            if parent.name.startswith("layer:"):
                scopes.append(parent.name[len("layer:"):])
            parent = parent.cpu_parent
        ops[f"{event.name} [{'/'.join(reversed(scopes))}]"] += (
            event.time_range.elapsed_us() * 1e-6
        )
    return wall, ops


PROFILERS = {"tensorflow": profile_tensorflow, "jax": profile_jax, "torch": profile_torch}


def profile_models(args):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import keras  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    import step_overhead  # noqa: PLC0415

    backend = keras.backend.backend()
    if backend == "torch":
        import torch  # noqa: PLC0415

        torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    count = args.batch_size * max(args.steps, args.warmup)
    images = rng.uniform(size=(count, 32, 32, 3)).astype("float32")
    labels = rng.integers(0, step_overhead.NUM_CLASSES, size=count).astype("int32")
    keras.utils.set_random_seed(0)
    models = step_overhead.build_models(args.width)
    runs, cpu_times = {}, {}
    for name, model in models.items():
        model.jit_compile = args.jit_compile
        multi_output = len(getattr(model, "outputs", None) or []) > 1
        targets = [labels] * len(model.outputs) if multi_output else labels

        def run(model=model, targets=targets, steps=args.steps):
            start, cpu_start = time.perf_counter(), time.process_time()
            model.fit(images[: steps * args.batch_size], _head(targets, steps * args.batch_size),
                      batch_size=args.batch_size, epochs=1, verbose=0, shuffle=False)
            cpu_times.setdefault(id(model), []).append(time.process_time() - cpu_start)
            return time.perf_counter() - start

        run(steps=args.warmup)  # Compiles (and traces) the step.
        runs[name] = run
    # Interleaved repeats: each model's profile is the per-group median over
    # repeats that saw the same background load.
    profiles = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            with tempfile.TemporaryDirectory() as logdir:
                profiles[name].append(PROFILERS[backend](run, logdir))
    results = {}
    for name, repeats in profiles.items():
        per_repeat = []
        for wall, ops in repeats:
            groups = collections.Counter()
            for op, seconds in ops.items():
                groups[classify(op)] += seconds
            groups["python/dispatch"] = wall - sum(ops.values())
            per_repeat.append(groups)
        top = collections.Counter()
        for _, ops in repeats:
            top.update(ops)
        results[name] = {
            "wall": statistics.median(wall for wall, _ in repeats) / args.steps,
            # The warm-up run is the first entry.
            "cpu": statistics.median(cpu_times[id(models[name])][1:]) / args.steps,
            "groups": {
                group: statistics.median(groups[group] for groups in per_repeat) / args.steps
                for group in GROUPS
            },
            "top": [(op, seconds / (args.steps * len(repeats)))
                    for op, seconds in top.most_common()],
        }
    return backend, results


def _head(targets, count):
    if isinstance(targets, list):
        return [target[:count] for target in targets]
    return targets[:count]


def print_report(backend, results, args):
    names = list(results)
    print(f"backend {backend}, jit_compile={args.jit_compile}, width {args.width}, "
          f"batch {args.batch_size}, {args.repeats} interleaved repeats of "
          f"{args.steps} profiled steps after {args.warmup} warm-up steps; ms per "
          "step, median over repeats (profiler on)")
    print("\n| group | " + " | ".join(names) + " | SD - plain | SD - heads CE |")
    print("| --- | " + " | ".join("---:" for _ in names) + " | ---: | ---: |")
    plain, heads, distilled = (results[name] for name in names)
    for group in GROUPS:
        values = [results[name]["groups"][group] * 1e3 for name in names]
        print(f"| {group} | " + " | ".join(f"{value:.1f}" for value in values)
              + f" | {values[2] - values[0]:+.1f} | {values[2] - values[1]:+.1f} |")
    walls = [results[name]["wall"] * 1e3 for name in names]
    print("| **step (wall)** | " + " | ".join(f"{value:.1f}" for value in walls)
          + f" | {walls[2] - walls[0]:+.1f} | {walls[2] - walls[1]:+.1f} |")
    cpus = [results[name]["cpu"] * 1e3 for name in names]
    print("| step (CPU time, all threads) | " + " | ".join(f"{value:.1f}" for value in cpus)
          + f" | {cpus[2] - cpus[0]:+.1f} | {cpus[2] - cpus[1]:+.1f} |")
    del plain, heads, distilled
    # Under load the op durations stretch with the wall time; their shares
    # do not, and shares times the CPU time estimate each group's work.
    print("\nshare of op time, and share x CPU time per step (ms): the "
          "estimate that does not stretch with the machine's load")
    print("\n| group | " + " | ".join(f"{name} (%)" for name in names)
          + " | " + " | ".join(f"{name} (ms)" for name in names)
          + " | SD - plain (ms) | SD - heads CE (ms) |")
    print("| --- | " + " | ".join("---:" for _ in names * 2) + " | ---: | ---: |")
    op_groups = GROUPS[:-1]
    for group in op_groups:
        shares = [results[name]["groups"][group]
                  / sum(results[name]["groups"][g] for g in op_groups) for name in names]
        estimates = [share * cpu for share, cpu in zip(shares, cpus)]
        print(f"| {group} | " + " | ".join(f"{share:.1%}" for share in shares) + " | "
              + " | ".join(f"{value:.1f}" for value in estimates)
              + f" | {estimates[2] - estimates[0]:+.1f} | {estimates[2] - estimates[1]:+.1f} |")
    for name in names:
        print(f"\n{name}: top {args.top} ops (ms per step, group)")
        for op, seconds in results[name]["top"][: args.top]:
            print(f"  {seconds * 1e3:7.2f}  {classify(op):17s} {op[:150]}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=BACKENDS,
                        help="sets KERAS_BACKEND (default: the environment's)")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3,
                        help="interleaved profiled runs per model (median)")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--jit-compile", default=None,
                        help="true/false; default: false on TensorFlow and "
                             "torch, true on JAX (the settings of the issue)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny (width 4, batch 4, 2 steps): the CI test")
    args = parser.parse_args(argv)
    if args.smoke:
        args.width, args.batch_size, args.steps, args.warmup, args.repeats = 4, 4, 2, 1, 1
    if args.backend:
        os.environ["KERAS_BACKEND"] = args.backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if args.jit_compile is None:
        args.jit_compile = backend == "jax"
    else:
        args.jit_compile = args.jit_compile.lower() in ("1", "true", "yes")
    backend, results = profile_models(args)
    print_report(backend, results, args)
    return results


if __name__ == "__main__":
    main()
