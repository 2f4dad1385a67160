"""Plain vs self-distilled on Fashion-MNIST over several seeds, paired.

Trains the demo's CNN (`examples/fashion_mnist_demo.py`) plainly and as a
`SelfDistillModel` with the library's defaults, once per seed, with the same
seed for both (same data order and initialisation of the shared backbone), and
prints per-seed test accuracy of the plain model, every head and the heads'
ensemble, the mean ± std, the paired difference (served - plain) with its
standard error, and the anytime curve (early exit) of the last seed.

    python benchmarks/fashion_mnist_seeds.py                          # 5 seeds, 10k images, 3 epochs
    python benchmarks/fashion_mnist_seeds.py --train-samples 0 --epochs 10
    python benchmarks/fashion_mnist_seeds.py --feature-weight 0     # an ablation

Offline: Fashion-MNIST comes from Debian's `dataset-fashion-mnist`.
"""

import argparse
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
import fashion_mnist_demo as demo  # noqa: E402

from keras_selfdistill.models.compute_cost import backbone_cost  # noqa: E402
from keras_selfdistill.models.compute_cost import head_costs  # noqa: E402
from keras_selfdistill.models.early_exit import anytime_curve_from_logits  # noqa: E402


def accuracy(logits, labels):
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def mean_std(values):
    values = np.asarray(values) * 100
    return f"{values.mean():.2f} ± {values.std(ddof=1) if len(values) > 1 else 0:.2f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-samples", type=int, default=10000,
                        help="0 = all 60,000 training images.")
    parser.add_argument("--width", type=int, default=16)
    for name in ("alpha", "temperature", "feature-weight"):
        parser.add_argument(f"--{name}", type=float, default=None,
                            help="SelfDistillModel hyper-parameter; default: the library's")
    args = parser.parse_args(argv)
    hyperparameters = {
        name: value for name, value in [("alpha", args.alpha),
                                        ("temperature", args.temperature),
                                        ("feature_weight", args.feature_weight)]
        if value is not None
    }
    options = argparse.Namespace(
        learning_rate=2e-3, batch_size=128, epochs=args.epochs,
        jit_compile="auto", verbose=0,
    )
    data = demo.load_data(args.train_samples)
    (_, _), (x_test, y_test) = data

    rows = {"plain": []}
    curve = None
    for seed in range(args.seeds):
        keras.utils.set_random_seed(seed)
        plain = demo.build_cnn(args.width)
        demo.train(plain, data, options)
        rows["plain"].append(accuracy(plain.predict(x_test, verbose=0), y_test))

        keras.utils.set_random_seed(seed)
        model = demo.build_self_distilled(args.width, **hyperparameters)
        demo.train(model, data, options)
        heads = model.predict_heads(x_test, verbose=0)
        for name, logits in zip(model.head_names, heads):
            label = "self-distilled served" if name == model.head_names[-1] else (
                f"self-distilled {name}"
            )
            rows.setdefault(label, []).append(accuracy(logits, y_test))
        rows.setdefault("self-distilled ensemble", []).append(
            accuracy(np.mean(np.stack(heads), axis=0), y_test)
        )
        curve = anytime_curve_from_logits(
            heads, y_test, head_costs(model), backbone_cost(model)
        )
        print(f"seed {seed}: plain {rows['plain'][-1]:.4f}, served "
              f"{rows['self-distilled served'][-1]:.4f}", flush=True)

    print(f"\n{args.seeds} seeds, {args.epochs} epochs, "
          f"{len(data[0][0])} training images, backend {keras.backend.backend()}, "
          f"self-distillation settings {hyperparameters or 'the defaults'}")
    print("\n| model | test accuracy per seed (%) | mean ± std (%) |")
    print("| --- | --- | ---: |")
    for name, values in rows.items():
        print(f"| {name} | {' '.join(f'{v * 100:.2f}' for v in values)} | {mean_std(values)} |")
    differences = np.subtract(rows["self-distilled served"], rows["plain"]) * 100
    error = differences.std(ddof=1) / np.sqrt(len(differences)) if len(differences) > 1 else 0
    wins = int(np.sum(differences > 0))
    print(f"\nPaired difference, served - plain: {differences.mean():+.2f} pt "
          f"± {error:.2f} (standard error), better on {wins} of {len(differences)} seeds")
    print("\nAnytime curve (last seed): threshold -> accuracy at fraction of the plain network's MACs")
    for threshold, acc, cost in zip(curve.thresholds, curve.accuracy, curve.cost_fraction):
        print(f"  {threshold:.2f} -> {acc * 100:.2f} % at {cost:.2f}")


if __name__ == "__main__":
    main()
