"""`DistillationBase`: what every training wrapper of this package shares.

A distillation model trains with more outputs than it serves: BYOT needs
every head's logits and features, a distiller needs teacher and student,
mutual learning needs every peer. This base class gives all of them the same
two paths:

- **Serving**: `call(x)` returns `inference_outputs(x)`, the served logits.
  `predict`, `predict_on_batch`, `__call__` and every export take this path,
  in every context (inside a callback during `fit` too).
- **Training**: `train_step` and `test_step` wrap their inputs in
  `TrainingInputs`, and `call(TrainingInputs(x))` returns
  `training_outputs(x)`, a dict with everything the loss needs, from one
  forward pass. `compute_loss` (the model's own loss, from
  `keras_selfdistill.losses`) and `compute_metrics` (each compiled metric
  copied per head) consume that dict. A custom loop that calls `train_step`
  or `test_step` takes the same path.

Nothing is switched on the model: which path runs is decided by the inputs
of each call, so Keras's cached compiled functions (train, test, predict)
each trace their own path on every backend, under `jit_compile` too.

Also shared: hyper-parameters in variables (`hyperparameters.py`), label
checks before `fit` (`labels.py`), directions for `mode="auto"` callbacks
(`callback_modes.py`), atomic saving (`keras_selfdistill.saving`), and the
compile state (`get_compile_config` records the user's own arguments, so a
reloaded model compiles the same way).
"""

import copy

import keras

from keras_selfdistill import compat
from keras_selfdistill import losses
from keras_selfdistill.metrics import build_head_metrics
from keras_selfdistill.metrics import check_metric_labels
from keras_selfdistill.metrics import with_direction
from keras_selfdistill.models.callback_modes import set_monitor_modes
from keras_selfdistill.models.hyperparameters import hyperparameter_config
from keras_selfdistill.models.labels import bound_arguments
from keras_selfdistill.models.labels import check_fit_labels
from keras_selfdistill.models.training_inputs import TrainingInputs
from keras_selfdistill.models.training_inputs import as_training_batch
from keras_selfdistill.saving import AtomicSaving


class DistillationBase(AtomicSaving, keras.Model):
    """Base class for models that distill inside `fit`.

    Subclasses implement `training_outputs`, `inference_outputs`,
    `compute_loss` and the `metric_head_names` property, and may override
    `served_head_name`, `head_logits_for_metrics` and `loss_term_names`.
    """

    #: Loss terms reported in the history as `<term>_loss`.
    loss_term_names = ("cross_entropy", "distillation")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._set_untracked("_compiled_state", None)
        self._set_untracked("_compile_arguments", None)
        self._set_untracked("_hyperparameter_variables", {})

    def _set_untracked(self, name, value):
        compat.set_untracked(self, name, value)

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

    # -- the two paths --------------------------------------------------- #

    def call(self, inputs, training=None):
        """The served logits; the training outputs for `TrainingInputs`.

        Args:
            inputs: the model's inputs, or `TrainingInputs(inputs)`.
            training: bool. Training mode (batch norm, dropout).

        Returns:
            `inference_outputs(inputs)`, or `training_outputs(inputs)` (a
            dict) when `inputs` is a `TrainingInputs`.
        """
        if isinstance(inputs, TrainingInputs):
            return self.training_outputs(inputs.inputs, training=training)
        return self.inference_outputs(inputs, training=training)

    def train_step(self, *args):
        """Keras's `train_step` on the training path.

        `fit` and `train_on_batch` call it; so can a custom loop (under
        `strategy.run`, say: docs/scaling.md, "Several machines"). It takes
        what the backend's `keras.Model.train_step` takes (`data`, or
        `state, data` on JAX, whose step is stateless) and passes the batch
        on with its inputs wrapped in `TrainingInputs`.

        Returns:
            What the backend's `train_step` returns: the logs dict (`loss`,
            each `<term>_loss`, the metrics); on JAX, with the new state.
        """
        *state, data = args
        return super().train_step(*state, as_training_batch(data))

    def test_step(self, *args):
        """Keras's `test_step` on the training path (the loss and per-head
        metrics `evaluate` reports); see `train_step`.

        Returns:
            What the backend's `test_step` returns: the logs dict, as
            `evaluate` reports it; on JAX, with the new state.
        """
        *state, data = args
        return super().test_step(*state, as_training_batch(data))

    def fit(self, *args, **kwargs):
        arguments = bound_arguments(keras.Model.fit, self, args, kwargs)
        check_fit_labels(self, arguments)
        set_monitor_modes(self, arguments.get("callbacks"))
        return super().fit(*args, **kwargs)

    def evaluate(self, *args, **kwargs):
        arguments = bound_arguments(keras.Model.evaluate, self, args, kwargs)
        check_fit_labels(self, arguments)
        return super().evaluate(*args, **kwargs)

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
        """The config keys every model of this package shares: the base
        model's, and the current value of every `Hyperparameter`."""
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.saving.serialize_keras_object(self.dtype_policy),
            **hyperparameter_config(self),
        }

    @staticmethod
    def constructor_arguments(config) -> dict:
        """A copy of `config` ready for the constructor: deep-copied (Keras
        deserialization consumes nested configs, and the caller's stays
        intact) with the dtype policy deserialized. `from_config` then pops
        and deserializes its own nested models."""
        config = copy.deepcopy(config)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.saving.deserialize_keras_object(
                config["dtype"]
            )
        return config

    def reduce_and_report(self, terms, sample_weight, batch_size):
        """The end of a `compute_loss`: per-sample terms to batch means
        (`losses.weighted_batch_mean`), recorded for the history, and the
        total plus the model's own losses returned.

        Args:
            terms: dict of float32 tensors `(batch,)` with a `"total"`.
            sample_weight: `None` or `(batch,)` weights.
            batch_size: the batch size, for the trackers' weighting.

        Returns:
            A float32 scalar tensor: what the train step differentiates.
        """
        terms = {
            key: losses.weighted_batch_mean(value, sample_weight)
            for key, value in terms.items()
        }
        self.update_loss_trackers(terms, batch_size)
        return self.add_extra_losses(terms["total"])

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
                "outputs (a dict), which the model returns for "
                "`model(TrainingInputs(x))` as its train_step and test_step "
                "call it; `model(x)` returns the served logits. Received "
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

    def layout_description(self) -> str:
        return f"outputs {list(self.metric_head_names)}"


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
