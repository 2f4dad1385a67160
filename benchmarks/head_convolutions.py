"""How fast is a head's strided separable convolution, natively and by slices?

`AuxiliaryHead`'s blocks are separable convolutions with stride 2. XLA on a
CPU runs depthwise convolutions slowly, so on JAX with CPUs the heads compute
the depthwise part as a sum of strided slices instead
(`keras_selfdistill/layers/separable_convolution.py`). This script times,
on each backend in its own process, one training step (forward and backward,
SGD) of a model made of one such block on a `(batch, 32, 32, 16)` input
(the first block of the first head of `step_overhead.py`), three ways:

- `native`: `keras.layers.SeparableConv2D` (Keras's depthwise kernel);
- `slices`: the same weights, depthwise part by `depthwise_conv_by_slices`;
- `full conv`: a full `Conv2D` of the same width, for scale.

each with `jit_compile=False` and `True` (on torch only `False`: its `True`
is `torch.compile`), and prints median milliseconds and `slices / native`.

    python benchmarks/head_convolutions.py
    python benchmarks/head_convolutions.py --backends jax --batch-size 64
"""

import argparse
import json
import os
import statistics
import sys
import time

import backend_overhead

BACKENDS = ("tensorflow", "jax", "torch")
VARIANTS = ("native", "slices", "full conv")


def build(variant, input_shape, filters, jit_compile):
    import keras

    from keras_selfdistill.layers.separable_convolution import depthwise_conv_by_slices

    class SlicedSeparableConv2D(keras.layers.SeparableConv2D):
        def call(self, inputs):
            outputs = depthwise_conv_by_slices(inputs, self.depthwise_kernel, self.strides)
            return keras.ops.matmul(outputs, self.pointwise_kernel[0, 0]) + self.bias

    layer = {
        "native": keras.layers.SeparableConv2D,
        "slices": SlicedSeparableConv2D,
        "full conv": keras.layers.Conv2D,
    }[variant](filters, 3, strides=2, padding="same")
    inputs = keras.Input(input_shape)
    pooled = keras.layers.GlobalAveragePooling2D()(layer(inputs))
    model = keras.Model(inputs, keras.layers.Dense(10)(pooled))
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    return model


def measure(args):
    import keras
    import numpy as np

    backend = keras.backend.backend()
    rng = np.random.default_rng(0)
    input_shape = (32, 32, args.channels)
    images = rng.normal(size=(args.batch_size,) + input_shape).astype("float32")
    labels = rng.integers(0, 10, size=args.batch_size).astype("int32")
    jit_settings = [False] if backend == "torch" else [False, True]
    models = {
        (variant, jit): build(variant, input_shape, args.filters, jit)
        for jit in jit_settings for variant in VARIANTS
    }
    durations = {key: [] for key in models}
    for model in models.values():
        for _ in range(args.warmup):
            model.train_on_batch(images, labels)
    for _ in range(args.repeats):  # Interleaved, to spread background load.
        for key, model in models.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                model.train_on_batch(images, labels)
            durations[key].append((time.perf_counter() - start) / args.steps)
    return {
        "backend": backend,
        "step_ms": [
            {"variant": variant, "jit_compile": jit,
             "median": statistics.median(values) * 1e3}
            for (variant, jit), values in durations.items()
        ],
    }


def print_table(results, args):
    print(f"one strided separable block, input ({args.batch_size}, 32, 32, "
          f"{args.channels}) -> {args.filters} channels; median ms per training "
          f"step of {args.repeats} interleaved repeats of {args.steps} steps")
    print("\n| backend | jit_compile | native (ms) | slices (ms) | full conv (ms) "
          "| slices / native |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for result in results:
        step = {(row["variant"], row["jit_compile"]): row["median"]
                for row in result["step_ms"]}
        for jit in (False, True):
            if ("native", jit) not in step:
                continue
            native, sliced, full = (step[(variant, jit)] for variant in VARIANTS)
            print(f"| {result['backend']} | {jit} | {native:.2f} | {sliced:.2f} | "
                  f"{full:.2f} | {sliced / native:.2f}x |")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--filters", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print("RESULT " + json.dumps(measure(args)), flush=True)
        return
    forwarded = [f"--batch-size={args.batch_size}", f"--channels={args.channels}",
                 f"--filters={args.filters}", f"--steps={args.steps}",
                 f"--warmup={args.warmup}", f"--repeats={args.repeats}"]
    results = []
    for backend in args.backends.split(","):
        print(f"timing {backend} ...", file=sys.stderr, flush=True)
        results.append(backend_overhead.run_backend(backend, forwarded, script=__file__))
    print_table(results, args)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
