"""The distillation math against plain-numpy hand computations."""

import keras
import numpy as np
import pytest
import numpy_references
from backend_utils import gradients
from keras import ops

from keras_selfdistill import losses

ATOL = 1e-5


def as_numpy(value):
    return np.asarray(ops.convert_to_numpy(value), dtype="float64")


@pytest.fixture
def batch(rng):
    """A batch of 6 samples, 5 classes, 3 heads with 4-wide features."""
    return {
        "labels": rng.integers(0, 5, size=6).astype("int32"),
        "logits": [rng.normal(size=(6, 5)).astype("float32") * 3 for _ in range(3)],
        "features": [rng.normal(size=(6, 4)).astype("float32") for _ in range(3)],
    }


# -- cross_entropy ------------------------------------------------------- #


def test_cross_entropy_matches_numpy_for_integer_labels(batch):
    expected = numpy_references.numpy_cross_entropy(batch["labels"], batch["logits"][0])
    actual = losses.cross_entropy(batch["labels"], batch["logits"][0])
    np.testing.assert_allclose(as_numpy(actual), expected, atol=ATOL)


def test_cross_entropy_is_the_same_for_one_hot_and_column_labels(batch):
    labels, logits = batch["labels"], batch["logits"][0]
    sparse = as_numpy(losses.cross_entropy(labels, logits))
    column = as_numpy(losses.cross_entropy(labels[:, None], logits))
    one_hot = as_numpy(losses.cross_entropy(np.eye(5)[labels], logits))
    np.testing.assert_allclose(column, sparse, atol=ATOL)
    np.testing.assert_allclose(one_hot, sparse, atol=ATOL)


# -- softened_kl_divergence ---------------------------------------------- #


@pytest.mark.parametrize("temperature", [1.0, 3.0, 10.0])
@pytest.mark.parametrize("squared", [True, False])
def test_softened_kl_matches_numpy(batch, temperature, squared):
    teacher, student = batch["logits"][2], batch["logits"][0]
    expected = numpy_references.numpy_softened_kl(teacher, student, temperature, squared)
    actual = losses.softened_kl_divergence(
        teacher, student, temperature, scale_by_temperature_squared=squared
    )
    np.testing.assert_allclose(as_numpy(actual), expected, atol=ATOL, rtol=1e-5)


def test_temperature_squared_factor_is_exactly_t_squared(batch):
    teacher, student = batch["logits"][2], batch["logits"][0]
    bare = as_numpy(losses.softened_kl_divergence(teacher, student, 4.0, False))
    scaled = as_numpy(losses.softened_kl_divergence(teacher, student, 4.0, True))
    np.testing.assert_allclose(scaled, 16.0 * bare, rtol=1e-6)


def test_kl_of_identical_distributions_is_zero(batch):
    logits = batch["logits"][1]
    kl = as_numpy(losses.softened_kl_divergence(logits, logits + 7.0, 2.0))
    np.testing.assert_allclose(kl, 0.0, atol=ATOL)


@pytest.mark.parametrize("magnitude", [1e4, -1e4])
def test_kl_and_its_gradient_stay_finite_for_huge_logits(magnitude):
    teacher = keras.Variable(np.array([[magnitude, 0.0, -magnitude]], "float32"))
    student = keras.Variable(np.array([[-magnitude, magnitude, 0.0]], "float32"))

    def loss():
        return ops.sum(losses.softened_kl_divergence(teacher, student, 3.0))

    value = as_numpy(loss())
    expected = numpy_references.numpy_softened_kl(teacher.numpy(), student.numpy(), 3.0)
    np.testing.assert_allclose(value, expected.sum(), rtol=1e-5)
    student_grad = gradients(loss, [student])[0]
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(student_grad))


def test_teacher_logits_receive_no_gradient(batch):
    teacher = keras.Variable(batch["logits"][2])
    student = keras.Variable(batch["logits"][0])
    teacher_grad, student_grad = gradients(
        lambda: ops.sum(losses.softened_kl_divergence(teacher, student, 2.0)),
        [teacher, student],
    )
    np.testing.assert_array_equal(teacher_grad, 0.0)
    assert np.abs(student_grad).max() > 1e-3


def test_kl_gradient_matches_the_closed_form(batch):
    # d/ds [T^2 KL(p_t || p_s)] = T (p_s - p_t), with p = softmax(logits / T).
    temperature = 2.0
    teacher, student_logits = batch["logits"][2], batch["logits"][0]
    student = keras.Variable(student_logits)
    grad = gradients(
        lambda: ops.sum(losses.softened_kl_divergence(teacher, student, temperature)),
        [student],
    )[0]
    p_teacher = np.exp(numpy_references.numpy_log_softmax(teacher / temperature))
    p_student = np.exp(numpy_references.numpy_log_softmax(student_logits / temperature))
    np.testing.assert_allclose(grad, temperature * (p_student - p_teacher), atol=1e-5)


# -- feature_distance ---------------------------------------------------- #


def test_feature_distance_matches_numpy(batch):
    student, teacher = batch["features"][0], batch["features"][2]
    expected = numpy_references.numpy_feature_distance(student, teacher)
    actual = losses.feature_distance(student, teacher)
    np.testing.assert_allclose(as_numpy(actual), expected, atol=ATOL)


def test_feature_distance_gives_the_teacher_no_gradient(batch):
    student = keras.Variable(batch["features"][0])
    teacher = keras.Variable(batch["features"][2])
    student_grad, teacher_grad = gradients(
        lambda: ops.sum(losses.feature_distance(student, teacher)), [student, teacher]
    )
    np.testing.assert_array_equal(teacher_grad, 0.0)
    np.testing.assert_allclose(
        student_grad, 2 * (batch["features"][0] - batch["features"][2]), atol=1e-5
    )


# -- weighted_batch_mean -------------------------------------------------- #


def test_weighted_batch_mean_divides_by_batch_size_like_keras():
    values = np.array([1.0, 2.0, 3.0, 4.0], "float32")
    weights = np.array([1.0, 0.0, 2.0, 0.0], "float32")
    assert as_numpy(losses.weighted_batch_mean(values, weights)) == pytest.approx(
        (1.0 + 6.0) / 4
    )
    assert as_numpy(losses.weighted_batch_mean(values)) == pytest.approx(2.5)


# -- distillation_objective and self_distillation_loss ---------------------- #


def test_distillation_objective_is_the_hinton_mix(batch):
    labels, student, teacher = batch["labels"], batch["logits"][0], batch["logits"][2]
    terms = losses.distillation_objective(labels, student, teacher, 0.7, 4.0)
    expected = 0.3 * numpy_references.numpy_cross_entropy(labels, student) + (
        0.7 * numpy_references.numpy_softened_kl(teacher, student, 4.0)
    )
    np.testing.assert_allclose(as_numpy(terms["total"]), expected, atol=1e-4)


@pytest.mark.parametrize("use_weights", [False, True])
def test_self_distillation_loss_matches_numpy(batch, rng, use_weights):
    weights = rng.uniform(0, 2, size=6).astype("float32") if use_weights else None
    terms = losses.self_distillation_loss(
        batch["labels"],
        batch["logits"],
        batch["features"],
        alpha=0.3,
        temperature=3.0,
        feature_weight=0.05,
        sample_weight=weights,
    )
    expected = numpy_references.numpy_self_distillation_loss(
        batch["labels"], batch["logits"], batch["features"], 0.3, 3.0, 0.05, weights
    )
    assert as_numpy(terms["total"]) == pytest.approx(expected, rel=1e-5)


def test_self_distillation_loss_mean_feature_reduction_divides_by_the_width(batch):
    # The default reduction; "sum" is the paper's squared norm.
    terms = losses.self_distillation_loss(
        batch["labels"], batch["logits"], batch["features"],
        alpha=0.3, temperature=3.0, feature_weight=2.0, feature_reduction="mean",
    )
    expected = numpy_references.numpy_self_distillation_loss(
        batch["labels"], batch["logits"], batch["features"], 0.3, 3.0, 2.0,
        feature_reduction="mean",
    )
    assert as_numpy(terms["total"]) == pytest.approx(expected, rel=1e-5)
    width = batch["features"][-1].shape[-1]
    summed = losses.self_distillation_loss(
        batch["labels"], batch["logits"], batch["features"], 0.3, 3.0, 2.0,
        feature_reduction="sum",
    )
    assert as_numpy(terms["feature"]) == pytest.approx(
        as_numpy(summed["feature"]) / width, rel=1e-5
    )


def test_self_distillation_terms_add_up_to_the_total(batch):
    alpha, weight = 0.4, 0.1
    terms = {
        key: float(as_numpy(value))
        for key, value in losses.self_distillation_loss(
            batch["labels"], batch["logits"], batch["features"], alpha, 2.0, weight
        ).items()
    }
    deepest_ce = numpy_references.numpy_cross_entropy(batch["labels"], batch["logits"][-1]).mean()
    shallow_ce = terms["cross_entropy"] - deepest_ce
    expected = (
        deepest_ce
        + (1 - alpha) * shallow_ce
        + alpha * terms["distillation"]
        + weight * terms["feature"]
    )
    assert terms["total"] == pytest.approx(expected, rel=1e-5)


def test_deepest_head_receives_no_gradient_from_distillation_or_feature_terms(batch):
    logits = [keras.Variable(value) for value in batch["logits"]]
    features = [keras.Variable(value) for value in batch["features"]]

    def teaching_terms():
        terms = losses.self_distillation_loss(
            batch["labels"], logits, features, alpha=0.5, temperature=2.0,
            feature_weight=0.1,
        )
        return terms["distillation"] + 0.1 * terms["feature"]

    grads = gradients(teaching_terms, logits + features)
    logit_grads, feature_grads = grads[:3], grads[3:]
    np.testing.assert_array_equal(logit_grads[-1], 0.0)
    np.testing.assert_array_equal(feature_grads[-1], 0.0)
    for grad in logit_grads[:-1] + feature_grads[:-1]:
        assert np.abs(grad).max() > 1e-4


def test_self_distillation_loss_is_finite_for_huge_logits(batch):
    huge = [np.array([[1e4, -1e4, 0.0, 0.0, 0.0]] * 6, "float32") * sign for sign in (1, -1, 1)]
    logits = [keras.Variable(value) for value in huge]
    terms = losses.self_distillation_loss(batch["labels"], logits, None)
    assert np.isfinite(as_numpy(terms["total"]))
    grads = gradients(
        lambda: losses.self_distillation_loss(batch["labels"], logits, None)["total"],
        logits,
    )
    assert all(np.all(np.isfinite(grad)) for grad in grads)


def test_feature_distance_mean_reduction_divides_by_the_feature_size(batch):
    student, teacher = batch["features"][0], batch["features"][2]
    total = as_numpy(losses.feature_distance(student, teacher))
    mean = as_numpy(losses.feature_distance(student, teacher, reduction="mean"))
    np.testing.assert_allclose(mean, total / 4, rtol=1e-6)
    with pytest.raises(ValueError, match="reduction='max'"):
        losses.feature_distance(student, teacher, reduction="max")


# Bad inputs (each refused with a message naming the value and what is
# allowed) are rows of the one table in tests/test_bad_inputs.py.
