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


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="the benchmark's model, run on TensorFlow: checked once")
def test_small_vit_takes_global_and_local_crop_sizes():
    keras.utils.set_random_seed(0)
    vit = dino_knn.small_vit(dim=8, depth=1, heads=2, patch=4, image_size=16)
    images = np.random.default_rng(0).uniform(size=(2, 16, 16, 3)).astype("float32")
    assert tuple(vit(images).shape) == (2, 8)
    assert tuple(vit(images[:, :8, :8]).shape) == (2, 8)  # a 2x2 token grid


def test_position_embedding_is_resized_for_a_smaller_grid():
    layer = dino_knn.GridPositionEmbedding(4)
    tokens = np.zeros((1, 4, 4, 2), "float32")
    full = keras.ops.convert_to_numpy(layer(tokens))
    np.testing.assert_allclose(full, keras.ops.convert_to_numpy(layer.embedding))
    # Bilinear to a 2x2 grid (half-pixel centres at 0.5 and 2.5 of the
    # 4x4 grid): the mean of each 2x2 block.
    half = keras.ops.convert_to_numpy(layer(np.zeros((1, 2, 2, 2), "float32")))
    blocks = full[0].reshape(2, 2, 2, 2, 2).mean((1, 3))
    np.testing.assert_allclose(half[0], blocks, rtol=1e-4, atol=1e-6)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="a TensorFlow script: run once, in the TensorFlow pass")
@pytest.mark.parametrize("dataset", ["cifar10", "fashion_mnist"])
def test_smoke_run_with_the_vit_on_each_dataset(dataset):
    results = dino_knn.main(["--smoke", "--backbone", "vit", "--dataset", dataset,
                             "--arms", "dino"])
    assert 0.0 <= results["arms"]["dino"][0]["knn"] <= 1.0
    assert results["settings"]["dataset"] == dataset


@pytest.mark.skipif(keras.backend.backend() != "tensorflow"
                    or not os.path.isdir("/usr/share/datasets/fashion-mnist"),
                    reason="the benchmark's data loader, once; needs the Debian files")
def test_fashion_mnist_split_is_grey_in_range_and_class_balanced():
    (x_train, y_train), (x_test, y_test) = dino_knn.load_fashion_mnist_split(100, 5)
    assert x_train.shape == (100, 28, 28, 1) and x_test.shape == (50, 28, 28, 1)
    assert x_train.dtype == np.float32 and 0.0 <= x_train.min() and x_train.max() <= 1.0
    assert np.array_equal(np.bincount(y_test, minlength=10), np.full(10, 5))


def test_paired_table_reports_mean_and_standard_error_of_per_seed_gaps():
    def rows(values):
        return [{"seed": seed, "knn": value, "linear": value, "train_cpu_s": 1.0}
                for seed, value in enumerate(values)]

    results = {"arms": {"random": rows([0.30, 0.30, 0.30]),
                        "dino": rows([0.32, 0.34, 0.30]),
                        "supervised": rows([0.60, 0.60, 0.60])}}
    table = dino_knn.render_paired_table(results)
    # Gaps 2, 4, 0 points: mean 2.0, standard error 2 / sqrt(3) = 1.2.
    assert "dino - random, knn: +2.0 ± 1.2 pt (2/3 seeds above)" in table
    assert dino_knn.render_paired_table({"arms": {"dino": rows([0.3])}}) == ""
