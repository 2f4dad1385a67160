"""Mixed precision: half-precision layers, float32 losses and state.

Under `keras.mixed_precision.set_global_policy("mixed_float16")` (or
`"mixed_bfloat16"`) layers compute in half precision and keep float32
weights. Every model must then still train without NaN, compute its loss
terms in float32 (so large logits cannot overflow a half-precision
softmax), and keep state it averages over steps (an EMA teacher) at float32
precision.
"""

import keras
import numpy as np
import pytest
from backend_utils import gradients
from model_families import FAMILIES
from model_families import classifier

from keras_selfdistill import EMATeacher
from keras_selfdistill import losses

POLICIES = ["mixed_float16", "mixed_bfloat16"]

#: The largest logits each half type holds (float16's max is 65504;
#: bfloat16 has float32's range).
LARGE_LOGITS = {"float16": 6e4, "bfloat16": 1e30}


@pytest.fixture(params=POLICIES)
def policy(request):
    """Sets the global policy for one test, then restores the previous one."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(request.param)
    try:
        yield keras.mixed_precision.global_policy()
    finally:
        keras.mixed_precision.set_global_policy(previous)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_trains_without_nan_with_float32_losses(family, policy, digits):
    images, labels = digits[0][:96], digits[1][:96]
    keras.utils.set_random_seed(0)
    model = FAMILIES[family]()
    model.compile(optimizer=keras.optimizers.Adam(0.01))

    outputs = model.training_outputs(images[:32], training=False)
    logits = keras.tree.flatten(outputs)
    assert any(keras.backend.standardize_dtype(x.dtype) == policy.compute_dtype
               for x in logits)  # The layers do compute in half precision.
    loss = model.compute_loss(images[:32], labels[:32], outputs, training=False)
    assert keras.backend.standardize_dtype(loss.dtype) == "float32"

    history = model.fit(images, labels, batch_size=32, epochs=2, verbose=0)
    for key, values in history.history.items():
        assert np.all(np.isfinite(values)), (key, values)
    for weight in model.weights:
        assert np.all(np.isfinite(keras.ops.convert_to_numpy(weight))), weight.path


@pytest.mark.parametrize("dtype", sorted(LARGE_LOGITS))
def test_loss_terms_are_float32_and_finite_for_large_half_logits(dtype):
    magnitude = LARGE_LOGITS[dtype]
    pattern = np.array([[1.0, -1.0, 0.5], [-0.5, 1.0, -1.0]], "float32")
    labels = np.array([0, 2])
    half_logits = [
        keras.Variable(pattern * magnitude, dtype=dtype),
        keras.Variable(pattern[::-1] * magnitude, dtype=dtype),
    ]
    float32_logits = [
        keras.ops.cast(logits, "float32") for logits in half_logits
    ]

    def total(logits):
        return losses.self_distillation_loss(labels, logits, temperature=3.0)["total"]

    for terms in (
        losses.self_distillation_loss(labels, half_logits, temperature=3.0),
        losses.distillation_objective(labels, *half_logits, temperature=3.0),
        losses.mutual_learning_loss(labels, half_logits, temperature=3.0),
    ):
        for name, value in terms.items():
            for tensor in keras.tree.flatten(value):
                assert keras.backend.standardize_dtype(tensor.dtype) == "float32"
                assert np.all(np.isfinite(keras.ops.convert_to_numpy(tensor))), name
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(total(half_logits)),
        keras.ops.convert_to_numpy(total(float32_logits)),
        rtol=1e-6,
    )
    for gradient in gradients(lambda: total(half_logits), half_logits):
        assert np.all(np.isfinite(gradient.astype("float32")))


def test_ema_teacher_averages_at_float32_precision_under_mixed_float16(digits):
    """A momentum of 0.99 moves the teacher by 1 % of the gap each step,
    far below float16 resolution: rounding the teacher (or the student it
    reads) to the compute dtype would freeze or distort the average."""
    images, labels = digits[0][:160], digits[1][:160]
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(1)
        student = classifier(16, "student")
        model = EMATeacher(student, momentum=0.99)
        model.compile(optimizer=keras.optimizers.Adam(0.01))
        averages = [np.asarray(w, "float64") for w in student.get_weights()]
        for step in range(5):
            batch = slice(step * 32, (step + 1) * 32)
            model.train_on_batch(images[batch], labels[batch])
            averages = [
                0.99 * average + 0.01 * np.asarray(weight, "float64")
                for average, weight in zip(averages, student.get_weights())
            ]
        teacher = model.teacher.get_weights()
    finally:
        keras.mixed_precision.set_global_policy(previous)
    for actual, expected in zip(teacher, averages):
        assert actual.dtype == np.float32
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-7)


def backbone_with_float32_logits():
    """Keras's advice for mixed precision: the output layer in float32."""
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", name="stage1")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="stage2")(x)
    pooled = keras.layers.GlobalAveragePooling2D()(x)
    logits = keras.layers.Dense(10, dtype="float32", name="logits")(pooled)
    return keras.Model(inputs, logits)


@pytest.mark.parametrize("user_logits", ["float32", "policy"])
def test_head_logits_follow_the_users_output_dtype(policy, user_logits, tmp_path):
    from keras_selfdistill import SelfDistillModel
    from keras_selfdistill import testing

    if user_logits == "float32":
        backbone = backbone_with_float32_logits()
    elif keras.backend.backend() != "tensorflow":
        pytest.skip("the policy-following case is backend-independent: run "
                    "once, in the TensorFlow pass")
    else:
        backbone = FAMILIES["SelfDistillModel"]().export_backbone()
        backbone = keras.Model(backbone.input, backbone.output)
    output_dtype = keras.backend.standardize_dtype(backbone.output.dtype)
    taps = ["stage1"] if user_logits == "float32" else [
        layer.name for layer in backbone.layers
        if isinstance(layer, keras.layers.Conv2D)
    ][:1]
    model = SelfDistillModel.from_backbone(backbone, taps=taps)
    images = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype("float32")
    logits = model.head_outputs(images)["logits"]
    dtypes = [keras.backend.standardize_dtype(x.dtype) for x in logits]
    assert dtypes == [output_dtype, output_dtype]
    head = model.get_layer("head_1")
    # The head's blocks still compute in half precision.
    assert head.bottleneck.compute_dtype == policy.compute_dtype
    if user_logits == "float32":
        restored = testing.run_model_saving_test(model, images, atol=1e-2)
        assert restored.get_layer("head_1").classifier.compute_dtype == "float32"
