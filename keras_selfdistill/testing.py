"""Test helpers for layers and models built on this package.

Every public class in this package is checked with the same two helpers, so
"it saves and loads" means the same thing everywhere; a user's own head,
adapter or model subclass can be checked the same way:

```python
from keras_selfdistill.testing import run_model_saving_test
```
"""

import json
import os
import tempfile

import keras
import numpy as np


def run_serialization_test(instance):
    """Checks `get_config` -> `from_config` -> `get_config` is the identity.

    Args:
        instance: a layer or model of this package.

    Returns:
        The revived instance.
    """
    config = instance.get_config()
    json.dumps(config)  # A config must be plain JSON.
    revived = instance.__class__.from_config(config)
    revived_config = revived.get_config()
    assert json.dumps(config, sort_keys=True) == json.dumps(
        revived_config, sort_keys=True
    ), "Config changed through from_config()."
    return revived


def run_model_saving_test(model, inputs, atol=1e-6):
    """Saves `model` as `.keras`, reloads it safely, and compares outputs.

    The reload uses `keras.saving.load_model(path, safe_mode=True)` with no
    `custom_objects`: importing this package must be all a user needs.

    Args:
        model: a built `keras.Model`.
        inputs: a batch to predict on.
        atol: float. Largest allowed absolute difference.

    Returns:
        The reloaded model.
    """
    expected = model.predict(inputs, verbose=0)
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "model.keras")
        model.save(path)
        restored = keras.saving.load_model(path, safe_mode=True)
    actual = restored.predict(inputs, verbose=0)
    for want, got in zip(
        keras.tree.flatten(expected), keras.tree.flatten(actual)
    ):
        np.testing.assert_allclose(got, want, atol=atol)
    assert type(restored) is type(model)
    return restored
