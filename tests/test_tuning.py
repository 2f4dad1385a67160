"""KerasTuner on a `SelfDistillModel`: the example of docs/tuning.md.

KerasTuner infers an objective's direction from Keras's metric names only;
a per-head metric (`val_head_1_accuracy`) or a loss term
(`val_distillation_loss`) needs `keras_tuner.Objective(name, direction)`.
"""

import keras
import numpy as np
import pytest

from keras_selfdistill import SelfDistillModel

kt = pytest.importorskip("keras_tuner")


def build_model(hp):
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="c2")(x)
    logits = keras.layers.Dense(10, name="logits")(
        keras.layers.GlobalAveragePooling2D()(x)
    )
    model = SelfDistillModel.from_backbone(
        keras.Model(inputs, logits),
        taps=["c1"],
        alpha=hp.Choice("alpha", [0.1, 0.3]),
    )
    model.compile(optimizer="adam", metrics=["accuracy"])
    return model


def test_a_per_head_objective_needs_its_direction():
    with pytest.raises(ValueError, match="Could not infer optimization direction"):
        kt.RandomSearch(build_model, objective="val_head_1_accuracy", max_trials=1,
                        overwrite=True, directory="/nonexistent-never-written")


def tensorboard_missing():
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return True
    return False


@pytest.mark.skipif(
    keras.backend.backend() == "tensorflow" and tensorboard_missing(),
    reason="KerasTuner's search imports tensorboard on the TensorFlow backend "
    "(keras_tuner/src/engine/tuner.py); tensorflow-cpu does not install it",
)
def test_tuner_maximises_a_heads_validation_accuracy(tmp_path, digits):
    x, y = digits[0][:64], digits[1][:64]
    tuner = kt.RandomSearch(
        build_model,
        objective=kt.Objective("val_head_1_accuracy", direction="max"),
        max_trials=2,
        directory=str(tmp_path),
        project_name="heads",
        seed=0,
    )
    tuner.search(x, y, validation_data=(x[:32], y[:32]), epochs=1, batch_size=32,
                 verbose=0)
    trials = tuner.oracle.get_best_trials(num_trials=2)
    scores = [trial.score for trial in trials]
    assert scores == sorted(scores, reverse=True)  # "max" is honoured.
    best = tuner.get_best_models(1)[0]
    accuracy = best.evaluate(x[:32], y[:32], verbose=0, return_dict=True)
    assert accuracy["head_1_accuracy"] == pytest.approx(scores[0], abs=1e-6)
