"""What does each head-free self-distillation method cost per training step?

The same backbone as `step_overhead.py` (a small CIFAR-shaped ResNet, 100
classes), trained for one `fit` epoch per repeat by each method, the models
run interleaved (`--repeats` times) so background load falls on all alike:

- `plain`: cross-entropy;
- `label smoothing`: cross-entropy with label smoothing 0.1;
- `TeacherFreeLoss` (Tf-KD): only the loss changes;
- `ClassWiseSelfDistillation` (CS-KD): one more forward pass, on the
  same-class partners (no gradient);
- `ProgressiveSelfDistillation` (PS-KD): a gather and a scatter in the
  per-sample table;
- `LastBatchSelfDistillation` (DLB): batches of twice the size, half of them
  repeated from the last step, so each step sees `--batch-size` new samples
  as a plain step does.

Prints the median step time, the spread of the repeats and the ratio to
`plain` (median and per-repeat min-max).

    python benchmarks/headfree_step_cost.py
    python benchmarks/headfree_step_cost.py --smoke     # seconds
"""

import argparse
import os
import statistics
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# This checkout's library, not whichever one is installed.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import keras  # noqa: E402
import numpy as np  # noqa: E402

import harness  # noqa: E402
import headfree_arms  # noqa: E402
import step_overhead  # noqa: E402
from keras_selfdistill import ClassWiseSelfDistillation  # noqa: E402
from keras_selfdistill import LastBatchSelfDistillation  # noqa: E402
from keras_selfdistill import ProgressiveSelfDistillation  # noqa: E402
from keras_selfdistill import TeacherFreeLoss  # noqa: E402
from keras_selfdistill import last_batch_repeat_order  # noqa: E402
from keras_selfdistill import with_sample_index  # noqa: E402
from keras_selfdistill.class_pairs import pair_by_class  # noqa: E402


def build_methods(width: int, num_samples: int, batch_size: int) -> dict:
    """`{name: compiled model}`, each on a fresh backbone."""
    backbone = lambda: step_overhead.build_backbone(width)  # noqa: E731
    crossentropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    models = {
        "plain": (backbone(), crossentropy),
        "label smoothing": (backbone(), headfree_arms.SparseLabelSmoothing(0.1)),
        "TeacherFreeLoss": (backbone(), TeacherFreeLoss()),
        "ClassWiseSelfDistillation": (ClassWiseSelfDistillation(backbone()), None),
        "ProgressiveSelfDistillation": (
            ProgressiveSelfDistillation(backbone(), num_samples=num_samples, total_epochs=10),
            None),
        "LastBatchSelfDistillation": (
            LastBatchSelfDistillation(backbone(), batch_size=2 * batch_size), None),
    }
    for model, loss in models.values():
        model.compile(optimizer="sgd", **({} if loss is None else dict(loss=loss)))
    return {name: model for name, (model, _) in models.items()}


def fit_inputs(name: str, images, labels, batch_size: int):
    """`(x, y, batch_size)` of one epoch for method `name`."""
    if name == "ClassWiseSelfDistillation":
        x, y = pair_by_class(images, labels, seed=0)
        return x, y, batch_size
    if name == "ProgressiveSelfDistillation":
        return with_sample_index(images), labels, batch_size
    if name == "LastBatchSelfDistillation":
        plan = last_batch_repeat_order(np.arange(len(images)), 2 * batch_size)
        return with_sample_index(images[plan], plan), labels[plan], 2 * batch_size
    return images, labels, batch_size


def time_method(model, x, y, batch_size: int, warmup: int) -> float:
    timer = step_overhead.StepTimer()
    model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=False,
              callbacks=[timer])
    return statistics.median(timer.durations[warmup:])


def main(argv=None) -> dict:
    """Times every method; prints and returns `{name: [median per repeat]}`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    if args.smoke:
        args.width, args.batch_size, args.steps, args.warmup, args.repeats = 4, 8, 3, 1, 1
    rng = np.random.default_rng(0)
    count = args.batch_size * (args.steps + args.warmup)
    images = rng.uniform(size=(count, 32, 32, 3)).astype("float32")
    # Every class at least twice, so each sample has a same-class partner.
    labels = np.arange(count) % min(step_overhead.NUM_CLASSES, count // 2)
    keras.utils.set_random_seed(0)
    models = build_methods(args.width, count, args.batch_size)
    inputs = {name: fit_inputs(name, images, labels, args.batch_size) for name in models}
    steps = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, model in models.items():
            x, y, batch_size = inputs[name]
            steps[name].append(time_method(model, x, y, batch_size, args.warmup))
    print_table(steps, args)
    return steps


def print_table(steps: dict, args) -> None:
    plain = statistics.median(steps["plain"])
    print(f"backend {keras.backend.backend()}, jit off, width {args.width}, "
          f"{args.batch_size} new samples per step, {args.repeats} interleaved repeats of "
          f"{args.steps} timed steps, smoke={args.smoke}\n")
    print("| method | median step (ms) | repeats min-max (ms) | vs plain | "
          "per-repeat ratio min-max |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, values in steps.items():
        median = statistics.median(values)
        low, high = step_overhead.ratio_spread(values, steps["plain"])
        print(f"| {name} | {median * 1e3:.1f} | {min(values) * 1e3:.1f}-"
              f"{max(values) * 1e3:.1f} | {median / plain:.2f}x | {low:.2f}x-{high:.2f}x |")


if __name__ == "__main__":
    main()
