"""The heads' separable convolutions: Keras's layers, computed by strided
slices where XLA on a CPU would be slow (JAX on CPUs), identical otherwise."""

import os

import keras
import numpy as np
import pytest
from backend_utils import gradients

from keras_selfdistill import AuxiliaryHead
from keras_selfdistill.layers import separable_convolution
from keras_selfdistill.layers.separable_convolution import computes_depthwise_by_slices
from keras_selfdistill.layers.separable_convolution import depthwise_conv_by_slices
from keras_selfdistill.testing import run_model_saving_test

FIXTURE = os.path.join(os.path.dirname(__file__), os.pardir, "data",
                       "separable_heads_0_1_0")

CASES = [
    # (input shape, kernel size, strides): even and odd sizes, 1-D and 2-D.
    ((2, 8, 8, 3), (3, 3), (2, 2)),
    ((2, 7, 9, 3), (3, 3), (2, 2)),
    ((2, 9, 9, 2), (5, 5), (2, 2)),
    ((2, 6, 6, 2), (3, 3), (1, 1)),
    ((2, 11, 4), (3,), (2,)),
    ((2, 10, 4), (5,), (2,)),
]


@pytest.mark.parametrize("input_shape, kernel_size, strides", CASES)
def test_slices_compute_keras_depthwise_convolution(input_shape, kernel_size, strides):
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=input_shape).astype("float32")
    kernel = rng.normal(size=kernel_size + (input_shape[-1], 1)).astype("float32")
    expected = keras.ops.depthwise_conv(inputs, kernel, strides=strides, padding="same")
    got = depthwise_conv_by_slices(inputs, kernel, strides)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_slices_have_keras_gradients():
    rng = np.random.default_rng(1)
    inputs = keras.Variable(rng.normal(size=(2, 7, 8, 3)).astype("float32"))
    kernel = keras.Variable(rng.normal(size=(3, 3, 3, 1)).astype("float32"))
    weights = keras.ops.convert_to_tensor(rng.normal(size=(2, 4, 4, 3)).astype("float32"))

    def loss(convolution):
        return lambda: keras.ops.sum(convolution() * weights)

    expected = gradients(loss(lambda: keras.ops.depthwise_conv(
        inputs, kernel, strides=2, padding="same")), [inputs, kernel])
    got = gradients(loss(lambda: depthwise_conv_by_slices(inputs, kernel, (2, 2))),
                    [inputs, kernel])
    for got_gradient, expected_gradient in zip(got, expected):
        assert np.abs(expected_gradient).max() > 0
        np.testing.assert_allclose(got_gradient, expected_gradient, rtol=1e-5, atol=1e-5)


def test_slices_are_used_exactly_on_jax_with_cpus():
    expected = keras.backend.backend() == "jax" and all(
        device.startswith("cpu") for device in keras.distribution.list_devices()
    )
    assert computes_depthwise_by_slices() is expected


@pytest.mark.parametrize(
    "layer_name, input_shape",
    [("SeparableConv2D", (2, 9, 8, 3)), ("SeparableConv1D", (2, 9, 3))],
)
def test_head_layers_compute_what_keras_layers_compute(layer_name, input_shape):
    settings = dict(filters=5, kernel_size=3, strides=2, padding="same",
                    activation="relu", name="conv")
    ours = getattr(separable_convolution, layer_name)(**settings)
    theirs = getattr(keras.layers, layer_name)(**settings)
    ours.build(input_shape)
    theirs.build(input_shape)
    theirs.set_weights(ours.get_weights())
    assert isinstance(ours, getattr(keras.layers, layer_name))
    assert ours.get_config() == theirs.get_config()
    inputs = np.random.default_rng(2).normal(size=input_shape).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(ours(inputs)),
        keras.ops.convert_to_numpy(theirs(inputs)), rtol=1e-5, atol=1e-5)


def test_heads_saved_by_version_0_1_0_load_and_predict_the_same():
    """0.1.0's heads used keras.layers.SeparableConv*D; the weights are stored
    under paths made from the class name, which these layers keep."""
    model = keras.saving.load_model(FIXTURE + ".keras", safe_mode=True)
    with np.load(FIXTURE + ".npz") as saved:
        image_logits, sequence_logits = model.predict(
            [saved["images"], saved["sequences"]], verbose=0)
        np.testing.assert_allclose(image_logits, saved["image_logits"], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(
            sequence_logits, saved["sequence_logits"], rtol=1e-5, atol=1e-5)


def test_a_model_with_a_sequence_head_saves_and_loads(tmp_path):
    inputs = keras.Input((12, 4))
    model = keras.Model(inputs, AuxiliaryHead(num_classes=3, num_downsampling=2)(inputs))
    run_model_saving_test(model, np.random.default_rng(3).normal(size=(4, 12, 4)))
