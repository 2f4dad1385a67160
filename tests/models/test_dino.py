"""DINO: the loss, centre and temperature vs numpy; gradients; fit, saving."""

import os
import warnings

import keras
import numpy as np
import pytest
from backend_utils import gradients
from backend_utils import tensorflow_pass_only

from keras_selfdistill import CollapseMonitor
from keras_selfdistill import DINO
from keras_selfdistill import DINOHead
from keras_selfdistill import MultiCrop
from keras_selfdistill import losses
from keras_selfdistill.callbacks import MomentumScheduler
from keras_selfdistill.models.training_inputs import TrainingInputs
from keras_selfdistill.testing import run_model_saving_test
from keras_selfdistill.testing import run_serialization_test

K = 12
IMAGES = np.random.default_rng(0).uniform(size=(8, 10, 10, 3)).astype("float32")


def numpy_of(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype="float64")


def numpy_log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def backbone(name="backbone"):
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    features = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, features, name=name)


def make_dino(seed=0, color_augmentation=False, **kwargs):
    """A tiny DINO; photometric augmentations off unless asked (op by op,
    they are most of a step's time; the crops stay random)."""
    keras.utils.set_random_seed(seed)
    arguments = dict(
        output_dim=K, hidden_dim=8, bottleneck_dim=4,
        multi_crop=MultiCrop(global_size=8, local_size=4, num_local_crops=2, seed=seed,
                             color_augmentation=color_augmentation),
        warmup_teacher_temperature_epochs=2,
    )
    arguments.update(kwargs)
    return DINO(backbone(), **arguments)


# -- the math vs numpy ------------------------------------------------- #


def numpy_dino_terms(student, teacher, center, tau_s, tau_t):
    """DINO's loss by its definition: a loop over (teacher crop, other crop)."""
    teacher_log_p = numpy_log_softmax((teacher - center) / tau_t)
    teacher_p = np.exp(teacher_log_p)
    student_log_p = numpy_log_softmax(student / tau_s)
    losses_, kls = [], []
    for i in range(teacher.shape[0]):
        entropy = -(teacher_p[i] * teacher_log_p[i]).sum(-1)
        for v in range(student.shape[0]):
            if v == i:
                continue
            cross = -(teacher_p[i] * student_log_p[v]).sum(-1)
            losses_.append(cross.mean())
            kls.append((cross - entropy).mean())
    entropy = -(teacher_p * teacher_log_p).sum(-1).mean()
    return np.mean(losses_), entropy, np.mean(kls)


def test_loss_entropy_and_kl_match_numpy_on_a_fixed_batch():
    rng = np.random.default_rng(1)
    student = rng.normal(size=(5, 3, K)).astype("float32")
    teacher = rng.normal(size=(2, 3, K)).astype("float32")
    center = rng.normal(size=(K,)).astype("float32") * 0.1
    terms = losses.dino_loss_terms(student, teacher, center, 0.1, 0.05)
    loss, entropy, kl = numpy_dino_terms(
        student.astype("float64"), teacher.astype("float64"), center, 0.1, 0.05)
    np.testing.assert_allclose(numpy_of(terms["loss"]), loss, rtol=1e-5)
    np.testing.assert_allclose(numpy_of(terms["teacher_entropy"]), entropy, rtol=1e-5)
    np.testing.assert_allclose(numpy_of(terms["kl_divergence"]), kl, rtol=1e-4, atol=1e-6)


def test_loss_is_finite_for_huge_logits():
    student = np.full((3, 2, K), 1e4, "float32")
    student[..., 0] = -1e4
    teacher = np.full((2, 2, K), -1e4, "float32")
    teacher[..., 1] = 1e4
    terms = losses.dino_loss_terms(student, teacher, np.zeros(K, "float32"))
    assert all(np.isfinite(numpy_of(value)) for value in terms.values())


def test_center_update_matches_numpy():
    rng = np.random.default_rng(2)
    center = rng.normal(size=(K,)).astype("float32")
    teacher = rng.normal(size=(2, 3, K)).astype("float32")
    expected = 0.9 * center + 0.1 * teacher.reshape(-1, K).mean(0)
    np.testing.assert_allclose(
        numpy_of(losses.updated_center(center, teacher, 0.9)), expected, rtol=1e-5)


def test_teacher_temperature_warms_up_linearly_then_stays():
    got = [float(numpy_of(losses.teacher_temperature_at(e, 0.04, 0.07, 3)))
           for e in range(6)]
    np.testing.assert_allclose(got, [0.04, 0.05, 0.06, 0.07, 0.07, 0.07], rtol=1e-6)
    assert float(numpy_of(losses.teacher_temperature_at(0, 0.04, 0.07, 0))) == (
        pytest.approx(0.07))


# -- the model ----------------------------------------------------------- #


def test_a_training_pass_returns_the_old_centre_and_moves_it_by_the_teacher_mean():
    model = make_dino()
    model.center.assign(np.linspace(-1, 1, K).astype("float32"))
    before = numpy_of(model.center)
    outputs = model(TrainingInputs(IMAGES), training=True)
    assert tuple(outputs["student"].shape) == (4, 8, K)  # 2 global + 2 local
    assert tuple(outputs["teacher"].shape) == (2, 8, K)
    np.testing.assert_allclose(numpy_of(outputs["center"]), before)
    teacher = numpy_of(outputs["teacher"]).reshape(-1, K)
    np.testing.assert_allclose(
        numpy_of(model.center), 0.9 * before + 0.1 * teacher.mean(0), rtol=1e-5, atol=1e-6)
    model(TrainingInputs(IMAGES), training=False)  # evaluate: no update
    np.testing.assert_allclose(
        numpy_of(model.center), 0.9 * before + 0.1 * teacher.mean(0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("epoch, last_layer_learns", [(0, False), (1, True)])
def test_gradient_reaches_only_the_student_and_the_last_layer_after_the_freeze(
        epoch, last_layer_learns):
    model = make_dino(freeze_last_layer_epochs=1)
    model.set_epoch(epoch)
    student = model.backbone.trainable_weights + model.head.trainable_weights
    teacher = model.teacher_backbone.weights + model.teacher_head.weights
    teacher = [v for v in teacher if "float" in str(v.dtype)]

    def loss():
        y_pred = model(TrainingInputs(IMAGES), training=True)
        return model.compute_loss(y_pred=y_pred)

    grads = gradients(loss, student + teacher)
    student_grads, teacher_grads = grads[:len(student)], grads[len(student):]
    assert all(np.all(g == 0) for g in teacher_grads)
    by_path = {v.path: g for v, g in zip(student, student_grads)}
    last = by_path.pop(model.head.last_layer_kernel.path)
    assert np.any(last != 0) == last_layer_learns
    assert all(np.any(g != 0) for g in by_path.values())


@tensorflow_pass_only("the same few ops on every backend; the resume and predict tests run them on each")
def test_teacher_is_the_moving_average_of_the_student():
    model = make_dino(momentum=0.8)
    start = [numpy_of(w) for w in model.backbone.weights]
    model.compile(optimizer=keras.optimizers.SGD(0.5), run_eagerly=True)
    model.train_on_batch(IMAGES)
    student = [numpy_of(w) for w in model.backbone.weights]
    assert any(not np.allclose(a, b) for a, b in zip(start, student))
    for got, old, new in zip(model.teacher_backbone.weights, start, student):
        np.testing.assert_allclose(numpy_of(got), 0.8 * old + 0.2 * new, rtol=1e-5, atol=1e-6)


def test_fit_without_labels_reports_collapse_numbers_and_follows_the_schedules():
    # Photometric augmentations too, except on JAX, where they triple the
    # XLA compile of this test (they run on JAX in the MultiCrop tests).
    model = make_dino(teacher_temperature=0.07, warmup_teacher_temperature=0.04,
                      color_augmentation=keras.backend.backend() != "jax")
    # The backend's compiled step: a tf.function graph on TensorFlow (XLA
    # there compiles for ~50 s on a CPU: checked by hand, see docs/dino.md),
    # XLA on JAX, the plain step on torch.
    model.compile(optimizer="adam", jit_compile=keras.backend.backend() == "jax")
    history = model.fit(IMAGES, batch_size=8, epochs=3, verbose=0,
                        callbacks=[MomentumScheduler()]).history
    for key in ("loss", "teacher_entropy", "kl_divergence"):
        assert len(history[key]) == 3 and np.all(np.isfinite(history[key]))
    np.testing.assert_allclose(history["teacher_temperature"], [0.04, 0.055, 0.07], rtol=1e-5)
    assert history["momentum"][-1] == pytest.approx(1.0)
    assert float(numpy_of(model.epoch)) == 2.0
    assert np.any(numpy_of(model.center) != 0)
    if keras.backend.backend() != "jax":  # a second XLA compile there
        loss = model.evaluate(IMAGES, batch_size=8, verbose=0, return_dict=True)
        assert set(loss) == {"loss", "teacher_entropy", "kl_divergence"}


@pytest.mark.parametrize("serve", ["teacher", "student"])
def test_predict_serves_backbone_features_and_export_copies_that_backbone(serve):
    model = make_dino(serve=serve)
    kernel = model.backbone.get_layer("conv").kernel
    kernel.assign(numpy_of(kernel) * 2.0)  # the student moves, the teacher not
    served = model.predict(IMAGES, verbose=0)
    source = model.teacher_backbone if serve == "teacher" else model.backbone
    np.testing.assert_allclose(served, numpy_of(source(IMAGES, training=False)),
                               rtol=1e-5, atol=1e-5)
    other = model.backbone if serve == "teacher" else model.teacher_backbone
    assert not np.allclose(served, numpy_of(other(IMAGES, training=False)), atol=1e-3)
    exported = model.export_backbone(serve)
    assert isinstance(exported, keras.Model) and not isinstance(exported, DINO)
    np.testing.assert_allclose(numpy_of(exported(IMAGES, training=False)), served,
                               rtol=1e-5, atol=1e-5)
    exported.get_layer("conv").kernel.assign(np.zeros(kernel.shape))
    np.testing.assert_allclose(model.predict(IMAGES, verbose=0), served, atol=1e-6)


def test_teacher_and_student_variables_have_distinct_paths():
    """The teacher is a renamed copy: every variable path of the model is
    unique (Keras's get_state_tree refuses duplicates), and the exported
    teacher keeps the student's layer names."""
    model = make_dino()
    paths = [variable.path for variable in model.variables]
    assert len(paths) == len(set(paths))
    assert model.export_backbone("teacher").get_layer("bn") is not None


def test_saves_and_loads_with_centre_epoch_and_teacher():
    model = make_dino(normalize_last_layer=False, use_batch_norm_in_head=True)
    model.compile(optimizer="adam", run_eagerly=True)
    model.fit(IMAGES, batch_size=8, epochs=2, verbose=0)
    run_serialization_test(model)
    restored = run_model_saving_test(model, IMAGES)
    for name in ("center", "epoch", "momentum"):
        np.testing.assert_array_equal(numpy_of(getattr(restored, name)),
                                      numpy_of(getattr(model, name)))
    for a, b in zip(restored.teacher_head.weights, model.teacher_head.weights):
        np.testing.assert_array_equal(numpy_of(a), numpy_of(b))
    restored.fit(IMAGES, batch_size=8, epochs=1, verbose=0)  # keeps training


class CrashAt(keras.callbacks.Callback):
    def __init__(self, epoch, batch):
        super().__init__()
        self.epoch, self.batch, self.current = epoch, batch, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.current, batch) == (self.epoch, self.batch):
            raise RuntimeError("simulated crash")


def test_fit_interrupted_mid_epoch_resumes_exactly_from_the_backup(tmp_path):
    def build(seed):
        model = make_dino(seed=0)
        keras.utils.set_random_seed(seed)
        model.compile(optimizer=keras.optimizers.Adam(0.01), run_eagerly=True)
        return model

    def train(model, callbacks):
        model.fit(IMAGES, batch_size=4, epochs=2, shuffle=False, verbose=0,
                  callbacks=callbacks)

    reference = build(0)
    train(reference, [])
    backup = str(tmp_path / "backup")
    crashed = build(0)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(crashed, [keras.callbacks.BackupAndRestore(backup), CrashAt(1, 0)])
    assert os.path.exists(os.path.join(backup, "latest.weights.h5"))
    resumed = build(0)
    resumed.multi_crop.seed_generator.state.assign([7, 7])  # the backup restores it
    train(resumed, [keras.callbacks.BackupAndRestore(backup)])
    for a, b in zip(resumed.weights, reference.weights):
        np.testing.assert_allclose(numpy_of(a), numpy_of(b), rtol=1e-4, atol=1e-5,
                                   err_msg=a.path)


@tensorflow_pass_only("a callback reading the history")
def test_collapse_monitor_warns_on_a_uniform_teacher():
    # A huge teacher temperature flattens the teacher: entropy = log K.
    model = make_dino(teacher_temperature=1e3, warmup_teacher_temperature=1e3)
    model.compile(optimizer="adam", run_eagerly=True)
    monitor = CollapseMonitor()
    with pytest.warns(RuntimeWarning, match="uniform collapse"):
        model.fit(IMAGES, batch_size=8, epochs=1, verbose=0, callbacks=[monitor])
    assert monitor.collapses[0][1] == "uniform"


@tensorflow_pass_only("thresholds on a number")
@pytest.mark.parametrize("entropy, kind", [(0.001, "one-hot"), (np.log(K), "uniform"),
                                            (1.0, None)])
def test_collapse_monitor_thresholds(entropy, kind):
    monitor = CollapseMonitor(num_outputs=K, stop_training=True)
    monitor.set_model(make_dino())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        monitor.on_epoch_end(0, {"teacher_entropy": entropy})
    assert len(caught) == (kind is not None)
    assert getattr(monitor.model, "stop_training", False) == (kind is not None)
    if kind:
        assert f"{kind} collapse" in str(caught[0].message)


# -- the layers ----------------------------------------------------------- #


def test_head_outputs_cosines_to_weight_normalised_prototypes():
    head = DINOHead(K, hidden_dim=8, bottleneck_dim=4, num_layers=2)
    x = np.random.default_rng(3).normal(size=(5, 6)).astype("float32")
    out = numpy_of(head(x))
    dense_0, dense_1 = head.mlp_layers[0], head.mlp_layers[2]
    h = x @ numpy_of(dense_0.kernel) + numpy_of(dense_0.bias)
    h = numpy_of(keras.activations.gelu(h.astype("float32")))
    h = h @ numpy_of(dense_1.kernel) + numpy_of(dense_1.bias)
    h = h / np.linalg.norm(h, axis=-1, keepdims=True)
    v = numpy_of(head.last_layer_kernel)
    np.testing.assert_allclose(out, h @ (v / np.linalg.norm(v, axis=0)), atol=1e-5)
    assert np.abs(out).max() <= 1.0 + 1e-6
    run_serialization_test(head)


def test_head_saves_and_loads_with_its_predictions():
    inputs = keras.Input((6,))
    model = keras.Model(inputs, DINOHead(K, hidden_dim=8, bottleneck_dim=4, num_layers=2)(inputs))
    run_model_saving_test(model, np.random.default_rng(4).normal(size=(5, 6)).astype("float32"))


def test_multi_crop_is_seeded_in_range_and_keeps_a_constant_image_constant():
    crops = [numpy_of(c) for c in MultiCrop(8, 4, 2, seed=3)(IMAGES)]
    again = [numpy_of(c) for c in MultiCrop(8, 4, 2, seed=3)(IMAGES)]
    other = [numpy_of(c) for c in MultiCrop(8, 4, 2, seed=4)(IMAGES)]
    assert all(np.array_equal(a, b) for a, b in zip(crops, again))
    assert not np.allclose(crops[0], other[0])
    assert all(c.min() >= 0.0 and c.max() <= 1.0 for c in crops)
    constant = np.full((2, 10, 10, 3), 0.3, "float32")
    plain = MultiCrop(8, 4, 2, color_augmentation=False, seed=0)(constant)
    assert all(np.allclose(numpy_of(c), 0.3, atol=1e-6) for c in plain)


def test_multi_crop_resamples_a_ramp_into_a_monotone_ramp():
    ramp = np.tile(np.linspace(0, 1, 10, dtype="float32")[None, None, :, None],
                   (4, 10, 1, 3))
    crops = MultiCrop(8, 4, 0, global_scale=(0.3, 0.6), color_augmentation=False,
                      seed=0)(ramp)
    for crop in crops:
        row = numpy_of(crop)[:, 0, :, 0]
        steps = np.diff(row, axis=1)
        # Monotone (flipped or not); an edge pixel may repeat (clamped).
        assert np.all((steps >= -1e-6).all(1) | (steps <= 1e-6).all(1))
        assert np.all(np.ptp(row, axis=1) > 0.05)
        # At most sqrt(0.6 * 4/3) of the width (0.87 of the ramp): not all of it.
        assert np.all(np.ptp(row, axis=1) < 0.9)


@tensorflow_pass_only("the 1-channel branches are Python on static shapes; the ops are "
                      "those of the 3-channel MultiCrop tests, which run on every backend")
def test_multi_crop_on_one_channel_jitters_and_solarizes_the_grey_values():
    # Fashion-MNIST-sized grey images, constant 0.8: every view stays
    # spatially constant (crop, flip and blur keep a constant constant), the
    # brightness jitter (p = 0.8, factor in [0.6, 1.4]) moves the value to
    # [0.48, 1] and only solarize (global crop 2, p = 0.2) can take it below.
    grey = np.full((64, 28, 28, 1), 0.8, "float32")
    crops = [numpy_of(c) for c in MultiCrop(28, 12, 2, seed=0)(grey)]
    assert [c.shape for c in crops] == [(64, 28, 28, 1)] * 2 + [(64, 12, 12, 1)] * 2
    values = [c[:, 0, 0, 0] for c in crops]
    for crop, value in zip(crops, values):
        assert np.ptp(crop, axis=(1, 2, 3)).max() < 1e-5
        assert np.any(np.abs(value - 0.8) > 0.01)  # jittered, some of them
    for view in (0, 2, 3):
        assert values[view].min() >= 0.48 - 1e-5
    assert np.any(values[1] < 0.48)  # solarized
