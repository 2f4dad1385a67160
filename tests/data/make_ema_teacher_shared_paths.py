"""Writes tests/data/ema_teacher_shared_paths.{keras,npz}: an `EMATeacher`
saved before its teacher copy had its own layer names (its variables then
had the student's paths), and the student's and teacher's outputs.

Made at commit 9d2c72e, from the repository root:

    python tests/data/make_ema_teacher_shared_paths.py

tests/models/test_ema_teacher.py loads the file with today's code.
"""
import os
os.environ["KERAS_BACKEND"] = "tensorflow"
import keras, numpy as np
from keras_selfdistill import EMATeacher
keras.utils.set_random_seed(0)
inputs = keras.Input((6, 6, 1))
x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
x = keras.layers.BatchNormalization(name="bn")(x)
x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
student = keras.Model(inputs, keras.layers.Dense(3, name="logits")(x), name="student")
model = EMATeacher(student, momentum=0.5)
model.compile(optimizer=keras.optimizers.SGD(0.5))
rng = np.random.default_rng(0)
x = rng.normal(size=(8, 6, 6, 1)).astype("float32")
y = rng.integers(0, 3, size=8)
model.fit(x, y, batch_size=4, epochs=2, verbose=0)
student_logits = model.predict(x, verbose=0)
teacher_logits = model.teacher.predict(x, verbose=0)
assert np.abs(student_logits - teacher_logits).max() > 1e-3
model.save("tests/data/ema_teacher_shared_paths.keras")
np.savez("tests/data/ema_teacher_shared_paths.npz", x=x,
         student_logits=student_logits, teacher_logits=teacher_logits)
