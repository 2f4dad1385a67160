"""Two behaviours of `keras.distillation` (Keras 3.15) that a user moving to
`keras_selfdistill.Distiller` should know, measured.

1. `LogitsDistillation()` (its default `loss="kl_divergence"`) resolves the
   string to the function `keras.losses.kl_divergence`, not a
   `keras.losses.KLDivergence` instance, so its softmax-and-T^2 branch is
   skipped: the KL is taken of the temperature-divided *logits* (clipped
   to [1e-7, 1] as if they were probabilities).
2. `keras.distillation.Distiller.compute_loss` ignores `sample_weight`.

Run: `python benchmarks/keras_distillation_pitfalls.py` (any backend; a
few seconds). It prints the numbers quoted in
docs/migrating_from_keras_distillation.md.
"""

import keras
import numpy as np

from keras_selfdistill import Distiller
from keras_selfdistill import losses


def two_models(seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,))
    teacher = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    inputs = keras.Input((4,))
    student = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    return teacher, student


def main():
    print(f"keras {keras.__version__}, backend {keras.backend.backend()}")
    teacher_logits = np.array([[2.0, 0.5, -1.0], [0.2, 1.5, -0.3]], "float32")
    student_logits = np.array([[1.5, 0.7, -0.8], [0.4, 1.0, 0.1]], "float32")
    temperature = 3.0

    keras_default = keras.distillation.LogitsDistillation(temperature=temperature)
    keras_value = float(keras.ops.convert_to_numpy(
        keras_default.compute_loss(teacher_logits, student_logits)
    ))
    ours = losses.softened_kl_divergence(
        teacher_logits, student_logits, temperature=temperature
    )  # Per sample, times T^2.
    ours = float(np.mean(keras.ops.convert_to_numpy(ours)))
    instance = keras.distillation.LogitsDistillation(
        temperature=temperature, loss=keras.losses.KLDivergence()
    )
    instance_value = float(keras.ops.convert_to_numpy(
        instance.compute_loss(teacher_logits, student_logits)
    ))
    print("1. KL(softmax(t/T) || softmax(s/T)) * T^2, T=3, batch mean:")
    print(f"   LogitsDistillation() default ('kl_divergence' string): {keras_value:.6f}")
    print(f"   LogitsDistillation(loss=keras.losses.KLDivergence()):  {instance_value:.6f}")
    print(f"   keras_selfdistill.losses.softened_kl_divergence:         {ours:.6f}")

    teacher, student = two_models(0)
    distiller = keras.distillation.Distiller(
        teacher, student,
        distillation_losses=keras.distillation.LogitsDistillation(
            temperature=temperature, loss=keras.losses.KLDivergence()
        ),
        student_loss_weight=0.5,
    )
    distiller.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x = np.random.default_rng(0).normal(size=(4, 4)).astype("float32")
    y = np.array([0, 1, 2, 0])
    y_pred = distiller(x)
    weights = {"none": None, "[1, 0, 0, 0]": np.array([1.0, 0, 0, 0], "float32")}
    print("2. keras.distillation.Distiller.compute_loss with sample_weight:")
    for label, weight in weights.items():
        value = float(keras.ops.convert_to_numpy(distiller.compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=weight
        )))
        print(f"   sample_weight={label}: {value:.6f}")
    ours = Distiller(*two_models(0), alpha=0.5, temperature=temperature)
    outputs = ours.training_outputs(x)
    for label, weight in weights.items():
        value = float(keras.ops.convert_to_numpy(ours.compute_loss(
            x=x, y=y, y_pred=outputs, sample_weight=weight
        )))
        print(f"   keras_selfdistill.Distiller, sample_weight={label}: {value:.6f}")


if __name__ == "__main__":
    main()
