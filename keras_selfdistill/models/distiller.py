"""`Distiller`: a trained teacher teaches a student, in plain `model.fit`."""

import keras

from keras_selfdistill import losses
from keras_selfdistill.data_format import channel_axis
from keras_selfdistill.data_format import spatial_shape
from keras_selfdistill.models.distillation_base import DistillationBase
from keras_selfdistill.models.hyperparameters import Hyperparameter
from keras_selfdistill.models.keras_distillation import check_label_loss
from keras_selfdistill.models.keras_distillation import translate_keras_arguments
from keras_selfdistill.models.graph import check_outputs_logits
from keras_selfdistill.models.graph import producing_layer
from keras_selfdistill.validation import check_non_negative
from keras_selfdistill.validation import close_matches_hint
from keras_selfdistill.validation import check_positive
from keras_selfdistill.validation import check_unit_interval

#: Keys of a batch that carries precomputed teacher logits (see
#: `Distiller.cache_teacher_logits`).
CACHED_INPUTS_KEY = "inputs"
CACHED_TEACHER_LOGITS_KEY = "teacher_logits"


def is_cached_batch(inputs) -> bool:
    """Whether `inputs` is `{"inputs": x, "teacher_logits": t}`.

    Decided on the Python structure, so it is free (and fixed) at trace time.
    """
    return isinstance(inputs, dict) and set(inputs) == {
        CACHED_INPUTS_KEY,
        CACHED_TEACHER_LOGITS_KEY,
    }


def symbolic_inputs(model, role: str):
    """The input structure of a functional or Sequential model, checked.

    Args:
        model: the model to check.
        role: str. How error messages name it (`"teacher"`, `"student"`).

    Returns:
        The model's symbolic input tensor (or its dict/list of them).

    Raises:
        ValueError: for a non-model, an unbuilt model, or a model without
            symbolic inputs (a subclassed model).
    """
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"The {role} must be a keras.Model. Received: {role}={model!r} of "
            f"type {type(model).__name__}"
        )
    if not model.built:
        raise ValueError(
            f"The {role} '{model.name}' is not built: it has no weights yet"
            + (", so it cannot have been trained" if role == "teacher" else "")
            + ". Start a Sequential with keras.Input(shape), or build the "
            "model with the functional API"
            + (", and train it before distilling." if role == "teacher" else ".")
        )
    inputs = getattr(model, "inputs", None)
    if not inputs:
        raise ValueError(
            f"The {role} '{model.name}' ({type(model).__name__}) has no "
            "symbolic inputs, so its layers' outputs cannot be read in the same "
            "forward pass. Use a functional or Sequential model, or wrap a "
            "subclassed one: `inputs = keras.Input(shape); "
            "model = keras.Model(inputs, subclassed_model(inputs))`."
        )
    if isinstance(model, keras.Sequential):
        return inputs[0]
    return model.input


def logits_output(model, role: str):
    """The one logits output `(batch, num_classes)` of a model, checked.

    Raises:
        ValueError: for several outputs, a non-2-D output or softmax
            probabilities.
    """
    outputs = model.outputs
    if len(outputs) != 1:
        raise ValueError(
            f"The {role} must have one output, the logits (batch, "
            f"num_classes). Received: {role} '{model.name}' with "
            f"{len(outputs)} outputs."
        )
    output = outputs[0]
    if len(output.shape) != 2 or output.shape[-1] is None:
        raise ValueError(
            f"The {role}'s output must be logits of shape (batch, num_classes)."
            f" Received: {role} '{model.name}' with output shape "
            f"{tuple(output.shape)}"
        )
    layer = producing_layer(output)
    check_outputs_logits(layer, f"The {role} '{model.name}'")
    return output


def _layer_output(model, layer_name, role):
    layer_names = [layer.name for layer in model.layers]
    if not isinstance(layer_name, str) or layer_name not in layer_names:
        hint = close_matches_hint(layer_name, layer_names)
        raise ValueError(
            f"Layer {layer_name!r} is not in the {role} '{model.name}'.{hint}"
        )
    try:
        output = model.get_layer(layer_name).output
    except (AttributeError, ValueError) as error:
        raise ValueError(
            f"Layer '{layer_name}' of the {role} '{model.name}' is used more "
            "than once (or never) in the graph, so its output is ambiguous. "
            "Pick a layer that is called once."
        ) from error
    if isinstance(output, (list, tuple, dict)):
        shapes = [tuple(t.shape) for t in keras.tree.flatten(output)]
        raise ValueError(
            f"Layer '{layer_name}' of the {role} '{model.name}' has "
            f"{len(shapes)} outputs (shapes {shapes}); a hint needs a layer "
            f"with one output tensor. Received: feature_pairs layer "
            f"{layer_name!r}"
        )
    return output


def _check_same_inputs(teacher, student):
    teacher_shapes = [tuple(t.shape[1:]) for t in teacher.inputs]
    student_shapes = [tuple(t.shape[1:]) for t in student.inputs]
    compatible = len(teacher_shapes) == len(student_shapes) and all(
        len(t) == len(s)
        and all(a is None or b is None or a == b for a, b in zip(t, s))
        for t, s in zip(teacher_shapes, student_shapes)
    )
    if not compatible:
        raise ValueError(
            "The teacher and the student must take the same inputs (they see "
            "the same batch). Received: teacher input shapes "
            f"{[(None,) + s for s in teacher_shapes]}, student input shapes "
            f"{[(None,) + s for s in student_shapes]}."
        )


def _check_teacher_and_student(teacher, student):
    """The teacher's and the student's logits tensors, after checking that
    they are two models with the same inputs and classes."""
    symbolic_inputs(teacher, "teacher")
    symbolic_inputs(student, "student")
    if teacher is student:
        raise ValueError(
            "The teacher and the student are the same model object "
            f"('{teacher.name}'); the teacher is frozen, so the student "
            "could not learn. Pass a separate student model."
        )
    teacher_logits = logits_output(teacher, "teacher")
    student_logits = logits_output(student, "student")
    if teacher_logits.shape[-1] != student_logits.shape[-1]:
        raise ValueError(
            "The teacher and the student must predict the same classes. "
            f"Received: teacher '{teacher.name}' with "
            f"{teacher_logits.shape[-1]} classes, student "
            f"'{student.name}' with {student_logits.shape[-1]} classes."
        )
    _check_same_inputs(teacher, student)
    return teacher_logits, student_logits


def _hint_shapes(pairs, teacher_features, student_features):
    """`[(student shape, teacher shape)]` of each hint pair, after checking
    that they differ at most in the channel axis (which an adapter maps)."""
    shapes = []
    data_format = keras.config.image_data_format()
    for (teacher_name, student_name), t, s in zip(
        pairs, teacher_features, student_features
    ):
        received = (
            f"Received: teacher layer '{teacher_name}' with shape "
            f"{tuple(t.shape)}, student layer '{student_name}' with "
            f"shape {tuple(s.shape)}."
        )
        axis = channel_axis(data_format, len(t.shape))
        if len(t.shape) != len(s.shape) or spatial_shape(
            t.shape, data_format
        ) != spatial_shape(s.shape, data_format) or t.shape[axis] is None or (
            s.shape[axis] is None
        ):
            raise ValueError(
                "Each hint pair's outputs must have the same shape except "
                "the channel axis, which an adapter maps. " + received
            )
        if axis != -1 and t.shape[axis] != s.shape[axis]:
            raise ValueError(
                "A hint pair of different widths needs channels-last maps "
                "(the adapter maps the last axis), but "
                "keras.config.image_data_format() is 'channels_first'. Pair "
                "layers of the same width, or build the models channels "
                "last. " + received
            )
        shapes.append((tuple(s.shape), tuple(t.shape)))
    return shapes


def _normalize_feature_pairs(feature_pairs):
    if feature_pairs is None:
        return ()
    message = (
        "`feature_pairs` must be a list of (teacher_layer_name, "
        "student_layer_name) pairs of strings. Received: "
        f"feature_pairs={feature_pairs!r}"
    )
    if isinstance(feature_pairs, (str, dict)) or not isinstance(
        feature_pairs, (list, tuple)
    ):
        raise ValueError(message)
    pairs = []
    for pair in feature_pairs:
        if (
            not isinstance(pair, (list, tuple))
            or len(pair) != 2
            or not all(isinstance(name, str) for name in pair)
        ):
            raise ValueError(message)
        pairs.append((pair[0], pair[1]))
    return tuple(pairs)


def _serialize_uncompiled(model):
    # The distiller trains the student with its own optimizer and only runs
    # the teacher, so their own compile state (a teacher trained with `fit`
    # has one) is not part of the distiller.
    config = keras.saving.serialize_keras_object(model)
    config.pop("compile_config", None)
    return config


def _hint_outputs(teacher, student, pairs):
    """The symbolic outputs of the hint layers `(teacher_name,
    student_name)` of each pair: `(teacher_features, student_features)`."""
    return (
        [_layer_output(teacher, name, "teacher") for name, _ in pairs],
        [_layer_output(student, name, "student") for _, name in pairs],
    )


def _with_defaults(translated):
    """`(alpha, temperature, feature_pairs, feature_weight)` from the
    translated arguments, the defaults (0.9, 4.0, None, 1.0) where unset."""
    def value_or(name, default):
        return default if translated[name] is None else translated[name]

    return (
        value_or("alpha", 0.9),
        value_or("temperature", 4.0),
        translated["feature_pairs"],
        value_or("feature_weight", 1.0),
    )


@keras.saving.register_keras_serializable(package="keras_selfdistill")
class Distiller(DistillationBase):
    """Knowledge distillation: a frozen teacher teaches a student in `fit`.

    The student learns from the labels and from the teacher's softened
    predictions (Hinton et al., 2015), optionally also matching the
    teacher's intermediate features ("hints", Romero et al., 2015). With
    student logits `s`, teacher logits `t` and hint pairs `(T_j, S_j)`:

    `L = (1 - alpha) * CE(y, s) + alpha * T^2 * KL(softmax(t/T) || softmax(s/T))
         + feature_weight * sum_j mean((A_j(S_j) - T_j)^2)`

    each term averaged over the batch with `sample_weight` (Keras's
    `"sum_over_batch_size"`). `A_j` is a learned linear adapter on the last
    (channel) axis (a bias-free `Dense`; a 1x1 convolution for feature maps),
    present only when the student's width differs from the teacher's. The
    hint term is the squared distance divided by the number of feature
    elements, so `feature_weight` means the same for a 64-wide vector and a
    14x14x32 map. The math is `keras_selfdistill.losses`'s
    `distillation_objective` and `feature_distance`.

    The teacher is frozen: construction sets `teacher.trainable = False`
    (on your teacher object), it is always called with `training=False` (its
    BatchNorm statistics never move) and its outputs pass through
    `stop_gradient`. Each training step runs the student once, reading its
    logits and every hint layer from that one pass, and the teacher once
    (or not at all with cached logits). `predict` and `__call__` return the
    student's logits; `distiller.student` is the bare student, ready to save
    or serve.

    **Cached teacher.** When the inputs do not change between epochs (arrays,
    no random augmentation in the input pipeline), the teacher's logits can
    be computed once with `cache_teacher_logits(x)`, which returns
    `{"inputs": x, "teacher_logits": logits}`; `fit` on that runs no teacher
    at all, and gives the same loss as the uncached distiller on the same
    batch. Any data source (e.g. a `tf.data` pipeline) whose `x` has that
    form uses the cache. Do not cache when the input pipeline augments
    randomly: logits computed on one random view would be paired with other
    views. (Random augmentation layers inside the student are fine: in both
    modes the teacher sees the un-augmented batch.)

    `compile(optimizer, metrics=[...])` takes no `loss`. Metrics are the
    student's, under their plain names (`accuracy`); the history also has
    `cross_entropy_loss`, `distillation_loss` (unweighted KL times `T^2`)
    and, with hints, `feature_loss` (before `feature_weight`).

    Args:
        teacher: a built, trained functional or Sequential `keras.Model`
            with one logits output `(batch, num_classes)`.
        student: a built functional or Sequential `keras.Model` with the same
            inputs and number of classes, outputting logits.
        alpha: float in [0, 1] or `None`. Weight of the teacher term. Like
            `temperature` and `feature_weight` it is held in a non-trainable
            variable, so `distiller.alpha = 0.5` works between steps of a
            compiled `fit` (schedules). `None` means `0.9`, or
            `1 - student_loss_weight` with Keras's arguments. Defaults to
            `None`.
        temperature: float > 0 or `None`. Softmax temperature `T`. `None`
            means `4.0`, or the `LogitsDistillation`'s. Defaults to `None`.
        feature_pairs: list of `(teacher_layer_name, student_layer_name)`
            pairs for hint losses, or `None` for logits only. Each pair's
            outputs must have the same shape except the last axis. Defaults
            to `None`.
        feature_weight: float >= 0 or `None`. Weight of the hint term.
            `None` means `1.0`. Defaults to `None`.
        scale_by_temperature_squared: bool. Multiply the KL term by `T^2` so
            its gradients keep the cross-entropy's scale at any temperature
            (Hinton et al., section 2). Defaults to `True`.
        distillation_losses: `keras.distillation.LogitsDistillation`, or a
            list of it and `FeatureDistillation`s, as for
            `keras.distillation.Distiller`; translated at construction to
            `temperature`, `feature_pairs` and `feature_weight` (exactly the
            same objective, with the KL taken of the softened probabilities
            times `T^2` and `sample_weight` honoured). Arguments without an
            exact counterpart raise an error showing the translation
            (docs/migrating_from_keras_distillation.md). Defaults to `None`.
        distillation_loss_weights: list of floats or `None`. Keras's weights
            of `distillation_losses`. Defaults to `None` (all 1).
        student_loss_weight: float in [0, 1] or `None`. Keras's weight of
            the labels: `alpha = 1 - student_loss_weight`. With
            `distillation_losses` and neither this nor `alpha`, Keras's
            default `0.5` applies. Defaults to `None`.
        **kwargs: base model arguments (`name`, `trainable`, `dtype`).

    Example:

    ```python
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(128, activation="relu", name="hidden")(x)
    teacher = keras.Model(inputs, keras.layers.Dense(10)(x))
    teacher.compile("adam", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    teacher.fit(x_train, y_train, epochs=5)

    def make_student():
        inputs = keras.Input((8, 8, 1))
        x = keras.layers.Flatten()(inputs)
        x = keras.layers.Dense(16, activation="relu", name="hidden")(x)
        return keras.Model(inputs, keras.layers.Dense(10)(x))

    distiller = Distiller(teacher, make_student(), alpha=0.9, temperature=4.0)
    distiller.compile(optimizer="adam", metrics=["accuracy"])
    # The teacher's logits, computed once: no teacher in the training steps.
    distiller.fit(distiller.cache_teacher_logits(x_train), y_train, epochs=5)
    distiller.student.save("student.keras")

    # FitNets hints as well: the student's 16 hidden features, through a
    # learned adapter, match the teacher's 128.
    hinted = Distiller(teacher, make_student(),
                       feature_pairs=[("hidden", "hidden")])
    hinted.compile(optimizer="adam", metrics=["accuracy"])
    hinted.fit(x_train, y_train, epochs=5)
    ```

    References:
        Hinton, Vinyals, Dean. "Distilling the Knowledge in a Neural
        Network", 2015. https://arxiv.org/abs/1503.02531

        Romero, Ballas, Kahou, Chassang, Gatta, Bengio. "FitNets: Hints for
        Thin Deep Nets", ICLR 2015. https://arxiv.org/abs/1412.6550
    """

    alpha = Hyperparameter(check_unit_interval)
    temperature = Hyperparameter(check_positive)
    feature_weight = Hyperparameter(check_non_negative)

    def __init__(
        self,
        teacher,
        student,
        alpha=None,
        temperature=None,
        feature_pairs=None,
        feature_weight=None,
        scale_by_temperature_squared: bool = True,
        distillation_losses=None,
        distillation_loss_weights=None,
        student_loss_weight=None,
        **kwargs,
    ):
        kwargs.setdefault("name", "distiller")
        super().__init__(**kwargs)
        translated = translate_keras_arguments(
            distillation_losses,
            distillation_loss_weights,
            student_loss_weight,
            alpha,
            temperature,
            feature_pairs,
            feature_weight,
        )
        alpha, temperature, feature_pairs, feature_weight = _with_defaults(
            translated
        )
        teacher_logits, student_logits = _check_teacher_and_student(
            teacher, student
        )
        self.alpha = alpha
        self.temperature = temperature
        self.feature_weight = feature_weight
        self.scale_by_temperature_squared = bool(scale_by_temperature_squared)
        self.num_classes = int(student_logits.shape[-1])
        pairs = _normalize_feature_pairs(feature_pairs)
        teacher_features, student_features = _hint_outputs(
            teacher, student, pairs
        )
        self._set_untracked("_feature_pairs", pairs)
        self._set_untracked(
            "_feature_shapes",
            _hint_shapes(pairs, teacher_features, student_features),
        )
        # Frozen only once every check has passed: a failed construction
        # leaves the caller's teacher as it was.
        teacher.trainable = False
        self.teacher = teacher
        self.student = student
        if pairs:
            self._set_views(
                ("teacher", teacher, teacher_logits, teacher_features),
                ("student", student, student_logits, student_features),
            )
        self.build(None)

    def _set_views(self, *roles):
        """Functional views over the same layers (untracked: the weights
        belong to `teacher` and `student`): logits plus every hint layer's
        output from one forward pass. `roles` are `(role, model, logits,
        features)` tuples."""
        for role, model, logits, features in roles:
            self._set_untracked(
                f"_{role}_view",
                keras.Model(
                    symbolic_inputs(model, role),
                    {"logits": logits, "features": features},
                    name=f"{self.name}_{role}_view",
                ),
            )

    def build(self, input_shape=None):
        """Creates the hint adapters (one per pair whose widths differ).

        Shapes come from the two functional graphs, so this runs at
        construction and every weight exists before `compile`, `fit` or
        `load_model`.
        """
        if getattr(self, "feature_adapters", None) is not None:
            return
        adapters = []
        for (_, student_name), (student_shape, teacher_shape) in zip(
            self._feature_pairs, self._feature_shapes
        ):
            if student_shape[-1] == teacher_shape[-1]:
                adapters.append(None)
                continue
            adapter = keras.layers.Dense(
                teacher_shape[-1],
                use_bias=False,
                dtype=self.dtype_policy,
                name=f"{student_name}_adapter_{len(adapters)}",
            )
            adapter.build(student_shape)
            adapters.append(adapter)
        self.feature_adapters = adapters
        self.built = True

    @property
    def feature_pairs(self):
        """The `(teacher_layer_name, student_layer_name)` hint pairs."""
        return [list(pair) for pair in self._feature_pairs]

    @property
    def loss_term_names(self):
        if self._feature_pairs:
            return ("cross_entropy", "distillation", "feature")
        return ("cross_entropy", "distillation")

    @property
    def metric_head_names(self):
        return ("student",)

    def head_logits_for_metrics(self, y_pred):
        return [y_pred["student_logits"]]

    # ------------------------------------------------------------------ #
    # Forward pass.
    # ------------------------------------------------------------------ #

    def training_outputs(self, inputs, training=None):
        outputs = {}
        if is_cached_batch(inputs):
            if self._feature_pairs:
                raise ValueError(
                    "Cached teacher logits cannot be used with "
                    f"feature_pairs={self.feature_pairs}: the hint features "
                    "would still need the teacher every step. Train on the "
                    "plain inputs, or drop the feature pairs."
                )
            teacher_logits = inputs[CACHED_TEACHER_LOGITS_KEY]
            if len(teacher_logits.shape) != 2 or (
                teacher_logits.shape[-1] != self.num_classes
            ):
                raise ValueError(
                    "Cached teacher logits must have shape (batch, "
                    f"{self.num_classes}). Received: teacher_logits with shape "
                    f"{tuple(teacher_logits.shape)}"
                )
            inputs = inputs[CACHED_INPUTS_KEY]
            outputs["teacher_logits"] = teacher_logits
        elif self._feature_pairs:
            teacher = self._teacher_view(inputs, training=False)
            outputs["teacher_logits"] = teacher["logits"]
            outputs["teacher_features"] = teacher["features"]
        else:
            outputs["teacher_logits"] = self.teacher(inputs, training=False)
        if self._feature_pairs:
            student = self._student_view(inputs, training=training)
            outputs["student_logits"] = student["logits"]
            outputs["student_features"] = student["features"]
        else:
            outputs["student_logits"] = self.student(inputs, training=training)
        return outputs

    def inference_outputs(self, inputs, training=None):
        if is_cached_batch(inputs):
            inputs = inputs[CACHED_INPUTS_KEY]
        return self.student(inputs, training=training)

    # ------------------------------------------------------------------ #
    # Training.
    # ------------------------------------------------------------------ #

    def _feature_term(self, student_features, teacher_features):
        """Per-sample sum over pairs of the mean squared hint distance."""
        total = None
        for adapter, student_feature, teacher_feature in zip(
            self.feature_adapters, student_features, teacher_features
        ):
            if adapter is not None:
                student_feature = adapter(student_feature)
            distance = losses.feature_distance(
                student_feature, teacher_feature, reduction="mean"
            )
            total = distance if total is None else total + distance
        return total

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        self.check_training_batch(y, y_pred)
        per_sample = losses.distillation_objective(
            y,
            y_pred["student_logits"],
            y_pred["teacher_logits"],
            alpha=self.alpha,
            temperature=self.temperature,
            scale_by_temperature_squared=self.scale_by_temperature_squared,
        )
        total = per_sample["total"]
        terms = {
            "cross_entropy": losses.weighted_batch_mean(
                per_sample["cross_entropy"], sample_weight
            ),
            "distillation": losses.weighted_batch_mean(
                per_sample["distillation"], sample_weight
            ),
        }
        if self._feature_pairs:
            feature = self._feature_term(
                y_pred["student_features"], y_pred["teacher_features"]
            )
            total = total + keras.ops.cast(self.feature_weight, "float32") * (
                feature
            )
            terms["feature"] = losses.weighted_batch_mean(feature, sample_weight)
        total = losses.weighted_batch_mean(total, sample_weight)
        self.update_loss_trackers(
            terms, keras.ops.shape(y_pred["student_logits"])[0]
        )
        return self.add_extra_losses(total)

    # ------------------------------------------------------------------ #
    # Cached teacher.
    # ------------------------------------------------------------------ #

    def cache_teacher_logits(self, x, batch_size: int = 256, verbose: int = 0):
        """Runs the teacher once over `x`, for training without the teacher.

        Returns `x` wrapped with the teacher's logits, which `fit`,
        `evaluate` and `predict` accept in place of `x`:

        ```python
        cached_x = distiller.cache_teacher_logits(x_train)
        distiller.fit(cached_x, y_train, epochs=10, shuffle=True)
        ```

        Each training step then runs the student alone, as in plain
        `student.fit`, with the same loss as the uncached distiller (the
        teacher runs with `training=False` in both, so its output does not
        depend on the step). Keras shuffles `cached_x` and `y_train` with one
        permutation, so each row keeps its logits.

        Only arrays are accepted: a dataset or generator may shuffle or
        augment randomly on each pass, and logits computed on one pass would
        then belong to other samples or other random views. For a
        deterministic `tf.data` pipeline, build the same structure yourself:
        `{"inputs": x, "teacher_logits": distiller.teacher.predict(x)}`.
        Caching cannot be combined with `feature_pairs`.

        Args:
            x: the inputs, as arrays (numpy or backend tensors, or a dict or
                list of them for a multi-input model).
            batch_size: int. Batch size for the teacher's pass. Defaults to
                `256`.
            verbose: int. `predict` verbosity. Defaults to `0`.

        Returns:
            A dict `{"inputs": x, "teacher_logits": array (samples,
            num_classes)}`.
        """
        if is_cached_batch(x):
            raise ValueError(
                "These inputs already carry cached teacher logits "
                "({'inputs': ..., 'teacher_logits': ...}); pass them to fit "
                "as they are."
            )
        if self._feature_pairs:
            raise ValueError(
                "Cached teacher logits cannot be used with "
                f"feature_pairs={self.feature_pairs}: the hint features "
                "would still need the teacher every step."
            )
        leaves = keras.tree.flatten(x)
        if not leaves or not all(
            hasattr(leaf, "shape") and len(leaf.shape) >= 1 for leaf in leaves
        ):
            raise ValueError(
                "cache_teacher_logits needs the inputs as arrays (a numpy "
                "array or tensor, or a dict or list of them). A dataset or "
                "generator may shuffle or augment randomly on each pass, so "
                "logits computed once could belong to other samples or other "
                f"views. Received: x of type {type(x).__name__}. For a "
                "deterministic pipeline, build {'inputs': x, 'teacher_logits': "
                "distiller.teacher.predict(x)} yourself."
            )
        teacher_logits = self.teacher.predict(
            x, batch_size=batch_size, verbose=verbose
        )
        return {
            CACHED_INPUTS_KEY: x,
            CACHED_TEACHER_LOGITS_KEY: teacher_logits,
        }

    # ------------------------------------------------------------------ #
    # Serialization.
    # ------------------------------------------------------------------ #

    def compile(self, optimizer="rmsprop", loss=None, **kwargs):
        """Configures training, as `keras.Model.compile`.

        `loss` may be `None` or repeat the label term the Distiller already
        has, `keras.losses.SparseCategoricalCrossentropy(from_logits=True)`
        (or `CategoricalCrossentropy(from_logits=True)`), as code written
        for `keras.distillation.Distiller` passes it; anything else is
        refused, since the objective is set by the constructor.

        Args:
            optimizer: optimizer name or instance.
            loss: `None` or the cross-entropy from logits (see above).
            **kwargs: the other `compile` arguments (`metrics`, ...).
        """
        if loss is not None:
            check_label_loss(loss)
        super().compile(optimizer=optimizer, **kwargs)

    def get_config(self):
        return {
            **self.base_config(),
            "teacher": _serialize_uncompiled(self.teacher),
            "student": _serialize_uncompiled(self.student),
            "feature_pairs": self.feature_pairs or None,
            "scale_by_temperature_squared": self.scale_by_temperature_squared,
        }

    @classmethod
    def from_config(cls, config):
        config = cls.constructor_arguments(config)
        teacher = keras.saving.deserialize_keras_object(config.pop("teacher"))
        student = keras.saving.deserialize_keras_object(config.pop("student"))
        return cls(teacher, student, **config)
