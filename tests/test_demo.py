"""The README's main job, `bash scripts/demo.sh`, runs
`python examples/fashion_mnist_demo.py`: run it as a user's shell would (a
new process, so the script's entry point is what runs), on a few hundred
images, and check that it prints its comparison and the evidence pages."""

import os
import pathlib
import subprocess
import sys

import keras
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
from fashion_mnist import DEBIAN_FASHION_MNIST_DIR  # noqa: E402
from fashion_mnist import fashion_mnist_source  # noqa: E402

pytestmark = [
    pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                       reason="one backend is enough for the demo script"),
    pytest.mark.skipif(fashion_mnist_source() != DEBIAN_FASHION_MNIST_DIR,
                       reason="needs Debian's dataset-fashion-mnist (no downloads in tests)"),
]


def test_demo_script_prints_the_comparison_and_the_evidence():
    completed = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "fashion_mnist_demo.py"),
         "--epochs", "1", "--train-samples", "256", "--verbose", "0"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
        env=dict(os.environ, KERAS_BACKEND="tensorflow"))
    assert completed.returncode == 0, completed.stderr[-2000:]
    output = completed.stdout
    assert "| plain CNN (baseline) |" in output
    assert "Early exit @ 0.9" in output
    # Both evidence pages, up to their per-seed tables.
    assert "here self-distillation does not help" in output
    assert "three replications pooled" in output
    assert "Per seed" not in output
