"""`DistillationBase`: what every training wrapper of this package shares.

A distillation model trains with more outputs than it serves: BYOT needs
every head's logits and features, a distiller needs teacher and student,
mutual learning needs every peer. This base class gives all of them the same
answers to the same questions:

- **One forward pass per step, and a lean `predict`.** `call` returns
  `training_outputs(...)` (a dict with everything the loss needs) inside
  `fit`, `evaluate`, `train_on_batch` and `test_on_batch`, and
  `inference_outputs(...)` (what is served) everywhere else. Keras traces and
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

import keras
import numpy as np

from keras_selfdistill.metrics import build_head_metrics


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
        if isinstance(value, np.generic):
            value = value.item()
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
        with self._training_outputs_scope():
            return super().fit(*args, **kwargs)

    def evaluate(self, *args, **kwargs):
        with self._training_outputs_scope():
            return super().evaluate(*args, **kwargs)

    def train_on_batch(self, *args, **kwargs):
        with self._training_outputs_scope():
            return super().train_on_batch(*args, **kwargs)

    def test_on_batch(self, *args, **kwargs):
        with self._training_outputs_scope():
            return super().test_on_batch(*args, **kwargs)

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
                    term: keras.metrics.Mean(name=f"{term}_loss")
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

    def update_loss_trackers(self, terms, batch_size):
        """Records each loss term (a dict of scalars) for the history."""
        state = self._compiled_state
        if state is None:
            return
        for term, tracker in state["trackers"].items():
            tracker.update_state(terms[term], sample_weight=batch_size)

    def add_extra_losses(self, total):
        """Adds weight regularizers and `add_loss()` terms, as Keras does."""
        for extra_loss in self.losses:
            total = total + keras.ops.sum(keras.ops.cast(extra_loss, "float32"))
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
                "Received a batch with no labels."
            )

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        self.check_training_batch(y, y_pred)
        state = self._compiled_state
        if state is not None:
            head_logits = self.head_logits_for_metrics(y_pred)
            for index, logits in enumerate(head_logits):
                for metric in state["unweighted"][index]:
                    metric.update_state(y, logits)
                for metric in state["weighted"][index]:
                    metric.update_state(y, logits, sample_weight=sample_weight)
        return self.get_metrics_result()
