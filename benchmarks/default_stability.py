"""Are the defaults stable? Self-distillation vs plain, seed by seed.

Trains a small MLP on scikit-learn's 8x8 digits (flattened: a 1-D task,
1,200 train / 597 test images, no download) plainly and as a
`SelfDistillModel` with two `AuxiliaryHead`s, under several loss settings,
for several seeds, and prints the served (deepest) classifier's test accuracy
per seed and its gap to the plain model.

    python benchmarks/default_stability.py                # all settings, 5 seeds
    python benchmarks/default_stability.py --settings defaults --seeds 3

`tests/models/test_default_stability.py` runs the `defaults` row and fails if
any seed loses more than 1.5 points.
"""

import argparse
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The digits loader is the tests' (the same data the test of this row uses).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_selfdistill import AuxiliaryHead  # noqa: E402
from keras_selfdistill import SelfDistillModel  # noqa: E402
from digits_data import load_digits_data  # noqa: E402

#: name -> SelfDistillModel keyword arguments (None: the plain model).
SETTINGS = {
    "plain": None,
    "defaults": {},
    "T=3 with T^2": {"scale_by_temperature_squared": True},
    "T=1 with T^2": {"temperature": 1.0, "scale_by_temperature_squared": True},
    "heads CE only (alpha=0, lambda=0)": {"alpha": 0.0, "feature_weight": 0.0},
}


def build_mlp(self_distill_kwargs=None):
    """A 3-hidden-layer MLP; with kwargs, heads on hidden layers 1 and 2."""
    inputs = keras.Input((64,))
    hidden_1 = keras.layers.Dense(64, activation="relu", name="dense_1")(inputs)
    hidden_2 = keras.layers.Dense(64, activation="relu", name="dense_2")(hidden_1)
    hidden_3 = keras.layers.Dense(64, activation="relu", name="dense_3")(hidden_2)
    logits = keras.layers.Dense(10, name="logits")(hidden_3)
    optimizer = keras.optimizers.Adam(3e-3)
    if self_distill_kwargs is None:
        model = keras.Model(inputs, logits)
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        return model
    head_1 = AuxiliaryHead(10, name="head_1")(hidden_1)
    head_2 = AuxiliaryHead(10, name="head_2")(hidden_2)
    model = SelfDistillModel(inputs, [head_1, head_2, logits], **self_distill_kwargs)
    model.compile(optimizer=optimizer)
    return model


def served_accuracy(self_distill_kwargs, seed, epochs=30):
    """Test accuracy of the served classifier after training with `seed`."""
    images, labels = load_digits_data()
    images = images.reshape(len(images), -1)
    keras.utils.set_random_seed(seed)
    model = build_mlp(self_distill_kwargs)
    model.fit(images[:1200], labels[:1200], epochs=epochs, batch_size=64, verbose=0)
    predictions = np.argmax(model.predict(images[1200:], verbose=0), axis=-1)
    return float(np.mean(predictions == labels[1200:]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS),
                        help=f"Any of {list(SETTINGS)} (plain always runs).")
    args = parser.parse_args(argv)
    seeds = range(args.seeds)
    plain = [served_accuracy(None, seed, args.epochs) for seed in seeds]
    print(f"{len(plain)} seeds, {args.epochs} epochs, backend {keras.backend.backend()}")
    print("\n| setting | accuracy per seed (%) | mean | worst gap to plain (pt) |")
    print("| --- | --- | ---: | ---: |")
    print(f"| plain | {' '.join(f'{a * 100:.1f}' for a in plain)} | "
          f"{np.mean(plain) * 100:.2f} | |")
    for name in args.settings:
        if SETTINGS.get(name) is None:
            continue
        accuracies = [served_accuracy(SETTINGS[name], seed, args.epochs) for seed in seeds]
        worst = min(a - p for a, p in zip(accuracies, plain))
        print(f"| {name} | {' '.join(f'{a * 100:.1f}' for a in accuracies)} | "
              f"{np.mean(accuracies) * 100:.2f} | {worst * 100:+.1f} |", flush=True)


if __name__ == "__main__":
    main()
