"""LastBatchSelfDistillation (DLB): the half-repeat batches, the stored logits of the
last step, the loss against numpy, saving and exact resume."""

import os

import keras
import numpy as np
import pytest
from backend_utils import JIT_COMPILE
from backend_utils import gradients
from numpy_references import numpy_cross_entropy
from numpy_references import numpy_last_mini_batch_loss
from test_faults import CrashAt
from test_faults import assert_same_state
from test_progressive_self_distillation import BUILDERS
from test_progressive_self_distillation import Subclassed
from test_progressive_self_distillation import functional
from test_progressive_self_distillation import numpy_of
from test_progressive_self_distillation import sequential

from keras_selfdistill import LastBatchRepeats
from keras_selfdistill import LastBatchSelfDistillation
from keras_selfdistill import TrainingInputs
from keras_selfdistill import last_batch_repeat_order
from keras_selfdistill import repeat_last_half_batches
from keras_selfdistill import with_sample_index
from keras_selfdistill.testing import run_model_saving_test
from keras_selfdistill.testing import run_serialization_test

SAMPLES = 48
BATCH = 16
HALF = BATCH // 2


def wrap(student, **kwargs):
    if isinstance(student, Subclassed):
        kwargs.setdefault("num_classes", 10)
    return LastBatchSelfDistillation(student, batch_size=BATCH, **kwargs)


@pytest.fixture
def data(digits):
    return digits[0][:SAMPLES], digits[1][:SAMPLES]


def batch_of(images, index):
    return with_sample_index(images[index], np.asarray(index))


# -- the batches ----------------------------------------------------------------- #


def test_each_batch_repeats_the_new_half_of_the_one_before():
    plan = last_batch_repeat_order(np.arange(10, 22), batch_size=6).reshape(-1, 6)
    # New halves [10..12], [13..15], [16..18], [19..21]; the first batch
    # repeats the pass's last half.
    assert plan.tolist() == [
        [19, 20, 21, 10, 11, 12], [10, 11, 12, 13, 14, 15],
        [13, 14, 15, 16, 17, 18], [16, 17, 18, 19, 20, 21],
    ]
    chained = last_batch_repeat_order(np.arange(6), 6, previous_half=[19, 20, 21])
    assert chained[:3].tolist() == [19, 20, 21]


def test_py_dataset_chains_epochs_and_reaugments_every_batch(data):
    images, labels = data
    calls = []

    def augment(batch, rng):
        calls.append(len(batch))
        return batch + rng.normal(size=batch.shape).astype("float32")

    batches = LastBatchRepeats(images, labels, BATCH, seed=0, augment=augment)
    last_half = batches[len(batches) - 1][0]["sample_index"][HALF:]
    first = batches[0][0]
    batches.on_epoch_end()
    assert batches[0][0]["sample_index"][:HALF].tolist() == last_half.tolist()
    # The repeated half is augmented afresh: not the images it was before.
    assert calls == [BATCH] * 3
    repeated_before = first["inputs"][:HALF]
    assert not np.allclose(repeated_before, images[first["sample_index"][:HALF]])


def test_tf_data_batches_pair_consecutive_halves(data):
    tf = pytest.importorskip("tensorflow")
    images, labels = data
    batches = list(repeat_last_half_batches(
        tf.data.Dataset.from_tensor_slices((images, labels)), BATCH
    ).as_numpy_iterator())
    assert len(batches) == SAMPLES // HALF - 1
    for before, after in zip(batches, batches[1:]):
        assert after[0]["sample_index"][:HALF].tolist() == before[0]["sample_index"][HALF:].tolist()
    index = batches[1][0]["sample_index"]
    np.testing.assert_array_equal(batches[1][0]["inputs"], images[index])
    np.testing.assert_array_equal(batches[1][1], labels[index])


# -- the state and the loss --------------------------------------------------------- #


def test_first_step_trains_on_cross_entropy_and_stores_the_new_half(data):
    images, labels = data
    model = wrap(functional())
    model.compile(optimizer=keras.optimizers.SGD(0.0), jit_compile=JIT_COMPILE)
    index = np.arange(BATCH)
    logs = model.train_on_batch(batch_of(images, index), labels[index], return_dict=True)

    logits = numpy_of(model.student(images[index]))
    assert logs["distillation_loss"] == 0.0
    assert logs["loss"] == pytest.approx(numpy_cross_entropy(labels[index], logits).mean(),
                                         rel=1e-5)
    np.testing.assert_allclose(numpy_of(model.previous_logits), logits[HALF:], atol=1e-5)
    assert numpy_of(model.previous_sample_index).tolist() == index[HALF:].tolist()


def test_second_step_loss_matches_numpy_against_the_last_steps_logits(data):
    images, labels = data
    model = wrap(functional(), alpha=0.7, temperature=2.0)
    model.compile(optimizer=keras.optimizers.SGD(0.5), jit_compile=JIT_COMPILE)
    plan = last_batch_repeat_order(np.arange(SAMPLES), BATCH).reshape(-1, BATCH)
    stored_before = numpy_of(model.student(images[plan[1][HALF:]]))
    model.train_on_batch(batch_of(images, plan[1]), labels[plan[1]])
    logits_now = numpy_of(model.student(images[plan[2]]))  # After the update.
    logs = model.train_on_batch(batch_of(images, plan[2]), labels[plan[2]],
                                return_dict=True)

    expected = numpy_last_mini_batch_loss(labels[plan[2]], logits_now, stored_before,
                                          np.ones(HALF), 0.7, 2.0)
    assert logs["loss"] == pytest.approx(expected, rel=1e-4)
    assert logs["distillation_loss"] > 1e-4  # The weights moved: a real target.


def test_a_batch_that_does_not_repeat_the_stored_samples_gets_no_target(data):
    images, labels = data
    model = wrap(functional())
    model.compile(optimizer=keras.optimizers.SGD(0.5), jit_compile=JIT_COMPILE)
    model.train_on_batch(batch_of(images, np.arange(BATCH)), labels[:BATCH])
    other = np.arange(BATCH, 2 * BATCH)  # Not the stored samples 8..15.
    logs = model.train_on_batch(batch_of(images, other), labels[other], return_dict=True)
    assert logs["distillation_loss"] == 0.0
    assert logs["loss"] == pytest.approx(logs["cross_entropy_loss"], rel=1e-6)


def test_no_gradient_flows_into_the_stored_logits(data):
    images, labels = data
    model = wrap(functional())
    model.compile(optimizer="sgd")
    plan = last_batch_repeat_order(np.arange(SAMPLES), BATCH).reshape(-1, BATCH)
    model.train_on_batch(batch_of(images, plan[0]), labels[plan[0]])
    batch = TrainingInputs(batch_of(images, plan[1]))
    variables = [model.previous_logits] + model.student.trainable_variables

    def loss():
        outputs = model(batch, training=True)
        return model.compute_loss(y=labels[plan[1]], y_pred=outputs)

    grads = gradients(loss, variables)
    np.testing.assert_array_equal(grads[0], 0.0)
    assert np.abs(grads[1]).max() > 1e-4


def test_evaluate_reports_cross_entropy_and_leaves_the_state_alone(data):
    images, labels = data
    model = wrap(functional())
    model.compile(optimizer="sgd")
    logs = model.evaluate(images, labels, verbose=0, return_dict=True)
    assert logs["distillation_loss"] == 0.0
    assert numpy_of(model.previous_sample_index).tolist() == [-1] * HALF


# -- every kind of model, serving, saving, resuming --------------------------------- #


@pytest.mark.parametrize("kind", sorted(BUILDERS))
@pytest.mark.parametrize("jit_compile", [False, True], ids=["default", "jit"])
def test_trains_and_serves_logits_for_every_kind_of_model(kind, jit_compile, data):
    if jit_compile and keras.backend.backend() == "torch":
        pytest.skip("jit_compile=True is torch.compile on torch, not XLA")
    images, labels = data
    keras.utils.set_random_seed(0)
    model = wrap(BUILDERS[kind]())
    model.compile(optimizer="adam", metrics=["accuracy"], jit_compile=jit_compile)
    served = []

    class PredictInsideFit(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            served.append(self.model.predict(images[:4], verbose=0))

    history = model.fit(LastBatchRepeats(images, labels, BATCH, seed=0), epochs=2,
                        shuffle=False, verbose=0, validation_data=(images, labels),
                        callbacks=[PredictInsideFit()])
    assert history.history["distillation_loss"][-1] > 0  # Targets were found.
    assert all(np.shape(logits) == (4, 10) for logits in served)
    np.testing.assert_allclose(model.predict(images[:4], verbose=0),
                               numpy_of(model.student(images[:4])), atol=1e-5)
    np.testing.assert_allclose(model.predict(with_sample_index(images[:4]), verbose=0),
                               numpy_of(model.student(images[:4])), atol=1e-5)


@pytest.mark.parametrize("kind", ["functional", "subclassed"])
def test_saves_and_loads_with_its_state(kind, data):
    images, labels = data
    model = wrap(BUILDERS[kind](), alpha=0.5, temperature=2.0)
    model.compile(optimizer="adam")
    model.fit(LastBatchRepeats(images, labels, BATCH), shuffle=False, verbose=0)
    run_serialization_test(model)
    restored = run_model_saving_test(model, images[:8])
    for name in ("previous_logits", "previous_sample_index"):
        np.testing.assert_array_equal(numpy_of(getattr(restored, name)),
                                      numpy_of(getattr(model, name)))
    assert float(numpy_of(restored.temperature)) == pytest.approx(2.0)


def test_fit_interrupted_mid_epoch_resumes_exactly_from_the_backup(data, tmp_path):
    images, labels = data
    plan = last_batch_repeat_order(np.random.default_rng(0).permutation(SAMPLES), BATCH)

    def build(seed):
        keras.utils.set_random_seed(seed)
        model = wrap(functional())
        model.compile(optimizer=keras.optimizers.Adam(0.01), run_eagerly=True)
        return model

    def train(model, callbacks):
        model.fit(batch_of(images, plan), labels[plan], batch_size=BATCH, epochs=3,
                  shuffle=False, verbose=0, callbacks=callbacks)

    reference = build(0)
    train(reference, [])
    backup = str(tmp_path / "backup")
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(build(0), [keras.callbacks.BackupAndRestore(backup), CrashAt(2, 1)])
    assert os.path.exists(os.path.join(backup, "latest.weights.h5"))

    resumed = build(1)
    train(resumed, [keras.callbacks.BackupAndRestore(backup)])
    assert_same_state(resumed, reference)  # Stored logits and indices included.


def test_learns_on_digits(digits_split):
    (train_images, train_labels), (test_images, test_labels) = digits_split
    keras.utils.set_random_seed(0)
    model = LastBatchSelfDistillation(sequential(32), batch_size=64)
    model.compile(optimizer=keras.optimizers.Adam(0.01), metrics=["accuracy"],
                  jit_compile=JIT_COMPILE)
    history = model.fit(LastBatchRepeats(train_images, train_labels, 64, seed=0),
                        epochs=3, shuffle=False,
                        validation_data=(test_images, test_labels), verbose=0).history
    assert history["val_accuracy"][-1] > 0.9  # Chance is 0.1.
    assert history["distillation_loss"][-1] > 0.0
