"""The evidence harness (benchmarks/harness.py): its math against hand
computations, and the CIFAR-10 evidence script's smoke mode end to end on a
synthetic, class-sorted JPEG archive."""

import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
import harness  # noqa: E402
import headfree_arms  # noqa: E402

import keras  # noqa: E402


def test_ece_matches_hand_computation():
    # Confidences 0.9, 0.9, 0.6, 0.6 (two classes): bins (13/15, 14/15] and
    # (8/15, 9/15]. First bin: 1 of 2 right -> |0.5 - 0.9|; second: 2 of 2
    # right -> |1.0 - 0.6|. ECE = 0.5 * 0.4 + 0.5 * 0.4 = 0.4.
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    labels = np.array([0, 1, 0, 1])
    assert harness.expected_calibration_error(np.log(probabilities), labels) == pytest.approx(0.4)


def test_ece_is_zero_when_confidence_equals_accuracy():
    probabilities = np.array([[0.5, 0.5]] * 4)
    logits = np.log(probabilities) + np.array([[1e-9, 0.0]])  # argmax: class 0
    assert harness.expected_calibration_error(logits, np.array([0, 0, 1, 1])) == pytest.approx(0.0, abs=1e-6)


def test_nll_matches_numpy_and_survives_large_logits():
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
    labels = np.array([0, 2])
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = -np.mean(np.log(probabilities[[0, 1], labels]))
    assert harness.negative_log_likelihood(logits, labels) == pytest.approx(expected)
    assert harness.negative_log_likelihood(logits + 1e4, labels) == pytest.approx(expected)


def test_paired_difference_mean_standard_error_and_wins():
    # Differences 0.02, 0.02, -0.01: mean 0.01, std(ddof=1) = sqrt(0.0003),
    # standard error sqrt(0.0003 / 3) = 0.01.
    result = harness.paired_difference([0.80, 0.82, 0.79], [0.78, 0.80, 0.80])
    assert result["mean"] == pytest.approx(0.01)
    assert result["standard_error"] == pytest.approx(0.01)
    assert (result["better"], result["seeds"]) == (2, 3)


def test_cosine_schedule_ends_at_zero():
    schedule = harness.cosine_schedule(0.1, total_steps=10)
    assert float(schedule(0)) == pytest.approx(0.1)
    assert float(schedule(10)) == pytest.approx(0.0, abs=1e-8)


def test_a_constant_schedule_keeps_the_learning_rate_and_says_so():
    recipe = harness.Recipe(epochs=1, optimizer="adam", learning_rate=1e-3,
                            schedule="constant")
    optimizer = harness.make_optimizer(recipe, total_steps=10)
    assert float(optimizer.learning_rate) == pytest.approx(1e-3)
    assert "no claim" in recipe.describe()["schedule"]
    with pytest.raises(ValueError, match="Received: schedule=linear"):
        harness.make_optimizer(harness.Recipe(epochs=1, schedule="linear"), 10)


def _run(arm, seed, accuracy, flag=False):
    scores = dict(accuracy=accuracy, nll=1.0, ece=0.05)
    return dict(arm=arm, seed=seed, test=dict(served=scores),
                train_accuracy_inference=1.0, train_accuracy_training_mode=1.0,
                mode_gap_flag=flag, cpu_seconds=10.0)


def test_render_markdown_reports_paired_difference_and_flags():
    results = dict(command="python x.py --seeds 2", settings=dict(data="toy"),
                   recipe=dict(train_eval_samples=100), backend="tensorflow",
                   keras_version="3", runs=[_run("plain", 0, 0.70), _run("sd", 0, 0.72),
                                            _run("plain", 1, 0.60), _run("sd", 1, 0.61, flag=True)])
    page = harness.render_markdown(results)
    assert "`python x.py --seeds 2`" in page
    assert "| sd | 66.50 ± 5.50 | +1.50 ± 0.50 | 2/2 |" in page
    assert "(BatchNorm moving-statistics check): 1." in page


def test_render_markdown_compares_sd_with_deep_supervision():
    results = dict(command="python x.py", settings={}, recipe=dict(train_eval_samples=100),
                   backend="tensorflow", keras_version="3",
                   runs=[_run("heads_ce", 0, 0.70), _run("sd", 0, 0.73),
                         _run("heads_ce", 1, 0.60), _run("sd", 1, 0.59)])
    assert "| sd − heads_ce | +1.00 ± 2.00 | 1/2 | +0.00 ± 0.00 |" in harness.render_markdown(results)


def _result(runs, recipe=None):
    return dict(command="python x.py", settings=dict(data="toy"),
                recipe=recipe or dict(train_eval_samples=100), backend="tensorflow",
                keras_version="3", runs=runs)


def test_pooled_replications_pair_each_run_with_its_own_baseline():
    # Replication 1: sd - plain = +2, +2; replication 2 (same seeds, another
    # process): -1, +1. Pooled: 4 paired differences, mean 1.0,
    # std(ddof=1) = sqrt(2), SE = sqrt(2) / 2.
    first = _result([_run("plain", 0, 0.70), _run("sd", 0, 0.72),
                     _run("plain", 1, 0.60), _run("sd", 1, 0.62)])
    second = _result([_run("plain", 0, 0.71), _run("sd", 0, 0.70),
                      _run("plain", 1, 0.61), _run("sd", 1, 0.62)])
    pooled = harness.pool_results([first, second])
    assert sorted(run["seed"] for run in pooled["runs"] if run["arm"] == "sd") == [
        "1:0", "1:1", "2:0", "2:1"]
    sd_row = next(row for row in harness.summarise(pooled) if row["name"] == "sd")
    assert sd_row["paired"]["mean"] == pytest.approx(0.01)
    assert sd_row["paired"]["standard_error"] == pytest.approx(np.sqrt(2) / 2 / 100)
    assert (sd_row["paired"]["better"], sd_row["paired"]["seeds"]) == (3, 4)
    assert "| sd | " in harness.render_markdown(pooled)


def test_pooling_refuses_different_experiments():
    first = _result([_run("plain", 0, 0.7)], recipe=dict(epochs=30))
    second = _result([_run("plain", 0, 0.7)], recipe=dict(epochs=10))
    with pytest.raises(ValueError, match="different recipe.*only runs of the same experiment"):
        harness.pool_results([first, second])


def _synthetic_archive(path, per_class=6):
    """A class-sorted archive in the layout of cifar10_train_jpeg.npz."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), per_class).astype("uint8")
    blobs = [tf.io.encode_jpeg(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).numpy()
             for _ in labels]
    offsets = np.concatenate([[0], np.cumsum([len(blob) for blob in blobs])]).astype("int64")
    jpeg_bytes = np.frombuffer(b"".join(blobs), dtype=np.uint8)
    np.savez(path, jpeg_bytes=jpeg_bytes, offsets=offsets, labels=labels,
             class_names=np.array([f"class{i}" for i in range(10)]))


def test_split_holds_out_the_last_images_of_every_class():
    import cifar10_evidence

    labels = np.repeat(np.arange(10), 6)
    train, test = cifar10_evidence.split_indices(labels, train_images=40, test_per_class=2)
    assert np.bincount(labels[test]).tolist() == [2] * 10
    assert np.bincount(labels[train]).tolist() == [4] * 10
    assert not set(train) & set(test)
    assert test.max() == 59 and 5 in test and 4 in test


def _cifar10_smoke(tmp_path, arms=None):
    """Runs `cifar10_evidence.py --smoke` (one seed) on a synthetic archive;
    returns its runs in order and its markdown page."""
    import cifar10_evidence

    archive = tmp_path / "cifar.npz"
    _synthetic_archive(archive)
    output, markdown = tmp_path / "result.json", tmp_path / "result.md"
    cifar10_evidence.main(["--cifar10", str(archive), "--smoke", "--seeds", "1",
                           *(["--arms", arms] if arms else []),
                           "--output", str(output), "--markdown", str(markdown)])
    return json.loads(output.read_text())["runs"], markdown.read_text()


# The harness is backend-independent, and the script decodes JPEGs with
# TensorFlow: one backend is enough (a torch pass that loads TensorFlow's
# decoder late is also where a CI run once stopped making progress).
@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="backend-independent; runs in the TensorFlow pass")
def test_cifar10_smoke_runs_every_arm(tmp_path):
    runs, page = _cifar10_smoke(tmp_path)
    assert [run["arm"] for run in runs] == ["plain", "heads_ce", "sd"]
    sd_run = next(run for run in runs if run["arm"] == "sd")
    assert set(sd_run["test"]) == {"served", "head_1", "head_2", "ensemble"}
    assert "| sd ensemble |" in page and "--smoke" in page


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="backend-independent; runs in the TensorFlow pass")
def test_cifar10_smoke_scores_each_peer_and_the_momentum_teacher(tmp_path):
    runs, page = _cifar10_smoke(tmp_path, "plain,mutual_learning,ema_teacher")
    runs = {run["arm"]: run for run in runs}
    assert set(runs["mutual_learning"]["test"]) == {"served", "peer1", "peer2"}
    assert set(runs["ema_teacher"]["test"]) == {"served", "teacher"}
    assert "| ema_teacher teacher − ema_teacher |" in page


def test_an_arm_with_its_own_inputs_gets_the_epoch_order_and_the_recipe():
    """The hook for arms whose inputs are not plain (images, labels): it
    receives each epoch's order (the same for every arm of a seed) and returns
    the fit arguments, and its steps per epoch set the schedule's length."""
    x_train = np.arange(12, dtype="float32").reshape(12, 1)
    y_train = np.arange(12) % 2
    seen = []

    def epoch_inputs(order, x, y, recipe, rng):
        seen.append(order.copy())
        return x[order], y[order], 4

    def build():
        model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(2)])
        return model

    recipe = harness.Recipe(epochs=2, batch_size=6, run_eagerly=True)
    # 6 steps per epoch claimed, 3 taken: after 2 epochs the cosine
    # schedule (12 steps long) is half-way, at half the learning rate.
    arm = harness.Arm(build, epoch_inputs=epoch_inputs, steps_per_epoch=lambda n, r: 6)
    model = arm.build()
    harness.train(model, recipe, x_train, y_train, seed=0, arm=arm)
    rng = np.random.default_rng(0)
    assert [order.tolist() for order in seen] == [
        rng.permutation(12).tolist(), rng.permutation(12).tolist()]
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 6  # 12 / 4, x2
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(0.05)


def test_ps_kd_and_dlb_arms_lay_out_their_epochs():
    order = np.random.default_rng(0).permutation(10)
    x_train, y_train = np.arange(10, dtype="float32")[:, None] * 10, np.arange(10)
    recipe = harness.Recipe(epochs=1, batch_size=2)
    x, y, batch_size = headfree_arms.ps_kd_epoch_inputs(order, x_train, y_train, recipe, None)
    assert x["sample_index"].tolist() == order.tolist() and batch_size == 2
    np.testing.assert_array_equal(x["inputs"][:, 0], order * 10.0)
    x, y, batch_size = headfree_arms.dlb_epoch_inputs(order, x_train, y_train, recipe, None)
    assert batch_size == 4 and len(y) == 4 * 5  # 5 new halves of 2, each batch 4
    batches = x["sample_index"].reshape(-1, 4)
    assert batches[1][:2].tolist() == batches[0][2:].tolist() == order[:2].tolist()
    assert headfree_arms.dlb_steps_per_epoch(10, recipe) == 5


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="backend-independent; runs in the TensorFlow pass")
def test_cifar10_smoke_runs_the_head_free_arms(tmp_path):
    runs, _ = _cifar10_smoke(tmp_path, "plain,label_smoothing,tf_kd,cs_kd,ps_kd,dlb")
    assert [run["arm"] for run in runs] == [
        "plain", "label_smoothing", "tf_kd", "cs_kd", "ps_kd", "dlb"]
    for run in runs:
        assert set(run["test"]) == {"served"}
        assert 0.0 <= run["test"]["served"]["accuracy"] <= 1.0
        assert np.isfinite(run["test"]["served"]["nll"])


def test_the_label_smoothing_arm_is_keras_label_smoothing_on_class_ids():
    labels = np.array([0, 2, 1])
    logits = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    smoothing = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(headfree_arms.SparseLabelSmoothing(0.1)(labels, logits)),
        keras.ops.convert_to_numpy(smoothing(np.eye(4)[labels], logits)), rtol=1e-6)


def test_harness_trains_a_with_loss_arm_with_its_own_loss():
    class Recording(keras.losses.Loss):
        calls = 0

        def call(self, y_true, y_pred):
            Recording.calls += 1
            return keras.ops.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)

    model = harness.with_loss(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]),
                              Recording())
    recipe = harness.Recipe(epochs=1, batch_size=4, run_eagerly=True)
    x = np.zeros((8, 3), "float32")
    harness.train(model, recipe, x, np.array([0, 1] * 4), seed=0)
    assert Recording.calls > 0


def test_an_unknown_arm_is_refused_with_the_known_ones(tmp_path):
    import cifar10_evidence

    with pytest.raises(ValueError, match=r"Unknown arms \['psk'\].*'ps_kd'"):
        cifar10_evidence.main(["--cifar10", str(tmp_path / "never_read.npz"), "--smoke",
                               "--arms", "plain,psk"])


def _tiny_data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(16, 3)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    return (x, y), (x[:8], y[:8])


def _tiny_model():
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])


def test_an_arm_that_uses_another_gets_that_arms_trained_model_of_the_same_seed():
    received = []

    def student_of(plain):
        received.append([w.copy() for w in plain.get_weights()])
        return _tiny_model()

    trained = {}

    def remember(seed):
        def build():
            model = _tiny_model()
            trained[seed] = model
            return model
        return build

    recipe = harness.Recipe(epochs=1, batch_size=8, run_eagerly=True, train_eval_samples=8)
    for seed in (0, 1):
        arms = dict(plain=remember(seed), student=harness.Arm(student_of, uses=("plain",)))
        harness.run_arms(arms, recipe, _tiny_data(), [seed], settings={}, log=lambda line: None)
        # The weights handed over are the plain arm's final ones, of this seed.
        for given, final in zip(received[-1], trained[seed].get_weights()):
            np.testing.assert_array_equal(given, final)
    assert not np.array_equal(received[0][0], received[1][0])


def test_an_arm_listed_before_the_arm_it_uses_is_refused():
    arms = dict(student=harness.Arm(lambda plain: _tiny_model(), uses=("plain",)),
                plain=_tiny_model)
    with pytest.raises(ValueError, match=r"Arm 'student' uses the trained \['plain'\]"):
        harness.run_arms(arms, harness.Recipe(epochs=1), _tiny_data(), [0], settings={})


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="backend-independent; runs in the TensorFlow pass")
def test_cifar10_smoke_scores_kd_and_born_again_with_their_ensembles(tmp_path):
    runs, page = _cifar10_smoke(tmp_path, "plain,teacher,kd,born_again")
    runs = {run["arm"]: run for run in runs}
    assert set(runs["kd"]["test"]) == {"served", "ensemble"}
    assert set(runs["born_again"]["test"]) == {"served", "ensemble"}
    assert "| born_again ensemble |" in page
