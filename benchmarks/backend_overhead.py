"""What do self-distillation and XLA cost per step, on each Keras backend?

For every backend (TensorFlow, JAX, torch), in its own process, this times
the three models of `step_overhead.py` (same backbone: `plain`, the same
heads trained as an ordinary multi-output model `heads, CE only`, and
`SelfDistillModel`), each compiled with `jit_compile=False` and with
`jit_compile=True`, and prints:

- `SelfDistillModel / plain` (and `/ heads, CE only`) for each setting;
- `jit / no jit` for each model: the XLA speed-up (JAX without jit runs the
  step op by op, as the eager reference).

Timing is `step_overhead.py`'s: the median step of a `fit` epoch after
warm-up steps, the models run interleaved, `--repeats` times, and the
median of the repeats reported. On torch, `jit_compile=True` means
`torch.compile`, not XLA; it is timed only with `--torch-compile`.

    python benchmarks/backend_overhead.py                      # all three backends
    python benchmarks/backend_overhead.py --backends jax --width 32 --batch-size 64
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

BACKENDS = ("tensorflow", "jax", "torch")
MODELS = ("plain", "heads, CE only", "SelfDistillModel")


def measure(args):
    """Runs in a process whose KERAS_BACKEND is set: returns the medians."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import keras
    import numpy as np

    import step_overhead

    backend = keras.backend.backend()
    jit_settings = [False, True]
    if backend == "torch" and not args.torch_compile:
        jit_settings = [False]

    rng = np.random.default_rng(0)
    count = args.batch_size * (args.steps + args.warmup)
    images = rng.uniform(size=(count, 32, 32, 3)).astype("float32")
    labels = rng.integers(0, step_overhead.NUM_CLASSES, size=count).astype("int32")

    variants = {}
    for jit_compile in jit_settings:
        keras.utils.set_random_seed(0)  # The same weights for both settings.
        for name, model in step_overhead.build_models(args.width).items():
            model.jit_compile = jit_compile
            variants[(name, jit_compile)] = model
    durations = {key: [] for key in variants}
    for _ in range(args.repeats):
        for key, model in variants.items():
            durations[key].append(
                step_overhead.time_model(
                    model, images, labels, args.batch_size, args.steps, args.warmup
                )
            )
    return {
        "backend": backend,
        "step_ms": [
            {"model": name, "jit_compile": jit, "median": statistics.median(values) * 1e3,
             "repeats": [value * 1e3 for value in values]}
            for (name, jit), values in durations.items()
        ],
    }


def run_backend(backend, argv, script=__file__):
    """Runs `script --measure *argv` with KERAS_BACKEND=`backend` in a fresh
    process and returns the JSON it prints on its `RESULT` line."""
    environment = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    completed = subprocess.run(
        [sys.executable, os.path.abspath(script), "--measure", *argv],
        env=environment, capture_output=True, text=True, check=False,
    )
    for line in completed.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"{backend} run failed:\n{completed.stderr[-3000:]}")


def print_tables(results, args):
    print(f"batch {args.batch_size}, width {args.width}, {args.repeats} interleaved "
          f"repeats of {args.steps} timed steps (after {args.warmup} warm-up steps); "
          "medians")
    print("\n| backend | jit_compile | plain (ms) | heads, CE only (ms) | "
          "SelfDistillModel (ms) | SelfDistillModel / plain | "
          "SelfDistillModel / heads, CE only |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for result in results:
        step = {(row["model"], row["jit_compile"]): row["median"]
                for row in result["step_ms"]}
        for jit in (False, True):
            if ("plain", jit) not in step:
                continue
            plain, heads, distilled = (step[(name, jit)] for name in MODELS)
            print(f"| {result['backend']} | {jit} | {plain:.1f} | {heads:.1f} | "
                  f"{distilled:.1f} | {distilled / plain:.2f}x | "
                  f"{distilled / heads:.2f}x |")
    print("\n| backend | model | no jit (ms) | jit (ms) | jit / no jit |")
    print("| --- | --- | ---: | ---: | ---: |")
    for result in results:
        step = {(row["model"], row["jit_compile"]): row["median"]
                for row in result["step_ms"]}
        for name in MODELS:
            if (name, True) not in step:
                print(f"| {result['backend']} | {name} | {step[(name, False)]:.1f} "
                      "| not timed | - |")
                continue
            eager, compiled = step[(name, False)], step[(name, True)]
            print(f"| {result['backend']} | {name} | {eager:.1f} | {compiled:.1f} | "
                  f"{compiled / eager:.2f}x |")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help="comma-separated subset of tensorflow,jax,torch")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--torch-compile", action="store_true",
                        help="also time jit_compile=True (torch.compile) on torch")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print("RESULT " + json.dumps(measure(args)), flush=True)
        return
    forwarded = [
        f"--width={args.width}", f"--batch-size={args.batch_size}",
        f"--steps={args.steps}", f"--warmup={args.warmup}",
        f"--repeats={args.repeats}",
    ] + (["--torch-compile"] if args.torch_compile else [])
    results = []
    for backend in args.backends.split(","):
        print(f"timing {backend} ...", file=sys.stderr, flush=True)
        results.append(run_backend(backend, forwarded))
    print_tables(results, args)


if __name__ == "__main__":
    main()
