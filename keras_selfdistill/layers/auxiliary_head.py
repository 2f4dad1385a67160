"""`AuxiliaryHead`: a small classifier attached to an intermediate tensor."""

import keras
from keras import layers
from keras import ops

from keras_selfdistill.data_format import channel_axis
from keras_selfdistill.data_format import resolve_data_format
from keras_selfdistill.data_format import spatial_shape
from keras_selfdistill.layers import separable_convolution
from keras_selfdistill.validation import check_integer
from keras_selfdistill.validation import check_unit_interval

_CONVOLUTIONS = {3: layers.Conv1D, 4: layers.Conv2D, 5: layers.Conv3D}
# Keras has no separable 3-D convolution; volumes use a full one.
_SEPARABLE_CONVOLUTIONS = {
    3: separable_convolution.SeparableConv1D,
    4: separable_convolution.SeparableConv2D,
    5: layers.Conv3D,
}
#: The values of `AuxiliaryHead(block=...)`: convolutions per downsampling step.
BLOCKS = ("single", "double")
_POOLINGS = {
    3: layers.GlobalAveragePooling1D,
    4: layers.GlobalAveragePooling2D,
    5: layers.GlobalAveragePooling3D,
}


def scale_gradient(x, scale: float):
    """`x` unchanged in the forward pass; `scale` times its gradient backward.

    `stop_gradient(x) + scale * (x - stop_gradient(x))`: the second term is
    exactly 0 forward, so the value is `x` bit for bit, and its gradient is
    `scale` times the incoming one.

    Args:
        x: tensor.
        scale: float in [0, 1]. `1` returns `x` itself, `0`
            `stop_gradient(x)`.

    Returns:
        A tensor equal to `x`.
    """
    if scale == 1.0:
        return x
    frozen = ops.stop_gradient(x)
    if scale == 0.0:
        return frozen
    return frozen + scale * (x - frozen)


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
        block="single",
        attention=False,
        gradient_scale=1.0,
        data_format=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.data_format = resolve_data_format(data_format)
        self.block = block
        self.attention = attention
        self.gradient_scale = gradient_scale
        self.separable = separable
        self.batch_norm_momentum = batch_norm_momentum
        self.width = width
        self.num_downsampling = num_downsampling
        self.kernel_size = kernel_size
        self.use_batch_norm = use_batch_norm
        self.activation = keras.activations.get(activation)
        # One list per downsampling step: a convolution (or dense layer) and
        # its batch norm, twice for `block="double"`. The single block's
        # layout is 0.1.0's: `.keras` files find its weights by it.
        self.blocks = []
        # The attention gate's layers (`attention=True`), else empty.
        self.gate = []
        self.gate_upsampling = None
        self.pooling = None

    def _block_width(self, index, input_channels):
        if self.width is not None:
            return self.width
        return input_channels * 2 ** (index + 1)

    def _convolution(self, rank, filters, strides, name):
        """One weight layer of a block: dense (2-D) or a convolution."""
        if rank == 2:
            return layers.Dense(
                filters,
                use_bias=not self.use_batch_norm,
                dtype=self.dtype_policy,
                name=f"dense_{name}",
            )
        convolutions = _SEPARABLE_CONVOLUTIONS if self.separable else _CONVOLUTIONS
        return convolutions[rank](
            filters,
            self.kernel_size,
            strides=strides,
            padding="same",
            data_format=self.data_format,
            use_bias=not self.use_batch_norm,
            dtype=self.dtype_policy,
            name=f"conv_{name}",
        )

    def _batch_norm(self, name, rank):
        return layers.BatchNormalization(
            axis=channel_axis(self.data_format, rank),
            momentum=self.batch_norm_momentum,
            dtype=self.dtype_policy,
            name=name,
        )

    def _build_units(self, rank, shape, units):
        """Builds `(filters, strides, name)` units: each a weight layer and,
        with `use_batch_norm`, a batch norm. Returns `(layers, shape)`."""
        built = []
        for filters, strides, name in units:
            main = self._convolution(rank, filters, strides, name)
            main.build(shape)
            shape = main.compute_output_shape(shape)
            built.append(main)
            if self.use_batch_norm:
                norm = self._batch_norm(f"batch_norm_{name}", rank)
                norm.build(shape)
                built.append(norm)
        return built, shape

    def build(self, input_shape):
        _check_input_shape(tuple(input_shape), self.attention, self.data_format)
        rank = len(input_shape)
        axis = channel_axis(self.data_format, rank)
        channels = input_shape[axis]
        shape = tuple(input_shape)
        if self.attention:
            self._build_gate(rank, shape, channels)
        for index in range(self.num_downsampling):
            filters = self._block_width(index, channels)
            if self.block == "single":
                units = [(filters, 2, f"{index}")]
            else:
                # The authors' SepConv: the first half downsamples and keeps
                # the channels, the second changes them.
                units = [(shape[axis], 2, f"{index}a"), (filters, 1, f"{index}b")]
            block, shape = self._build_units(rank, shape, units)
            self.blocks.append(block)
        if rank > 2:
            self.pooling = _POOLINGS[rank](
                data_format=self.data_format, dtype=self.dtype_policy, name="pool"
            )

    def _build_gate(self, rank, shape, channels):
        # SepConv(channels -> channels, stride 2), then the official code's
        # extra batch norm; upsampling has no weights.
        gate, gate_shape = self._build_units(
            rank,
            shape,
            [(channels, 2, "gate_a"), (channels, 1, "gate_b")],
        )
        self.gate.extend(gate)
        if self.use_batch_norm:
            norm = self._batch_norm("batch_norm_gate", rank)
            norm.build(gate_shape)
            self.gate.append(norm)
        self.gate_upsampling = layers.UpSampling2D(
            2,
            interpolation="bilinear",
            data_format=self.data_format,
            dtype=self.dtype_policy,
            name="upsample_gate",
        )

    def _apply_units(self, units, x, training):
        step = 2 if self.use_batch_norm else 1
        for start in range(0, len(units), step):
            x = units[start](x)
            if self.use_batch_norm:
                x = units[start + 1](x, training=training)
            x = self.activation(x)
        return x

    def attention_map(self, inputs, training=None):
        """The attention gate's values, in (0, 1), one per input element.

        `sigmoid(upsample_2x(act(BN(SepConv_stride2(inputs)))))`, cropped
        to the input's height and width. With a ReLU activation the
        sigmoid's argument is >= 0, so the values lie in [0.5, 1), as in
        the authors' code.

        Args:
            inputs: tensor `(batch, height, width, channels)`.
            training: bool. Training mode for batch normalisation.

        Returns:
            Tensor of the shape of `inputs`.
        """
        if not self.attention:
            raise ValueError(
                "attention_map needs a head built with attention=True. "
                f"Received: attention={self.attention!r}"
            )
        convolutions = self.gate[:-1] if self.use_batch_norm else self.gate
        x = self._apply_units(convolutions, inputs, training)
        if self.use_batch_norm:
            x = self.activation(self.gate[-1](x, training=training))
        # Back to the input's size: bilinear upsampling by 2, as the
        # authors' `nn.Upsample(scale_factor=2, mode="bilinear")`, cropped
        # where an odd size was rounded up by the stride.
        x = self.gate_upsampling(x)
        height, width = spatial_shape(inputs.shape, self.data_format)
        if self.data_format == "channels_first":
            return ops.sigmoid(x[:, :, :height, :width])
        return ops.sigmoid(x[:, :height, :width, :])

    def call(self, inputs, training=None):
        inputs = scale_gradient(inputs, self.gradient_scale)
        x = inputs
        if self.attention:
            gate = self.attention_map(inputs, training=training)
            # Under mixed precision `inputs` may still be float32 here.
            x = gate * ops.cast(inputs, gate.dtype)
        for block in self.blocks:
            x = self._apply_units(block, x, training)
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
                "block": self.block,
                "attention": self.attention,
                "gradient_scale": self.gradient_scale,
                "data_format": self.data_format,
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
      `(batch, steps, channels)` and 5-D volumes (channels first with
      `data_format="channels_first"`): each block is a strided
      convolution (stride 2, so it halves every spatial axis), batch
      normalisation and an activation. The convolutions are depthwise
      separable by default, like the paper's `SepConv` heads: a head then
      costs a few percent of a ResNet's FLOPs instead of a stage's worth.
    - 2-D feature vectors `(batch, features)`: each block is a dense layer,
      batch normalisation and an activation (there is nothing to downsample).

    Two block structures, chosen by `block` (named for what a block holds,
    so it composes with `separable`, which picks the kind of convolution):

    - `"single"` (the default): per downsampling step one stride-2
      convolution, batch norm and activation.
    - `"double"`: the authors' `SepConv`, two per step: a stride-2
      convolution that keeps the channels, batch norm, activation, then a
      stride-1 convolution to the block's width, batch norm, activation. With
      `separable=True` each convolution is depthwise `k x k` + pointwise
      `1 x 1`, as in the official code. On 2-D features it is two dense
      layers per block (the first keeps the input width).

    `attention=True` adds the official code's sigmoid gate (4-D images only):
    `G = sigmoid(upsample_2x(act(BN(SepConv_stride2(x)))))` with a
    `SepConv` (two convolutions, as above) that keeps the channels, and the
    blocks see `G * x`. The gate is part of `head.bottleneck`, so
    `SelfDistillModel`'s features pass through it;
    `head.bottleneck.attention_map(x)` returns `G`. With a ReLU activation
    the sigmoid's argument is >= 0, so `G` lies in [0.5, 1): the gate can
    halve a feature, never zero it (as in the official code).

    The authors' head for a ResNet stage `s` of 4 is
    `AuxiliaryHead(num_classes, block="double", attention=True,
    num_downsampling=4 - s)` with `width=None` (channels doubling at each
    step: 64 -> 128 -> 256 -> 512 on ResNet-18). On ResNet-18's 32x32x64
    CIFAR map this bottleneck has 278,528 trainable parameters, the official
    `attention1` + `scala1` count exactly. What differs from the official
    code (pytorch-self-distillation-final, `resnet.py`):

    - padding: Keras's `"same"` pads a stride-2, 3x3 convolution on an even
      size by (0, 1), PyTorch's `padding=1` by (1, 1); the sampled pixels
      shift by one (odd sizes agree);
    - the gate is cropped back to odd input sizes (the official code only
      runs on even ones), and needs a known height and width;
    - initialisation is Keras's (Glorot uniform; PyTorch's code uses He
      normal, fan-out), batch norm epsilon is Keras's 1e-3 (PyTorch 1e-5);
    - the official heads pool with `AvgPool2d(4, 4)` on a 4x4 map; here
      global average pooling, the same there and valid at any size;
    - the official gate uses ReLU and this layer uses `activation` (ReLU by
      default) everywhere.

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
        block: str. `"single"` (one convolution per downsampling step) or
            `"double"` (two, the authors' `SepConv`). Defaults to
            `"single"`.
        attention: bool. Gate the input with the authors' sigmoid attention
            branch before the blocks; 4-D images of known size only.
            Defaults to `False`.
        classifier_dtype: str, `keras.DTypePolicy` or `None`. Dtype policy
            of the final `Dense` (the logits), e.g. `"float32"` under a
            `"mixed_float16"` global policy, as Keras advises for a model's
            output layer; `SelfDistillModel.from_backbone` sets it when the
            backbone's own logits are float32. `None` uses the head's
            policy. Defaults to `None`.
        gradient_scale: float in [0, 1]. Fraction of the head's gradient
            that flows back into the layer it is attached to (the
            backbone); the head's own weights always get all of theirs.
            `1` is the paper's deep supervision, `0` trains the head on a
            frozen backbone (the served classifier then trains as if the
            head were absent), values between soften the heads' pull on
            the shallow stages. Defaults to `1.0`.
        data_format: `"channels_last"`, `"channels_first"` or `None`. The
            layout of map inputs (rank 3 to 5), as for Keras's convolution
            layers: `(batch, *spatial, channels)` or `(batch, channels,
            *spatial)`; the blocks' convolutions, batch norms and pooling
            follow it. `None` uses `keras.config.image_data_format()`.
            Feature vectors (rank 2) ignore it. Defaults to `None`.
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
    # The authors' head: two separable convolutions per step and the gate.
    byot_logits = AuxiliaryHead(
        num_classes=10, block="double", attention=True, name="head_2"
    )(x1)
    ```

    References:
        Zhang et al. "Be Your Own Teacher: Improve the Performance of
        Convolutional Neural Networks via Self Distillation", ICCV 2019,
        section 3.1 (bottleneck layers of the shallow classifiers).
        https://arxiv.org/abs/1905.08094
        Official code: https://github.com/ArchipLab-LinfengZhang/
        pytorch-self-distillation-final (`SepConv`, `scala*`,
        `attention*` in `resnet.py`).
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
        block="single",
        attention=False,
        classifier_dtype=None,
        gradient_scale=1.0,
        data_format=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_integer("num_classes", num_classes, 1)
        if width is not None:
            check_integer("width", width, 1)
        check_integer("num_downsampling", num_downsampling, 0)
        check_integer("kernel_size", kernel_size, 1)
        _check_block_arguments(block, attention, batch_norm_momentum)
        check_unit_interval("gradient_scale", gradient_scale)
        self.num_classes = num_classes
        self.width = width
        self.num_downsampling = num_downsampling
        self.kernel_size = kernel_size
        self.use_batch_norm = use_batch_norm
        self.activation = keras.activations.get(activation)
        self.separable = bool(separable)
        self.batch_norm_momentum = float(batch_norm_momentum)
        self.block = block
        self.attention = attention
        self.classifier_dtype = (
            None if classifier_dtype is None
            else keras.dtype_policies.get(classifier_dtype)
        )
        self.gradient_scale = float(gradient_scale)
        self.data_format = resolve_data_format(data_format)
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
            block=self.block,
            attention=self.attention,
            gradient_scale=self.gradient_scale,
            data_format=self.data_format,
            dtype=self.dtype_policy,
            name=f"{self.name}_bottleneck",
        )
        self.bottleneck.build(input_shape)
        feature_shape = self.bottleneck.compute_output_spec(
            keras.KerasTensor(tuple(input_shape))
        ).shape
        self.classifier = layers.Dense(
            self.num_classes,
            dtype=self.classifier_dtype or self.dtype_policy,
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
                "block": self.block,
                "attention": self.attention,
                "classifier_dtype": None if self.classifier_dtype is None
                else keras.saving.serialize_keras_object(self.classifier_dtype),
                "gradient_scale": self.gradient_scale,
                "data_format": self.data_format,
            }
        )
        return config


def check_block_and_attention(block, attention, prefix="") -> None:
    """Refuses a `block` or `attention` a head cannot use, naming the value
    and what is allowed.

    Args:
        block: the value given for `block`.
        attention: the value given for `attention`.
        prefix: str. Prefix of the argument names in the messages (`"head_"`
            for `from_backbone`'s `head_block` and `head_attention`).
    """
    if not isinstance(block, str) or block not in BLOCKS:
        raise ValueError(
            f"`{prefix}block` must be one of {', '.join(map(repr, BLOCKS))}. "
            f"Received: {prefix}block={block!r}"
        )
    if not isinstance(attention, bool):
        raise ValueError(
            f"`{prefix}attention` must be True or False. "
            f"Received: {prefix}attention={attention!r}"
        )


def _check_block_arguments(block, attention, batch_norm_momentum) -> None:
    """Refuses a `block`, `attention` or `batch_norm_momentum` a head cannot
    use, naming the value and what is allowed."""
    check_block_and_attention(block, attention)
    if isinstance(batch_norm_momentum, bool) or not isinstance(
        batch_norm_momentum, (int, float)
    ) or not 0.0 <= batch_norm_momentum < 1.0:
        raise ValueError(
            "`batch_norm_momentum` must be a number in [0, 1). "
            f"Received: batch_norm_momentum={batch_norm_momentum!r}"
        )


def _check_input_shape(input_shape, attention, data_format) -> None:
    """Refuses input shapes a head cannot take, naming the shape."""
    rank = len(input_shape)
    if rank not in (2, 3, 4, 5):
        raise ValueError(
            "AuxiliaryHead accepts 2-D features (batch, features), 3-D "
            "sequences (batch, steps, channels), 4-D images (batch, "
            "height, width, channels) or 5-D volumes (channels first with "
            "data_format='channels_first'). "
            f"Received: input_shape={input_shape}"
        )
    if attention and rank != 4:
        raise ValueError(
            "attention=True needs 4-D images (batch, height, width, "
            "channels): the gate is the authors' 2-D one. Use "
            "attention=False for other ranks. Received: "
            f"input_shape={input_shape}, a {rank}-D input"
        )
    if attention and None in spatial_shape(input_shape, data_format):
        raise ValueError(
            "attention=True needs a known height and width (the gate is "
            "upsampled back to them). Received: "
            f"input_shape={input_shape}, data_format={data_format!r}"
        )
    if input_shape[channel_axis(data_format, rank)] is None:
        raise ValueError(
            "AuxiliaryHead needs a known channel dimension (the last one, or "
            "the second with data_format='channels_first'). Received: "
            f"input_shape={input_shape}, data_format={data_format!r}"
        )
