"""CoDistillation: the stale-teacher loss by hand, refresh every
`refresh_steps` steps and not in between, burn-in on labels only, no
gradient into the snapshots, saving and an exact resume, under jit."""

import keras
import numpy as np
from backend_utils import JIT_COMPILE
from backend_utils import gradients
from numpy_references import numpy_co_distillation_loss

from keras_selfdistill import CoDistillation
from keras_selfdistill.losses import co_distillation_loss
from keras_selfdistill.models.training_inputs import TrainingInputs
from keras_selfdistill.testing import run_model_saving_test
from keras_selfdistill.testing import run_serialization_test


def make_mlp(name, width=16, seed=0):
    initializer = keras.initializers.GlorotUniform(seed=seed)
    inputs = keras.Input((8, 8, 1))
    hidden = keras.layers.Dense(
        width, activation="relu", kernel_initializer=initializer
    )(keras.layers.Flatten()(inputs))
    logits = keras.layers.Dense(10, kernel_initializer=initializer)(hidden)
    return keras.Model(inputs, logits, name=name)


def two_peers(**kwargs):
    return CoDistillation(
        [make_mlp("a", seed=1), make_mlp("b", seed=2)], **kwargs
    )


def values(model):
    return [keras.ops.convert_to_numpy(v).copy() for v in model.weights]


def step_count(model):
    return int(keras.ops.convert_to_numpy(model.step_count))


def test_loss_with_stale_teachers_matches_numpy(rng):
    labels = np.array([0, 3, 1, 2])
    peer_logits = [rng.normal(size=(4, 4)).astype("float32") * 3 for _ in range(3)]
    teacher_logits = [rng.normal(size=(4, 4)).astype("float32") * 3 for _ in range(4)]
    # Peer 0: two teachers; peer 1: one; peer 2: none (labels only).
    mask = np.array(
        [[0, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]], dtype="float32"
    )
    weights = np.array([1.0, 0.5, 0.0, 2.0], dtype="float32")

    terms = co_distillation_loss(
        labels, peer_logits, teacher_logits, mask, alpha=0.3, temperature=2.0,
        sample_weight=weights,
    )

    expected = numpy_co_distillation_loss(
        labels, peer_logits, teacher_logits, mask, 0.3, 2.0, sample_weight=weights
    )
    np.testing.assert_allclose(
        [float(t) for t in terms["peer_totals"]], expected, rtol=1e-5
    )
    np.testing.assert_allclose(float(terms["total"]), sum(expected), rtol=1e-5)
    # The peer without a teacher trains on the labels alone, with weight 1.
    ce = np.mean(
        weights * -np.log(np.exp(peer_logits[2])[np.arange(4), labels]
                          / np.exp(peer_logits[2]).sum(-1))
    )
    np.testing.assert_allclose(float(terms["peer_totals"][2]), ce, rtol=1e-5)


def test_loss_is_finite_for_huge_logits_and_an_empty_mask_row():
    labels = np.array([0, 1])
    peer_logits = [keras.Variable(np.array([[1e4, -1e4], [0.0, 3e4]], "float32"))]
    teachers = [np.array([[-2e4, 1e4], [5e3, 0.0]], "float32")]

    for mask in (np.ones((1, 1), "float32"), np.zeros((1, 1), "float32")):
        def total(mask=mask):
            return co_distillation_loss(
                labels, peer_logits, teachers, mask, temperature=3.0
            )["total"]

        assert np.isfinite(float(keras.ops.convert_to_numpy(total())))
        assert all(np.all(np.isfinite(g)) for g in gradients(total, peer_logits))


def test_evaluate_reports_the_loss_against_the_snapshots_by_hand(digits):
    images, labels = digits
    images, labels = images[:64], labels[:64]
    model = two_peers(refresh_steps=1000, alpha=0.4, temperature=3.0)
    model.compile(optimizer=keras.optimizers.SGD(0.5), run_eagerly=True)
    model.fit(images, labels, batch_size=32, epochs=1, shuffle=False, verbose=0)
    # Step 0 snapshotted the initial weights; the peers have moved since.
    snapshot_logits = [s.predict(images, verbose=0) for s in model.snapshots]
    peer_logits = [p.predict(images, verbose=0) for p in model.peers]
    assert np.abs(snapshot_logits[0] - peer_logits[0]).max() > 1e-3

    logs = model.evaluate(images, labels, batch_size=64, verbose=0, return_dict=True)

    expected = numpy_co_distillation_loss(
        labels, peer_logits, snapshot_logits, [[0, 1], [1, 0]], 0.4, 3.0
    )
    np.testing.assert_allclose(logs["a_loss"], expected[0], rtol=1e-4)
    np.testing.assert_allclose(logs["b_loss"], expected[1], rtol=1e-4)
    np.testing.assert_allclose(logs["loss"], sum(expected), rtol=1e-4)


def test_snapshots_refresh_exactly_every_refresh_steps(digits):
    images, labels = digits
    refresh_steps = 3
    model = two_peers(refresh_steps=refresh_steps)
    model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=JIT_COMPILE)
    peer_before_step = []
    for step in range(8):
        peer_before_step.append(values(model.peer(1)))
        batch = slice(16 * step, 16 * (step + 1))
        model.train_on_batch(images[batch], labels[batch])
        assert step_count(model) == step + 1
        # Step t read the snapshot taken before step R * floor(t / R).
        taken = peer_before_step[refresh_steps * (step // refresh_steps)]
        for snapshot_value, expected in zip(values(model.snapshots[1]), taken):
            np.testing.assert_array_equal(snapshot_value, expected)
    # And in between, the peer did move: the snapshot really is stale.
    assert any(
        np.abs(a - b).max() > 0
        for a, b in zip(values(model.peer(1)), values(model.snapshots[1]))
    )


def test_burn_in_trains_each_peer_on_its_labels_alone(digits):
    images, labels = digits
    images, labels = images[:96], labels[:96]
    model = two_peers(refresh_steps=1, burn_in_steps=6, alpha=0.9)
    model.compile(optimizer=keras.optimizers.SGD(0.1), run_eagerly=True)
    alone = make_mlp("a", seed=1)
    alone.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )

    history = model.fit(images, labels, batch_size=16, shuffle=False, verbose=0)
    alone.fit(images, labels, batch_size=16, shuffle=False, verbose=0)

    assert step_count(model) == 6
    assert history.history["distillation_loss"] == [0.0]
    for got, want in zip(values(model.peer(0)), values(alone)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_after_burn_in_the_teacher_term_moves_the_peers(digits):
    images, labels = digits
    model = two_peers(refresh_steps=1, burn_in_steps=1, alpha=0.9)
    model.compile(optimizer="sgd", run_eagerly=True)
    during = model.evaluate(images[:32], labels[:32], verbose=0, return_dict=True)
    model.train_on_batch(images[:32], labels[:32])

    after = model.evaluate(images[:32], labels[:32], verbose=0, return_dict=True)

    assert during["distillation_loss"] == 0.0
    assert after["distillation_loss"] > 0.0


def test_gradient_flows_into_the_peers_only(digits):
    images, labels = digits
    model = two_peers(refresh_steps=1, alpha=0.9, temperature=2.0)
    model.snapshot_ready.assign(np.ones(2, "float32"))
    for snapshot in model.snapshots:  # Teachers that differ from the peers.
        for variable in snapshot.weights:
            variable.assign(variable * 0.5 + 0.1)

    def loss():
        outputs = model(TrainingInputs(images[:32]), training=False)
        return co_distillation_loss(
            labels[:32], outputs["logits"], outputs["teacher_logits"],
            outputs["teacher_mask"], alpha=0.9, temperature=2.0,
        )["total"]

    snapshot_weights = [v for s in model.snapshots for v in s.weights]
    for gradient in gradients(loss, snapshot_weights):
        np.testing.assert_array_equal(gradient, 0.0)
    peer_gradients = gradients(loss, model.trainable_weights)
    assert all(np.abs(g).max() > 0 for g in peer_gradients)
    assert {id(v) for v in model.trainable_weights} == {
        id(v) for p in model.peers for v in p.trainable_weights
    }
    # Distinct variable paths: torch tracks parameters by path, and a
    # snapshot variable with a peer's path would hide it from zero_grad.
    assert len({v.path for v in model.weights}) == len(model.weights)


def test_a_remote_snapshot_teaches_only_once_loaded(digits):
    images, labels = digits
    model = CoDistillation(make_mlp("peer", seed=1), remote_peers=1, alpha=0.5)
    model.compile(optimizer="sgd", metrics=["accuracy"], run_eagerly=True)
    remote = make_mlp("other", seed=5)

    before = model.evaluate(images[:32], labels[:32], verbose=0, return_dict=True)
    model.remote_snapshots[0].set_weights(remote.get_weights())
    model.mark_remote_snapshot_loaded(0)
    after = model.evaluate(images[:32], labels[:32], verbose=0, return_dict=True)

    assert before["distillation_loss"] == 0.0
    expected = numpy_co_distillation_loss(
        labels[:32], [model.peer(0).predict(images[:32], verbose=0)],
        [remote.predict(images[:32], verbose=0)], [[1]], 0.5, 1.0,
    )
    np.testing.assert_allclose(after["loss"], expected[0], rtol=1e-4)
    assert "accuracy" in after and "peer_accuracy" not in after


def test_saving_round_trip_keeps_snapshots_step_and_settings(digits):
    images, labels = digits
    model = two_peers(refresh_steps=2, burn_in_steps=1, alpha=0.3)
    model.compile(optimizer="adam", metrics=["accuracy"], run_eagerly=True)
    model.fit(images[:80], labels[:80], batch_size=16, epochs=1, verbose=0)

    revived = run_serialization_test(model)
    assert (revived.refresh_steps, revived.burn_in_steps) == (2, 1)
    restored = run_model_saving_test(model, images[:16])
    assert step_count(restored) == 5
    for got, want in zip(values(restored), values(model)):
        np.testing.assert_array_equal(got, want)


def test_a_run_resumed_from_a_keras_file_matches_one_uninterrupted(digits, tmp_path):
    images, labels = digits
    images, labels = images[:160], labels[:160]

    def fresh():
        model = two_peers(refresh_steps=3, burn_in_steps=2, alpha=0.5)
        model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=JIT_COMPILE)
        return model

    straight = fresh()
    straight.fit(images, labels, batch_size=16, epochs=2, shuffle=False, verbose=0)
    interrupted = fresh()
    interrupted.fit(images, labels, batch_size=16, epochs=1, shuffle=False, verbose=0)
    path = str(tmp_path / "halfway.keras")
    interrupted.save(path)
    resumed = keras.saving.load_model(path)
    resumed.fit(images, labels, batch_size=16, epochs=1, shuffle=False, verbose=0)

    assert step_count(resumed) == 20
    for got, want in zip(values(resumed), values(straight)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_refresh_snapshots_copies_the_peers_now():
    model = two_peers(refresh_steps=1000)
    for variable in model.peer(0).weights:  # The peer moves after step 0.
        variable.assign(variable * 2.0 + 1.0)

    model.refresh_snapshots()

    for got, want in zip(values(model.snapshots[0]), values(model.peer(0))):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model.snapshot_ready), [1.0, 1.0]
    )


def test_own_variables_keep_their_checkpoint_order():
    # The order of a model's own variables is the layout of its saved files.
    model = CoDistillation(make_mlp("peer"), remote_peers=2)
    prefix = f"{model.name}/"
    own = [
        v.path.removeprefix(prefix) for v in model.weights
        if v.path.startswith(prefix) and v.path.count("/") == 1
    ]
    assert own == ["alpha", "temperature", "step_count", "snapshot_ready"]
    assert tuple(model.snapshot_ready.shape) == (2,)
