"""ProgressiveSelfDistillation (PS-KD): the table of last-epoch predictions, the loss
against numpy, inputs that carry sample indices, saving and exact resume."""

import os

import keras
import numpy as np
import pytest
from backend_utils import JIT_COMPILE
from backend_utils import gradients
from numpy_references import numpy_log_softmax
from numpy_references import numpy_progressive_self_distillation
from test_faults import CrashAt
from test_faults import assert_same_state

from keras_selfdistill import ProgressiveSelfDistillation
from keras_selfdistill import TrainingInputs
from keras_selfdistill import with_sample_index
from keras_selfdistill.testing import run_model_saving_test
from keras_selfdistill.testing import run_serialization_test

SAMPLES = 48
BATCH = 16


def functional(hidden=16):
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(hidden, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x), name="functional")


def sequential(hidden=16):
    return keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Flatten(),
        keras.layers.Dense(hidden, activation="relu"), keras.layers.Dense(10),
    ], name="sequential")


@keras.saving.register_keras_serializable(package="test_progressive_self_distillation")
class Subclassed(keras.Model):
    def __init__(self, hidden=16, **kwargs):
        super().__init__(**kwargs)
        self.hidden = hidden
        self.flatten = keras.layers.Flatten()
        self.dense = keras.layers.Dense(hidden, activation="relu")
        self.logits = keras.layers.Dense(10)

    def call(self, x):
        return self.logits(self.dense(self.flatten(x)))

    def get_config(self):
        return {**super().get_config(), "hidden": self.hidden}


def subclassed(hidden=16):
    model = Subclassed(hidden, name="subclassed")
    model(np.zeros((1, 8, 8, 1), "float32"))
    return model


BUILDERS = {"functional": functional, "sequential": sequential, "subclassed": subclassed}


def wrap(student, total_epochs=4, alpha=0.8, **kwargs):
    if isinstance(student, Subclassed):
        kwargs.setdefault("num_classes", 10)
    return ProgressiveSelfDistillation(student, num_samples=SAMPLES, total_epochs=total_epochs,
                             alpha=alpha, **kwargs)


def numpy_of(value):
    return np.array(keras.ops.convert_to_numpy(value))


def softmax(logits):
    return np.exp(numpy_log_softmax(logits))


@pytest.fixture
def data(digits):
    return digits[0][:SAMPLES], digits[1][:SAMPLES]


def frozen(model):
    """Compiled with a zero learning rate: steps record, weights stay."""
    model.compile(optimizer=keras.optimizers.SGD(0.0), jit_compile=JIT_COMPILE)
    return model


# -- the state -------------------------------------------------------------- #


def test_first_epoch_trains_on_labels_and_records_each_samples_softmax(data):
    images, labels = data
    model = frozen(wrap(functional()))
    indices = np.array([5, 0, 17, 33])
    logs = model.train_on_batch(with_sample_index(images[indices], indices),
                                labels[indices], return_dict=True)

    logits = numpy_of(model.student(images[indices]))
    expected_ce = float(np.mean(-numpy_log_softmax(logits)[np.arange(4), labels[indices]]))
    assert logs["loss"] == pytest.approx(expected_ce, rel=1e-5)
    np.testing.assert_allclose(numpy_of(model.previous_predictions)[indices],
                               softmax(logits), atol=1e-6)
    seen = numpy_of(model.epochs_seen)
    assert seen[indices].tolist() == [1, 1, 1, 1]
    assert seen.sum() == 4  # Only the batch's rows were written.


def test_epoch_t_loss_matches_numpy_with_alpha_t(data):
    """Third visit of a sample (epoch t = 3 of T = 4): alpha_t = 0.8 * 3/4
    against the prediction recorded at its second visit."""
    images, labels = data
    model = frozen(wrap(functional(), total_epochs=4, alpha=0.8))
    indices = np.arange(8)
    batch = with_sample_index(images[indices], indices)
    for _ in range(2):
        model.train_on_batch(batch, labels[indices])
    previous = numpy_of(model.previous_predictions)[indices]
    logs = model.train_on_batch(batch, labels[indices], return_dict=True)

    logits = numpy_of(model.student(images[indices]))
    expected = numpy_progressive_self_distillation(
        labels[indices], logits, previous, np.full(8, 0.8 * 3 / 4)
    ).mean()
    assert logs["loss"] == pytest.approx(expected, rel=1e-5)
    assert logs["distillation_loss"] > 0


def test_alpha_stops_growing_after_total_epochs(data):
    images, labels = data
    model = frozen(wrap(functional(), total_epochs=2, alpha=0.5))
    indices = np.arange(4)
    batch = with_sample_index(images[indices], indices)
    for _ in range(4):  # Visits 1..4; the 4th is past T = 2.
        previous = numpy_of(model.previous_predictions)[indices]
        logs = model.train_on_batch(batch, labels[indices], return_dict=True)
    logits = numpy_of(model.student(images[indices]))
    expected = numpy_progressive_self_distillation(
        labels[indices], logits, previous, np.full(4, 0.5)
    ).mean()
    assert logs["loss"] == pytest.approx(expected, rel=1e-5)


def test_repeated_single_epoch_fits_equal_one_multi_epoch_fit(data):
    images, labels = data

    def trained(calls, epochs):
        keras.utils.set_random_seed(0)
        model = wrap(functional())
        model.compile(optimizer=keras.optimizers.Adam(0.01), jit_compile=JIT_COMPILE)
        for _ in range(calls):
            model.fit(with_sample_index(images), labels, batch_size=BATCH,
                      epochs=epochs, shuffle=False, verbose=0)
        return model

    once, repeated = trained(1, 3), trained(3, 1)
    assert numpy_of(once.epochs_seen).tolist() == [3] * SAMPLES
    for got, want in zip(repeated.weights, once.weights):
        np.testing.assert_allclose(numpy_of(got), numpy_of(want), rtol=1e-5, atol=1e-6)


def test_no_gradient_flows_into_the_table(data):
    images, labels = data
    model = wrap(functional())
    indices = np.arange(8)
    model.compile(optimizer="sgd")
    model.train_on_batch(with_sample_index(images[indices], indices), labels[indices])
    batch = TrainingInputs(with_sample_index(images[indices], indices))
    variables = [model.previous_predictions] + model.student.trainable_variables

    def loss():
        outputs = model(batch, training=True)
        return model.compute_loss(y=labels[indices], y_pred=outputs)

    grads = gradients(loss, variables)
    np.testing.assert_array_equal(grads[0], 0.0)
    assert np.abs(grads[1]).max() > 1e-4


def test_evaluate_reports_cross_entropy_and_leaves_the_table_alone(data):
    images, labels = data
    model = frozen(wrap(functional()))
    logs = model.evaluate(with_sample_index(images), labels, verbose=0, return_dict=True)
    assert logs["distillation_loss"] == 0.0
    assert logs["loss"] == pytest.approx(logs["cross_entropy_loss"], rel=1e-6)
    assert numpy_of(model.epochs_seen).sum() == 0
    # Plain inputs too.
    plain = model.evaluate(images, labels, verbose=0, return_dict=True)
    assert plain["loss"] == pytest.approx(logs["loss"], rel=1e-5)


# -- the inputs -------------------------------------------------------------- #


def test_array_indices_out_of_range_are_refused_before_training(data):
    images, labels = data
    model = frozen(wrap(functional()))
    indices = np.arange(SAMPLES)
    indices[7] = SAMPLES
    with pytest.raises(ValueError, match=r"in \[0, 48\).*value 48 at position 7"):
        model.fit(with_sample_index(images, indices), labels, verbose=0)
    assert numpy_of(model.epochs_seen).sum() == 0


@pytest.mark.skipif(keras.backend.backend() == "torch",
                    reason="torch steps run eagerly and raise (test above)")
def test_a_compiled_step_with_an_index_out_of_range_gives_a_nan_loss(data):
    images, labels = data
    model = wrap(functional())
    model.compile(optimizer="sgd", jit_compile=True)
    indices = np.array([3, SAMPLES + 5])
    logs = model.train_on_batch(with_sample_index(images[:2], indices), labels[:2],
                                return_dict=True)
    assert np.isnan(logs["loss"])
    seen = numpy_of(model.epochs_seen)
    assert seen[3] == 1 and seen.sum() == 1  # The bad row wrote nothing.


def test_tf_data_pipeline_carries_the_index_through_shuffle_and_batch(data):
    tf = pytest.importorskip("tensorflow")
    images, labels = data
    dataset = with_sample_index(tf.data.Dataset.from_tensor_slices((images, labels)))
    dataset = dataset.shuffle(SAMPLES, seed=0).batch(BATCH)
    model = frozen(wrap(functional()))
    model.fit(dataset, epochs=1, verbose=0)
    assert numpy_of(model.epochs_seen).tolist() == [1] * SAMPLES
    # Each row holds the softmax of its own sample.
    np.testing.assert_allclose(numpy_of(model.previous_predictions),
                               softmax(numpy_of(model.student(images))), atol=1e-5)


def test_a_batched_then_enumerated_dataset_is_refused(data):
    tf = pytest.importorskip("tensorflow")
    images, labels = data
    dataset = with_sample_index(tf.data.Dataset.from_tensor_slices((images, labels))
                                .batch(BATCH))
    model = frozen(wrap(functional()))
    with pytest.raises(ValueError, match=r"shape \(batch,\).*shape \(\)"):
        model.fit(dataset, epochs=1, verbose=0)


class IndexedBatches(keras.utils.PyDataset):
    """The documented PyDataset layout: it returns the indices itself."""

    def __init__(self, images, labels, batch_size, **kwargs):
        super().__init__(**kwargs)
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.order = np.random.default_rng(0).permutation(len(images))

    def __len__(self):
        return len(self.images) // self.batch_size

    def __getitem__(self, batch):
        index = self.order[batch * self.batch_size:(batch + 1) * self.batch_size]
        return {"inputs": self.images[index], "sample_index": index}, self.labels[index]


def test_py_dataset_returning_indices_trains(data):
    model = frozen(wrap(functional()))
    model.fit(IndexedBatches(*data, batch_size=BATCH), epochs=2, verbose=0)
    assert numpy_of(model.epochs_seen).tolist() == [2] * SAMPLES


# -- every kind of model, serving, saving, resuming ------------------------------- #


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

    history = model.fit(with_sample_index(images), labels, batch_size=BATCH, epochs=2,
                        verbose=0, validation_data=(images, labels),
                        callbacks=[PredictInsideFit()])
    assert {"loss", "accuracy", "distillation_loss", "val_loss"} <= set(history.history)
    assert all(np.shape(logits) == (4, 10) for logits in served)
    np.testing.assert_allclose(model.predict(images[:4], verbose=0),
                               numpy_of(model.student(images[:4])), atol=1e-5)
    np.testing.assert_allclose(model.predict(with_sample_index(images[:4]), verbose=0),
                               numpy_of(model.student(images[:4])), atol=1e-5)
    assert numpy_of(model.epochs_seen).tolist() == [2] * SAMPLES


@pytest.mark.parametrize("kind", ["functional", "subclassed"])
def test_saves_and_loads_with_its_tables(kind, data):
    images, labels = data
    model = wrap(BUILDERS[kind](), alpha=0.6)
    model.compile(optimizer="adam")
    model.fit(with_sample_index(images), labels, batch_size=BATCH, verbose=0)
    run_serialization_test(model)
    restored = run_model_saving_test(model, images[:8])
    for name in ("previous_predictions", "epochs_seen"):
        np.testing.assert_array_equal(numpy_of(getattr(restored, name)),
                                      numpy_of(getattr(model, name)))
    assert float(numpy_of(restored.alpha)) == pytest.approx(0.6)


def test_fit_interrupted_mid_epoch_resumes_exactly_from_the_backup(data, tmp_path):
    images, labels = data

    def build(seed):
        keras.utils.set_random_seed(seed)
        model = wrap(functional(), total_epochs=3)
        model.compile(optimizer=keras.optimizers.Adam(0.01), run_eagerly=True)
        return model

    def train(model, callbacks):
        model.fit(with_sample_index(images), labels, batch_size=BATCH, epochs=3,
                  shuffle=False, verbose=0, callbacks=callbacks)

    reference = build(0)
    train(reference, [])
    backup = str(tmp_path / "backup")
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(build(0), [keras.callbacks.BackupAndRestore(backup), CrashAt(2, 1)])
    assert os.path.exists(os.path.join(backup, "latest.weights.h5"))

    resumed = build(1)
    train(resumed, [keras.callbacks.BackupAndRestore(backup)])
    assert numpy_of(resumed.epochs_seen).tolist() == [3] * SAMPLES
    assert_same_state(resumed, reference)  # Tables and optimizer included.


def test_learns_on_digits(digits_split):
    (train_images, train_labels), (test_images, test_labels) = digits_split
    keras.utils.set_random_seed(0)
    model = ProgressiveSelfDistillation(sequential(32), num_samples=len(train_images),
                              total_epochs=4, alpha=0.8)
    model.compile(optimizer=keras.optimizers.Adam(0.01), metrics=["accuracy"],
                  jit_compile=JIT_COMPILE)
    history = model.fit(with_sample_index(train_images), train_labels, batch_size=64,
                        epochs=4, validation_data=(test_images, test_labels),
                        verbose=0).history
    assert history["val_accuracy"][-1] > 0.9  # Chance is 0.1.
    assert history["distillation_loss"][0] == 0.0  # Epoch 1: labels only.
    assert history["distillation_loss"][-1] > 0.0
