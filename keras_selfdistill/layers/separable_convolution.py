"""The strided separable convolutions of `AuxiliaryHead`'s blocks.

They are Keras's `SeparableConv1D` / `SeparableConv2D` (same weights, same
config, same outputs) with one change of computation where it is measured to
matter: XLA on a CPU lowers a depthwise convolution (and its gradients) to a
slow generic loop. On JAX on a CPU, where steps are XLA-compiled by default, the
two heads of `benchmarks/step_overhead.py` cost more than the whole backbone
that way (docs/results/backends.md has the measurement). There the
depthwise part is computed instead as the sum of the kernel's `k x k`
strided slices of the padded input, each times its per-channel weight: a few
elementwise products XLA fuses into one loop, forward and backward.

Everywhere else the Keras layer runs unchanged: TensorFlow's oneDNN and
torch's depthwise kernels beat the slices (`benchmarks/head_convolutions.py`
prints the comparison on each backend).
"""

import functools
import itertools

import keras
from keras import ops


@functools.cache
def computes_depthwise_by_slices() -> bool:
    """Whether this process computes strided depthwise convolutions by slices.

    The one backend branch of the package's layers: true on the JAX backend
    when its devices are CPUs (XLA:CPU has no fast depthwise convolution);
    false on TensorFlow, torch, and JAX on GPUs or TPUs, where the native
    kernel is used.

    Returns:
        bool.
    """
    if keras.backend.backend() != "jax":
        return False
    devices = keras.distribution.list_devices()
    return bool(devices) and all(device.startswith("cpu") for device in devices)


def depthwise_conv_by_slices(inputs, kernel, strides):
    """A "same"-padded, channels-last depthwise convolution, computed as a sum
    of strided slices.

    `outputs[b, i, ..., c] = sum_k inputs_padded[b, s*i + k, ..., c] * kernel[k, ..., c, 0]`
    over every kernel offset `k`, with the padding of Keras's `padding="same"`
    (the larger half after). Equal, up to float rounding, to
    `keras.ops.depthwise_conv(inputs, kernel, strides, padding="same")` with a
    depth multiplier of 1.

    Args:
        inputs: tensor `(batch, *spatial, channels)`.
        kernel: tensor `(*kernel_size, channels, 1)`.
        strides: tuple of ints, one per spatial dimension.

    Returns:
        Tensor `(batch, *ceil(spatial / strides), channels)`.
    """
    spatial = inputs.shape[1:-1]
    kernel_size = kernel.shape[:-2]
    output_sizes = [-(-size // stride) for size, stride in zip(spatial, strides)]
    padding = [[0, 0]]
    for size, k, stride, output_size in zip(spatial, kernel_size, strides, output_sizes):
        total = max((output_size - 1) * stride + k - size, 0)
        padding.append([total // 2, total - total // 2])
    padding.append([0, 0])
    padded = ops.pad(inputs, padding)
    kernel = ops.cast(kernel, inputs.dtype)
    outputs = None
    for offsets in itertools.product(*(range(k) for k in kernel_size)):
        window = (slice(None),) + tuple(
            slice(offset, offset + (output_size - 1) * stride + 1, stride)
            for offset, output_size, stride in zip(offsets, output_sizes, strides)
        )
        term = padded[window] * kernel[offsets + (slice(None), 0)]
        outputs = term if outputs is None else outputs + term
    return outputs


class _SlicedDepthwiseMixin:
    """`call` of a Keras separable convolution, by slices where
    `computes_depthwise_by_slices()` (channels-last, "same" padding, no
    dilation, depth multiplier 1: the heads' settings); else Keras's own."""

    def call(self, inputs):
        if not (
            computes_depthwise_by_slices()
            and self.data_format == "channels_last"
            and self.padding == "same"
            and self.depth_multiplier == 1
            and all(rate == 1 for rate in self.dilation_rate)
            and None not in inputs.shape[1:]
        ):
            return super().call(inputs)
        outputs = depthwise_conv_by_slices(inputs, self.depthwise_kernel, self.strides)
        pointwise = ops.cast(self.pointwise_kernel, outputs.dtype)
        outputs = ops.matmul(outputs, ops.reshape(pointwise, pointwise.shape[-2:]))
        if self.use_bias:
            outputs = outputs + ops.cast(self.bias, outputs.dtype)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs


# The class names are Keras's own on purpose: a `.keras` file stores a
# layer's weights under a path made from its class name, so files saved
# with `keras.layers.SeparableConv2D` heads load into these, and back.
@keras.saving.register_keras_serializable(package="keras_selfdistill")
class SeparableConv1D(_SlicedDepthwiseMixin, keras.layers.SeparableConv1D):
    """`keras.layers.SeparableConv1D`, fast under XLA on a CPU (see module)."""


@keras.saving.register_keras_serializable(package="keras_selfdistill")
class SeparableConv2D(_SlicedDepthwiseMixin, keras.layers.SeparableConv2D):
    """`keras.layers.SeparableConv2D`, fast under XLA on a CPU (see module)."""
