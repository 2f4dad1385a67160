"""CheckpointExchange in one process: two groups take turns in `fit` on one
directory. Writes every `refresh_steps` steps, loads the newest complete
checkpoint of the other group (never a partial one, falling back past an
unreadable one), and reports a missing group without stopping."""

import os
import warnings

import keras
import numpy as np
import pytest

from keras_selfdistill import CoDistillation
from keras_selfdistill.callbacks import CheckpointExchange
from keras_selfdistill.callbacks import complete_exchange_checkpoints
from keras_selfdistill.callbacks import exchange_checkpoint_name


def make_peer(seed):
    initializer = keras.initializers.GlorotUniform(seed=seed)
    inputs = keras.Input((8, 8, 1))
    hidden = keras.layers.Dense(8, activation="relu", kernel_initializer=initializer)(
        keras.layers.Flatten()(inputs)
    )
    return keras.Model(
        inputs, keras.layers.Dense(10, kernel_initializer=initializer)(hidden),
        name="peer",
    )


def make_group(seed, num_groups=2, refresh_steps=2):
    model = CoDistillation(
        make_peer(seed), remote_peers=num_groups - 1, refresh_steps=refresh_steps
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1), run_eagerly=True)
    return model


def weights_of(model):
    return [keras.ops.convert_to_numpy(w) for w in model.weights]


def test_groups_write_every_refresh_steps_and_load_each_others_newest(
    digits, tmp_path
):
    images, labels = digits
    groups = [make_group(seed) for seed in (1, 2)]
    exchanges = [
        CheckpointExchange(str(tmp_path), group=g, num_groups=2, keep=10)
        for g in (0, 1)
    ]
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        for epoch in range(2):  # Take turns: 4 steps each, one epoch at a time.
            for g in (0, 1):
                shard = slice(64 * g, 64 * g + 64)
                groups[g].fit(
                    images[shard], labels[shard], batch_size=16, epochs=1,
                    shuffle=False, verbose=0, callbacks=[exchanges[g]],
                )

    steps = [step for step, _ in complete_exchange_checkpoints(str(tmp_path), 1)]
    assert sorted(steps) == [2, 4, 6, 8]
    # Group 1's last exchange (step 8) loaded group 0's step-8 checkpoint,
    # and its remote snapshot holds exactly those weights.
    assert exchanges[1].exchanges[-1] == {"step": 8, "loaded": {0: 8}}
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(groups[1].snapshot_ready), [1.0]
    )
    for got, want in zip(
        weights_of(groups[1].remote_snapshots[0]), weights_of(groups[0].peer(0))
    ):
        np.testing.assert_array_equal(got, want)
    # Group 0 at step 4 (before group 1 trained) had nothing to load.
    assert exchanges[0].exchanges[2] == {"step": 4, "loaded": {1: None}}


def test_a_partial_or_unreadable_file_is_never_loaded(digits, tmp_path):
    images, labels = digits
    other = make_peer(seed=7)
    good = tmp_path / exchange_checkpoint_name(1, 4)
    other.save_weights(str(good))
    # A write in progress (hidden name) and a newer file that is unreadable.
    (tmp_path / f".partial-abc-{exchange_checkpoint_name(1, 99)}").write_bytes(b"x")
    (tmp_path / exchange_checkpoint_name(1, 8)).write_bytes(b"not hdf5")
    group = make_group(seed=1)
    exchange = CheckpointExchange(str(tmp_path), group=0, num_groups=2)

    with pytest.warns(UserWarning, match="could not load"):
        group.fit(images[:32], labels[:32], batch_size=16, verbose=0,
                  callbacks=[exchange])

    assert exchange.exchanges[0]["loaded"] == {1: 4}
    for got, want in zip(weights_of(group.remote_snapshots[0]), weights_of(other)):
        np.testing.assert_array_equal(got, want)


def test_a_missing_group_is_reported_and_training_goes_on(digits, tmp_path):
    images, labels = digits
    group = make_group(seed=1, num_groups=3)
    exchange = CheckpointExchange(str(tmp_path), group=2, num_groups=3)
    make_peer(seed=5).save_weights(str(tmp_path / exchange_checkpoint_name(0, 2)))

    with pytest.warns(UserWarning, match="group 1 has written no checkpoint yet"):
        history = group.fit(images[:128], labels[:128], batch_size=16, verbose=0,
                            callbacks=[exchange]).history

    # Group 0 wrote once (step 2) and never again: stale at step 8 (> 2 * 2).
    assert history["missing_peers"] == [2]
    assert history["snapshot_age"] == [6]
    assert exchange.exchanges[-1] == {"step": 8, "loaded": {0: 2, 1: None}}
    assert sorted(os.listdir(tmp_path)) == [
        exchange_checkpoint_name(0, 2),
        exchange_checkpoint_name(2, 6),
        exchange_checkpoint_name(2, 8),
    ]
