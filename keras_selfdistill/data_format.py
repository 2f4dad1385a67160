"""The layout of map tensors: where the channels and the spatial axes are.

Keras's convolution layers take `data_format="channels_last"` (`(batch,
*spatial, channels)`) or `"channels_first"` (`(batch, channels, *spatial)`),
`None` meaning `keras.config.image_data_format()`. The package's layers and
shape checks read a map through these helpers so that a model built in
either layout gets heads, crops and checks in that layout (channels first is
the torch backend's native layout for convolutions).
"""

import keras

from keras_selfdistill.validation import check_choice

#: The values of `data_format`, Keras's.
DATA_FORMATS = ("channels_last", "channels_first")


def resolve_data_format(data_format):
    """`data_format`, or Keras's `image_data_format()` where it is `None`.

    Args:
        data_format: `"channels_last"`, `"channels_first"` or `None`.

    Returns:
        `"channels_last"` or `"channels_first"`.
    """
    if data_format is None:
        data_format = keras.config.image_data_format()
    check_choice("data_format", data_format, DATA_FORMATS)
    return data_format


def channel_axis(data_format, rank) -> int:
    """The channel axis of a rank-`rank` tensor: 1 for channels-first maps
    (rank > 2), else the last.

    Args:
        data_format: `"channels_last"` or `"channels_first"`.
        rank: int, the tensor's rank with the batch axis.

    Returns:
        `1` or `-1`.
    """
    return 1 if data_format == "channels_first" and rank > 2 else -1


def spatial_shape(shape, data_format) -> tuple:
    """The spatial sizes of a map of shape `shape` (batch axis included).

    Args:
        shape: tuple, `(batch, *spatial, channels)` or, channels-first,
            `(batch, channels, *spatial)`; a vector `(batch, features)` has
            none.
        data_format: `"channels_last"` or `"channels_first"`.

    Returns:
        A tuple of the spatial sizes (empty for a vector).
    """
    shape = tuple(shape)
    if len(shape) <= 2:
        return ()
    return shape[2:] if data_format == "channels_first" else shape[1:-1]
