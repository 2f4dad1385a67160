"""Training and serving are two paths, chosen by the inputs of each call.

Every model of the package serves its logits from `predict`,
`predict_on_batch` and `__call__` in every context — inside a callback during
`fit` and `evaluate`, after them, with validation inside `fit` — and trains
on the dict of training outputs, which only `model(TrainingInputs(x))` (what
`train_step` and `test_step` call) returns. Run for every model family, with
and without `jit_compile`.
"""

import keras
import numpy as np
import pytest
from model_families import FAMILIES
from model_families import NUM_CLASSES

from keras_selfdistill import TrainingInputs

SAMPLES = 64
BATCH = 16


class PredictEverywhere(keras.callbacks.Callback):
    """Calls `predict` and `predict_on_batch` at every hook it can and
    records what they returned."""

    def __init__(self, images):
        super().__init__()
        self.images = images
        self.returned = []

    def _predict(self, hook):
        self.returned.append(
            (hook, self.model.predict(self.images, verbose=0))
        )
        self.returned.append(
            (hook + "/predict_on_batch", self.model.predict_on_batch(self.images))
        )

    def on_train_batch_end(self, batch, logs=None):
        if batch == 0:
            self._predict("on_train_batch_end")

    def on_epoch_end(self, epoch, logs=None):
        self._predict("on_epoch_end")

    def on_test_end(self, logs=None):
        self._predict("on_test_end")


def served_reference(model, images):
    """The served head's logits, read from the training path."""
    outputs = model(TrainingInputs(images), training=False)
    logits = model.head_logits_for_metrics(outputs)
    index = list(model.metric_head_names).index(model.served_head_name)
    return keras.ops.convert_to_numpy(logits[index])


def assert_serves_logits(returned, reference, context):
    assert not isinstance(returned, dict), f"{context} returned the training dict"
    returned = keras.ops.convert_to_numpy(returned)
    assert returned.shape == reference.shape, context
    np.testing.assert_allclose(returned, reference, rtol=1e-4, atol=1e-5, err_msg=context)


@pytest.fixture(params=[False, True], ids=["eager-or-graph", "jit"])
def jit_compile(request):
    if request.param and keras.backend.backend() == "torch":
        pytest.skip("torch has no XLA: jit_compile=True is not a torch setting")
    return request.param


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_predict_serves_logits_inside_and_after_fit_and_evaluate(
    family, jit_compile, digits
):
    images, labels = digits[0][:SAMPLES], digits[1][:SAMPLES]
    probe = images[:4]
    keras.utils.set_random_seed(0)
    model = FAMILIES[family]()
    model.compile(optimizer="adam", metrics=["accuracy"], jit_compile=jit_compile)
    callback = PredictEverywhere(probe)

    history = model.fit(
        images, labels, batch_size=BATCH, epochs=1, verbose=0,
        validation_data=(images, labels), callbacks=[callback],
    )
    model.evaluate(images, labels, batch_size=BATCH, verbose=0, callbacks=[callback])

    hooks = {hook for hook, _ in callback.returned}
    assert {"on_train_batch_end", "on_epoch_end", "on_test_end"} <= hooks
    for hook, returned in callback.returned:
        assert not isinstance(returned, dict), f"predict in {hook} returned the dict"
        assert np.shape(returned) == (len(probe), NUM_CLASSES), hook
    # After fit and evaluate every entry point serves the same logits.
    reference = served_reference(model, probe)
    assert_serves_logits(model.predict(probe, verbose=0), reference, "predict")
    assert_serves_logits(model.predict_on_batch(probe), reference, "predict_on_batch")
    assert_serves_logits(model(probe), reference, "__call__")
    # Validation inside fit ran the training path: every loss term and
    # per-head metric was reported for it.
    for key in history.history:
        if not key.startswith("val_"):
            assert f"val_{key}" in history.history, key


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_only_training_inputs_give_the_training_dict(family, digits):
    model = FAMILIES[family]()
    images = digits[0][:4]
    assert isinstance(model(TrainingInputs(images), training=True), dict)
    assert not isinstance(model(images, training=True), dict)


def test_predict_inside_fit_does_not_update_the_ema_teacher(digits):
    """The teacher takes each optimizer step's student exactly once: a
    `predict` in a callback (here after every batch) changes nothing."""
    images, labels = digits[0][:SAMPLES], digits[1][:SAMPLES]

    def train(callbacks):
        keras.utils.set_random_seed(0)
        model = FAMILIES["EMATeacher"]()
        model.compile(optimizer=keras.optimizers.SGD(0.1))
        model.fit(images, labels, batch_size=BATCH, epochs=2, shuffle=False,
                  verbose=0, callbacks=callbacks)
        return model

    class PredictEveryBatch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.model.predict(images[:4], verbose=0)

    quiet = train([])
    probed = train([PredictEveryBatch()])
    assert quiet.teacher.get_weights()[0].shape == probed.teacher.get_weights()[0].shape
    for got, want in zip(probed.teacher.get_weights(), quiet.teacher.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    # And the teacher did move: the test would see a missed or extra fold.
    keras.utils.set_random_seed(0)
    initial = FAMILIES["EMATeacher"]().teacher.get_weights()
    assert any(
        not np.allclose(now, then) for now, then in zip(quiet.teacher.get_weights(), initial)
    )
