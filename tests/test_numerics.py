"""Numerics of every loss: finite values and gradients at the edges, and a
property test against the plain-numpy references over random shapes,
temperatures and alphas.

One table (`LOSSES`) holds every loss of `keras_selfdistill.losses`, each as
a scalar function of a batch; every edge case runs over the whole table.
"""

import keras
import numpy as np
import pytest
import numpy_references
from backend_utils import gradients
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from keras_selfdistill import losses

NUM_CLASSES = 5
NUM_HEADS = 3
FEATURE_WIDTH = 4


def _mean(values):
    return losses.weighted_batch_mean(values)


#: name -> scalar loss of (labels, list of logits, list of features). Every
#: logits/features entry is a variable, so gradients reach all of them.
LOSSES = {
    "cross_entropy": lambda y, z, f: _mean(losses.cross_entropy(y, z[0])),
    "softened_kl_divergence": lambda y, z, f: _mean(
        losses.softened_kl_divergence(z[-1], z[0], temperature=3.0)
    ),
    "distillation_objective": lambda y, z, f: _mean(
        losses.distillation_objective(y, z[0], z[-1], alpha=0.5, temperature=2.0)[
            "total"
        ]
    ),
    "feature_distance": lambda y, z, f: _mean(losses.feature_distance(f[0], f[-1])),
    "self_distillation_loss": lambda y, z, f: losses.self_distillation_loss(
        y, z, f, alpha=0.3, temperature=3.0, feature_weight=0.03
    )["total"],
    "mutual_learning_loss": lambda y, z, f: losses.mutual_learning_loss(
        y, z, alpha=0.5, temperature=2.0
    )["total"],
    "peer_teacher_logits": lambda y, z, f: keras.ops.sum(
        losses.peer_teacher_logits(z, 0, temperature=2.0)
    ),
}


def make_batch(logit_values, feature_values, labels, dtype="float32"):
    """Variables for every head's logits and features, in `dtype`."""
    logits = [keras.Variable(value, dtype=dtype) for value in logit_values]
    features = [keras.Variable(value, dtype=dtype) for value in feature_values]
    return labels, logits, features


def huge_batch(dtype):
    """Logits and features of magnitude 1e4 with random signs, 6 samples
    (the same values on every call)."""
    rng = np.random.default_rng(0)

    def huge(shape):
        return (rng.choice([-1.0, 1.0], size=shape) * 1e4).astype(dtype)

    return make_batch(
        [huge((6, NUM_CLASSES)) for _ in range(NUM_HEADS)],
        [huge((6, FEATURE_WIDTH)) for _ in range(NUM_HEADS)],
        rng.integers(0, NUM_CLASSES, size=6),
        dtype,
    )


def random_batch(batch_size, labels):
    rng = np.random.default_rng(1)
    return make_batch(
        [rng.normal(size=(batch_size, NUM_CLASSES)) * 3 for _ in range(NUM_HEADS)],
        [rng.normal(size=(batch_size, FEATURE_WIDTH)) for _ in range(NUM_HEADS)],
        labels,
    )


def equal_batch():
    """Every logit of every head 7.0; every feature 1.0."""
    return make_batch(
        [np.full((4, NUM_CLASSES), 7.0) for _ in range(NUM_HEADS)],
        [np.ones((4, FEATURE_WIDTH)) for _ in range(NUM_HEADS)],
        np.array([0, 1, 2, 3]),
    )


EDGE_CASES = {
    "logits_1e4_float32": lambda: huge_batch("float32"),
    "logits_1e4_float16": lambda: huge_batch("float16"),
    "all_equal_logits": equal_batch,
    "batch_of_one": lambda: random_batch(1, np.array([2])),
    # Classes 3 and 4 appear nowhere in the batch (labels and one-hot).
    "class_absent_integer_labels": lambda: random_batch(6, np.array([0, 1, 2, 0, 1, 2])),
    "class_absent_one_hot_labels": lambda: random_batch(
        6, np.eye(NUM_CLASSES, dtype="float32")[[0, 1, 2, 0, 1, 2]]
    ),
}


@pytest.mark.parametrize("case", list(EDGE_CASES))
@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_and_gradients_are_finite(name, case):
    labels, logits, features = EDGE_CASES[case]()
    variables = logits + features

    def loss_fn():
        return LOSSES[name](labels, logits, features)

    value = keras.ops.convert_to_numpy(loss_fn())
    assert value.dtype == np.float32  # Computed in float32 for float16 inputs too.
    assert np.all(np.isfinite(value)), f"{name} on {case}: {value}"
    for variable, gradient in zip(variables, gradients(loss_fn, variables)):
        assert np.all(np.isfinite(gradient)), f"{name} on {case}: {variable.path}"


def test_equal_logits_give_log_num_classes_and_no_teaching_signal():
    labels, logits, features = equal_batch()
    cross_entropy = keras.ops.convert_to_numpy(LOSSES["cross_entropy"](labels, logits, features))
    np.testing.assert_allclose(cross_entropy, np.log(NUM_CLASSES), rtol=1e-6)

    def kl():
        return LOSSES["softened_kl_divergence"](labels, logits, features)

    assert float(keras.ops.convert_to_numpy(kl())) == pytest.approx(0.0, abs=1e-7)
    student_gradient = gradients(kl, [logits[0]])[0]
    np.testing.assert_allclose(student_gradient, 0.0, atol=1e-7)


def test_float16_logits_of_1e4_give_the_float32_loss():
    low = huge_batch("float16")
    high = huge_batch("float32")
    for name, loss in LOSSES.items():
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(loss(*low)),
            keras.ops.convert_to_numpy(loss(*high)),
            rtol=1e-6,
            err_msg=name,
        )


# ---------------------------------------------------------------------- #
# Property test: every loss equals its float64 numpy reference.
# ---------------------------------------------------------------------- #

PROPERTY_SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                             database=None)
TEMPERATURES = st.floats(0.1, 20.0)
ALPHAS = st.floats(0.0, 1.0)


@st.composite
def batches(draw):
    """Labels (integer or one-hot), `heads` logits and features, weights."""
    batch_size = draw(st.integers(1, 5))
    num_classes = draw(st.integers(2, 6))
    heads = draw(st.integers(2, 4))
    width = draw(st.integers(1, 4))
    logit = st.floats(-30.0, 30.0, width=32)
    logits = [
        draw(hnp.arrays("float32", (batch_size, num_classes), elements=logit))
        for _ in range(heads)
    ]
    features = [
        draw(hnp.arrays("float32", (batch_size, width), elements=st.floats(-5, 5, width=32)))
        for _ in range(heads)
    ]
    class_ids = draw(hnp.arrays("int32", (batch_size,), elements=st.integers(0, num_classes - 1)))
    one_hot = draw(st.booleans())
    labels = np.eye(num_classes, dtype="float32")[class_ids] if one_hot else class_ids
    weights = draw(st.one_of(
        st.none(),
        hnp.arrays("float32", (batch_size,), elements=st.floats(0.0, 2.0, width=32)),
    ))
    return labels, logits, features, weights


def close(actual, expected):
    # float32 against float64: measured errors stay below 4e-5 * (|x| + 1).
    np.testing.assert_allclose(
        np.asarray(keras.ops.convert_to_numpy(actual), "float64"),
        expected,
        rtol=1e-4,
        atol=1e-4,
    )


@PROPERTY_SETTINGS
@given(batches(), TEMPERATURES, st.booleans())
def test_softened_kl_and_cross_entropy_match_numpy(batch, temperature, squared):
    labels, logits, _, _ = batch
    close(losses.cross_entropy(labels, logits[0]),
          numpy_references.numpy_cross_entropy(labels, logits[0]))
    close(
        losses.softened_kl_divergence(logits[1], logits[0], temperature, squared),
        numpy_references.numpy_softened_kl(logits[1], logits[0], temperature, squared)
    )


@PROPERTY_SETTINGS
@given(batches(), TEMPERATURES, ALPHAS)
def test_distillation_objective_matches_numpy(batch, temperature, alpha):
    labels, logits, _, _ = batch
    terms = losses.distillation_objective(labels, logits[0], logits[1], alpha, temperature)
    expected = (1 - alpha) * numpy_references.numpy_cross_entropy(labels, logits[0]) + (
        alpha * numpy_references.numpy_softened_kl(logits[1], logits[0], temperature)
    )
    close(terms["total"], expected)


@PROPERTY_SETTINGS
@given(batches())
def test_feature_distance_matches_numpy(batch):
    _, _, features, _ = batch
    close(losses.feature_distance(features[0], features[1]),
          numpy_references.numpy_feature_distance(features[0], features[1]))


@PROPERTY_SETTINGS
@given(batches(), TEMPERATURES, ALPHAS, st.floats(0.0, 1.0))
def test_self_distillation_loss_matches_numpy(batch, temperature, alpha, feature_weight):
    labels, logits, features, weights = batch
    terms = losses.self_distillation_loss(
        labels, logits, features, alpha=alpha, temperature=temperature,
        feature_weight=feature_weight, sample_weight=weights,
    )
    expected = numpy_references.numpy_self_distillation_loss(
        labels, logits, features, alpha, temperature, feature_weight,
        sample_weight=weights,
    )
    close(terms["total"], expected)


@PROPERTY_SETTINGS
@given(batches(), TEMPERATURES, ALPHAS)
def test_mutual_learning_loss_matches_numpy(batch, temperature, alpha):
    labels, logits, _, weights = batch
    terms = losses.mutual_learning_loss(
        labels, logits, alpha=alpha, temperature=temperature, sample_weight=weights
    )
    expected = sum(numpy_references.numpy_mutual_learning_loss(
        labels, logits, alpha, temperature, sample_weight=weights
    ))
    close(terms["total"], expected)
