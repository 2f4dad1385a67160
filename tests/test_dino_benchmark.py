"""benchmarks/dino_knn.py: the probes against hand computations, and its
`--smoke` mode end to end (TensorFlow pass only: a script, not the library)."""

import os
import sys

import keras
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
import dino_knn  # noqa: E402


def test_weighted_knn_votes_by_exp_similarity_over_temperature():
    # One class-1 neighbour at 0 degrees (weight e^(1/0.07)) outweighs two
    # class-0 neighbours at 60 degrees (2 e^(0.5/0.07)).
    bank = np.array([[1.0, 0.0], [0.5, np.sqrt(0.75)], [0.5, -np.sqrt(0.75)]])
    labels = np.array([1, 0, 0])
    query = np.array([[2.0, 0.0]])
    assert dino_knn.weighted_knn_accuracy(bank, labels, query, np.array([1]), k=3) == 1.0
    # With a huge temperature the votes are equal: the majority (class 0) wins.
    assert dino_knn.weighted_knn_accuracy(
        bank, labels, query, np.array([0]), k=3, temperature=1e6) == 1.0


def test_linear_probe_separates_separable_features():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    features = np.eye(3)[labels] * 3 + rng.normal(scale=0.3, size=(300, 3))
    accuracy = dino_knn.linear_probe_accuracy(
        features[:200], labels[:200], features[200:], labels[200:], num_classes=3)
    assert accuracy > 0.95


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="a TensorFlow script: run once, in the TensorFlow pass")
def test_smoke_run_reports_every_arm():
    results = dino_knn.main(["--smoke", "--arms", "random", "dino"])
    assert set(results["arms"]) == {"random", "dino"}
    for rows in results["arms"].values():
        assert 0.0 <= rows[0]["knn"] <= 1.0 and 0.0 <= rows[0]["linear"] <= 1.0
    assert "teacher_entropy" in results["arms"]["dino"][0]["dino_history"]
