"""scikit-learn's bundled 8x8 digits: the real data the fast tests train on.

`benchmarks/default_stability.py` reads it too (it puts tests/ on its path).
"""

import numpy as np


def load_digits_data(samples=None):
    """scikit-learn's bundled 8x8 digits: real images, no download.

    Args:
        samples: int or `None`. Keep the first `samples` images (shuffled
            with a fixed seed first), or all 1,797.

    Returns:
        `(images, labels)`: float32 `(samples, 8, 8, 1)` in [0, 1] and int32
        `(samples,)`.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))
    images = (digits.images[order, ..., None] / 16.0).astype("float32")
    labels = digits.target[order].astype("int32")
    if samples is not None:
        images, labels = images[:samples], labels[:samples]
    return images, labels
