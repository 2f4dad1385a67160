"""Offline Fashion-MNIST: the demo's and the benchmarks' real data.

Not part of the installed library: `examples/fashion_mnist_demo.py` imports
it from this folder, and the benchmarks put this folder on their path.

Debian's `dataset-fashion-mnist` package ships the original Fashion-MNIST
files (MIT licence) in `/usr/share/datasets/fashion-mnist/`; reading them
needs no network. Where they are absent (a laptop, Colab), the loader falls
back to `keras.datasets.fashion_mnist.load_data()`, which downloads once.
"""

import gzip
import os

import numpy as np

DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

FASHION_MNIST_CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


def read_idx(path) -> np.ndarray:
    """Reads one IDX file (optionally gzip-compressed) into a numpy array.

    IDX is the format of MNIST and Fashion-MNIST: two zero bytes, a type
    byte (0x08 = unsigned byte), a byte giving the number of dimensions, one
    big-endian int32 per dimension, then the data.

    Args:
        path: str. Path to a `.gz` or plain IDX file.

    Returns:
        A `uint8` array with the file's shape.

    Raises:
        ValueError: if the file is not an unsigned-byte IDX file or is cut
            short.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as file:
        data = file.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(
            f"{path} is not an unsigned-byte IDX file (magic bytes "
            f"{data[:4]!r}, expected b'\\x00\\x00\\x08' then the rank)."
        )
    rank = data[3]
    header = 4 + 4 * rank
    shape = tuple(
        int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(rank)
    )
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise ValueError(
            f"{path} should hold {expected} values for shape {shape}, but "
            f"holds {len(data) - header}."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def load_fashion_mnist(directory=DEBIAN_FASHION_MNIST_DIR, allow_download=True):
    """Loads Fashion-MNIST as `((x_train, y_train), (x_test, y_test))`.

    Args:
        directory: str. Folder with the four original `.gz` files. Defaults
            to where Debian's `dataset-fashion-mnist` package puts them.
        allow_download: bool. If the files are missing, fall back to
            `keras.datasets.fashion_mnist.load_data()` (a download). With
            `False`, a missing file raises instead. Defaults to `True`.

    Returns:
        `uint8` images `(60000, 28, 28)` / `(10000, 28, 28)` and `uint8`
        labels, exactly as `keras.datasets.fashion_mnist.load_data()`.

    Example:

    ```python
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist()
    ```
    """
    paths = {key: os.path.join(directory, name) for key, name in _FILES.items()}
    missing = [path for path in paths.values() if not os.path.exists(path)]
    if missing:
        if not allow_download:
            raise FileNotFoundError(
                f"Fashion-MNIST files not found: {missing}. Install them "
                "with `apt-get install -y dataset-fashion-mnist`, or pass "
                "allow_download=True."
            )
        import keras

        return keras.datasets.fashion_mnist.load_data()
    arrays = {key: read_idx(path) for key, path in paths.items()}
    return (
        (arrays["train_images"], arrays["train_labels"]),
        (arrays["test_images"], arrays["test_labels"]),
    )


def fashion_mnist_source(directory=DEBIAN_FASHION_MNIST_DIR) -> str:
    """Where `load_fashion_mnist` will read from: the folder or "download"."""
    found = all(
        os.path.exists(os.path.join(directory, name)) for name in _FILES.values()
    )
    return directory if found else "keras.datasets download"
