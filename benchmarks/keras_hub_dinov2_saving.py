"""keras-hub 0.32's DINOv2 and `.keras` saving after training, without
this package: a plain Keras model around a small `DINOV2Backbone` is
trained a few steps, saved, reloaded, and its predictions compared.

keras-hub is not a dependency (docs/backbones.md says how it was installed
for this); run: `KERAS_BACKEND=jax python benchmarks/keras_hub_dinov2_saving.py`.
"""

import keras
import keras_hub
import numpy as np


def main(path="/tmp/dinov2_plain.keras"):
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).uniform(size=(4, 16, 16, 3)).astype("float32")
    backbone = keras_hub.models.DINOV2Backbone(
        patch_size=4, num_layers=2, hidden_dim=8, num_heads=2,
        intermediate_dim=16, image_shape=(16, 16, 3),
        position_embedding_shape=(16, 16, 3),
    )
    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, keras.layers.Dense(10)(
        keras.layers.GlobalAveragePooling1D()(backbone(inputs))))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, np.arange(4), epochs=3, verbose=0)
    before = model.predict(x, verbose=0)
    model.save(path)
    after = keras.saving.load_model(path).predict(x, verbose=0)
    print(f"keras {keras.__version__}, keras-hub {keras_hub.__version__}, "
          f"backend {keras.backend.backend()}")
    print(f"max |prediction after reload - before|: {np.abs(after - before).max():.4f}")


if __name__ == "__main__":
    main()
