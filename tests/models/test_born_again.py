"""Tests for `BornAgain`: generations, checkpoints, resuming, the ensemble."""

import contextlib
import io
import json
import os
import types

import keras
import numpy as np
import pytest

from keras_selfdistill.models.born_again import BornAgain
from keras_selfdistill.testing import run_model_saving_test
from keras_selfdistill.testing import run_serialization_test

SAMPLES = 256
BATCH_SIZE = 64
STEPS_PER_GENERATION = SAMPLES // BATCH_SIZE


@keras.saving.register_keras_serializable(package="test_born_again")
def build_model():
    """A tiny MLP on 8x8 digits; every generation has the same names."""
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Flatten(name="flatten")(inputs)
    x = keras.layers.Dense(16, activation="relu", name="hidden")(x)
    logits = keras.layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, logits, name="student")


def unregistered_build_model():
    return build_model()


class Recorder(keras.callbacks.Callback):
    """Records, per generation, the trainer's optimizer and teacher."""

    def __init__(self):
        super().__init__()
        self.optimizers = []
        self.iterations = []
        self.teacher_weights = []
        self.variable_paths = []

    def on_train_begin(self, logs=None):
        self.optimizers.append(self.model.optimizer)
        self.variable_paths.append([v.path for v in self.model.variables])
        teacher = getattr(self.model, "teacher", None)
        self.teacher_weights.append(
            None if teacher is None else [np.copy(w) for w in teacher.get_weights()]
        )

    def on_train_end(self, logs=None):
        self.iterations.append(int(self.model.optimizer.iterations.numpy()))


class FailInGeneration(keras.callbacks.Callback):
    """Simulates a crash: raises at the first step of a distilled generation."""

    def on_train_batch_end(self, batch, logs=None):
        if hasattr(self.model, "teacher"):
            raise RuntimeError("simulated crash in generation 1")


def data(digits):
    images, labels = digits
    return images[:SAMPLES], labels[:SAMPLES]


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    """Two generations trained once for the whole module."""
    keras.utils.set_random_seed(0)
    images, labels = data(digits)
    checkpoint_dir = str(tmp_path_factory.mktemp("born_again"))
    born_again = BornAgain(build_model, generations=2, alpha=0.6, temperature=2.0)
    born_again.compile(
        optimizer=lambda: keras.optimizers.Adam(0.01), metrics=["accuracy"],
        jit_compile=False,
    )
    recorder = Recorder()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        histories = born_again.fit(
            images, labels, epochs=1, batch_size=BATCH_SIZE, verbose=0,
            callbacks=[recorder], checkpoint_dir=checkpoint_dir,
        )
    return types.SimpleNamespace(
        born_again=born_again, histories=histories, recorder=recorder,
        checkpoint_dir=checkpoint_dir, images=images, labels=labels,
    )


def test_returns_one_history_per_generation(trained):
    first, second = trained.histories
    assert set(first.history) == {"loss", "accuracy", "cross_entropy_loss"}
    assert set(second.history) == {
        "loss", "accuracy", "cross_entropy_loss", "distillation_loss",
    }


def test_each_generation_is_a_fresh_model_with_a_fresh_optimizer(trained):
    born_again, recorder = trained.born_again, trained.recorder
    first, second = born_again.generation(0), born_again.generation(1)
    assert first is not second
    assert recorder.optimizers[0] is not recorder.optimizers[1]
    # A shared optimizer would have counted both generations' steps.
    assert recorder.iterations == [STEPS_PER_GENERATION] * 2


def test_generation_one_is_taught_by_a_frozen_copy_of_generation_zero(trained):
    born_again = trained.born_again
    assert trained.recorder.teacher_weights[0] is None
    for taught, finished in zip(
        trained.recorder.teacher_weights[1], born_again.generation(0).get_weights()
    ):
        np.testing.assert_array_equal(taught, finished)
    # The copy was frozen, not the user's generation model.
    assert born_again.generation(0).trainable
    assert not born_again.generation(0).compiled


def test_the_teacher_copy_has_its_own_variable_paths(trained):
    """Teacher and student have the same layer names; the copy is renamed,
    so every variable path of the generation-1 trainer is unique (Keras's
    get_state_tree and torch's parameter tracking key on paths)."""
    paths = trained.recorder.variable_paths[1]
    assert len(paths) == len(set(paths))
    assert any(path.startswith("student_teacher_") for path in paths)


def test_each_finished_generation_is_saved_without_partial_files(trained):
    files = sorted(os.listdir(trained.checkpoint_dir))
    assert files == ["born_again.json", "generation_0.keras", "generation_1.keras"]
    restored = keras.saving.load_model(
        os.path.join(trained.checkpoint_dir, "generation_1.keras"), safe_mode=True
    )
    np.testing.assert_allclose(
        restored.predict(trained.images, verbose=0),
        trained.born_again.generation(1).predict(trained.images, verbose=0),
        atol=1e-6,
    )


def test_prints_which_generation_runs_and_trains_nothing_twice(digits, capsys):
    images, labels = digits
    calls = []

    def counting_build_model():
        calls.append(1)
        return build_model()

    born_again = BornAgain(counting_build_model, generations=1)
    born_again.compile(optimizer="adam", jit_compile=False)

    first = born_again.fit(images[:32], labels[:32], batch_size=32, verbose=1)
    printed_first = capsys.readouterr().out
    second = born_again.fit(images[:32], labels[:32], batch_size=32, verbose=1)
    printed_second = capsys.readouterr().out

    assert "born_again: generation 0 (1 of 1): labels only" in printed_first
    assert "all 1 generations are finished; nothing to train" in printed_second
    assert len(calls) == 1
    assert second[0].history == first[0].history


def test_resumes_after_an_interruption_without_retraining(digits, tmp_path):
    keras.utils.set_random_seed(1)
    images, labels = data(digits)
    checkpoint_dir = str(tmp_path / "checkpoints")
    calls = []

    def counting_build_model():
        calls.append(1)
        return build_model()

    def new_born_again():
        born_again = BornAgain(counting_build_model, generations=2)
        born_again.compile(optimizer="adam", metrics=["accuracy"], jit_compile=False)
        return born_again

    crashed = new_born_again()
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashed.fit(
            images, labels, batch_size=BATCH_SIZE, verbose=0,
            callbacks=[FailInGeneration()], checkpoint_dir=checkpoint_dir,
        )
    assert sorted(os.listdir(checkpoint_dir)) == ["born_again.json", "generation_0.keras"]
    first_weights = crashed.generation(0).get_weights()
    first_history = crashed.histories[0].history
    first_file = os.path.join(checkpoint_dir, "generation_0.keras")
    modified = os.stat(first_file).st_mtime_ns
    calls.clear()

    # A new process: a new object, the same directory.
    resumed = new_born_again()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        histories = resumed.fit(
            images, labels, batch_size=BATCH_SIZE, verbose=2,
            checkpoint_dir=checkpoint_dir,
        )

    assert len(calls) == 1  # Only generation 1 was built (and trained).
    assert f"generation 0 (1 of 2): restored from {first_file}" in printed.getvalue()
    assert "generation 1 (2 of 2): labels + distillation" in printed.getvalue()
    assert os.stat(first_file).st_mtime_ns == modified
    for before, after in zip(first_weights, resumed.generation(0).get_weights()):
        np.testing.assert_array_equal(before, after)
    assert histories[0].history == first_history
    assert "distillation_loss" in histories[1].history
    assert "generation_1.keras" in os.listdir(checkpoint_dir)


def test_ensemble_averages_the_generations_logits_and_saves(trained):
    born_again, images = trained.born_again, trained.images
    ensemble = born_again.ensemble()

    expected = np.mean(
        [born_again.generation(k).predict(images, verbose=0) for k in (0, 1)], axis=0
    )
    np.testing.assert_allclose(ensemble.predict(images, verbose=0), expected, atol=1e-5)
    run_model_saving_test(ensemble, images)


def test_ensemble_of_one_generation_is_that_generation(trained):
    ensemble = trained.born_again.ensemble(generations=[1])
    np.testing.assert_allclose(
        ensemble.predict(trained.images, verbose=0),
        trained.born_again.generation(1).predict(trained.images, verbose=0),
        atol=1e-6,
    )


def test_config_round_trip_restores_the_generations(trained):
    config = trained.born_again.get_config()
    assert config["checkpoint_dir"] == trained.checkpoint_dir
    assert config["build_model"]["config"] == "test_born_again>build_model"

    revived = run_serialization_test(trained.born_again)

    assert revived.build_model is build_model
    assert len(revived.models) == 2
    for k in (0, 1):
        np.testing.assert_allclose(
            revived.generation(k).predict(trained.images, verbose=0),
            trained.born_again.generation(k).predict(trained.images, verbose=0),
            atol=1e-6,
        )
    assert revived.histories[1].history == trained.histories[1].history


def test_from_checkpoint_accepts_a_build_model(trained):
    revived = BornAgain.from_checkpoint(
        trained.checkpoint_dir, build_model=unregistered_build_model
    )
    assert revived.build_model is unregistered_build_model
    assert revived.get_config()["build_model"] is None
    assert len(revived.models) == 2
    with open(os.path.join(trained.checkpoint_dir, "born_again.json")) as file:
        assert json.load(file)["config"]["alpha"] == 0.6


# Bad inputs (each refused with a message naming the value and what is
# allowed) are rows of the one table in tests/test_bad_inputs.py.
