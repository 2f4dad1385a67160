"""Two seeded runs of a small fit give identical weights (TensorFlow).

`tf.config.experimental.enable_op_determinism()` cannot be turned off once
on, and slows some ops, so the runs happen in a subprocess: nothing leaks
into the other tests. What holds on each backend is in docs/reliability.md.
"""

import os
import subprocess
import sys

import keras
import pytest

SEEDED_RUNS = """
import hashlib
import keras
import numpy as np
import tensorflow as tf

from keras_selfdistill import SelfDistillModel
from digits_data import load_digits_data

tf.config.experimental.enable_op_determinism()
images, labels = load_digits_data(64)


def trained_weights_digest(seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    x1 = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stage1")(inputs)
    x2 = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu",
                             name="stage2")(x1)
    pooled = keras.layers.Dropout(0.3)(keras.layers.GlobalAveragePooling2D()(x2))
    backbone = keras.Model(inputs, keras.layers.Dense(10, name="logits")(pooled))
    model = SelfDistillModel.from_backbone(backbone, taps=["stage1"])
    model.compile(optimizer="adam", metrics=["accuracy"], jit_compile=False)
    # Every source of randomness: initializers, dropout, shuffling.
    model.fit(images, labels, batch_size=32, epochs=2, shuffle=True, verbose=0)
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()


print(trained_weights_digest(0), trained_weights_digest(0), trained_weights_digest(1))
"""


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="enable_op_determinism is TensorFlow's; see docs/reliability.md for "
    "what holds on JAX and PyTorch",
)
def test_two_seeded_runs_give_identical_weights():
    result = subprocess.run(
        [sys.executable, "-c", SEEDED_RUNS],
        capture_output=True, text=True, timeout=300,
        # tests/ on the path, for the digits loader.
        env=dict(
            os.environ, KERAS_BACKEND="tensorflow",
            PYTHONPATH=os.pathsep.join(
                filter(None, [os.path.dirname(__file__), os.environ.get("PYTHONPATH")])
            ),
        ),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    first, second, other_seed = result.stdout.split()[-3:]
    assert first == second  # Bit for bit.
    assert first != other_seed  # The digest does depend on the training.
