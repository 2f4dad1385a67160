"""One co-distillation group in its own process, for
tests/test_co_distillation_processes.py.

    python tests/co_distillation_worker.py DIR GROUP NUM_GROUPS STEPS \
        [--kill-at STEP] [--lockstep 0,1]

Trains `CoDistillation(peer, remote_peers=NUM_GROUPS - 1)` on its own shard
of the digits (every NUM_GROUPS-th image from GROUP on) for STEPS optimizer
steps, one epoch per exchange, with `BackupAndRestore` (DIR/backup-GROUP)
before `CheckpointExchange` (DIR/exchange). It first writes DIR/ready-GROUP
and waits (at most 60 s) for every group's, so that the groups overlap in
time whatever their start-up time. With KILL_AT, the process SIGKILLs
itself at the end of the epoch that reaches that step (after the backup and
the exchange). It prints one line `RESULT <json>`.
"""

import json
import os
import signal
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))
if os.environ.get("KERAS_BACKEND") == "jax":
    # Keras imports TensorFlow, when installed, for utilities this worker
    # never uses (the JAX trainer, numpy inputs, local files): without it a
    # worker starts in about 5 s of CPU instead of 8.
    sys.modules.setdefault("tensorflow", None)

REFRESH_STEPS = 5
BATCH = 16


def wait_for_groups(directory, group, num_groups):
    open(os.path.join(directory, f"ready-{group}"), "w").close()
    deadline = time.time() + 60
    while time.time() < deadline:
        if all(
            os.path.exists(os.path.join(directory, f"ready-{g}"))
            for g in range(num_groups)
        ):
            return
        time.sleep(0.05)


def main(directory, group, num_groups, steps, kill_at=None, lockstep=()):
    import keras
    from digits_data import load_digits_data

    from keras_selfdistill import CoDistillation
    from keras_selfdistill.callbacks import CheckpointExchange
    from keras_selfdistill.callbacks import complete_exchange_checkpoints

    images, labels = load_digits_data()
    shard = slice(group, None, num_groups)
    images, labels = images[shard], labels[shard]
    images = images[: REFRESH_STEPS * BATCH]
    labels = labels[: REFRESH_STEPS * BATCH]

    initializer = keras.initializers.GlorotUniform(seed=group)
    inputs = keras.Input((8, 8, 1))
    hidden = keras.layers.Dense(16, activation="relu", kernel_initializer=initializer)(
        keras.layers.Flatten()(inputs)
    )
    peer = keras.Model(
        inputs, keras.layers.Dense(10, kernel_initializer=initializer)(hidden),
        name="peer",
    )
    model = CoDistillation(
        peer, remote_peers=num_groups - 1, refresh_steps=REFRESH_STEPS,
        burn_in_steps=REFRESH_STEPS,
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=True)

    exchange = CheckpointExchange(
        os.path.join(directory, "exchange"), group=group, num_groups=num_groups,
        stale_after_steps=2 * REFRESH_STEPS,
    )
    started_at = []

    class Pace(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            started_at.append(int(keras.ops.convert_to_numpy(model.step_count)))

        def on_epoch_end(self, epoch, logs=None):
            step = int(keras.ops.convert_to_numpy(model.step_count))
            deadline = time.time() + 30
            for other in lockstep:
                while other != group and time.time() < deadline:
                    written = complete_exchange_checkpoints(exchange.directory, other)
                    if written and written[0][0] >= step:
                        break
                    time.sleep(0.02)
            if kill_at is not None and step >= kill_at:
                sys.stdout.flush()
                os.kill(os.getpid(), signal.SIGKILL)

    wait_for_groups(directory, group, num_groups)
    history = model.fit(
        images, labels, batch_size=BATCH, epochs=steps // REFRESH_STEPS,
        shuffle=False, verbose=0,
        callbacks=[
            keras.callbacks.BackupAndRestore(
                os.path.join(directory, f"backup-{group}")
            ),
            exchange,
            Pace(),
        ],
    ).history
    result = {
        "group": group,
        "started_at_step": started_at[0],
        "final_step": int(keras.ops.convert_to_numpy(model.step_count)),
        "exchanges": [
            {"step": record["step"],
             "loaded": {str(k): v for k, v in record["loaded"].items()}}
            for record in exchange.exchanges
        ],
        "missing_peers": history.get("missing_peers", []),
        "snapshot_age": history.get("snapshot_age", []),
        "distillation_loss": history.get("distillation_loss", []),
    }
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("directory")
    for name in ("group", "num_groups", "steps"):
        parser.add_argument(name, type=int)
    parser.add_argument("--kill-at", type=int, default=None)
    parser.add_argument("--lockstep", default="")
    arguments = parser.parse_args()
    main(
        arguments.directory, arguments.group, arguments.num_groups,
        arguments.steps, arguments.kill_at,
        [int(g) for g in arguments.lockstep.split(",") if g],
    )
