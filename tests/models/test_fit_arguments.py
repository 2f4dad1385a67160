"""`fit` and `evaluate` read their arguments by name, however they are given.

The label check and the `mode="auto"` directions bind the call to Keras's
own signature, so positional and keyword calls behave the same.
"""

import keras
import numpy as np
import pytest
from model_families import FAMILIES


def test_positional_callbacks_get_the_direction_of_a_head_metric(digits):
    images, labels = digits[0][:32], digits[1][:32]
    model = FAMILIES["SelfDistillModel"]()
    model.compile(optimizer="sgd", metrics=["accuracy"])
    stopping = keras.callbacks.EarlyStopping(monitor="head_1_accuracy", mode="auto")
    # fit(x, y, batch_size, epochs, verbose, callbacks)
    model.fit(images, labels, 16, 1, 0, [stopping])
    assert stopping.mode == "max"


@pytest.mark.parametrize("positional", [True, False])
def test_out_of_range_labels_are_refused_before_training(digits, positional):
    images = digits[0][:8]
    labels = np.full(8, 10)  # 10 classes: ids 0..9
    model = FAMILIES["SelfDistillModel"]()
    model.compile(optimizer="sgd")
    before = [weight.copy() for weight in model.get_weights()]
    with pytest.raises(ValueError, match="Received: y with value 10 at index 0"):
        if positional:
            model.fit(images, labels, 8, 1, 0)
        else:
            model.fit(x=images, y=labels, epochs=1, verbose=0)
    for now, then in zip(model.get_weights(), before):
        np.testing.assert_array_equal(now, then)
