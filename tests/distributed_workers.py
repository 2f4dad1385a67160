"""Training runs on several devices or backends, each started by
tests/test_distributed.py in a fresh process (devices are configured, and a
backend chosen, before the backend starts).

    python tests/distributed_workers.py mirrored      # TF, 2 logical CPUs
    python tests/distributed_workers.py multi_worker_steps DIR  # TF, one of 2 workers (TF_CONFIG)
    python tests/distributed_workers.py multi_worker_fit DIR    # the same with fit
    python tests/distributed_workers.py multi_worker_fit_patched DIR  # fit, Keras bug patched
    python tests/distributed_workers.py data_parallel # JAX, 2 host devices (XLA_FLAGS)
    python tests/distributed_workers.py single DIR    # 1 device; saves DIR/initial.npz
    python tests/distributed_workers.py from_initial DIR  # the same, any KERAS_BACKEND

Each prints one line `RESULT <json>` with what it measured; the test
compares. The models are the families of `model_families.py`, trained with
plain SGD on a fixed order of digits, so one device and several devices
can be compared step by step.
"""

import json
import os
import sys

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

GLOBAL_BATCH = 32
STEPS = 6
FAMILIES = ("SelfDistillModel", "Distiller")
#: Models whose own state changes inside the step (a step counter and
#: snapshots refreshed every 2 steps after 2 of burn-in; a momentum
#: teacher), without batch normalisation: checked under MirroredStrategy.
STATEFUL_FAMILIES = ("CoDistillation", "EMATeacher")


class StepLosses:
    """Records `logs["loss"]` after every step (Keras's running mean)."""

    def __new__(cls):
        import keras

        class _StepLosses(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.losses = []

            def on_train_batch_end(self, batch, logs=None):
                self.losses.append(float(logs["loss"]))

        return _StepLosses()


def digits():
    from digits_data import load_digits_data

    images, labels = load_digits_data()
    count = GLOBAL_BATCH * STEPS
    return images[:count], labels[:count]


def build_stateful(family):
    import model_families

    from keras_selfdistill import CoDistillation
    from keras_selfdistill import EMATeacher

    if family == "CoDistillation":
        return CoDistillation(
            [model_families.classifier(16, "peer_a"), model_families.classifier(16, "peer_b")],
            refresh_steps=2, burn_in_steps=2,
        )
    return EMATeacher(model_families.classifier(16, "student"), momentum=0.9)


def build(family, head_batch_norm=True):
    import model_families

    if family in STATEFUL_FAMILIES:
        return build_stateful(family)
    if family == "SelfDistillModel":
        return model_families.self_distill_model(head_batch_norm=head_batch_norm)
    return model_families.FAMILIES[family]()


def train(family, initial_weights, scope=None, head_batch_norm=True):
    """Builds the model (in `scope`), loads `initial_weights` and runs one
    epoch of `STEPS` steps; returns the model and its per-step losses."""
    import contextlib

    import keras

    images, labels = digits()
    with scope or contextlib.nullcontext():
        model = build(family, head_batch_norm)
        model.set_weights(initial_weights)
        model.compile(optimizer=keras.optimizers.SGD(0.05))
    recorder = StepLosses()
    model.fit(images, labels, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False,
              verbose=0, callbacks=[recorder])
    return model, recorder.losses


def max_relative_difference(weights, other_weights):
    return max(
        float(np.max(np.abs(a - b)) / (np.max(np.abs(b)) + 1e-12))
        for a, b in zip(weights, other_weights)
    )


def mirrored():
    """One CPU split into 2 logical devices; MirroredStrategy vs 1 device."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    import keras

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    result = {"replicas": strategy.num_replicas_in_sync}
    for family in FAMILIES + STATEFUL_FAMILIES:
        # Each replica normalises its own slice of the batch, one device the
        # whole batch: without batch norm in the heads the two compute the
        # same function (see docs/scaling.md).
        keras.utils.set_random_seed(0)
        initial = build(family, head_batch_norm=False).get_weights()
        single, single_losses = train(family, initial, head_batch_norm=False)
        mirrored_model, mirrored_losses = train(
            family, initial, strategy.scope(), head_batch_norm=False
        )
        result[family] = {
            "single": single_losses,
            "mirrored": mirrored_losses,
            "weights_difference": max_relative_difference(
                mirrored_model.get_weights(), single.get_weights()
            ),
        }
    return result


def single(out_dir):
    """The reference: one process, one device, the global batch. Saves the
    initial and final weights (`initial.npz`, `single.npz`) to `out_dir`."""
    import keras

    keras.utils.set_random_seed(0)
    initial = build("SelfDistillModel", head_batch_norm=False).get_weights()
    np.savez(os.path.join(out_dir, "initial.npz"), *initial)
    model, losses = train("SelfDistillModel", initial, head_batch_norm=False)
    np.savez(os.path.join(out_dir, "single.npz"), *model.get_weights())
    return {"losses": losses}


def load_weights(path):
    with np.load(path) as arrays:
        return [arrays[f"arr_{index}"] for index in range(len(arrays.files))]


def from_initial(out_dir):
    """`single`'s training on this process's backend, from the initial
    weights `single` saved; saves the final weights as `<backend>.npz`."""
    import keras

    initial = load_weights(os.path.join(out_dir, "initial.npz"))
    model, losses = train("SelfDistillModel", initial, head_batch_norm=False)
    backend = keras.backend.backend()
    np.savez(os.path.join(out_dir, f"{backend}.npz"), *model.get_weights())
    return {"backend": backend, "losses": losses}


def multi_worker_fit(out_dir):
    """One worker of a 2-worker MultiWorkerMirroredStrategy (TF_CONFIG):
    `fit` for one epoch on the global batch, which Keras shards. Saves the
    final weights."""
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    initial = load_weights(os.path.join(out_dir, "initial.npz"))
    model, losses = train(
        "SelfDistillModel", initial, strategy.scope(), head_batch_norm=False
    )
    task = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    np.savez(os.path.join(out_dir, f"fit_worker_{task}.npz"), *model.get_weights())
    return {"replicas": strategy.num_replicas_in_sync, "losses": losses}


def patch_keras_multi_worker_fit():
    """Fixes, in this process only, the two places where Keras 3.15.1's
    TensorFlow trainer breaks `fit` under MultiWorkerMirroredStrategy (for
    any model): the symbolic build takes the local batch instead of
    reducing it across workers, and scalar logs are reduced without
    `axis=0`. The change to propose upstream; never part of the library."""
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer

    def local_batch(batch, strategy):
        return tf.nest.map_structure(
            lambda value: strategy.experimental_local_results(value)[0]
            if isinstance(value, tf.distribute.DistributedValues) else value,
            batch,
        )

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if self._distribute_strategy is None:
            return
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = local_batch(next(batches), self.distribute_strategy)
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    keras_reduce_per_replica = trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(
            strategy
        ):
            return tf.nest.map_structure(
                lambda value: strategy.reduce("MEAN", value, axis=None), values
            )
        return keras_reduce_per_replica(values, strategy, reduction)

    trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    trainer.reduce_per_replica = reduce_per_replica


def multi_worker_fit_patched(out_dir):
    """`multi_worker_fit` with `patch_keras_multi_worker_fit` applied."""
    patch_keras_multi_worker_fit()
    return multi_worker_fit(out_dir)


def multi_worker_steps(out_dir):
    """One worker of a 2-worker MultiWorkerMirroredStrategy (TF_CONFIG):
    the custom loop of docs/scaling.md ("Several machines"), Keras's own
    `train_step` run by the strategy on this worker's share of each global
    batch, for one epoch. Saves the final weights."""
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    import keras

    task = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    images, labels = digits()
    with strategy.scope():
        model = build("SelfDistillModel", head_batch_norm=False)
        model.compile(optimizer=keras.optimizers.SGD(0.05))
        model.optimizer.build(model.trainable_variables)
    model.set_weights(load_weights(os.path.join(out_dir, "initial.npz")))

    def make_dataset(context):
        # Batches of the per-replica size, dealt round-robin to the input
        # pipelines: global batch s is the pipelines' batches s together,
        # the samples one process sees in its step s.
        batch_size = context.get_per_replica_batch_size(GLOBAL_BATCH)
        dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size)
        return dataset.shard(context.num_input_pipelines, context.input_pipeline_id)

    dataset = strategy.distribute_datasets_from_function(make_dataset)

    @tf.function
    def train_step(batch):
        return strategy.run(model.train_step, args=(batch,))

    losses = []
    for batch in dataset:
        logs = train_step(batch)
        losses.append(float(strategy.experimental_local_results(logs["loss"])[0]))
    np.savez(os.path.join(out_dir, f"worker_{task}.npz"), *model.get_weights())
    return {"replicas": strategy.num_replicas_in_sync, "losses": losses}


def data_parallel():
    """keras.distribution.DataParallel over 2 host devices vs 1 device."""
    import keras

    devices = keras.distribution.list_devices("cpu")
    result = {"devices": len(devices)}
    for family in FAMILIES:
        keras.distribution.set_distribution(None)
        keras.utils.set_random_seed(0)
        # Batch norm stays in: the step is one program over the global batch.
        initial = build(family).get_weights()
        single, single_losses = train(family, initial)
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=devices)
        )
        try:
            parallel, parallel_losses = train(family, initial)
            sharding_devices = len(parallel.trainable_variables[0].value.sharding.device_set)
        finally:
            keras.distribution.set_distribution(None)
        result[family] = {
            "single": single_losses,
            "parallel": parallel_losses,
            "variable_devices": sharding_devices,
            "weights_difference": max_relative_difference(
                parallel.get_weights(), single.get_weights()
            ),
        }
    return result


SCENARIOS = {
    "mirrored": mirrored,
    "single": single,
    "from_initial": from_initial,
    "multi_worker_fit": multi_worker_fit,
    "multi_worker_fit_patched": multi_worker_fit_patched,
    "multi_worker_steps": multi_worker_steps,
    "data_parallel": data_parallel,
}

if __name__ == "__main__":
    print("RESULT " + json.dumps(SCENARIOS[sys.argv[1]](*sys.argv[2:])), flush=True)
