"""Writes tests/data/separable_heads_0_1_0.{keras,npz}: two AuxiliaryHeads
(images, sequences) saved by keras-selfdistill 0.1.0, whose blocks were
keras.layers.SeparableConv2D / SeparableConv1D, and their outputs.

Made at commit 69b72c0, from the repository root:

    git stash; git checkout 69b72c0 -- keras_selfdistill
    python tests/data/make_separable_heads_0_1_0.py
    git checkout HEAD -- keras_selfdistill; git stash pop

tests/layers/test_separable_convolution.py loads the file with today's code.
"""
import os
os.environ["KERAS_BACKEND"] = "tensorflow"
import keras, numpy as np
from keras_selfdistill import AuxiliaryHead
keras.utils.set_random_seed(0)
images = keras.Input((8, 8, 2), name="images")
sequences = keras.Input((9, 3), name="sequences")
outputs = [AuxiliaryHead(4, width=4, num_downsampling=2, name="image_head")(images),
           AuxiliaryHead(4, width=4, num_downsampling=2, name="sequence_head")(sequences)]
model = keras.Model([images, sequences], outputs)
rng = np.random.default_rng(0)
x = [rng.normal(size=(3, 8, 8, 2)).astype("float32"), rng.normal(size=(3, 9, 3)).astype("float32")]
y = model.predict(x, verbose=0)
model.save("tests/data/separable_heads_0_1_0.keras")
np.savez("tests/data/separable_heads_0_1_0.npz", images=x[0], sequences=x[1], image_logits=y[0], sequence_logits=y[1])
