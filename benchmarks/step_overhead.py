"""What does self-distillation cost per training step? Prints ratios.

Three models share one backbone architecture (a small ResNet-style CNN on
32x32x3 inputs, the CIFAR shape):

- `plain`: the backbone alone, `compile(loss=SparseCategoricalCrossentropy)`.
- `heads, CE only`: the same backbone with the same `AuxiliaryHead`s, trained
  as an ordinary Keras multi-output model (cross-entropy on every head). This
  is the price of the heads' own compute, whatever the loss.
- `SelfDistillModel`: the same heads, with the full BYOT loss (KL, feature
  term, projections, per-head metrics).

Each model is timed with `fit` for a number of steps; the per-step time is the
median of the step durations (measured by a callback, after warm-up steps),
and the three models are run interleaved, `--repeats` times, to spread any
background load evenly. The script prints the per-step medians and the
ratios; `SelfDistillModel / heads, CE only` is the overhead of the
distillation machinery itself.

    python benchmarks/step_overhead.py                 # CPU, jit off
    python benchmarks/step_overhead.py --jit-compile   # XLA (use on a GPU)
"""

import argparse
import math
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_selfdistill import SelfDistillModel  # noqa: E402

NUM_CLASSES = 100
TAPS = ["stage1_out", "stage2_out"]


class StepTimer(keras.callbacks.Callback):
    """Records the wall time of every training step."""

    def __init__(self):
        super().__init__()
        self.durations = []
        self._start = None

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.durations.append(time.perf_counter() - self._start)


def channel_axis():
    """1 under `keras.config.set_image_data_format("channels_first")`, else -1."""
    return 1 if keras.config.image_data_format() == "channels_first" else -1


def residual_block(x, filters, stride, name):
    shortcut = x
    x = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                            name=f"{name}_conv1")(x)
    x = keras.layers.BatchNormalization(axis=channel_axis(), name=f"{name}_bn1")(x)
    x = keras.layers.ReLU(name=f"{name}_relu1")(x)
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(x)
    x = keras.layers.BatchNormalization(axis=channel_axis(), name=f"{name}_bn2")(x)
    if stride != 1 or shortcut.shape[channel_axis()] != filters:
        shortcut = keras.layers.Conv2D(filters, 1, strides=stride, use_bias=False,
                                       name=f"{name}_shortcut")(shortcut)
    x = keras.layers.Add(name=f"{name}_add")([x, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(x)


def build_backbone(width):
    """The benchmark network, in Keras's global image data format."""
    inputs = keras.Input((3, 32, 32) if channel_axis() == 1 else (32, 32, 3))
    x = keras.layers.Conv2D(width, 3, padding="same", name="stem")(inputs)
    for stage, (filters, stride) in enumerate(
        [(width, 1), (width * 2, 2), (width * 4, 2)], start=1
    ):
        x = residual_block(x, filters, stride, f"stage{stage}_block1")
        x = residual_block(x, filters, 1, f"stage{stage}")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    logits = keras.layers.Dense(NUM_CLASSES, name="logits")(x)
    return keras.Model(inputs, logits, name="backbone")


def build_models(width):
    crossentropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    plain = build_backbone(width)
    plain.compile(optimizer="sgd", loss=crossentropy, metrics=["accuracy"])

    # Same heads, trained as an ordinary multi-output model.
    heads_only = SelfDistillModel.from_backbone(
        build_backbone(width), taps=TAPS
    ).export_heads(name="heads_ce")
    heads_only.compile(optimizer="sgd", loss=[crossentropy] * 3,
                       metrics=[["accuracy"]] * 3)

    distilled = SelfDistillModel.from_backbone(build_backbone(width), taps=TAPS)
    distilled.compile(optimizer="sgd", metrics=["accuracy"])
    return {"plain": plain, "heads, CE only": heads_only, "SelfDistillModel": distilled}


def time_model(model, images, labels, batch_size, steps, warmup):
    timer = StepTimer()
    plain_multi_output = len(getattr(model, "outputs", None) or []) > 1
    targets = [labels] * len(model.outputs) if plain_multi_output else labels
    model.fit(images, targets, batch_size=batch_size, epochs=1, verbose=0,
              shuffle=False, callbacks=[timer])
    return statistics.median(timer.durations[warmup:])


def parameter_share_of_heads(width):
    model = SelfDistillModel.from_backbone(build_backbone(width), taps=TAPS)
    backbone = model.export_backbone().count_params()
    heads = sum(model.network.get_layer(f"head_{i}_bottleneck").count_params()
                + model.network.get_layer(f"head_{i}_classifier").count_params()
                for i in (1, 2))
    return heads / backbone


def multiply_adds(layer, input_shape):
    """Multiply-adds of one forward pass of a dense or convolution `layer`
    on one sample of `input_shape` (batch dimension included, ignored);
    0 for other layers."""
    output_shape = layer.compute_output_shape(input_shape)
    positions = math.prod(output_shape[1:-1])  # 1 for a dense layer
    if isinstance(layer, keras.layers.SeparableConv2D):
        depthwise = math.prod(layer.kernel_size) * input_shape[-1]
        return positions * (depthwise + input_shape[-1] * output_shape[-1])
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
        return positions * math.prod(layer.kernel.shape)
    return 0


def multiply_add_share_of_heads(width, head_width=None):
    """Multiply-adds of the two heads (and the feature projections, if any)
    over those of the backbone, per sample. `head_width` is `from_backbone`'s."""
    model = SelfDistillModel.from_backbone(build_backbone(width), taps=TAPS,
                                           head_width=head_width)
    backbone = model.export_backbone()
    backbone_total = sum(
        multiply_adds(layer, layer.input.shape) for layer in backbone.layers
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))
    )
    heads_total = 0
    for index, tap in enumerate(TAPS, start=1):
        bottleneck = model.network.get_layer(f"head_{index}_bottleneck")
        shape = backbone.get_layer(tap).output.shape
        for block in bottleneck.blocks:
            heads_total += multiply_adds(block[0], shape)
            shape = block[0].compute_output_shape(shape)
        classifier = model.network.get_layer(f"head_{index}_classifier")
        heads_total += multiply_adds(classifier, (None, shape[-1]))
    return heads_total / backbone_total


def activation_share_of_heads(width, head_width=None):
    """Activation elements the two heads write per sample in a forward pass,
    over those the backbone writes (every layer's output; a separable
    convolution also writes its depthwise result, and each head block's
    activation function its own output).

    What batch norms, activations and memory traffic scale with, forward
    and backward, where multiply-adds do not: on a CPU a small CNN's step is
    largely such element-wise work. `head_width` is `from_backbone`'s.
    """
    model = SelfDistillModel.from_backbone(build_backbone(width), taps=TAPS,
                                           head_width=head_width)
    backbone = model.export_backbone()
    backbone_total = sum(math.prod(layer.output.shape[1:]) for layer in backbone.layers[1:])
    heads_total = 0
    for index, tap in enumerate(TAPS, start=1):
        shape = backbone.get_layer(tap).output.shape
        for block in model.network.get_layer(f"head_{index}_bottleneck").blocks:
            convolution, norm = block
            if isinstance(convolution, keras.layers.SeparableConv2D):
                depthwise = convolution.compute_output_shape(shape)[:-1] + (shape[-1],)
                heads_total += math.prod(depthwise[1:])
            shape = convolution.compute_output_shape(shape)
            # The convolution's, the batch norm's and the activation's outputs.
            heads_total += 3 * math.prod(shape[1:])
    return heads_total / backbone_total


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--jit-compile", action="store_true")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    count = args.batch_size * (args.steps + args.warmup)
    images = rng.uniform(size=(count, 32, 32, 3)).astype("float32")
    labels = rng.integers(0, NUM_CLASSES, size=count).astype("int32")

    keras.utils.set_random_seed(0)
    models = build_models(args.width)
    if args.jit_compile:
        for model in models.values():
            model.jit_compile = True
    medians = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, model in models.items():
            medians[name].append(
                time_model(model, images, labels, args.batch_size, args.steps, args.warmup)
            )
    step = {name: statistics.median(values) for name, values in medians.items()}

    print(f"backend {keras.backend.backend()}, jit_compile={args.jit_compile}, "
          f"batch {args.batch_size}, width {args.width}, {args.repeats} interleaved "
          f"repeats of {args.steps} timed steps")
    print(f"head parameters / backbone parameters: {parameter_share_of_heads(args.width):.1%}")
    print("head multiply-adds / backbone multiply-adds: "
          f"{multiply_add_share_of_heads(args.width):.1%}")
    print("head activation elements / backbone activation elements: "
          f"{activation_share_of_heads(args.width):.1%} "
          f"(head_width='doubling': {activation_share_of_heads(args.width, 'doubling'):.1%}, "
          f"multiply-adds {multiply_add_share_of_heads(args.width, 'doubling'):.1%})")
    print("\n| model | median step (ms) | repeats min-max (ms) | vs plain | "
          "per-repeat ratio min-max |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, value in step.items():
        low, high = ratio_spread(medians[name], medians["plain"])
        print(f"| {name} | {value * 1e3:.1f} | {min(medians[name]) * 1e3:.1f}-"
              f"{max(medians[name]) * 1e3:.1f} | {value / step['plain']:.2f}x | "
              f"{low:.2f}x-{high:.2f}x |")
    low, high = ratio_spread(medians["SelfDistillModel"], medians["heads, CE only"])
    print(f"\nSelfDistillModel / heads, CE only (distillation machinery): "
          f"{step['SelfDistillModel'] / step['heads, CE only']:.2f}x "
          f"(per repeat {low:.2f}x-{high:.2f}x)")


def ratio_spread(steps, reference_steps) -> tuple:
    """Min and max of the per-repeat ratios `steps[i] / reference_steps[i]`.

    The models run interleaved, so repeat `i` of both saw the same load: a
    wide spread says the median ratio is noise.
    """
    ratios = [step / reference for step, reference in zip(steps, reference_steps)]
    return min(ratios), max(ratios)


if __name__ == "__main__":
    main()
