"""Does `DINO` train the same under `jit_compile=True`? A by-hand check.

Trains one tiny `DINO` (a 4-filter CNN, 8 images, 2 epochs of 2 steps,
crops without photometric augmentations) twice from the same seed: with the
backend's plain step (`jit_compile=False`) and with `jit_compile=True`
(XLA on TensorFlow and JAX, `torch.compile` on torch), then prints the
largest difference over every weight of the model (student, teacher,
centre, epoch, the crops' random state). Not in the test suite: the
compile alone takes about a minute on a CPU (83 s for `torch.compile`).

    KERAS_BACKEND=torch python benchmarks/dino_jit_check.py

Result (torch 2.13 CPU, Keras 3.15.1): the same history and every weight
within 5.2e-08 of the plain step's (see docs/dino.md).
"""

import os
import sys
import time

import keras
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_selfdistill import DINO  # noqa: E402
from keras_selfdistill import MultiCrop  # noqa: E402
from keras_selfdistill.callbacks import MomentumScheduler  # noqa: E402


def build():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    backbone = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    return DINO(backbone, output_dim=12, hidden_dim=8, bottleneck_dim=4,
                multi_crop=MultiCrop(8, 4, 2, seed=0, color_augmentation=False),
                warmup_teacher_temperature_epochs=2, momentum=0.9)


def train(jit_compile, images):
    model = build()
    model.compile(optimizer=keras.optimizers.Adam(0.01), jit_compile=jit_compile)
    start = time.time()
    history = model.fit(images, batch_size=4, epochs=2, shuffle=False, verbose=0,
                        callbacks=[MomentumScheduler(start=0.9)]).history
    print(f"jit_compile={jit_compile}: "
          f"{ {key: round(values[-1], 6) for key, values in history.items()} } "
          f"{time.time() - start:.1f} s", flush=True)
    return model


def main():
    images = np.random.default_rng(0).uniform(size=(8, 10, 10, 3)).astype("float32")
    plain, compiled = train(False, images), train(True, images)
    worst = 0.0
    for a, b in zip(plain.weights, compiled.weights):
        a = np.asarray(keras.ops.convert_to_numpy(a), "float64")
        b = np.asarray(keras.ops.convert_to_numpy(b), "float64")
        difference = float(np.max(np.abs(a - b))) if a.size else 0.0
        worst = max(worst, difference)
        if difference > 1e-4:
            print(f"differs: {difference:.2e}")
    print(f"{keras.backend.backend()}: largest weight difference, plain step vs "
          f"jit_compile=True: {worst:.2e}")
    return worst


if __name__ == "__main__":
    main()
