"""The head-free self-distillation losses (PS-KD, DLB) against numpy, their
gradients (stored targets receive none) and large logits."""

import keras
import numpy as np
import pytest
from backend_utils import gradients
from numpy_references import numpy_last_mini_batch_loss
from numpy_references import numpy_progressive_self_distillation

from keras_selfdistill import losses


def _numpy(tensor):
    return np.asarray(keras.ops.convert_to_numpy(tensor), "float64")


def _probabilities(rng, shape):
    values = rng.random(shape)
    return values / values.sum(axis=-1, keepdims=True)


def test_progressive_loss_is_cross_entropy_against_the_mixed_target(rng):
    labels = np.array([0, 2, 1, 3])
    logits = rng.normal(size=(4, 5)) * 3
    previous = _probabilities(rng, (4, 5))
    alpha = np.array([0.0, 0.2, 0.5, 0.8])
    terms = losses.progressive_self_distillation_loss(labels, logits, previous, alpha)
    np.testing.assert_allclose(
        _numpy(terms["total"]),
        numpy_progressive_self_distillation(labels, logits, previous, alpha),
        rtol=1e-5,
    )


def test_progressive_loss_with_alpha_zero_is_plain_cross_entropy(rng):
    labels, logits = np.array([1, 0]), rng.normal(size=(2, 3))
    terms = losses.progressive_self_distillation_loss(
        labels, logits, _probabilities(rng, (2, 3)), 0.0
    )
    np.testing.assert_allclose(
        _numpy(terms["total"]), _numpy(losses.cross_entropy(labels, logits)), rtol=1e-6
    )


def test_progressive_loss_sends_no_gradient_into_the_stored_predictions(rng):
    logits = keras.Variable(rng.normal(size=(3, 4)).astype("float32"))
    previous = keras.Variable(_probabilities(rng, (3, 4)).astype("float32"))

    def loss():
        terms = losses.progressive_self_distillation_loss(
            np.array([0, 1, 2]), logits, previous, 0.5
        )
        return keras.ops.mean(terms["total"])

    logits_gradient, previous_gradient = gradients(loss, [logits, previous])
    assert np.abs(logits_gradient).max() > 1e-3
    np.testing.assert_array_equal(previous_gradient, 0.0)


def test_progressive_loss_is_finite_for_large_logits():
    logits = np.array([[1e4, -1e4, 0.0]])
    terms = losses.progressive_self_distillation_loss(
        np.array([1]), logits, np.array([[0.2, 0.3, 0.5]]), 0.8
    )
    assert np.isfinite(_numpy(terms["total"])).all()


def test_progressive_loss_refuses_alpha_out_of_range():
    with pytest.raises(ValueError, match=r"alpha.*\[0, 1\].*Received: alpha=1.5"):
        losses.progressive_self_distillation_loss(
            np.array([0]), np.zeros((1, 2)), np.full((1, 2), 0.5), 1.5
        )


def test_last_mini_batch_loss_matches_numpy(rng):
    labels = np.array([0, 1, 2, 1, 0, 2])
    logits = rng.normal(size=(6, 3)) * 2
    previous = rng.normal(size=(3, 3)) * 2
    mask = np.array([1.0, 0.0, 1.0])
    terms = losses.last_mini_batch_loss(
        labels, logits, previous, mask, alpha=0.7, temperature=3.0
    )
    assert float(_numpy(terms["total"])) == pytest.approx(
        numpy_last_mini_batch_loss(labels, logits, previous, mask, 0.7, 3.0), rel=1e-5
    )


def test_last_mini_batch_loss_without_targets_is_cross_entropy(rng):
    labels, logits = np.array([0, 1, 2, 1]), rng.normal(size=(4, 3))
    terms = losses.last_mini_batch_loss(
        labels, logits, rng.normal(size=(2, 3)) * 5, np.zeros(2)
    )
    assert float(_numpy(terms["distillation"])) == 0.0
    assert float(_numpy(terms["total"])) == pytest.approx(
        float(np.mean(_numpy(losses.cross_entropy(labels, logits)))), rel=1e-6
    )


def test_last_mini_batch_loss_sends_no_gradient_into_the_previous_logits(rng):
    logits = keras.Variable(rng.normal(size=(4, 3)).astype("float32"))
    previous = keras.Variable(rng.normal(size=(2, 3)).astype("float32"))

    def loss():
        return losses.last_mini_batch_loss(
            np.array([0, 1, 2, 0]), logits, previous, np.ones(2)
        )["total"]

    logits_gradient, previous_gradient = gradients(loss, [logits, previous])
    assert np.abs(logits_gradient[:2]).max() > 1e-3
    np.testing.assert_array_equal(previous_gradient, 0.0)


def test_last_mini_batch_loss_is_finite_for_large_logits():
    terms = losses.last_mini_batch_loss(
        np.array([0, 1]), np.array([[1e4, -1e4], [0.0, 1e4]]),
        np.array([[-1e4, 1e4]]), np.ones(1),
    )
    assert np.isfinite(_numpy(terms["total"]))


def test_last_mini_batch_loss_refuses_a_batch_that_is_not_two_halves():
    with pytest.raises(ValueError, match=r"twice as many rows.*\(3, 2\).*\(2, 2\)"):
        losses.last_mini_batch_loss(
            np.array([0, 1, 0]), np.zeros((3, 2)), np.zeros((2, 2)), np.ones(2)
        )
