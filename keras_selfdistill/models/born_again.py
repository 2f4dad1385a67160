"""`BornAgain`: born-again networks, one generation teaching the next."""

import json
import math
import os
import tempfile

import keras

from keras_selfdistill import losses
from keras_selfdistill.models.copies import copy_with_weights
from keras_selfdistill.models.copies import mean_logits_model
from keras_selfdistill.models.copies import teacher_layer_prefix
from keras_selfdistill.models.distillation_base import DistillationBase
from keras_selfdistill.models.distiller import Distiller
from keras_selfdistill.models.distiller import logits_output
from keras_selfdistill.models.distiller import symbolic_inputs
from keras_selfdistill.saving import write_atomically as _write_atomically
from keras_selfdistill.validation import check_integer
from keras_selfdistill.validation import check_positive
from keras_selfdistill.validation import check_unit_interval

#: The file in `checkpoint_dir` holding the config and finished histories.
MANIFEST_NAME = "born_again.json"
_MANIFEST_VERSION = 1
# Settings that must not change between the generations of one run.
_SETTINGS_THAT_MUST_MATCH = ("alpha", "temperature", "scale_by_temperature_squared")


def generation_filename(index: int) -> str:
    """The checkpoint file name of generation `index` (`generation_0.keras`)."""
    return f"generation_{index}.keras"


class _LabelTrainer(DistillationBase):
    """Generation 0 of a `BornAgain` run: the model learns from labels only.

    A training wrapper rather than `model.compile(loss=...)`, so the
    generation's own model stays uncompiled (its checkpoint is a plain
    model) and its history has the same keys as the later generations'
    (`cross_entropy_loss`, plain metric names).
    """

    loss_term_names = ("cross_entropy",)

    def __init__(self, network, **kwargs):
        kwargs.setdefault("name", "label_trainer")
        super().__init__(**kwargs)
        self.network = network
        self.num_classes = network.outputs[0].shape[-1]  # For the label check.
        self.built = True

    @property
    def metric_head_names(self):
        return ("network",)

    def head_logits_for_metrics(self, y_pred):
        return [y_pred["logits"]]

    def training_outputs(self, inputs, training=None):
        return {"logits": self.network(inputs, training=training)}

    def inference_outputs(self, inputs, training=None):
        return self.network(inputs, training=training)

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        self.check_training_batch(y, y_pred)
        cross_entropy = losses.weighted_batch_mean(
            losses.cross_entropy(y, y_pred["logits"]), sample_weight
        )
        self.update_loss_trackers(
            {"cross_entropy": cross_entropy},
            keras.ops.shape(y_pred["logits"])[0],
        )
        return self.add_extra_losses(cross_entropy)


def _plain_history(history):
    """A `History` holding only numbers (no reference to the trainer)."""
    plain = keras.callbacks.History()
    plain.history = {
        key: [float(value) for value in values]
        for key, values in history.history.items()
    }
    plain.epoch = list(getattr(history, "epoch", []))
    plain.params = dict(getattr(history, "params", None) or {})
    return plain


def _prepare_checkpoint_dir(checkpoint_dir):
    try:
        path = os.fspath(checkpoint_dir)
    except TypeError:
        raise ValueError(
            "`checkpoint_dir` must be a path (str or os.PathLike). Received: "
            f"checkpoint_dir={checkpoint_dir!r}"
        ) from None
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(
            "`checkpoint_dir` must be a directory, but it is a file. "
            f"Received: checkpoint_dir={path!r}"
        )
    try:
        os.makedirs(path, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".write_test.", dir=path)
        os.close(handle)
        os.remove(probe)
    except OSError as error:
        raise ValueError(
            "`checkpoint_dir` must be a directory this process can create and "
            f"write to ({error.strerror or error}). Received: "
            f"checkpoint_dir={path!r}"
        ) from error
    return path


def _read_manifest(checkpoint_dir):
    path = os.path.join(checkpoint_dir, MANIFEST_NAME)
    if not os.path.exists(path):
        return None
    with open(path) as manifest_file:
        return json.load(manifest_file)


def _serialize_build_model(build_model):
    """A registered `build_model` is saved by name; anything else is not."""
    if build_model is None:
        return None
    registered_name = keras.saving.get_registered_name(build_model)
    if keras.saving.get_registered_object(registered_name) is not build_model:
        return None
    return keras.saving.serialize_keras_object(build_model)


@keras.saving.register_keras_serializable(package="keras_selfdistill")
class BornAgain:
    """Born-again networks: each generation is taught by the one before.

    Generation 0 is a fresh model from `build_model()` trained on the labels
    (cross-entropy). Generation `k >= 1` is another fresh model trained with
    a `Distiller` whose teacher is a frozen copy of generation `k - 1`:

    `L_k = (1 - alpha) * CE(y, s_k)
           + alpha * T^2 * KL(softmax(s_{k-1}/T) || softmax(s_k/T))`

    Every generation gets a fresh optimizer (`compile(optimizer=...)` is a
    recipe, not an instance to share) and the same `fit` arguments. The
    paper's result: students of the same size as their teacher often beat
    it, and averaging the generations' predictions helps further
    (`ensemble()`).

    `BornAgain` orchestrates training; it is not a `keras.Model`. Each
    generation is a plain `keras.Model` (`generation(k)`), uncompiled, ready
    to save or serve.

    **Nothing lost.** With `fit(..., checkpoint_dir=...)`, each finished
    generation is saved there as `generation_<k>.keras` (written to a
    temporary name, then renamed, so a crash never leaves a half-written
    file), with `born_again.json` holding this object's config and the
    finished histories. Calling `fit` again, in the same process or a new
    one, restores the finished generations and resumes at the first
    unfinished one. A run interrupted during generation `k` restarts `k`
    from scratch (epochs inside a generation are not checkpointed; add a
    `keras.callbacks.BackupAndRestore` to `fit` for that).

    **Config.** `get_config()` holds the constructor arguments and
    `checkpoint_dir`; `from_config` (and `BornAgain.from_checkpoint(dir)`)
    restores the finished generations from that directory. `build_model` is
    saved only if registered with
    `keras.saving.register_keras_serializable()`; otherwise pass it again to
    `from_checkpoint` to train more generations. The optimizer and metrics
    are not part of the config: call `compile` again before `fit`.

    Args:
        build_model: callable with no arguments returning a new, uncompiled
            functional or Sequential `keras.Model` that outputs logits
            `(batch, num_classes)`. It is called once per generation trained.
            `None` only restores generations (see `from_checkpoint`).
        generations: int >= 1. How many generations to train, including
            generation 0. Defaults to `3`.
        alpha: float in [0, 1]. Weight of the previous generation's term.
            Defaults to `0.5`.
        temperature: float > 0. Softmax temperature `T`. Defaults to `1.0`
            (the paper's).
        scale_by_temperature_squared: bool. Multiply the KL term by `T^2`.
            Defaults to `True`.
        name: str. Prefix of the training wrappers' names. Defaults to
            `"born_again"`.

    Example:

    ```python
    def build_model():
        inputs = keras.Input((28, 28, 1))
        x = keras.layers.Conv2D(32, 3, activation="relu")(inputs)
        x = keras.layers.GlobalAveragePooling2D()(x)
        return keras.Model(inputs, keras.layers.Dense(10)(x))

    born_again = BornAgain(build_model, generations=3, alpha=0.5)
    born_again.compile(optimizer=lambda: keras.optimizers.SGD(0.1),
                       metrics=["accuracy"])
    histories = born_again.fit(x_train, y_train, epochs=5,
                               validation_data=(x_val, y_val),
                               checkpoint_dir="born_again_checkpoints")
    best = born_again.generation(2)
    ensemble = born_again.ensemble()       # averages the 3 generations' logits
    ensemble.save("ensemble.keras")
    ```

    References:
        Furlanello, Lipton, Tschannen, Itti, Anandkumar. "Born Again Neural
        Networks", ICML 2018. https://arxiv.org/abs/1805.04770
    """

    def __init__(
        self,
        build_model,
        generations: int = 3,
        alpha: float = 0.5,
        temperature: float = 1.0,
        scale_by_temperature_squared: bool = True,
        name: str = "born_again",
    ):
        if build_model is not None and not callable(build_model):
            raise ValueError(
                "`build_model` must be a callable with no arguments that "
                "returns a new keras.Model. Received: "
                f"build_model={build_model!r} of type "
                f"{type(build_model).__name__}"
            )
        check_integer("generations", generations, 1)
        check_unit_interval("alpha", alpha)
        check_positive("temperature", temperature)
        self.build_model = build_model
        self.generations = generations
        self.alpha = float(alpha)
        self.temperature = float(temperature)
        self.scale_by_temperature_squared = bool(scale_by_temperature_squared)
        self.name = name
        self.checkpoint_dir = None
        self._models = []
        self._histories = []
        self._compile_arguments = None

    # ------------------------------------------------------------------ #
    # Training.
    # ------------------------------------------------------------------ #

    def compile(
        self, optimizer="adam", metrics=None, weighted_metrics=None, **kwargs
    ):
        """Sets how every generation is compiled.

        Args:
            optimizer: how to make each generation's optimizer: a callable
                returning a new `keras.optimizers.Optimizer`, a name
                (`"adam"`), a config dict, or an optimizer instance (copied
                from its config for each generation, never shared). Defaults
                to `"adam"`.
            metrics: list of metrics, as for `Distiller.compile`.
            weighted_metrics: list of metrics computed with `sample_weight`.
            **kwargs: other `keras.Model.compile` arguments (`jit_compile`,
                `steps_per_execution`, ...). No `loss`: every generation's
                loss is set by this object's arguments.
        """
        for argument in ("loss", "loss_weights"):
            if kwargs.get(argument) is not None:
                raise ValueError(
                    "BornAgain sets every generation's loss itself, so "
                    f"`{argument}` must be None. Received: "
                    f"{argument}={kwargs[argument]!r}"
                )
            kwargs.pop(argument, None)
        self._make_optimizer(optimizer)  # Fail now, not after generation 0.
        self._compile_arguments = dict(
            optimizer=optimizer,
            metrics=metrics,
            weighted_metrics=weighted_metrics,
            **kwargs,
        )

    @staticmethod
    def _make_optimizer(recipe):
        if isinstance(recipe, keras.optimizers.Optimizer):
            return keras.optimizers.deserialize(
                keras.optimizers.serialize(recipe)
            )
        if isinstance(recipe, (str, dict)):
            return keras.optimizers.get(recipe)
        if callable(recipe):
            optimizer = recipe()
            if not isinstance(optimizer, keras.optimizers.Optimizer):
                raise ValueError(
                    "The `optimizer` callable must return a "
                    "keras.optimizers.Optimizer. Received: it returned "
                    f"{optimizer!r}"
                )
            if optimizer.built:
                raise ValueError(
                    "The `optimizer` callable must return a new optimizer on "
                    "each call (each generation gets a fresh one), but it "
                    f"returned an optimizer already in use: {optimizer!r}"
                )
            return optimizer
        raise ValueError(
            "`optimizer` must be a callable returning an optimizer, a name, a "
            f"config dict or an optimizer. Received: optimizer={recipe!r}"
        )

    def fit(
        self,
        x=None,
        y=None,
        epochs: int = 1,
        checkpoint_dir=None,
        verbose="auto",
        **fit_kwargs,
    ):
        """Trains the generations not finished yet, in order.

        Prints which generation runs (unless `verbose=0`), then Keras's own
        progress for it.

        Args:
            x: training inputs, as for `keras.Model.fit`. Each generation
                iterates the data again, so pass arrays, a `tf.data.Dataset`
                or a `keras.utils.PyDataset`, not a one-shot generator.
            y: labels, as for `keras.Model.fit`.
            epochs: int. Epochs per generation. Defaults to `1`.
            checkpoint_dir: path or `None`. Directory for the finished
                generations (created if missing). Generations found there are
                restored instead of trained. `None` keeps the directory of an
                earlier call or of `from_checkpoint`, if any. Defaults to
                `None`.
            verbose: as for `keras.Model.fit`. Defaults to `"auto"`.
            **fit_kwargs: the other `keras.Model.fit` arguments
                (`batch_size`, `validation_data`, `callbacks`,
                `sample_weight`, ...), the same for every generation.

        Returns:
            A list of `keras.callbacks.History`, one per generation, in
            order. Generations restored from `checkpoint_dir` or finished by
            an earlier call have their recorded histories.
        """
        if self._compile_arguments is None:
            raise ValueError(
                "Call `compile(optimizer=..., metrics=...)` on the BornAgain "
                "before `fit`."
            )
        self._resume_from(checkpoint_dir, verbose)
        if len(self._models) >= self.generations and verbose != 0:
            print(
                f"{self.name}: all {self.generations} generations are "
                "finished; nothing to train.",
                flush=True,
            )
        for index in range(len(self._models), self.generations):
            model = self._new_model(index)
            trainer = self._trainer(index, model, verbose)
            arguments = dict(self._compile_arguments)
            arguments["optimizer"] = self._make_optimizer(arguments["optimizer"])
            trainer.compile(**arguments)
            history = trainer.fit(
                x, y, epochs=epochs, verbose=verbose, **fit_kwargs
            )
            self._models.append(model)
            self._histories.append(_plain_history(history))
            if self.checkpoint_dir is not None:
                self._save_generation(index)
                self._write_manifest()
        return list(self._histories[: self.generations])

    def _resume_from(self, checkpoint_dir, verbose):
        """Takes the finished generations found in the checkpoint directory
        (`checkpoint_dir`, else the one already set), and writes any finished
        generation it lacks."""
        if checkpoint_dir is not None:
            self.checkpoint_dir = _prepare_checkpoint_dir(checkpoint_dir)
        elif self.checkpoint_dir is not None:
            self.checkpoint_dir = _prepare_checkpoint_dir(self.checkpoint_dir)
        if self.checkpoint_dir is None:
            return
        self._restore_generations(verbose)
        for index in range(len(self._models)):
            if not os.path.exists(self._generation_path(index)):
                self._save_generation(index)
        self._write_manifest()

    def _trainer(self, index, model, verbose):
        """The model that trains generation `index`: labels only for the
        first, a `Distiller` from the previous generation after it."""
        if index == 0:
            self._say(verbose, index, "labels only")
            return _LabelTrainer(model, name=f"{self.name}_generation_0")
        self._say(
            verbose,
            index,
            f"labels + distillation from generation {index - 1} "
            f"(alpha={self.alpha}, temperature={self.temperature})",
        )
        return Distiller(
            teacher=self._frozen_copy(self._models[index - 1]),
            student=model,
            alpha=self.alpha,
            temperature=self.temperature,
            scale_by_temperature_squared=self.scale_by_temperature_squared,
            name=f"{self.name}_generation_{index}",
        )

    def _say(self, verbose, index, what):
        if verbose != 0:
            print(
                f"{self.name}: generation {index} ({index + 1} of "
                f"{self.generations}): {what}",
                flush=True,
            )

    def _new_model(self, index):
        if self.build_model is None:
            raise ValueError(
                f"Generation {index} is not in the checkpoint, and this "
                "BornAgain has no `build_model` to create it. Pass "
                "build_model= to BornAgain.from_checkpoint (or register it "
                "with keras.saving.register_keras_serializable())."
            )
        model = self.build_model()
        if not isinstance(model, keras.Model):
            raise ValueError(
                "`build_model` must return a keras.Model. Received: it "
                f"returned {model!r} of type {type(model).__name__}"
            )
        if any(model is finished for finished in self._models):
            raise ValueError(
                "`build_model` must return a new model on every call (each "
                "generation starts from scratch), but it returned the model "
                f"'{model.name}' of an earlier generation."
            )
        # The next generation distills from this one: check it now, not
        # after training it.
        symbolic_inputs(model, "model from build_model")
        logits_output(model, "model from build_model")
        return model

    @staticmethod
    def _frozen_copy(model):
        # The teacher is a copy: freezing it must not change the user's
        # generation model, which stays trainable and uncompiled. Its layers
        # are renamed so that its variable paths differ from the student's
        # (same architecture) inside the Distiller.
        return copy_with_weights(
            model, model.name, layer_prefix=teacher_layer_prefix(model, "teacher")
        )

    # ------------------------------------------------------------------ #
    # Checkpoints.
    # ------------------------------------------------------------------ #

    def _generation_path(self, index):
        return os.path.join(self.checkpoint_dir, generation_filename(index))

    def _save_generation(self, index):
        _write_atomically(self._generation_path(index), self._models[index].save)

    def _write_manifest(self):
        manifest = {
            "format_version": _MANIFEST_VERSION,
            "config": self.get_config(),
            "histories": {
                str(index): history.history
                for index, history in enumerate(self._histories)
            },
        }

        def write(path):
            with open(path, "w") as manifest_file:
                json.dump(manifest, manifest_file, indent=2)

        _write_atomically(
            os.path.join(self.checkpoint_dir, MANIFEST_NAME), write
        )

    def _restore_generations(self, verbose=0):
        """Loads the finished generations after those already in memory."""
        manifest = _read_manifest(self.checkpoint_dir)
        histories = {}
        if manifest is not None:
            self._check_manifest(manifest)
            histories = manifest.get("histories", {})
        index = len(self._models)
        while index < self.generations and os.path.exists(
            self._generation_path(index)
        ):
            path = self._generation_path(index)
            self._models.append(keras.saving.load_model(path, safe_mode=True))
            history = keras.callbacks.History()
            history.history = histories.get(str(index), {})
            self._histories.append(history)
            self._say(verbose, index, f"restored from {path}")
            index += 1

    def _check_manifest(self, manifest):
        saved = manifest.get("config", {})
        differences = [
            f"{key}={saved[key]!r} there, {getattr(self, key)!r} here"
            for key in _SETTINGS_THAT_MUST_MATCH
            if key in saved
            and not math.isclose(float(saved[key]), float(getattr(self, key)))
        ]
        if differences:
            raise ValueError(
                f"checkpoint_dir={self.checkpoint_dir!r} holds generations "
                f"trained with other settings ({'; '.join(differences)}). "
                "Use the same settings to resume, or another checkpoint_dir."
            )

    # ------------------------------------------------------------------ #
    # Results.
    # ------------------------------------------------------------------ #

    @property
    def models(self):
        """The finished generations' models, generation 0 first."""
        return list(self._models)

    @property
    def histories(self):
        """The finished generations' histories, generation 0 first."""
        return list(self._histories)

    def generation(self, index: int):
        """The model of one finished generation.

        Args:
            index: int in `[0, generations)`. 0 is the label-trained model.

        Returns:
            The generation's `keras.Model` (uncompiled, trainable).
        """
        if isinstance(index, bool) or not isinstance(index, int) or not (
            0 <= index < self.generations
        ):
            raise ValueError(
                f"`index` must be an integer in [0, {self.generations}). "
                f"Received: index={index!r}"
            )
        if index >= len(self._models):
            raise ValueError(
                f"Generation {index} is not trained yet; finished "
                f"generations: {list(range(len(self._models)))}. Received: "
                f"index={index}"
            )
        return self._models[index]

    def ensemble(self, generations=None, name=None):
        """A `keras.Model` averaging the logits of several generations.

        The returned functional model shares the generations' layers (no
        copy), saves and loads with plain Keras, and needs nothing from this
        package.

        Args:
            generations: list of generation indices, or `None` for every
                finished generation. Defaults to `None`.
            name: str or `None`. The model's name. Defaults to
                `"<name>_ensemble"`.

        Returns:
            A `keras.Model` from the generations' inputs to the mean of their
            logits.
        """
        if generations is None:
            generations = list(range(len(self._models)))
        if isinstance(generations, (str, int)) or not generations:
            raise ValueError(
                "`generations` must be a non-empty list of finished "
                f"generation indices {list(range(len(self._models)))}. "
                f"Received: generations={generations!r}"
            )
        members = [self.generation(index) for index in generations]
        # Views with unique names: every generation may carry the same
        # model name, and one graph needs distinct layer names.
        views = [
            keras.Model(
                symbolic_inputs(member, "generation"),
                member.outputs[0],
                name=f"generation_{index}",
            )
            for index, member in zip(generations, members)
        ]
        return mean_logits_model(views, name or f"{self.name}_ensemble")

    # ------------------------------------------------------------------ #
    # Serialization.
    # ------------------------------------------------------------------ #

    def get_config(self):
        """The constructor arguments and `checkpoint_dir`, as plain JSON."""
        return {
            "name": self.name,
            "build_model": _serialize_build_model(self.build_model),
            "generations": self.generations,
            "alpha": self.alpha,
            "temperature": self.temperature,
            "scale_by_temperature_squared": self.scale_by_temperature_squared,
            "checkpoint_dir": self.checkpoint_dir,
        }

    @classmethod
    def from_config(cls, config):
        """A `BornAgain` with the finished generations of its checkpoint.

        Args:
            config: a dict from `get_config`.

        Returns:
            A `BornAgain`; if `config["checkpoint_dir"]` exists, its finished
            generations (models and histories) are loaded from there.
        """
        config = dict(config)
        build_model = config.pop("build_model", None)
        if isinstance(build_model, dict):
            build_model = keras.saving.deserialize_keras_object(build_model)
        checkpoint_dir = config.pop("checkpoint_dir", None)
        instance = cls(build_model=build_model, **config)
        instance.checkpoint_dir = checkpoint_dir
        if checkpoint_dir is not None and os.path.isdir(checkpoint_dir):
            instance._restore_generations()
        return instance

    @classmethod
    def from_checkpoint(cls, checkpoint_dir, build_model=None):
        """Restores a `BornAgain` from the directory its `fit` wrote.

        Args:
            checkpoint_dir: path. A directory written by `fit`.
            build_model: callable or `None`. Overrides the saved one (needed
                to train more generations when the original was not
                registered). Defaults to `None`.

        Returns:
            A `BornAgain` with every finished generation loaded; `compile`
            it, then `fit` to train the remaining ones.
        """
        path = os.fspath(checkpoint_dir)
        manifest = _read_manifest(path) if os.path.isdir(path) else None
        if manifest is None:
            raise ValueError(
                f"No {MANIFEST_NAME} in checkpoint_dir={path!r}: not a "
                "directory written by BornAgain.fit."
            )
        config = dict(manifest["config"], checkpoint_dir=path)
        if build_model is not None:
            config["build_model"] = None
        instance = cls.from_config(config)
        if build_model is not None:
            if not callable(build_model):
                raise ValueError(
                    "`build_model` must be a callable with no arguments. "
                    f"Received: build_model={build_model!r}"
                )
            instance.build_model = build_model
        return instance
