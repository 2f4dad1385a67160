"""`Distiller` with `keras.distillation`'s arguments: the same objective as
Keras's own Distiller where the two agree, Keras's two pitfalls measured,
and an error that shows the translation where there is none."""

import keras
import numpy as np
import pytest

from keras_selfdistill import Distiller
from keras_selfdistill import testing

T = 3.0


def two_models(seed=0, hidden=6):
    keras.utils.set_random_seed(seed)
    models = []
    for role in ("teacher", "student"):
        inputs = keras.Input((4,))
        x = keras.layers.Dense(hidden, activation="relu", name="hidden")(inputs)
        models.append(keras.Model(inputs, keras.layers.Dense(3, name="logits")(x),
                                  name=role))
    return models


X = np.random.default_rng(0).normal(size=(4, 4)).astype("float32")
Y = np.array([0, 1, 2, 0])
KL = keras.losses.KLDivergence


def keras_loss(distillation_losses, sample_weight=None, **kwargs):
    teacher, student = two_models()
    keras_distiller = keras.distillation.Distiller(
        teacher, student, distillation_losses=distillation_losses, **kwargs
    )
    keras_distiller.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return float(keras.ops.convert_to_numpy(keras_distiller.compute_loss(
        x=X, y=Y, y_pred=keras_distiller(X), sample_weight=sample_weight
    )))


def our_loss(distiller, sample_weight=None):
    return float(keras.ops.convert_to_numpy(distiller.compute_loss(
        x=X, y=Y, y_pred=distiller.training_outputs(X), sample_weight=sample_weight
    )))


@pytest.mark.parametrize("student_loss_weight", [0.5, 0.2])
def test_keras_arguments_give_keras_distillers_objective(student_loss_weight):
    losses = keras.distillation.LogitsDistillation(temperature=T, loss=KL())
    ours = Distiller(*two_models(), distillation_losses=losses,
                     student_loss_weight=student_loss_weight)
    assert float(ours.alpha) == pytest.approx(1 - student_loss_weight)
    assert float(ours.temperature) == pytest.approx(T)
    expected = keras_loss(losses, student_loss_weight=student_loss_weight)
    assert our_loss(ours) == pytest.approx(expected, rel=1e-5)


def test_feature_distillation_becomes_a_hint_pair_with_the_same_objective():
    losses = [
        keras.distillation.LogitsDistillation(temperature=T, loss=KL()),
        keras.distillation.FeatureDistillation(
            loss="mse", teacher_layer_name="hidden", student_layer_name="hidden"
        ),
    ]
    ours = Distiller(*two_models(), distillation_losses=losses,
                     distillation_loss_weights=[1.0, 0.4], student_loss_weight=0.5)
    assert ours.feature_pairs == [["hidden", "hidden"]]
    assert float(ours.feature_weight) == pytest.approx(0.5 * 0.4)
    expected = keras_loss(losses, distillation_loss_weights=[1.0, 0.4],
                          student_loss_weight=0.5)
    assert our_loss(ours) == pytest.approx(expected, rel=1e-5)


def test_pitfall_keras_default_kl_divergence_takes_the_kl_of_logits():
    teacher_logits = np.array([[2.0, 0.5, -1.0], [0.2, 1.5, -0.3]], "float32")
    student_logits = np.array([[1.5, 0.7, -0.8], [0.4, 1.0, 0.1]], "float32")
    default = keras.distillation.LogitsDistillation(temperature=T)
    instance = keras.distillation.LogitsDistillation(temperature=T, loss=KL())
    value = lambda loss: float(keras.ops.convert_to_numpy(  # noqa: E731
        loss.compute_loss(teacher_logits, student_logits)))
    def softmax(z):
        e = np.exp(z / T - np.max(z / T, axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    p, q = softmax(teacher_logits), softmax(student_logits)
    kl_times_t2 = float(np.mean(np.sum(p * np.log(p / q), axis=-1))) * T**2
    assert value(instance) == pytest.approx(kl_times_t2, rel=1e-4)
    # Keras's default string resolves to a function, not KLDivergence, so
    # its softmax branch is skipped (docs/migrating_from_keras_distillation.md).
    assert value(default) == pytest.approx(0.146115, abs=1e-5)
    assert kl_times_t2 == pytest.approx(0.070540, abs=1e-5)
    # The translation means the KL of the softened predictions either way.
    ours = Distiller(*two_models(), distillation_losses=default)
    instance_ours = Distiller(*two_models(), distillation_losses=instance)
    assert our_loss(ours) == pytest.approx(our_loss(instance_ours), rel=1e-6)
    assert float(ours.alpha) == pytest.approx(0.5)  # Keras's default weight.


def test_pitfall_keras_distiller_ignores_sample_weight():
    losses = keras.distillation.LogitsDistillation(temperature=T, loss=KL())
    weight = np.array([1.0, 0.0, 0.0, 0.0], "float32")
    assert keras_loss(losses, sample_weight=weight) == pytest.approx(
        keras_loss(losses), rel=1e-6
    )
    ours = Distiller(*two_models(), distillation_losses=losses)
    first_only = Distiller(*two_models(), distillation_losses=losses)
    weighted = our_loss(ours, sample_weight=weight)
    x_first = X[:1]
    alone = float(keras.ops.convert_to_numpy(first_only.compute_loss(
        x=x_first, y=Y[:1], y_pred=first_only.training_outputs(x_first))))
    # Keras's "sum_over_batch_size": sum of weighted losses / batch size.
    assert weighted == pytest.approx(alone / len(X), rel=1e-5)
    assert weighted != pytest.approx(our_loss(ours), rel=1e-3)


def test_compile_accepts_the_label_term_keras_code_passes(tmp_path):
    distiller = Distiller(
        *two_models(),
        distillation_losses=keras.distillation.LogitsDistillation(temperature=T),
        student_loss_weight=0.3,
    )
    distiller.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    history = distiller.fit(X, Y, epochs=2, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    restored = testing.run_model_saving_test(distiller, X)
    assert float(restored.alpha) == pytest.approx(0.7)
    assert float(restored.temperature) == pytest.approx(T)


@pytest.mark.parametrize("loss", [
    "sparse_categorical_crossentropy",
    keras.losses.SparseCategoricalCrossentropy(),  # from_logits=False
    keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
])
def test_compile_refuses_another_label_loss(loss):
    distiller = Distiller(*two_models())
    with pytest.raises(ValueError, match="label term is fixed"):
        distiller.compile(optimizer="adam", loss=loss)


def test_a_logits_weight_other_than_one_shows_the_translation():
    with pytest.raises(ValueError, match=r"1\.5 times Distiller's with alpha=0\.666667"):
        Distiller(
            *two_models(),
            distillation_losses=keras.distillation.LogitsDistillation(temperature=T),
            distillation_loss_weights=[2.0],
            student_loss_weight=0.5,
        )
