"""keras_selfdistill.models.early_exit: the exit rule and the anytime curve."""

import keras
import numpy as np
import pytest

import model_families
from keras_selfdistill.models import compute_cost
from keras_selfdistill.models import early_exit


@pytest.fixture(scope="module")
def trained(digits_split):
    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = digits_split
    model = model_families.self_distill_model()
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    model.fit(x_train, y_train, epochs=3, batch_size=64, verbose=0)
    return model, (x_test, y_test)


def test_a_sample_exits_at_its_first_confident_head():
    # softmax([3, 0]) tops at 0.95; softmax([0, 0.1]) at 0.52.
    head_logits = [
        np.array([[3.0, 0.0], [0.0, 0.1], [0.0, 0.1]]),
        np.array([[0.0, 3.0], [3.0, 0.0], [0.0, 0.1]]),
        np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]),
    ]
    np.testing.assert_array_equal(
        early_exit.early_exit_heads(head_logits, 0.9), [0, 1, 2]
    )


def test_threshold_zero_exits_at_the_first_head_and_one_at_the_deepest():
    head_logits = np.random.default_rng(0).normal(size=(3, 5, 4))
    np.testing.assert_array_equal(early_exit.early_exit_heads(head_logits, 0.0), 0)
    np.testing.assert_array_equal(early_exit.early_exit_heads(head_logits, 1.0), 2)


def test_early_exit_predictions_take_the_exit_head_s_logits():
    head_logits = [np.array([[3.0, 0.0], [0.0, 0.1]]), np.array([[0.0, 1.0], [2.0, 0.0]])]
    result = early_exit.early_exit_predictions(head_logits, 0.9)
    np.testing.assert_array_equal(result.exit_heads, [0, 1])
    np.testing.assert_array_equal(result.logits, [[3.0, 0.0], [2.0, 0.0]])
    assert result.exit_fractions == [0.5, 0.5]


def test_anytime_curve_matches_predict_early_exit(trained):
    model, (x_test, y_test) = trained
    thresholds = (0.0, 0.5, 0.9, 0.99, 1.0)
    curve = early_exit.anytime_curve(model, x_test, y_test, thresholds)
    costs = np.asarray(compute_cost.head_costs(model)) / compute_cost.backbone_cost(model)
    for index, threshold in enumerate(thresholds):
        exits = model.predict_early_exit(x_test, threshold=threshold, verbose=0)
        accuracy = np.mean(exits.logits.argmax(axis=-1) == y_test)
        np.testing.assert_allclose(curve.accuracy[index], accuracy)
        np.testing.assert_allclose(curve.exit_fractions[index], exits.exit_fractions)
        np.testing.assert_allclose(
            curve.cost_fraction[index], np.dot(exits.exit_fractions, costs)
        )


def test_anytime_curve_ends_are_the_first_and_deepest_heads(trained):
    model, (x_test, y_test) = trained
    curve = early_exit.anytime_curve(model, x_test, y_test, (0.0,))
    heads = model.predict_heads(x_test, verbose=0)
    head_accuracy = [np.mean(h.argmax(axis=-1) == y_test) for h in heads]
    np.testing.assert_allclose(curve.head_accuracy, head_accuracy)
    # Threshold 0: every sample leaves at the first head, for its cost.
    np.testing.assert_allclose(curve.accuracy[0], head_accuracy[0])
    np.testing.assert_allclose(curve.cost_fraction[0], curve.head_cost_fraction[0])
    assert curve.head_cost_fraction[0] < 1.0 < curve.head_cost_fraction[-1]


def test_anytime_curve_accepts_one_hot_labels():
    logits = [np.array([[3.0, 0.0], [0.0, 0.1]]), np.array([[0.0, 3.0], [0.0, 3.0]])]
    one_hot = np.array([[1.0, 0.0], [0.0, 1.0]])
    from_ids = early_exit.anytime_curve_from_logits(logits, [0, 1], [1, 2], 2, (0.9,))
    from_one_hot = early_exit.anytime_curve_from_logits(logits, one_hot, [1, 2], 2, (0.9,))
    # Sample 0 exits at head 1 (p = 0.95), right; sample 1 goes deep, right.
    np.testing.assert_allclose(from_ids.accuracy, [1.0])
    np.testing.assert_allclose(from_ids.cost_fraction, [0.75])
    np.testing.assert_allclose(from_one_hot.accuracy, from_ids.accuracy)


def test_anytime_curve_rejects_a_threshold_outside_the_unit_interval():
    with pytest.raises(ValueError, match="threshold=1.5"):
        early_exit.anytime_curve_from_logits([np.zeros((1, 2))], [0], [1], 1, (1.5,))
