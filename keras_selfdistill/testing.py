"""Shared test helpers: serialization, `.keras` round trips, tiny real data.

Every public class in this package is checked with the same two helpers, so
"it saves and loads" means the same thing everywhere. Import them in tests:

```python
from keras_selfdistill.testing import run_model_saving_test
```
"""

import json
import os
import tempfile

import keras
import numpy as np


def run_serialization_test(instance):
    """Checks `get_config` -> `from_config` -> `get_config` is the identity.

    Args:
        instance: a layer or model of this package.

    Returns:
        The revived instance.
    """
    config = instance.get_config()
    json.dumps(config)  # A config must be plain JSON.
    revived = instance.__class__.from_config(config)
    revived_config = revived.get_config()
    assert json.dumps(config, sort_keys=True) == json.dumps(
        revived_config, sort_keys=True
    ), "Config changed through from_config()."
    return revived


def run_model_saving_test(model, inputs, atol=1e-6):
    """Saves `model` as `.keras`, reloads it safely, and compares outputs.

    The reload uses `keras.saving.load_model(path, safe_mode=True)` with no
    `custom_objects`: importing this package must be all a user needs.

    Args:
        model: a built `keras.Model`.
        inputs: a batch to predict on.
        atol: float. Largest allowed absolute difference.

    Returns:
        The reloaded model.
    """
    expected = model.predict(inputs, verbose=0)
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "model.keras")
        model.save(path)
        restored = keras.saving.load_model(path, safe_mode=True)
    actual = restored.predict(inputs, verbose=0)
    for want, got in zip(
        keras.tree.flatten(expected), keras.tree.flatten(actual)
    ):
        np.testing.assert_allclose(got, want, atol=atol)
    assert type(restored) is type(model)
    return restored


def load_digits_data(samples=None):
    """scikit-learn's bundled 8x8 digits: real images, no download.

    Args:
        samples: int or `None`. Keep the first `samples` images (shuffled
            with a fixed seed first), or all 1,797.

    Returns:
        `(images, labels)`: float32 `(samples, 8, 8, 1)` in [0, 1] and int32
        `(samples,)`.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))
    images = (digits.images[order, ..., None] / 16.0).astype("float32")
    labels = digits.target[order].astype("int32")
    if samples is not None:
        images, labels = images[:samples], labels[:samples]
    return images, labels


# ---------------------------------------------------------------------- #
# Reference implementations in plain numpy (float64), for hand-checking the
# loss module and every model's loss.
# ---------------------------------------------------------------------- #


def numpy_log_softmax(logits):
    """`log softmax(logits)` along the last axis, in float64."""
    logits = np.asarray(logits, dtype="float64")
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def numpy_cross_entropy(labels, logits):
    """Per-sample cross-entropy from logits; integer or one-hot labels."""
    log_probs = numpy_log_softmax(logits)
    labels = np.asarray(labels)
    if labels.ndim == log_probs.ndim and labels.shape[-1] == log_probs.shape[-1]:
        return -(labels * log_probs).sum(axis=-1)
    class_ids = labels.reshape(-1).astype(int)
    return -log_probs[np.arange(len(class_ids)), class_ids]


def numpy_softened_kl(teacher_logits, student_logits, temperature, squared=True):
    """Per-sample `KL(softmax(t/T) || softmax(s/T)) [* T^2]`."""
    teacher = numpy_log_softmax(np.asarray(teacher_logits) / temperature)
    student = numpy_log_softmax(np.asarray(student_logits) / temperature)
    kl = (np.exp(teacher) * (teacher - student)).sum(axis=-1)
    return kl * temperature**2 if squared else kl


def numpy_feature_distance(student_features, teacher_features):
    """Per-sample squared L2 distance."""
    difference = np.asarray(student_features, "float64") - np.asarray(
        teacher_features, "float64"
    )
    return (difference.reshape(len(difference), -1) ** 2).sum(axis=-1)


def numpy_self_distillation_loss(
    labels,
    head_logits,
    head_features,
    alpha,
    temperature,
    feature_weight,
    sample_weight=None,
    squared=True,
):
    """Be Your Own Teacher's total loss, written out term by term.

    Returns:
        A float: the batch mean (weighted as Keras does) of
        `CE(y, z_C) + sum_{i<C} (1-a) CE(y, z_i) + a T^2 KL(z_C || z_i)
        + lambda ||F_i - F_C||^2`.
    """
    deepest = head_logits[-1]
    per_sample = numpy_cross_entropy(labels, deepest)
    for index, logits in enumerate(head_logits[:-1]):
        per_sample = per_sample + (1 - alpha) * numpy_cross_entropy(labels, logits)
        per_sample = per_sample + alpha * numpy_softened_kl(
            deepest, logits, temperature, squared
        )
        if head_features is not None:
            per_sample = per_sample + feature_weight * numpy_feature_distance(
                head_features[index], head_features[-1]
            )
    if sample_weight is not None:
        per_sample = per_sample * np.asarray(sample_weight).reshape(-1)
    return float(per_sample.mean())


def numpy_mutual_learning_loss(
    labels, peer_logits, alpha, temperature, sample_weight=None, squared=True
):
    """Deep mutual learning's total loss with `K` peers, term by term.

    Returns:
        A float: `sum_i` of the batch mean of `(1-a) CE(y, z_i)
        + a T^2 KL(p_bar_i || softmax(z_i/T))`, `p_bar_i` the mean of the
        other peers' softened predictions.
    """
    probabilities = [
        np.exp(numpy_log_softmax(np.asarray(z, "float64") / temperature))
        for z in peer_logits
    ]
    weights = (
        np.ones(len(np.asarray(peer_logits[0])))
        if sample_weight is None
        else np.asarray(sample_weight, "float64").reshape(-1)
    )
    total = 0.0
    for index, logits in enumerate(peer_logits):
        teacher = np.mean(
            [p for other, p in enumerate(probabilities) if other != index], axis=0
        )
        student = numpy_log_softmax(np.asarray(logits, "float64") / temperature)
        kl = (teacher * (np.log(teacher) - student)).sum(axis=-1)
        if squared:
            kl = kl * temperature**2
        per_sample = (1 - alpha) * numpy_cross_entropy(labels, logits) + alpha * kl
        total += float((per_sample * weights).mean())
    return total
