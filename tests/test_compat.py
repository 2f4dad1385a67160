"""The private Keras attributes `keras_selfdistill.compat` relies on.

Each test fails if the installed Keras stops recording (or reading) the
attribute the way the wrapper expects.
"""

import keras
import numpy as np
import pytest

from keras_selfdistill import compat


def test_tensor_producer_is_the_layer_that_made_the_tensor():
    inputs = keras.Input((4,))
    dense = keras.layers.Dense(3)
    outputs = dense(inputs)
    assert compat.tensor_producer(outputs) is dense


def test_tensor_producer_of_a_shared_layer_is_that_layer_for_each_call():
    inputs = keras.Input((4,))
    dense = keras.layers.Dense(4)
    first = dense(inputs)
    second = dense(first)
    assert compat.tensor_producer(first) is dense
    assert compat.tensor_producer(second) is dense


def test_tensor_producer_of_a_keras_input_is_its_input_layer():
    inputs = keras.Input((4,), name="pixels")
    assert compat.tensor_producer(inputs).name == "pixels"


def test_tensor_producer_of_a_non_keras_tensor_is_none():
    assert compat.tensor_producer(np.zeros((2, 3))) is None


def test_tensor_parents_are_the_inputs_of_the_call_that_made_the_tensor():
    inputs = keras.Input((4,))
    left = keras.layers.Dense(2)(inputs)
    right = keras.layers.Dense(2)(inputs)
    total = keras.layers.Add()([left, right])
    parents = compat.tensor_parents(total)
    assert len(parents) == 2
    assert parents[0] is left and parents[1] is right


def test_tensor_parents_follow_the_call_of_a_shared_layer():
    inputs = keras.Input((4,))
    dense = keras.layers.Dense(4)
    first = dense(inputs)
    second = dense(first)
    assert compat.tensor_parents(first)[0] is inputs
    assert compat.tensor_parents(second)[0] is first


def test_tensor_parents_of_a_keras_input_are_empty():
    assert compat.tensor_parents(keras.Input((4,))) == []


@pytest.mark.parametrize("metric, direction", [
    (keras.metrics.SparseCategoricalAccuracy(), "up"),
    (keras.metrics.MeanSquaredError(), "down"),
    (keras.metrics.Mean(), None),
])
def test_metric_direction_reads_what_keras_metrics_declare(metric, direction):
    assert compat.metric_direction(metric) == direction


def test_set_metric_direction_is_read_back():
    metric = compat.set_metric_direction(keras.metrics.Mean(name="score"), "up")
    assert compat.metric_direction(metric) == "up"


def test_set_metric_direction_rejects_other_values():
    with pytest.raises(ValueError, match="Received: direction='max'"):
        compat.set_metric_direction(keras.metrics.Mean(), "max")


def _fit_one_epoch(metric, callback):
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile("sgd", "mse", metrics=[metric])
    x = np.zeros((4, 2), "float32")
    model.fit(x, np.zeros((4, 1)), epochs=1, verbose=0, callbacks=[callback])


def test_keras_auto_mode_monitors_read_the_set_direction():
    # Keras refuses mode="auto" for a metric whose direction it cannot find.
    metric = keras.metrics.MeanMetricWrapper(
        lambda y, p: keras.ops.mean(p, axis=-1), name="score"
    )
    callback = keras.callbacks.EarlyStopping(monitor="score", mode="auto")
    with pytest.raises(ValueError, match="maximized or minimized"):
        _fit_one_epoch(metric, callback)

    compat.set_metric_direction(metric, "up")
    callback = keras.callbacks.EarlyStopping(monitor="score", mode="auto")
    _fit_one_epoch(metric, callback)
    assert callback.monitor_op is keras.ops.greater


def test_a_new_monitor_callback_is_unresolved_until_training_starts():
    callback = keras.callbacks.EarlyStopping(monitor="loss")
    assert compat.monitor_mode_unresolved(callback)
    _fit_one_epoch("mae", callback)
    assert not compat.monitor_mode_unresolved(callback)


def test_a_mode_set_while_unresolved_takes_effect():
    callback = keras.callbacks.EarlyStopping(monitor="mae", mode="auto")
    assert compat.monitor_mode_unresolved(callback)
    callback.mode = "max"
    _fit_one_epoch("mae", callback)
    assert callback.monitor_op is keras.ops.greater


def test_other_callbacks_are_not_monitors():
    assert not compat.monitor_mode_unresolved(keras.callbacks.History())
    assert not compat.monitor_mode_unresolved(object())



class _TwoOutputs(keras.layers.Layer):
    def call(self, inputs):
        return inputs * 2.0, inputs * 3.0


def test_tensor_output_index_numbers_the_outputs_of_a_multi_output_call():
    inputs = keras.Input((4,))
    first, second = _TwoOutputs()(inputs)
    single = keras.layers.Dense(2)(first)
    assert compat.tensor_output_index(first) == 0
    assert compat.tensor_output_index(second) == 1
    assert compat.tensor_output_index(single) == 0
    assert compat.tensor_output_index(np.zeros(2)) == 0
