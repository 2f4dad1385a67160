"""`MultiCrop`: DINO's multi-crop views of a batch of images, in `keras.ops`.

A Keras layer, so it runs inside the compiled train step on every backend
(`jit_compile=True` included), draws its randomness from a
`keras.random.SeedGenerator` (seeded, saved with the model, so a resumed run
continues the same stream), and can equally run in a `tf.data` pipeline.
"""

import math

import keras
from keras import ops

from keras_selfdistill.data_format import channel_axis
from keras_selfdistill.data_format import resolve_data_format
from keras_selfdistill.validation import check_integer
from keras_selfdistill.validation import check_number

#: DINO's augmentations at 224x224 (global) and 96x96 (local) for ImageNet.
PAPER_GLOBAL_SIZE = 224
PAPER_LOCAL_SIZE = 96
#: DINO's blur and solarize probabilities: (global 1, global 2, local).
BLUR_PROBABILITIES = (1.0, 0.1, 0.5)
SOLARIZE_PROBABILITIES = (0.0, 0.2, 0.0)
COLOR_JITTER_PROBABILITY = 0.8
GRAYSCALE_PROBABILITY = 0.2
#: torchvision ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2).
BRIGHTNESS, CONTRAST, SATURATION = 0.4, 0.4, 0.2
_SEED_STATE_KEY = "seed_generator_state"
_LOG_RATIO = (math.log(3.0 / 4.0), math.log(4.0 / 3.0))


def _check_scale(name, scale):
    if (
        not isinstance(scale, (list, tuple))
        or len(scale) != 2
        or any(isinstance(s, bool) or not isinstance(s, (int, float)) for s in scale)
        or not 0.0 < scale[0] <= scale[1] <= 1.0
    ):
        raise ValueError(
            f"`{name}` must be a pair (low, high) with 0 < low <= high <= 1, "
            f"the fraction of the image's area a crop covers. Received: "
            f"{name}={scale!r}"
        )


def _gray(images):
    weights = ops.convert_to_tensor([0.299, 0.587, 0.114], images.dtype)
    return ops.sum(images * weights, axis=-1, keepdims=True)


def _blend(images, other, factor):
    return ops.clip(factor * images + (1.0 - factor) * other, 0.0, 1.0)


def _shift(images, axis, offset):
    """`images` moved by one pixel along `axis`, the edge pixel repeated."""
    size = images.shape[axis]
    if offset > 0:
        edge = ops.take(images, [0], axis=axis)
        body = ops.take(images, list(range(size - 1)), axis=axis)
        return ops.concatenate([edge, body], axis=axis)
    edge = ops.take(images, [size - 1], axis=axis)
    body = ops.take(images, list(range(1, size)), axis=axis)
    return ops.concatenate([body, edge], axis=axis)


@keras.saving.register_keras_serializable(package="keras_selfdistill")
class MultiCrop(keras.layers.Layer):
    """DINO's multi-crop augmentation: 2 global and N local views per image.

    `call(images)` returns a list of `2 + num_local_crops` batches: two
    global crops (`global_size` x `global_size`, each covering a random
    fraction in `global_scale` of the image's area) and `num_local_crops`
    local crops (`local_size`, `local_scale`). Each crop is a random
    resized crop (aspect ratio in [3/4, 4/3], bilinear) with a random
    horizontal flip, then DINO's photometric augmentations, per image:

    - colour jitter with probability 0.8 (brightness and contrast factors in
      [0.6, 1.4], saturation in [0.8, 1.2], applied in that order; hue is
      not jittered), then grayscale with probability 0.2 (both only for 3
      channels);
    - Gaussian blur with probability 1.0 (global crop 1), 0.1 (global crop
      2), 0.5 (local crops): a separable 3-tap kernel with a random
      `sigma` in `blur_sigma` pixels;
    - solarize (`x -> 1 - x` where `x >= 0.5`) with probability 0.2 on
      global crop 2 only.

    The paper's crops are 224 (scale (0.4, 1)) and 96 (scale (0.05, 0.4))
    pixels of ImageNet images, blur `sigma` in (0.1, 2.0) pixels at 224.
    For 32x32 images (CIFAR) the defaults here keep the paper's scales and
    the local/global size ratio (96/224 = 0.43, so 16 for 32), and a blur of
    `sigma` in (0.1, 1.0) pixels (a 3-tap kernel: a 32-pixel image cannot
    take the paper's 23-pixel one).

    Images must be float in [0, 1], `(batch, height, width, channels)`, or
    `(batch, channels, height, width)` with `data_format="channels_first"`
    (the crops then come out channels first too).

    Args:
        global_size: int >= 1. Side of the global crops. Defaults to `32`.
        local_size: int >= 1. Side of the local crops. Defaults to `16`.
        num_local_crops: int >= 0. Defaults to `6` (the official code's
            default is 8; the paper's best ViT-S/16 uses 10: fewer keep a
            CPU step cheap).
        global_scale: pair of floats in (0, 1]. Area fraction of a global
            crop. Defaults to `(0.4, 1.0)`.
        local_scale: pair of floats in (0, 1]. Area fraction of a local
            crop. Defaults to `(0.05, 0.4)`.
        blur_sigma: pair of floats > 0. Blur strength range, in pixels.
            Defaults to `(0.1, 1.0)`.
        color_augmentation: bool. `False` skips jitter, grayscale, blur and
            solarize (only crops and flips). Defaults to `True`.
        seed: int or `None`. Seed of the layer's `SeedGenerator`. Defaults
            to `None`.
        data_format: `"channels_last"`, `"channels_first"` or `None`
            (`keras.config.image_data_format()`). The layout of the images
            and of the crops. Defaults to `None`.
        **kwargs: base layer arguments (`name`).

    Example:

    >>> import numpy as np
    >>> crops = MultiCrop(global_size=8, local_size=4, num_local_crops=2,
    ...                   seed=0)(np.random.rand(3, 10, 10, 3))
    >>> [tuple(crop.shape) for crop in crops]
    [(3, 8, 8, 3), (3, 8, 8, 3), (3, 4, 4, 3), (3, 4, 4, 3)]

    References:
        Caron et al. "Emerging Properties in Self-Supervised Vision
        Transformers" (DINO), ICCV 2021, section 3.1 and the official
        `DataAugmentationDINO`. https://arxiv.org/abs/2104.14294

        Caron et al. "Unsupervised Learning of Visual Features by
        Contrasting Cluster Assignments" (SwAV, multi-crop), NeurIPS 2020.
        https://arxiv.org/abs/2006.09882
    """

    def __init__(
        self,
        global_size=32,
        local_size=16,
        num_local_crops=6,
        global_scale=(0.4, 1.0),
        local_scale=(0.05, 0.4),
        blur_sigma=(0.1, 1.0),
        color_augmentation=True,
        seed=None,
        data_format=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.data_format = resolve_data_format(data_format)
        check_integer("global_size", global_size, 1)
        check_integer("local_size", local_size, 1)
        check_integer("num_local_crops", num_local_crops, 0)
        _check_scale("global_scale", global_scale)
        _check_scale("local_scale", local_scale)
        if (
            not isinstance(blur_sigma, (list, tuple))
            or len(blur_sigma) != 2
            or not all(isinstance(s, (int, float)) for s in blur_sigma)
            or not 0.0 < blur_sigma[0] <= blur_sigma[1]
        ):
            raise ValueError(
                "`blur_sigma` must be a pair (low, high) with 0 < low <= "
                f"high, in pixels. Received: blur_sigma={blur_sigma!r}"
            )
        if seed is not None:
            check_integer("seed", seed, 0)
        self.global_size = global_size
        self.local_size = local_size
        self.num_local_crops = num_local_crops
        self.global_scale = tuple(float(s) for s in global_scale)
        self.local_scale = tuple(float(s) for s in local_scale)
        self.blur_sigma = tuple(float(s) for s in blur_sigma)
        self.color_augmentation = bool(color_augmentation)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="seed_generator")
        self.built = True

    @property
    def num_crops(self) -> int:
        """`2 + num_local_crops`."""
        return 2 + self.num_local_crops

    def _uniform(self, batch_size, low, high):
        return keras.random.uniform(
            (batch_size,), low, high, seed=self.seed_generator
        )

    def _happens(self, batch_size, probability):
        """1.0 with `probability` per image, else 0.0: `(batch, 1, 1, 1)`."""
        draw = self._uniform(batch_size, 0.0, 1.0)
        return ops.reshape(ops.cast(draw < probability, "float32"), (-1, 1, 1, 1))

    def random_resized_crop(self, images, size, scale):
        """One random resized crop (and flip) per image, `(batch, size, size, C)`."""
        batch_size = ops.shape(images)[0]
        height, width, channels = images.shape[1], images.shape[2], images.shape[3]
        area = self._uniform(batch_size, scale[0], scale[1])
        ratio = ops.exp(self._uniform(batch_size, *_LOG_RATIO))
        # Crop sides as fractions of the image's (clipped: a crop fits).
        crop_height = ops.clip(ops.sqrt(area / ratio), 0.0, 1.0)
        crop_width = ops.clip(ops.sqrt(area * ratio), 0.0, 1.0)
        top = self._uniform(batch_size, 0.0, 1.0) * (1.0 - crop_height)
        left = self._uniform(batch_size, 0.0, 1.0) * (1.0 - crop_width)
        steps = (ops.arange(size, dtype="float32") + 0.5) / size
        rows = (top[:, None] + crop_height[:, None] * steps[None]) * height - 0.5
        cols = (left[:, None] + crop_width[:, None] * steps[None]) * width - 0.5
        rows = ops.clip(rows, 0.0, height - 1.0)
        cols = ops.clip(cols, 0.0, width - 1.0)
        row_low = ops.floor(rows)
        col_low = ops.floor(cols)
        row_weight = (rows - row_low)[:, :, None, None]
        col_weight = (cols - col_low)[:, None, :, None]
        row_low = ops.cast(row_low, "int32")
        col_low = ops.cast(col_low, "int32")
        row_high = ops.minimum(row_low + 1, height - 1)
        col_high = ops.minimum(col_low + 1, width - 1)
        flat = ops.reshape(images, (batch_size, height * width, channels))

        def gather(row_index, col_index):
            index = row_index[:, :, None] * width + col_index[:, None, :]
            index = ops.reshape(index, (batch_size, size * size, 1))
            index = ops.broadcast_to(index, (batch_size, size * size, channels))
            values = ops.take_along_axis(flat, index, axis=1)
            return ops.reshape(values, (batch_size, size, size, channels))

        top_row = (1.0 - col_weight) * gather(row_low, col_low) + col_weight * gather(
            row_low, col_high
        )
        bottom_row = (1.0 - col_weight) * gather(
            row_high, col_low
        ) + col_weight * gather(row_high, col_high)
        crops = (1.0 - row_weight) * top_row + row_weight * bottom_row
        flip = self._happens(batch_size, 0.5)
        return flip * ops.flip(crops, axis=2) + (1.0 - flip) * crops

    def color_jitter(self, images):
        """DINO's colour jitter (p = 0.8) and grayscale (p = 0.2)."""
        batch_size = ops.shape(images)[0]
        channels = images.shape[-1]

        def factor(strength):
            return ops.reshape(
                self._uniform(batch_size, 1.0 - strength, 1.0 + strength),
                (-1, 1, 1, 1),
            )

        jittered = ops.clip(images * factor(BRIGHTNESS), 0.0, 1.0)
        gray = _gray(jittered) if channels == 3 else jittered
        mean = ops.mean(gray, axis=(1, 2, 3), keepdims=True)
        jittered = _blend(jittered, mean, factor(CONTRAST))
        if channels == 3:
            jittered = _blend(jittered, _gray(jittered), factor(SATURATION))
        apply = self._happens(batch_size, COLOR_JITTER_PROBABILITY)
        images = apply * jittered + (1.0 - apply) * images
        if channels == 3:
            to_gray = self._happens(batch_size, GRAYSCALE_PROBABILITY)
            gray = ops.broadcast_to(_gray(images), ops.shape(images))
            images = to_gray * gray + (1.0 - to_gray) * images
        return images

    def blur(self, images, probability):
        """Separable 3-tap Gaussian blur with a random sigma per image."""
        batch_size = ops.shape(images)[0]
        sigma = self._uniform(batch_size, *self.blur_sigma)
        side = ops.exp(-0.5 / ops.square(sigma))
        side = ops.reshape(side / (1.0 + 2.0 * side), (-1, 1, 1, 1))
        blurred = images
        for axis in (1, 2):
            neighbours = _shift(blurred, axis, 1) + _shift(blurred, axis, -1)
            blurred = (1.0 - 2.0 * side) * blurred + side * neighbours
        apply = self._happens(batch_size, probability)
        return apply * blurred + (1.0 - apply) * images

    def solarize(self, images, probability):
        """`x -> 1 - x` where `x >= 0.5`, with `probability` per image."""
        batch_size = ops.shape(images)[0]
        solarized = ops.where(images >= 0.5, 1.0 - images, images)
        apply = self._happens(batch_size, probability)
        return apply * solarized + (1.0 - apply) * images

    def augment(self, images, size, scale, view):
        """One view: crop, flip, and the photometric augmentations of view
        `view` (0, 1: the global crops; 2: a local crop)."""
        crops = self.random_resized_crop(images, size, scale)
        if not self.color_augmentation:
            return crops
        crops = self.color_jitter(crops)
        crops = self.blur(crops, BLUR_PROBABILITIES[view])
        if SOLARIZE_PROBABILITIES[view] > 0.0:
            crops = self.solarize(crops, SOLARIZE_PROBABILITIES[view])
        return crops

    def call(self, images):
        """The views of `images`.

        Args:
            images: float tensor `(batch, height, width, channels)` in [0, 1]
                (channels second with `data_format="channels_first"`).

        Returns:
            list of `2 + num_local_crops` float32 tensors: the two global
            crops, then the local crops, in the images' layout.
        """
        if len(images.shape) != 4:
            raise ValueError(
                "MultiCrop takes a batch of images (batch, height, width, "
                f"channels). Received: images of shape {tuple(images.shape)}"
            )
        images = ops.cast(images, "float32")
        if self.data_format == "channels_first":
            # The crops and colour operations work on channels-last images.
            views = self._views(ops.transpose(images, (0, 2, 3, 1)))
            return [ops.transpose(view, (0, 3, 1, 2)) for view in views]
        return self._views(images)

    def _views(self, images):
        """The views of channels-last float32 `images`."""
        views = [
            self.augment(images, self.global_size, self.global_scale, view)
            for view in (0, 1)
        ]
        views += [
            self.augment(images, self.local_size, self.local_scale, 2)
            for _ in range(self.num_local_crops)
        ]
        return views

    def save_own_variables(self, store):
        """Saves the random generator's state with the weights (Keras saves
        a layer's own variables only), so a run restored from a checkpoint
        or `BackupAndRestore` draws the crops it would have drawn."""
        super().save_own_variables(store)
        store[_SEED_STATE_KEY] = self.seed_generator.state

    def load_own_variables(self, store):
        """Restores what `save_own_variables` saved."""
        if _SEED_STATE_KEY in store:
            self.seed_generator.state.assign(store[_SEED_STATE_KEY])

    def compute_output_shape(self, input_shape):
        batch = input_shape[0]
        channels = input_shape[channel_axis(self.data_format, len(input_shape))]

        def shape(size):
            if self.data_format == "channels_first":
                return (batch, channels, size, size)
            return (batch, size, size, channels)

        return [shape(self.global_size)] * 2 + [
            shape(self.local_size)
        ] * self.num_local_crops

    def get_config(self):
        return {
            **super().get_config(),
            "global_size": self.global_size,
            "local_size": self.local_size,
            "num_local_crops": self.num_local_crops,
            "global_scale": list(self.global_scale),
            "local_scale": list(self.local_scale),
            "blur_sigma": list(self.blur_sigma),
            "color_augmentation": self.color_augmentation,
            "seed": self.seed,
            "data_format": self.data_format,
        }
