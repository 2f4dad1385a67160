"""Faults: a crash never costs more than the last backup, never corrupts.

- `fit` interrupted mid-epoch and restarted with
  `keras.callbacks.BackupAndRestore` (in a new model object, as a new
  process would) ends exactly where the uninterrupted run ends: weights,
  optimizer, scheduled hyper-parameters and teacher state all come back.
- `BornAgain` killed inside a generation keeps the finished generations and
  resumes the interrupted one from its backup. (Resuming at the first
  unfinished generation without a backup is in tests/models/test_born_again.py.)
- `ModelCheckpoint(save_best_only=True)` on a head's metric keeps the best
  epoch.
- A crash while saving leaves the previous file whole (Keras itself writes in
  place); loading weights saved by another configuration changes nothing.
- Every public model loads in a fresh process with `safe_mode=True` and no
  `custom_objects`.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_selfdistill import AuxiliaryHead
from keras_selfdistill import BornAgain
from keras_selfdistill import Distiller
from keras_selfdistill import EMATeacher
from keras_selfdistill import LastBatchSelfDistillation
from keras_selfdistill import MutualLearning
from keras_selfdistill import ProgressiveSelfDistillation
from keras_selfdistill import SelfDistillModel
from keras_selfdistill import SelfEnsembleTeacher
from keras_selfdistill.callbacks import HyperparameterScheduler
from keras_selfdistill.callbacks import LinearSchedule
from keras_selfdistill.callbacks import MomentumScheduler

SAMPLES = 48
BATCH_SIZE = 16
EPOCHS = 2
STEPS_PER_EPOCH = SAMPLES // BATCH_SIZE
TOTAL_STEPS = EPOCHS * STEPS_PER_EPOCH
#: The crash: after the second step of the last epoch.
CRASH_EPOCH, CRASH_BATCH = 1, 1
ALPHA_SCHEDULE = LinearSchedule(start=0.0, end=0.6, total_steps=TOTAL_STEPS)


class CrashAt(keras.callbacks.Callback):
    """Raises mid-epoch, as a killed process would stop."""

    def __init__(self, epoch, batch, only_if=lambda model: True):
        super().__init__()
        self.epoch, self.batch, self.only_if = epoch, batch, only_if
        self.current_epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        self.current_epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.current_epoch, batch) == (self.epoch, self.batch) and self.only_if(
            self.model
        ):
            raise RuntimeError("simulated crash")


class StateAtStart(keras.callbacks.Callback):
    """What the model holds when `fit` begins (after `BackupAndRestore`)."""

    def __init__(self, hyperparameter):
        super().__init__()
        self.hyperparameter = hyperparameter
        self.epochs = []

    def on_train_begin(self, logs=None):
        self.iterations = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        self.value = float(keras.ops.convert_to_numpy(
            getattr(self.model, self.hyperparameter)
        ))

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


def mlp(name, width=8):
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(width, activation="relu", name="hidden")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(x), name=name)


def backbone():
    inputs = keras.Input((8, 8, 1))
    x1 = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="stage1")(inputs)
    x2 = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu",
                             name="stage2")(x1)
    logits = keras.layers.Dense(10, name="logits")(
        keras.layers.GlobalAveragePooling2D(name="pool")(x2)
    )
    return keras.Model(inputs, logits, name="backbone")


def self_distill(taps=("stage1",)):
    return SelfDistillModel.from_backbone(backbone(), taps=list(taps))


#: kind -> (build the model, its schedules, the scheduled hyper-parameter).
SCENARIOS = {
    "SelfDistillModel": (
        self_distill,
        lambda: [HyperparameterScheduler("alpha", ALPHA_SCHEDULE, per="step")],
        "alpha",
    ),
    "Distiller": (
        lambda: Distiller(mlp("teacher", 16), mlp("student"),
                          feature_pairs=[("hidden", "hidden")]),
        lambda: [HyperparameterScheduler("alpha", ALPHA_SCHEDULE, per="step")],
        "alpha",
    ),
    "EMATeacher": (
        lambda: EMATeacher(mlp("student"), momentum=0.9),
        lambda: [MomentumScheduler(start=0.5, end=1.0)],
        "momentum",
    ),
}


def build(kind, seed):
    keras.utils.set_random_seed(seed)
    model = SCENARIOS[kind][0]()
    # Eager steps: a tenth of the time of tracing one on this tiny model, and
    # BackupAndRestore does not care how the step runs.
    model.compile(optimizer=keras.optimizers.Adam(0.01), metrics=["accuracy"],
                  run_eagerly=True)
    return model


def train(model, images, labels, callbacks):
    return model.fit(images, labels, batch_size=BATCH_SIZE, epochs=EPOCHS,
                     shuffle=False, verbose=0, callbacks=callbacks)


def values(variables):
    return [np.array(keras.ops.convert_to_numpy(v)) for v in variables]


def assert_same_state(model, reference):
    """Every model variable (teacher, hyper-parameters, flags included) and
    every optimizer variable."""
    for variables in ("weights", "optimizer_variables"):
        if variables == "weights":
            got, want = model.weights, reference.weights
        else:
            got, want = model.optimizer.variables, reference.optimizer.variables
        assert len(got) == len(want)
        for variable, a, b in zip(want, values(got), values(want)):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6, err_msg=variable.path)


@pytest.mark.parametrize("kind", list(SCENARIOS))
def test_fit_interrupted_mid_epoch_resumes_from_the_backup(kind, digits, tmp_path):
    images, labels = digits[0][:SAMPLES], digits[1][:SAMPLES]
    schedules, hyperparameter = SCENARIOS[kind][1], SCENARIOS[kind][2]
    reference = build(kind, seed=0)
    train(reference, images, labels, schedules())

    backup_dir = str(tmp_path / "backup")
    crashed = build(kind, seed=0)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(crashed, images, labels, [
            keras.callbacks.BackupAndRestore(backup_dir),
            *schedules(),
            CrashAt(CRASH_EPOCH, CRASH_BATCH),
        ])
    assert os.path.exists(os.path.join(backup_dir, "latest.weights.h5"))

    # A new process: a new object with other initial weights, the same backup.
    resumed = build(kind, seed=1)
    start = StateAtStart(hyperparameter)
    train(resumed, images, labels,
          [keras.callbacks.BackupAndRestore(backup_dir), start, *schedules()])

    # The backup of the last finished epoch came back, scheduled value and
    # optimizer step included, before any schedule ran again.
    assert start.epochs == [CRASH_EPOCH]
    assert start.iterations == CRASH_EPOCH * STEPS_PER_EPOCH
    assert start.value == pytest.approx(
        _value_after_epoch(kind, CRASH_EPOCH - 1), abs=1e-6
    )
    assert_same_state(resumed, reference)
    assert not os.path.exists(backup_dir)  # Removed once training finished.


def _value_after_epoch(kind, epoch):
    """The scheduled value the backup of `epoch` holds."""
    step = (epoch + 1) * STEPS_PER_EPOCH
    if kind == "EMATeacher":
        return MomentumScheduler(start=0.5, end=1.0, total_steps=TOTAL_STEPS).schedule(step)
    return ALPHA_SCHEDULE(step)


@keras.saving.register_keras_serializable(package="test_faults")
def build_generation():
    return mlp("generation")


def test_born_again_killed_mid_generation_resumes_it_from_its_backup(digits, tmp_path):
    images, labels = digits[0][:SAMPLES], digits[1][:SAMPLES]
    built = []

    def counting_build():
        built.append(1)
        return build_generation()

    def run(checkpoint_dir, callbacks):
        born_again = BornAgain(counting_build, generations=2, alpha=0.5)
        born_again.compile(optimizer=lambda: keras.optimizers.Adam(0.01),
                           run_eagerly=True)
        born_again.fit(images, labels, epochs=EPOCHS, batch_size=BATCH_SIZE,
                       shuffle=False, verbose=0, callbacks=callbacks,
                       checkpoint_dir=checkpoint_dir)
        return born_again

    keras.utils.set_random_seed(0)
    reference = run(tmp_path / "reference", [])

    checkpoint_dir, backup_dir = tmp_path / "checkpoints", str(tmp_path / "backup")
    keras.utils.set_random_seed(0)
    crash = CrashAt(CRASH_EPOCH, CRASH_BATCH, only_if=lambda m: hasattr(m, "teacher"))
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(checkpoint_dir, [keras.callbacks.BackupAndRestore(backup_dir), crash])
    assert sorted(os.listdir(checkpoint_dir)) == ["born_again.json", "generation_0.keras"]
    first_file = checkpoint_dir / "generation_0.keras"
    written = first_file.stat().st_mtime_ns

    built.clear()
    keras.utils.set_random_seed(1)
    start = StateAtStart("alpha")
    resumed = run(checkpoint_dir, [keras.callbacks.BackupAndRestore(backup_dir), start])

    assert len(built) == 1  # Generation 1 only: generation 0 was restored.
    assert first_file.stat().st_mtime_ns == written
    assert start.epochs == [CRASH_EPOCH]  # Generation 1 went on from its backup.
    for index in (0, 1):
        for got, want in zip(resumed.generation(index).get_weights(),
                             reference.generation(index).get_weights()):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert sorted(os.listdir(checkpoint_dir)) == [
        "born_again.json", "generation_0.keras", "generation_1.keras",
    ]


class BreakHead(keras.callbacks.Callback):
    """From `epoch` on, head_1's classifier outputs zeros and stops learning,
    so its accuracy falls and the best epoch is an earlier one."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            self.model.optimizer.learning_rate.assign(0.0)
            classifier = self.model.network.get_layer("head_1_classifier")
            for variable in classifier.weights:
                variable.assign(keras.ops.zeros(variable.shape, variable.dtype))


def test_model_checkpoint_keeps_the_best_epoch_of_a_head_metric(digits_split, tmp_path):
    (x_train, y_train), (x_val, y_val) = digits_split
    x_train, y_train, x_val, y_val = x_train[:256], y_train[:256], x_val[:128], y_val[:128]
    keras.utils.set_random_seed(0)
    model = self_distill()
    model.compile(optimizer=keras.optimizers.Adam(0.01), metrics=["accuracy"],
                  run_eagerly=True)
    path = str(tmp_path / "best.keras")
    checkpoint = keras.callbacks.ModelCheckpoint(
        path, monitor="val_head_1_accuracy", save_best_only=True
    )
    history = model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=3,
                        batch_size=64, verbose=0, callbacks=[checkpoint, BreakHead(2)])

    accuracies = history.history["val_head_1_accuracy"]
    assert checkpoint.mode == "max"  # Found for a head metric, from mode="auto".
    assert accuracies[-1] < max(accuracies)  # The last epoch is not the best.
    best = keras.saving.load_model(path, safe_mode=True)
    logs = best.evaluate(x_val, y_val, batch_size=64, verbose=0, return_dict=True)
    assert logs["head_1_accuracy"] == pytest.approx(max(accuracies))


# ---------------------------------------------------------------------- #
# Saving: never half a file; loading: never half a model.
# ---------------------------------------------------------------------- #


def _crash_mid_write(directory, seen):
    """A `save_own_variables` that fails once the file is being written."""

    def crash(self, store):
        seen.append(any(name.startswith(".partial-") for name in os.listdir(directory)))
        raise RuntimeError("simulated crash while saving")

    return crash


@pytest.mark.parametrize("method, filename", [
    ("save", "model.keras"),
    ("save_weights", "model.weights.h5"),  # What BackupAndRestore writes.
])
def test_a_crash_while_saving_leaves_the_previous_file_whole(
    method, filename, digits, tmp_path, monkeypatch
):
    images = digits[0][:8]
    model = self_distill()
    path = str(tmp_path / filename)
    getattr(model, method)(path)
    expected = model.predict_heads(images, verbose=0)
    for variable in model.trainable_weights:  # A complete new file would differ.
        variable.assign(variable + 1.0)

    seen = []
    monkeypatch.setattr(keras.layers.Dense, "save_own_variables",
                        _crash_mid_write(str(tmp_path), seen))
    with pytest.raises(RuntimeError, match="simulated crash while saving"):
        getattr(model, method)(path)
    monkeypatch.undo()

    assert seen and seen[0], "The crash did not happen while the file was written."
    assert os.listdir(tmp_path) == [filename]  # No partial file left behind.
    if method == "save":
        restored = keras.saving.load_model(path, safe_mode=True)
    else:
        restored = self_distill()
        restored.load_weights(path)
    for got, want in zip(restored.predict_heads(images, verbose=0), expected):
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_born_again_crash_while_saving_a_generation_keeps_the_finished_ones(
    digits, tmp_path, monkeypatch
):
    images, labels = digits[0][:32], digits[1][:32]
    original_save = keras.Model.save

    def save_then_crash_on_generation_1(self, filepath, *args, **kwargs):
        if "generation_1" in os.fspath(filepath):
            with open(filepath, "wb") as partial:
                partial.write(b"PK\x03\x04 half a zip")
            raise RuntimeError("simulated crash while saving")
        return original_save(self, filepath, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save", save_then_crash_on_generation_1)
    born_again = BornAgain(build_generation, generations=2)
    born_again.compile(optimizer="adam", run_eagerly=True)
    with pytest.raises(RuntimeError, match="simulated crash while saving"):
        born_again.fit(images, labels, batch_size=32, verbose=0, checkpoint_dir=tmp_path)
    monkeypatch.undo()

    assert sorted(os.listdir(tmp_path)) == ["born_again.json", "generation_0.keras"]
    restored = BornAgain.from_checkpoint(tmp_path)
    assert len(restored.models) == 1
    np.testing.assert_allclose(
        restored.generation(0).predict(images, verbose=0),
        born_again.generation(0).predict(images, verbose=0), atol=1e-6,
    )


def test_weights_saved_by_another_head_configuration_change_nothing(tmp_path):
    path = str(tmp_path / "two_heads.weights.h5")
    self_distill(taps=("stage1", "stage2")).save_weights(path)
    model = self_distill()
    before = values(model.weights)
    with pytest.raises(ValueError, match="another configuration.*nothing was loaded"):
        model.load_weights(path)
    for got, want in zip(values(model.weights), before):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("filename", ["model.weights.h5", "model.keras"])
def test_weights_saved_by_the_same_configuration_load(filename, digits, tmp_path):
    keras.utils.set_random_seed(0)
    saved = self_distill()
    saved.compile(optimizer="adam", run_eagerly=True)
    saved.fit(digits[0][:32], digits[1][:32], verbose=0)  # Optimizer state too.
    path = str(tmp_path / filename)
    saved.save_weights(path) if filename.endswith(".h5") else saved.save(path)
    keras.utils.set_random_seed(1)
    loaded = self_distill()
    loaded.compile(optimizer="adam")
    loaded.optimizer.build(loaded.trainable_variables)  # As BackupAndRestore does.
    loaded.load_weights(path)
    assert_same_state(loaded, saved)


# ---------------------------------------------------------------------- #
# A fresh process: `import keras_selfdistill` is all load_model needs.
# ---------------------------------------------------------------------- #

LOAD_IN_A_FRESH_PROCESS = """
import json, sys
import keras
import numpy as np
import keras_selfdistill  # noqa: F401  (registers every class)
cases = json.loads(sys.argv[1])
images = np.load(cases["images"])
for path, expected in cases["models"].items():
    model = keras.saving.load_model(path, safe_mode=True)
    actual = keras.ops.convert_to_numpy(model(images))
    np.testing.assert_allclose(actual, np.load(expected), atol=1e-5, err_msg=path)
    print("loaded", type(model).__name__)
"""


def every_public_model():
    inputs = keras.Input((8, 8, 1))
    stage = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    head = AuxiliaryHead(10, name="head_1")(stage)
    logits = keras.layers.Dense(10, name="logits")(
        keras.layers.GlobalAveragePooling2D()(stage)
    )
    return {
        "self_distill": SelfDistillModel(inputs, [head, logits]),
        "self_distill_from_backbone": self_distill(),
        "distiller": Distiller(mlp("teacher", 16), mlp("student"),
                               feature_pairs=[("hidden", "hidden")]),
        "mutual_learning": MutualLearning([mlp("first"), mlp("second")]),
        "ema_teacher": EMATeacher(mlp("student")),
        "self_ensemble_parameters": SelfEnsembleTeacher(mlp("student"), num_snapshots=2),
        "self_ensemble_outputs": SelfEnsembleTeacher(
            mlp("student"), num_snapshots=2, average="outputs"
        ),
        "progressive_self_distillation": ProgressiveSelfDistillation(mlp("student"), num_samples=8,
                                                 total_epochs=2),
        "last_batch_self_distillation": LastBatchSelfDistillation(mlp("student"), batch_size=4),
    }


def test_every_public_model_loads_in_a_fresh_process_with_safe_mode(digits, tmp_path):
    images = digits[0][:4]
    np.save(tmp_path / "images.npy", images)
    cases = {"images": str(tmp_path / "images.npy"), "models": {}}
    for name, model in every_public_model().items():
        model.compile(optimizer="adam")
        model.save(tmp_path / f"{name}.keras")
        np.save(tmp_path / f"{name}.npy", keras.ops.convert_to_numpy(model(images)))
        cases["models"][str(tmp_path / f"{name}.keras")] = str(tmp_path / f"{name}.npy")
    result = subprocess.run(
        [sys.executable, "-c", LOAD_IN_A_FRESH_PROCESS, json.dumps(cases)],
        capture_output=True, text=True, timeout=300,
        env=dict(os.environ, KERAS_BACKEND=keras.backend.backend()),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("loaded") == len(cases["models"])
