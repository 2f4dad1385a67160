"""MutualLearning: the peer loss by hand, no gradient leaks, fit, saving."""

import keras
import numpy as np
from backend_utils import gradients
from numpy_references import numpy_mutual_learning_loss

from keras_selfdistill.models.mutual_learning import MutualLearning
from keras_selfdistill.losses import mutual_learning_loss
from keras_selfdistill.testing import run_model_saving_test
from keras_selfdistill.testing import run_serialization_test


def make_mlp(width, name, num_classes=10, input_shape=(8, 8, 1)):
    inputs = keras.Input(input_shape)
    hidden = keras.layers.Dense(width, activation="relu")(
        keras.layers.Flatten()(inputs)
    )
    return keras.Model(
        inputs, keras.layers.Dense(num_classes)(hidden), name=name
    )


def make_cnn(name):
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x), name=name)


def test_loss_matches_numpy_for_three_peers(rng):
    labels = np.array([0, 3, 1, 2])
    peer_logits = [rng.normal(size=(4, 4)).astype("float32") * 3 for _ in range(3)]
    weights = np.array([1.0, 0.5, 0.0, 2.0], dtype="float32")

    terms = mutual_learning_loss(
        labels, peer_logits, alpha=0.3, temperature=2.0, sample_weight=weights
    )

    expected = numpy_mutual_learning_loss(
        labels, peer_logits, 0.3, 2.0, sample_weight=weights
    )
    np.testing.assert_allclose(
        [float(t) for t in terms["peer_totals"]], expected, rtol=1e-5
    )
    np.testing.assert_allclose(float(terms["total"]), sum(expected), rtol=1e-5)


def test_loss_is_finite_for_huge_logits():
    labels = np.array([0, 1])
    peer_logits = [
        keras.Variable(np.array([[1e4, -1e4], [0.0, 3e4]], "float32")),
        keras.Variable(np.array([[-2e4, 1e4], [5e3, 0.0]], "float32")),
    ]

    def total():
        return mutual_learning_loss(labels, peer_logits, temperature=3.0)["total"]

    assert np.isfinite(float(keras.ops.convert_to_numpy(total())))
    assert all(np.all(np.isfinite(g)) for g in gradients(total, peer_logits))


def test_no_gradient_leaks_from_one_peer_loss_into_another(digits):
    images, labels = digits
    model = MutualLearning(
        [make_mlp(16, "first"), make_cnn("second"), make_mlp(8, "third")],
        alpha=0.9,
        temperature=2.0,
    )
    first, second, third = model.peers

    def term(name, index=None):
        def loss():
            outputs = model.training_outputs(images[:32], training=True)
            terms = mutual_learning_loss(
                labels[:32], outputs["logits"], alpha=0.9, temperature=2.0
            )
            return terms[name] if index is None else terms[name][index]

        return loss

    for other in (second, third):
        leaked = gradients(term("peer_totals", 0), other.trainable_weights)
        for gradient in leaked:
            np.testing.assert_array_equal(gradient, 0.0)
    # Each peer's update is the gradient of its own loss, exactly.
    from_total = gradients(term("total"), second.trainable_weights)
    from_own = gradients(term("peer_totals", 1), second.trainable_weights)
    for total_gradient, own_gradient in zip(from_total, from_own):
        assert np.abs(own_gradient).max() > 0
        np.testing.assert_allclose(total_gradient, own_gradient, rtol=1e-6, atol=1e-7)


def test_evaluate_reports_the_sum_of_the_peer_losses_computed_by_hand(digits):
    images, labels = digits
    images, labels = images[:64], labels[:64]
    peers = [make_mlp(16, "wide"), make_cnn("convolutional")]
    model = MutualLearning(peers, alpha=0.4, temperature=3.0)
    model.compile(optimizer="adam", metrics=["accuracy"])

    logs = model.evaluate(
        images, labels, batch_size=64, verbose=0, return_dict=True
    )

    peer_logits = [peer.predict(images, verbose=0) for peer in peers]
    expected = numpy_mutual_learning_loss(labels, peer_logits, 0.4, 3.0)
    np.testing.assert_allclose(logs["wide_loss"], expected[0], rtol=1e-4)
    np.testing.assert_allclose(logs["convolutional_loss"], expected[1], rtol=1e-4)
    np.testing.assert_allclose(logs["loss"], sum(expected), rtol=1e-4)
    ensemble = np.mean(peer_logits, axis=0)
    np.testing.assert_allclose(
        logs["accuracy"], np.mean(ensemble.argmax(-1) == labels), atol=1e-6
    )
    np.testing.assert_allclose(
        logs["wide_accuracy"],
        np.mean(peer_logits[0].argmax(-1) == labels),
        atol=1e-6,
    )


def test_fit_trains_peers_of_different_architectures(digits_split):
    (train_images, train_labels), (test_images, test_labels) = digits_split
    keras.utils.set_random_seed(1)
    model = MutualLearning([make_mlp(32, "mlp"), make_cnn("cnn")])
    model.compile(optimizer=keras.optimizers.Adam(0.01), metrics=["accuracy"])

    history = model.fit(
        train_images,
        train_labels,
        epochs=3,
        batch_size=64,
        validation_data=(test_images, test_labels),
        verbose=0,
    ).history

    for key in ("mlp_accuracy", "cnn_accuracy", "accuracy", "mlp_loss",
                "cnn_loss", "cross_entropy_loss", "distillation_loss"):
        assert key in history and "val_" + key in history, key
    # Chance is 0.1; each peer alone reaches about 0.95 here.
    assert history["val_mlp_accuracy"][-1] > 0.9
    assert history["val_cnn_accuracy"][-1] > 0.9
    assert history["val_accuracy"][-1] > 0.9
    np.testing.assert_allclose(
        history["loss"],
        np.add(history["mlp_loss"], history["cnn_loss"]),
        rtol=1e-5,
    )


def test_peers_and_ensemble_come_out_as_plain_saveable_models(digits):
    images, _ = digits
    peers = [make_mlp(16, "wide"), make_mlp(8, "narrow")]
    model = MutualLearning(peers)

    assert model.peer(1) is peers[1]
    assert model.peer("wide") is peers[0]
    assert model.peers == peers
    ensemble = model.ensemble()
    expected = np.mean([p.predict(images[:16], verbose=0) for p in peers], axis=0)
    for served in (model, ensemble):
        np.testing.assert_allclose(
            served.predict(images[:16], verbose=0), expected, atol=1e-6
        )
    run_model_saving_test(ensemble, images[:16])
    run_model_saving_test(model.peer(0), images[:16])


def test_saving_round_trip_keeps_peers_and_hyperparameters(digits):
    images, labels = digits
    model = MutualLearning(
        [make_mlp(16, "wide"), make_cnn("convolutional")],
        alpha=0.3,
        temperature=2.0,
    )
    model.compile(optimizer="adam", metrics=["accuracy"])
    model.fit(images[:64], labels[:64], batch_size=32, epochs=1, verbose=0)
    model.alpha = 0.25

    revived = run_serialization_test(model)
    assert revived.peer_names == ["wide", "convolutional"]
    restored = run_model_saving_test(model, images[:16])
    assert float(restored.alpha.numpy()) == 0.25
    np.testing.assert_allclose(
        restored.peer(1).predict(images[:16], verbose=0),
        model.peer(1).predict(images[:16], verbose=0),
        atol=1e-6,
    )


# Bad inputs (each refused with a message naming the value and what is
# allowed) are rows of the one table in tests/test_bad_inputs.py.
