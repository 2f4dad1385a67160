"""`DistillationBase`: what every training wrapper of this package shares.

A distillation model trains with more outputs than it serves: BYOT needs
every head's logits and features, a distiller needs teacher and student,
mutual learning needs every peer. This base class gives all of them the same
answers to the same questions:

- **One forward pass per step, and a lean `predict`.** `call` returns
  `training_outputs(...)` (a dict with everything the loss needs) inside
  `fit`, `evaluate`, `train_on_batch` and `test_on_batch`, and
  `inference_outputs(...)` (what is served) everywhere else. `train_step`
  and `test_step` switch too, so a custom loop that calls them (under
  `strategy.run`, say) needs nothing more. Keras traces and
  caches its train, test and predict steps separately, so each compiled step
  sees the right one; the switch is a Python flag read at trace time, which
  is correct under `jit_compile` on every backend.
- **Its own loss.** `compile` takes no `loss`; subclasses implement
  `compute_loss` with `keras_selfdistill.losses` and report each term
  through `update_loss_trackers` (history keys `<term>_loss`).
- **Metrics per head.** Each compiled metric is copied for every head named
  by `metric_head_names`; the served head keeps the plain name.
- **Hyper-parameters in variables.** `alpha`, `temperature`, ... are
  `Hyperparameter` attributes: reading one gives a non-trainable scalar
  `keras.Variable`, assigning a number validates it and assigns the variable
  (like `optimizer.learning_rate`). A compiled step reads the variable, so a
  schedule (a callback assigning `model.alpha = ...`) reaches it under `jit`,
  and the current value is saved and restored with the weights.
- **Saving the compile state.** `get_compile_config` records the arguments
  the user gave (not the internal ones), so a reloaded model compiles the
  same way.
"""

import contextlib
import os

import keras
import numpy as np

from keras_selfdistill.metrics import build_head_metrics
from keras_selfdistill.metrics import check_metric_labels
from keras_selfdistill.metrics import with_direction
from keras_selfdistill.saving import check_weights_layout
from keras_selfdistill.saving import is_local_path
from keras_selfdistill.saving import write_atomically

#: Positions of `y`, `callbacks` and `validation_data` in
#: `keras.Model.fit`'s signature.
_FIT_Y_POSITION = 1
_FIT_CALLBACKS_POSITION = 5
_FIT_VALIDATION_DATA_POSITION = 7


class Hyperparameter:
    """A model attribute backed by a non-trainable float32 scalar variable.

    Args:
        check: function `(name, value) -> None` raising `ValueError` for a
            value out of range.
    """

    def __init__(self, check):
        self.check = check
        self.name = None

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        try:
            return instance._hyperparameter_variables[self.name]
        except KeyError:
            raise AttributeError(self.name) from None

    def __set__(self, instance, value):
        if isinstance(value, np.generic) or (
            isinstance(value, np.ndarray) and value.ndim == 0
        ):
            value = value.item()
        if hasattr(value, "shape") and tuple(value.shape) != ():
            raise ValueError(
                f"`{self.name}` must be a scalar (one number for the whole "
                f"model). Received: {self.name} with shape "
                f"{tuple(value.shape)}"
            )
        if not hasattr(value, "shape"):
            # Python values are checked; a tensor (a schedule computing the
            # value inside a step) is the caller's responsibility.
            self.check(self.name, value)
        variables = instance._hyperparameter_variables
        if self.name in variables:
            variables[self.name].assign(value)
            return
        variables[self.name] = instance.add_weight(
            name=self.name,
            shape=(),
            dtype="float32",
            initializer=keras.initializers.Constant(float(value)),
            trainable=False,
            autocast=False,
        )


def hyperparameter_value(variable) -> float:
    """The current value of a `Hyperparameter` as a Python float."""
    return float(keras.ops.convert_to_numpy(variable))


class DistillationBase(keras.Model):
    """Base class for models that distill inside `fit`.

    Subclasses implement `training_outputs`, `inference_outputs`,
    `compute_loss` and the `metric_head_names` property, and may override
    `served_head_name` and `loss_term_names`.
    """

    #: Loss terms reported in the history as `<term>_loss`.
    loss_term_names = ("cross_entropy", "distillation")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._set_untracked("_return_training_outputs", False)
        self._set_untracked("_compiled_state", None)
        self._set_untracked("_compile_arguments", None)
        self._set_untracked("_hyperparameter_variables", {})

    def _set_untracked(self, name, value):
        # A plain attribute: Keras's tracker would otherwise register views'
        # layers (or metric objects made after build) a second time.
        object.__setattr__(self, name, value)

    # -- what the subclass provides ------------------------------------ #

    @property
    def metric_head_names(self):
        """Names of the outputs that get metrics, in the order
        `head_logits_for_metrics` returns them."""
        raise NotImplementedError

    @property
    def served_head_name(self):
        """The head whose metrics keep their plain names."""
        return self.metric_head_names[-1]

    def training_outputs(self, inputs, training=None):
        """Everything `compute_loss` needs, from one forward pass."""
        raise NotImplementedError

    def inference_outputs(self, inputs, training=None):
        """What `predict` and `__call__` return."""
        raise NotImplementedError

    def head_logits_for_metrics(self, y_pred):
        """The list of logits (one per metric head) inside `y_pred`."""
        return y_pred["logits"]

    # -- forward pass ---------------------------------------------------- #

    def call(self, inputs, training=None):
        if self._return_training_outputs:
            return self.training_outputs(inputs, training=training)
        return self.inference_outputs(inputs, training=training)

    @contextlib.contextmanager
    def _training_outputs_scope(self):
        previous = self._return_training_outputs
        self._set_untracked("_return_training_outputs", True)
        try:
            yield
        finally:
            self._set_untracked("_return_training_outputs", previous)

    def fit(self, *args, **kwargs):
        self.check_label_values(_argument(args, kwargs, "y", _FIT_Y_POSITION), "y")
        validation_data = _argument(
            args, kwargs, "validation_data", _FIT_VALIDATION_DATA_POSITION
        )
        if isinstance(validation_data, (list, tuple)) and len(validation_data) > 1:
            self.check_label_values(validation_data[1], "validation_data labels")
        self.set_monitor_modes(
            _argument(args, kwargs, "callbacks", _FIT_CALLBACKS_POSITION)
        )
        with self._training_outputs_scope():
            return super().fit(*args, **kwargs)

    def set_monitor_modes(self, callbacks):
        """Tells `mode="auto"` monitors which way this model's metrics go.

        `ModelCheckpoint(monitor="val_head_1_accuracy", save_best_only=True)`
        and `EarlyStopping` find a metric's direction among the metrics
        Keras compiled itself; the per-head metrics and loss terms of these
        models are not among them, so Keras would refuse `mode="auto"`.
        Each such callback monitoring a metric of this model whose direction
        is known gets `mode="max"` (accuracies) or `"min"` (losses).

        Args:
            callbacks: the `callbacks` given to `fit` (a list, or `None`).
        """
        if not isinstance(callbacks, (list, tuple)):
            return
        directions = {
            metric.name: getattr(metric, "_direction", None)
            for metric in self.metrics
        }
        for callback in callbacks:
            monitor = getattr(callback, "monitor", None)
            if (
                getattr(callback, "mode", None) != "auto"
                or getattr(callback, "monitor_op", "unset") is not None
                or not isinstance(monitor, str)
            ):
                continue
            direction = directions.get(monitor.removeprefix("val_"))
            if direction in ("up", "down"):
                callback.mode = "max" if direction == "up" else "min"

    def evaluate(self, *args, **kwargs):
        self.check_label_values(_argument(args, kwargs, "y", _FIT_Y_POSITION), "y")
        with self._training_outputs_scope():
            return super().evaluate(*args, **kwargs)

    def check_label_values(self, labels, argument="y"):
        """Refuses integer labels that are not class ids of this model.

        Out-of-range ids make TensorFlow raise mid-step on CPU and give a
        silent NaN loss on GPU and on JAX, so arrays are checked once, before
        training; labels from a dataset are not read ahead.

        Args:
            labels: the labels given to `fit`/`evaluate`. Only numpy arrays
                of integer class ids (`(samples,)` or `(samples, 1)`) are
                checked.
            argument: str. How the message names them.
        """
        num_classes = getattr(self, "num_classes", None)
        if not isinstance(labels, np.ndarray) or not num_classes:
            return
        if labels.size == 0 or not (
            labels.ndim == 1
            or (labels.ndim == 2 and labels.shape[1] == 1 and num_classes != 1)
        ):
            return  # One-hot labels: their shape is checked in the loss.
        if labels.dtype.kind not in "iuf":
            raise ValueError(
                f"Labels must be integer class ids in [0, {num_classes}) or "
                f"one-hot vectors of length {num_classes}. Received: "
                f"{argument} of dtype {labels.dtype}"
            )
        flat = labels.reshape(-1)
        bad = ~np.isfinite(flat) if labels.dtype.kind == "f" else np.zeros(
            flat.shape, bool
        )
        bad |= (flat < 0) | (flat >= num_classes)
        if labels.dtype.kind == "f":
            bad |= np.isfinite(flat) & (flat != np.round(flat))
        if bad.any():
            index = int(np.argmax(bad))
            raise ValueError(
                f"Integer labels must be class ids in [0, {num_classes}) for "
                f"this model's {num_classes} classes. Received: {argument} "
                f"with value {flat[index].item()!r} at index {index} "
                f"({int(bad.sum())} of {flat.size} labels are not class ids)."
            )

    def train_on_batch(self, *args, **kwargs):
        with self._training_outputs_scope():
            return super().train_on_batch(*args, **kwargs)

    def test_on_batch(self, *args, **kwargs):
        with self._training_outputs_scope():
            return super().test_on_batch(*args, **kwargs)

    def train_step(self, *args, **kwargs):
        """Keras's `train_step`, computing this model's distillation loss.

        `fit` and `train_on_batch` call it; so can a custom loop (under
        `strategy.run`, say: docs/scaling.md, "Several machines"). It takes
        and returns what the backend's `keras.Model.train_step` does (JAX's
        is stateless) and switches the model to its training outputs while
        it runs.

        Returns:
            What the backend's `train_step` returns: the logs dict (`loss`,
            each `<term>_loss`, the metrics); on JAX, with the new state.
        """
        with self._training_outputs_scope():
            return super().train_step(*args, **kwargs)

    def test_step(self, *args, **kwargs):
        """Keras's `test_step` with this model's loss and per-head metrics;
        see `train_step`.

        Returns:
            What the backend's `test_step` returns: the logs dict, as
            `evaluate` reports it; on JAX, with the new state.
        """
        with self._training_outputs_scope():
            return super().test_step(*args, **kwargs)

    # -- compile and metrics --------------------------------------------- #

    def compile(
        self,
        optimizer="rmsprop",
        loss=None,
        loss_weights=None,
        metrics=None,
        weighted_metrics=None,
        **kwargs,
    ):
        """Configures the model for training.

        Same as `keras.Model.compile`, except that the loss is the model's own
        (see the class docstring): `loss` and `loss_weights` must stay `None`.
        Each metric is copied for every head.

        Args:
            optimizer: optimizer name or instance.
            loss: must be `None`.
            loss_weights: must be `None`.
            metrics: list of metrics (names, `keras.metrics.Metric`s or
                functions of `(labels, logits)`), computed for every head
                without sample weights.
            weighted_metrics: list of metrics computed with `sample_weight`.
            **kwargs: the other `keras.Model.compile` arguments
                (`jit_compile`, `steps_per_execution`, `run_eagerly`, ...).
        """
        for argument, value in (("loss", loss), ("loss_weights", loss_weights)):
            if value is not None:
                raise ValueError(
                    f"{type(self).__name__} computes its own loss (set by its "
                    f"constructor arguments), so `{argument}` must be None. "
                    f"Received: {argument}={value!r}"
                )
        head_names = list(self.metric_head_names)
        served = self.served_head_name
        self._set_untracked(
            "_compiled_state",
            {
                "trackers": {
                    term: with_direction(
                        keras.metrics.Mean(name=f"{term}_loss"), "down"
                    )
                    for term in self.loss_term_names
                },
                "unweighted": build_head_metrics(metrics, head_names, served),
                "weighted": build_head_metrics(
                    weighted_metrics, head_names, served
                ),
            },
        )
        self._set_untracked(
            "_compile_arguments",
            dict(metrics=metrics, weighted_metrics=weighted_metrics, **kwargs),
        )
        super().compile(optimizer=optimizer, **kwargs)

    def get_compile_config(self):
        if self._compile_arguments is None:
            return {}
        arguments = dict(self._compile_arguments, optimizer=self.optimizer)
        return keras.saving.serialize_keras_object(arguments)

    def compile_from_config(self, config):
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.optimizer is not None and self.built:
            self.optimizer.build(self.trainable_variables)

    @property
    def metrics(self):
        metrics = list(super().metrics)
        state = self._compiled_state
        if state is not None:
            metrics.extend(state["trackers"].values())
            for kind in ("unweighted", "weighted"):
                for head_metrics in state[kind]:
                    metrics.extend(head_metrics)
        return metrics

    def base_config(self):
        """The config keys every model of this package shares."""
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.saving.serialize_keras_object(self.dtype_policy),
        }

    def update_loss_trackers(self, terms, batch_size):
        """Records each loss term (a dict of scalars) for the history."""
        state = self._compiled_state
        if state is None:
            return
        for term, tracker in state["trackers"].items():
            tracker.update_state(terms[term], sample_weight=batch_size)

    def add_extra_losses(self, total):
        """The loss a train step differentiates, from the model's own total.

        Adds weight regularizers and `add_loss()` terms, and divides by the
        number of replicas in sync, as Keras's own losses do: under a
        TensorFlow `tf.distribute` strategy each replica computes the loss
        of its slice of the global batch and the strategy sums the replicas'
        gradients, so without the division two replicas would take steps
        twice as large as one device with the same global batch. (Keras's
        train step multiplies the reported `loss` back; the per-term
        trackers get unscaled values.)

        Args:
            total: float32 scalar tensor. The model's loss on this replica's
                batch.

        Returns:
            A float32 scalar tensor.
        """
        for extra_loss in self.losses:
            total = total + keras.ops.sum(keras.ops.cast(extra_loss, "float32"))
        replicas = replicas_in_sync(self)
        if replicas > 1:
            total = total / replicas
        return total

    def check_training_batch(self, y, y_pred):
        """Clear errors for a missing label or a non-training `y_pred`."""
        if not isinstance(y_pred, dict):
            raise ValueError(
                f"{type(self).__name__}.compute_loss needs the training "
                "outputs that `fit` and `evaluate` produce (a dict). Received "
                f"y_pred of type {type(y_pred).__name__}."
            )
        if y is None:
            raise ValueError(
                f"{type(self).__name__} learns from labels: the data must "
                "yield (inputs, labels) or (inputs, labels, sample_weight). "
                "Received: y=None (a batch with no labels)."
            )

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        self.check_training_batch(y, y_pred)
        state = self._compiled_state
        if state is not None:
            head_logits = self.head_logits_for_metrics(y_pred)
            for index, logits in enumerate(head_logits):
                for metric in state["unweighted"][index]:
                    check_metric_labels(metric, y, logits)
                    metric.update_state(y, logits)
                for metric in state["weighted"][index]:
                    check_metric_labels(metric, y, logits)
                    metric.update_state(y, logits, sample_weight=sample_weight)
        return self.get_metrics_result()

    # -- saving and loading ---------------------------------------------- #

    def save(self, filepath, overwrite=True, zipped=None, **kwargs):
        """Saves the model as a `.keras` file, never leaving half a file.

        Same as `keras.Model.save`, except that a local file is written to a
        temporary name in the same directory and then renamed, so `filepath`
        is always a complete file: the previous one until the new one is
        complete (`ModelCheckpoint` goes through here too). Remote paths, file
        objects, `zipped=False` directories and other extensions are saved
        by Keras directly.
        """
        parent_save = super().save
        if (
            not is_local_path(filepath)
            or not os.fspath(filepath).endswith(".keras")
            or zipped is False
            or (not overwrite and os.path.exists(filepath))
        ):
            return parent_save(filepath, overwrite=overwrite, zipped=zipped, **kwargs)
        write_atomically(
            filepath,
            lambda path: parent_save(path, overwrite=True, zipped=zipped, **kwargs),
        )

    def save_weights(self, filepath, overwrite=True, max_shard_size=None):
        """Saves the weights to a `.weights.h5` file, never leaving half a
        file (see `save`; `BackupAndRestore` goes through here). Sharded and
        remote files are saved by Keras directly."""
        parent_save_weights = super().save_weights
        if (
            not is_local_path(filepath)
            or not os.fspath(filepath).endswith(".weights.h5")
            or max_shard_size is not None
            or (not overwrite and os.path.exists(filepath))
        ):
            return parent_save_weights(
                filepath, overwrite=overwrite, max_shard_size=max_shard_size
            )
        write_atomically(
            filepath, lambda path: parent_save_weights(path, overwrite=True)
        )

    def load_weights(self, filepath, skip_mismatch=False, **kwargs):
        """Loads weights saved by a model built the same way.

        Keras matches weights by their position among layers of the same
        type, so a file saved with other heads, taps, widths, peers or
        another student could load into the wrong layers without a word, or
        fail after loading part of it. Here the file's layout is first
        compared with this model's: a different one raises a `ValueError`
        that names the differences, and nothing is loaded.
        `skip_mismatch=True` loads what matches, as in Keras.
        """
        if not skip_mismatch:
            check_weights_layout(
                self,
                filepath,
                super().save_weights,
                f"outputs {list(self.metric_head_names)}",
            )
        return super().load_weights(filepath, skip_mismatch=skip_mismatch, **kwargs)


def replicas_in_sync(model) -> int:
    """How many replicas share each step of `model` and sum their gradients.

    The package's one backend branch, kept here. Only TensorFlow's trainer
    has a `distribute_strategy` (`tf.distribute`), whose replicas each run
    the step on a slice of the batch; it is read without importing
    TensorFlow. JAX's `keras.distribution` compiles one program over the
    global batch (its loss is already the global mean), and the torch
    trainer runs one replica, so the answer there is 1.

    Args:
        model: a `keras.Model`.

    Returns:
        int >= 1.
    """
    strategy = getattr(model, "distribute_strategy", None)
    return int(getattr(strategy, "num_replicas_in_sync", 1) or 1)


def _argument(args, kwargs, name, position):
    """A `fit`/`evaluate` argument given by name or by position."""
    if name in kwargs:
        return kwargs[name]
    return args[position] if len(args) > position else None
