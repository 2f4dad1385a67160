"""`DINOHead`: the projection head DINO trains on top of a backbone."""

import keras
from keras import ops

from keras_selfdistill.dino_loss import NORM_EPSILON
from keras_selfdistill.dino_loss import l2_normalize
from keras_selfdistill.validation import check_integer


@keras.saving.register_keras_serializable(package="keras_selfdistill")
class DINOHead(keras.layers.Layer):
    """DINO's projection head: an MLP, an L2-normalised bottleneck, and a
    weight-normalised last layer of `K` outputs.

    `h = MLP(x)` (`num_layers` dense layers with GELU between them, the last
    one to `bottleneck_dim`), `z = h / ||h||`, and
    `out_k = g_k * z . v_k / ||v_k||` where `v_k` is the last layer's column
    for output `k`. With `normalize_last_layer=True` (DINO's default) the
    scale `g` is fixed to 1, so every output is a cosine similarity between
    the bottleneck and a prototype `v_k`.

    `call(x, freeze_last_layer=f)` with `f` a scalar (0 or 1, a tensor is
    fine under `jit`) stops the gradient into the last layer when `f = 1`
    without changing the outputs: DINO freezes the last layer during the
    first epoch, which the paper reports stabilises training.

    Args:
        output_dim: int >= 1. `K`, the number of prototypes. DINO uses
            `65536`.
        hidden_dim: int >= 1. Width of the MLP's hidden layers. Defaults to
            `2048`.
        bottleneck_dim: int >= 1. Width of the normalised bottleneck.
            Defaults to `256`.
        num_layers: int >= 1. Dense layers in the MLP (`1`: a single dense
            layer to the bottleneck). Defaults to `3`.
        use_batch_norm: bool. `BatchNormalization` after each hidden dense
            layer (DINO uses it for ResNets only). Defaults to `False`.
        normalize_last_layer: bool. Fix `g = 1`; `False` trains `g`.
            Defaults to `True`.
        **kwargs: base layer arguments (`name`, `dtype`).

    Example:

    >>> import numpy as np
    >>> head = DINOHead(output_dim=16, hidden_dim=8, bottleneck_dim=4)
    >>> tuple(head(np.zeros((2, 5), "float32")).shape)
    (2, 16)

    References:
        Caron et al. "Emerging Properties in Self-Supervised Vision
        Transformers" (DINO), ICCV 2021, section 3.1 and appendix
        (`DINOHead`). https://arxiv.org/abs/2104.14294

        Salimans, Kingma. "Weight Normalization", NeurIPS 2016.
        https://arxiv.org/abs/1602.07868
    """

    def __init__(
        self,
        output_dim,
        hidden_dim=2048,
        bottleneck_dim=256,
        num_layers=3,
        use_batch_norm=False,
        normalize_last_layer=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_integer("output_dim", output_dim, 1)
        check_integer("hidden_dim", hidden_dim, 1)
        check_integer("bottleneck_dim", bottleneck_dim, 1)
        check_integer("num_layers", num_layers, 1)
        self.output_dim = output_dim
        self.hidden_dim = hidden_dim
        self.bottleneck_dim = bottleneck_dim
        self.num_layers = num_layers
        self.use_batch_norm = bool(use_batch_norm)
        self.normalize_last_layer = bool(normalize_last_layer)
        self.mlp_layers = []
        for index in range(num_layers):
            last = index == num_layers - 1
            self.mlp_layers.append(
                keras.layers.Dense(
                    bottleneck_dim if last else hidden_dim,
                    kernel_initializer=keras.initializers.TruncatedNormal(
                        stddev=0.02
                    ),
                    dtype=self.dtype_policy,
                    name=f"dense_{index}",
                )
            )
            if not last:
                if self.use_batch_norm:
                    self.mlp_layers.append(
                        keras.layers.BatchNormalization(
                            dtype=self.dtype_policy,
                            name=f"batch_normalization_{index}",
                        )
                    )
                self.mlp_layers.append(
                    keras.layers.Activation(
                        "gelu", dtype=self.dtype_policy, name=f"gelu_{index}"
                    )
                )

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.mlp_layers:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        self.last_layer_kernel = self.add_weight(
            name="last_layer_kernel",
            shape=(self.bottleneck_dim, self.output_dim),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        )
        if not self.normalize_last_layer:
            self.last_layer_scale = self.add_weight(
                name="last_layer_scale",
                shape=(self.output_dim,),
                initializer="ones",
            )

    def call(self, inputs, freeze_last_layer=None, training=None):
        """The head's `K` outputs.

        Args:
            inputs: float tensor `(batch, features)`.
            freeze_last_layer: `None` or a scalar (0 or 1): 1 stops the
                gradient into the last layer. Defaults to `None` (0).
            training: bool. For `use_batch_norm`.

        Returns:
            Tensor `(batch, output_dim)`.
        """
        x = inputs
        for layer in self.mlp_layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                x = layer(x, training=training)
            else:
                x = layer(x)
        x = l2_normalize(x)
        kernel = self.last_layer_kernel
        if freeze_last_layer is not None:
            frozen = ops.cast(freeze_last_layer, kernel.dtype)
            # Same value either way; only the gradient is switched off.
            kernel = frozen * ops.stop_gradient(kernel) + (1.0 - frozen) * kernel
        norm = ops.sqrt(ops.sum(ops.square(kernel), axis=0, keepdims=True))
        kernel = kernel / ops.maximum(norm, NORM_EPSILON)
        if not self.normalize_last_layer:
            scale = self.last_layer_scale
            if freeze_last_layer is not None:
                scale = frozen * ops.stop_gradient(scale) + (1.0 - frozen) * scale
            kernel = kernel * scale
        return ops.matmul(x, ops.cast(kernel, x.dtype))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.output_dim,)

    def get_config(self):
        return {
            **super().get_config(),
            "output_dim": self.output_dim,
            "hidden_dim": self.hidden_dim,
            "bottleneck_dim": self.bottleneck_dim,
            "num_layers": self.num_layers,
            "use_batch_norm": self.use_batch_norm,
            "normalize_last_layer": self.normalize_last_layer,
        }
