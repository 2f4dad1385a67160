"""Shared fixtures: tiny real data, loaded once per test session."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from digits_data import load_digits_data  # noqa: E402


@pytest.fixture(scope="session")
def digits():
    """All 1,797 scikit-learn digits, shuffled: (images, labels)."""
    return load_digits_data()


@pytest.fixture(scope="session")
def digits_split(digits):
    """A fixed train/test split of the digits."""
    images, labels = digits
    return (images[:1400], labels[:1400]), (images[1400:], labels[1400:])


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
