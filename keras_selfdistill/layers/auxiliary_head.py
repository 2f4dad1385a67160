"""`AuxiliaryHead`: a small classifier attached to an intermediate tensor."""

import keras
from keras import layers

from keras_selfdistill.layers import separable_convolution
from keras_selfdistill.validation import check_integer

_CONVOLUTIONS = {3: layers.Conv1D, 4: layers.Conv2D, 5: layers.Conv3D}
# Keras has no separable 3-D convolution; volumes use a full one.
_SEPARABLE_CONVOLUTIONS = {
    3: separable_convolution.SeparableConv1D,
    4: separable_convolution.SeparableConv2D,
    5: layers.Conv3D,
}
_POOLINGS = {
    3: layers.GlobalAveragePooling1D,
    4: layers.GlobalAveragePooling2D,
    5: layers.GlobalAveragePooling3D,
}


@keras.saving.register_keras_serializable(package="keras_selfdistill")
class HeadBottleneck(keras.layers.Layer):
    """The feature part of an `AuxiliaryHead`: blocks, then global pooling.

    Built by `AuxiliaryHead.build`; see `AuxiliaryHead` for the arguments.
    It is a layer of its own so that a functional graph can take the pooled
    features and the logits from one forward pass (`SelfDistillModel` calls
    `head.bottleneck` and `head.classifier` directly).

    Returns:
        Pooled features of shape `(batch, width)`.
    """

    def __init__(
        self,
        width=None,
        num_downsampling=1,
        kernel_size=3,
        use_batch_norm=True,
        activation="relu",
        separable=True,
        batch_norm_momentum=0.9,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.separable = separable
        self.batch_norm_momentum = batch_norm_momentum
        self.width = width
        self.num_downsampling = num_downsampling
        self.kernel_size = kernel_size
        self.use_batch_norm = use_batch_norm
        self.activation = keras.activations.get(activation)
        self.blocks = []
        self.pooling = None

    def _block_width(self, index, input_channels):
        if self.width is not None:
            return self.width
        return input_channels * 2 ** (index + 1)

    def build(self, input_shape):
        rank = len(input_shape)
        if rank not in (2, 3, 4, 5):
            raise ValueError(
                "AuxiliaryHead accepts 2-D features (batch, features), 3-D "
                "sequences (batch, steps, channels), 4-D images (batch, "
                "height, width, channels) or 5-D volumes. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(
                "AuxiliaryHead needs a known last (channel) dimension. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        shape = tuple(input_shape)
        for index in range(self.num_downsampling):
            filters = self._block_width(index, channels)
            if rank == 2:
                main = layers.Dense(
                    filters,
                    use_bias=not self.use_batch_norm,
                    dtype=self.dtype_policy,
                    name=f"dense_{index}",
                )
            else:
                convolutions = (
                    _SEPARABLE_CONVOLUTIONS if self.separable else _CONVOLUTIONS
                )
                main = convolutions[rank](
                    filters,
                    self.kernel_size,
                    strides=2,
                    padding="same",
                    use_bias=not self.use_batch_norm,
                    dtype=self.dtype_policy,
                    name=f"conv_{index}",
                )
            main.build(shape)
            shape = main.compute_output_shape(shape)
            block = [main]
            if self.use_batch_norm:
                norm = layers.BatchNormalization(
                    momentum=self.batch_norm_momentum,
                    dtype=self.dtype_policy,
                    name=f"batch_norm_{index}",
                )
                norm.build(shape)
                block.append(norm)
            self.blocks.append(block)
        if rank > 2:
            self.pooling = _POOLINGS[rank](dtype=self.dtype_policy, name="pool")

    def call(self, inputs, training=None):
        x = inputs
        for block in self.blocks:
            x = block[0](x)
            if self.use_batch_norm:
                x = block[1](x, training=training)
            x = self.activation(x)
        if self.pooling is not None:
            x = self.pooling(x)
        return x

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "width": self.width,
                "num_downsampling": self.num_downsampling,
                "kernel_size": self.kernel_size,
                "use_batch_norm": self.use_batch_norm,
                "activation": keras.activations.serialize(self.activation),
                "separable": self.separable,
                "batch_norm_momentum": self.batch_norm_momentum,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_selfdistill")
class AuxiliaryHead(keras.layers.Layer):
    """A shallow classifier for an intermediate feature map.

    The head of Be Your Own Teacher (Zhang et al., 2019): a few "bottleneck"
    blocks bring a shallow feature map down toward the resolution and width of
    the deepest one, global average pooling turns it into a feature vector
    `F`, and a dense layer gives the class logits `z`. `SelfDistillModel` uses
    `F` for the feature term of the loss and `z` for the others.

    Works on any rank the backbone produces:

    - 4-D image maps `(batch, height, width, channels)`, 3-D sequences
      `(batch, steps, channels)` and 5-D volumes: each block is a strided
      convolution (stride 2, so it halves every spatial axis), batch
      normalisation and an activation. The convolutions are depthwise
      separable by default, like the paper's `SepConv` heads: a head then
      costs a few percent of a ResNet's FLOPs instead of a stage's worth.
    - 2-D feature vectors `(batch, features)`: each block is a dense layer,
      batch normalisation and an activation (there is nothing to downsample).

    Args:
        num_classes: int. Number of classes; the logits' last axis.
        width: int or `None`. Channels (or units) of every block, and so the
            width of the pooled features. `None` doubles the input channels
            at every block, as the stages of a ResNet do (and keeps the input
            width when there are no blocks). Defaults to `None`.
        num_downsampling: int >= 0. Number of blocks; on image and sequence
            maps, the number of stride-2 convolutions. Set it to the number of
            backbone stages between the tap and the deepest classifier to
            reach the deepest resolution (`SelfDistillModel.from_backbone`
            does this for you). Defaults to `1`.
        kernel_size: int. Kernel size of the convolutions. Defaults to `3`.
        use_batch_norm: bool. Batch-normalise every block. Defaults to `True`.
        activation: str or callable. Activation of every block. Defaults to
            `"relu"`.
        separable: bool. Depthwise-separable convolutions (1-D and 2-D maps;
            volumes always use full ones). Defaults to `True`.
        batch_norm_momentum: float in [0, 1). Momentum of the moving
            statistics. Defaults to `0.9` (PyTorch's, which the paper's code
            uses): a head's statistics must settle within the backbone's
            training run, and Keras's usual 0.99 left the heads' inference
            accuracy far behind their training accuracy on short runs.
        **kwargs: base layer arguments (`name`, `dtype`, `trainable`).

    Call arguments:
        inputs: the intermediate tensor, of rank 2 to 5.
        training: bool. Training mode for batch normalisation.

    Returns:
        The logits, of shape `(batch, num_classes)`. The pooled features are
        `head.bottleneck(inputs)`, and `head.classifier(features)` gives the
        logits from them.

    Example:

    ```python
    inputs = keras.Input((28, 28, 1))
    x1 = keras.layers.Conv2D(16, 3, activation="relu")(inputs)
    head_logits = AuxiliaryHead(num_classes=10, name="head_1")(x1)
    ```

    References:
        Zhang et al. "Be Your Own Teacher: Improve the Performance of
        Convolutional Neural Networks via Self Distillation", ICCV 2019,
        section 3.1 (bottleneck layers of the shallow classifiers).
        https://arxiv.org/abs/1905.08094
    """

    def __init__(
        self,
        num_classes,
        width=None,
        num_downsampling=1,
        kernel_size=3,
        use_batch_norm=True,
        activation="relu",
        separable=True,
        batch_norm_momentum=0.9,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_integer("num_classes", num_classes, 1)
        if isinstance(batch_norm_momentum, bool) or not isinstance(
            batch_norm_momentum, (int, float)
        ) or not 0.0 <= batch_norm_momentum < 1.0:
            raise ValueError(
                "`batch_norm_momentum` must be a number in [0, 1). "
                f"Received: batch_norm_momentum={batch_norm_momentum!r}"
            )
        if width is not None:
            check_integer("width", width, 1)
        check_integer("num_downsampling", num_downsampling, 0)
        check_integer("kernel_size", kernel_size, 1)
        self.num_classes = num_classes
        self.width = width
        self.num_downsampling = num_downsampling
        self.kernel_size = kernel_size
        self.use_batch_norm = use_batch_norm
        self.activation = keras.activations.get(activation)
        self.separable = bool(separable)
        self.batch_norm_momentum = float(batch_norm_momentum)
        self.bottleneck = None
        self.classifier = None

    def build(self, input_shape):
        # Named after the head: a functional graph may use these sub-layers
        # directly, and layer names must be unique there.
        self.bottleneck = HeadBottleneck(
            width=self.width,
            num_downsampling=self.num_downsampling,
            kernel_size=self.kernel_size,
            use_batch_norm=self.use_batch_norm,
            activation=self.activation,
            separable=self.separable,
            batch_norm_momentum=self.batch_norm_momentum,
            dtype=self.dtype_policy,
            name=f"{self.name}_bottleneck",
        )
        self.bottleneck.build(input_shape)
        feature_shape = self.bottleneck.compute_output_spec(
            keras.KerasTensor(tuple(input_shape))
        ).shape
        self.classifier = layers.Dense(
            self.num_classes,
            dtype=self.dtype_policy,
            name=f"{self.name}_classifier",
        )
        self.classifier.build(feature_shape)

    def call(self, inputs, training=None):
        features = self.bottleneck(inputs, training=training)
        return self.classifier(features)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "width": self.width,
                "num_downsampling": self.num_downsampling,
                "kernel_size": self.kernel_size,
                "use_batch_norm": self.use_batch_norm,
                "activation": keras.activations.serialize(self.activation),
                "separable": self.separable,
                "batch_norm_momentum": self.batch_norm_momentum,
            }
        )
        return config
