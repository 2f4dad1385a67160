"""`SelfDistillModel`: Be Your Own Teacher in plain `model.fit`."""

import keras
import numpy as np

from keras_selfdistill import losses
from keras_selfdistill.layers.auxiliary_head import AuxiliaryHead
from keras_selfdistill.models.backbone_heads import attach_heads
from keras_selfdistill.models.distillation_base import DistillationBase
from keras_selfdistill.models.graph import check_outputs_logits
from keras_selfdistill.models.graph import classifier_features
from keras_selfdistill.models.early_exit import early_exit_predictions
from keras_selfdistill.models.graph import producing_layer
from keras_selfdistill.models.hyperparameters import Hyperparameter
from keras_selfdistill.validation import check_choice
from keras_selfdistill.validation import check_non_negative
from keras_selfdistill.validation import check_positive
from keras_selfdistill.validation import check_unit_interval

_GLOBAL_POOLINGS = {
    3: keras.layers.GlobalAveragePooling1D,
    4: keras.layers.GlobalAveragePooling2D,
    5: keras.layers.GlobalAveragePooling3D,
}


def _pooled_features(features, layer, name):
    """A classifier's input features as a vector (global-average pooled)."""
    rank = len(features.shape)
    if rank == 2:
        return features
    if rank in _GLOBAL_POOLINGS:
        return _GLOBAL_POOLINGS[rank](name=f"{name}_feature_pool")(features)
    raise ValueError(
        f"Cannot pool the {rank}-D input of classifier layer '{layer.name}' "
        "into a feature vector. Name another layer with features=..., use "
        "an AuxiliaryHead, or set feature_weight=0."
    )


@keras.saving.register_keras_serializable(package="keras_selfdistill")
class SelfDistillModel(DistillationBase):
    """A model whose deepest classifier teaches its shallower ones.

    Be Your Own Teacher (Zhang et al., 2019) as a drop-in `keras.Model`: give
    it the functional graph of a network with classifiers at several depths
    (`AuxiliaryHead`s on intermediate tensors plus the network's own final
    classifier), and `fit` trains every classifier at once. With heads `1..C`
    ordered shallow to deep, logits `z_i` and pooled features `F_i`:

    `L = CE(y, z_C) + sum_{i<C} [ (1 - alpha) * CE(y, z_i)
         + alpha * [T^2] * KL(softmax(z_C/T) || softmax(z_i/T))
         + feature_weight * mean_d (P_i(F_i) - F_C)^2 ]`

    where `P_i` is a learned linear projection to the deepest head's feature
    width (only for heads whose width differs), and the deepest logits and
    features are targets (`stop_gradient`). Each term is averaged over the
    batch, with `sample_weight` if given. The math lives in
    `keras_selfdistill.losses.self_distillation_loss`.

    Training runs one forward pass per step through every head. `predict`,
    `__call__` and `export_backbone()` run only the path to the deepest
    classifier, so the heads cost nothing at inference unless you ask for
    them (`predict_heads`, `predict_ensemble`, `predict_early_exit`).

    `compile(optimizer, metrics=[...])` takes no `loss` (the loss above is
    the model's). Every head gets its own copy of each metric: the deepest
    keeps the plain name (`accuracy`, so `EarlyStopping(monitor=
    "val_accuracy")` works), the others are prefixed (`head_1_accuracy`).
    The history also reports each loss term: `cross_entropy_loss` (summed over
    heads), `distillation_loss` and `feature_loss` (summed over shallow heads,
    before their weights). Labels may be integer class ids or one-hot.

    Args:
        inputs: the functional model's input tensor(s) (`keras.Input`).
        outputs: list of at least 2 logits tensors `(batch, num_classes)`,
            shallow to deep. The last is the deepest classifier: the teacher,
            and what `predict` returns.
        alpha: float in [0, 1]. Weight of the distillation term against the
            labels for shallow heads. Defaults to `0.3` (the paper's).
            Like `temperature` and `feature_weight`, it is held in a
            non-trainable variable: `model.alpha` is that variable, and
            `model.alpha = 0.5` assigns it, also between steps of a compiled
            `fit` (schedules).
        temperature: float > 0. Softmax temperature of the distillation term.
            Defaults to `3.0` (the paper's).
        feature_weight: float >= 0. Weight (lambda) of the feature term.
            Defaults to `2.0`: with `feature_reduction="mean"`, the paper's
            0.03 on a 64-wide deepest feature vector (0.03 x 64 = 1.92), for
            any width (`docs/results/feature_term_share.md`).
        scale_by_temperature_squared: bool. Multiply the distillation term by
            `T^2` (Hinton et al., 2015), which keeps its gradient on the
            cross-entropy's scale at any temperature. Defaults to `False`:
            the paper's equation and its official code have no `T^2`, and
            with it at `T=3, alpha=0.3` the teacher term's gradient is 9x
            the paper's, which cost the served classifier up to 5 points on
            some seeds in our tests (`tests/models/test_default_stability.py`,
            `docs/self_distillation.md`). `Distiller` (Hinton's KD) keeps it on.
        feature_reduction: `"mean"` or `"sum"`: the squared feature distance
            averaged over the feature dimensions, so a weight means the same
            on a 64-wide toy CNN and a 2,048-wide ResNet50V2, or summed over
            them, the paper's `||.||^2` (with `feature_weight=0.03`, its
            lambda). Summed, the term is 85-91 % of the loss on
            keras.applications backbones at initialisation; averaged, 22-32 %
            on every backbone measured (`benchmarks/feature_term_share.py`).
            Defaults to `"mean"`. Models saved before this argument existed
            load with `"sum"`, the reduction they were trained with.
        features: str or `None`. Name of the layer whose output are the
            deepest classifier's features `F_C` (global-average pooled if
            it has spatial axes). `None` finds them: the input of the layer
            that maps to the classes, reached from the output through
            Flatten, Reshape, Activation and Dropout layers (so a
            `Conv2D(num_classes, 1) -> Flatten` classifier, as in
            keras.applications' MobileNetV3, gives the features before the
            1x1 convolution, not the logits). Defaults to `None`.
        **kwargs: base model arguments (`name`, `trainable`, `dtype`).

    Example:

    ```python
    inputs = keras.Input((28, 28, 1))
    x1 = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(inputs)
    x2 = keras.layers.Conv2D(32, 3, strides=2, activation="relu")(x1)
    h1 = AuxiliaryHead(num_classes=10, name="head_1")(x1)
    pooled = keras.layers.GlobalAveragePooling2D()(x2)
    logits = keras.layers.Dense(10, name="logits")(pooled)
    model = SelfDistillModel(inputs, [h1, logits])
    model.compile(optimizer="adam", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=3)
    plain_model = model.export_backbone()
    ```

    References:
        Zhang, Song, Gao, Chen, Bao, Ma. "Be Your Own Teacher: Improve the
        Performance of Convolutional Neural Networks via Self Distillation",
        ICCV 2019. https://arxiv.org/abs/1905.08094
    """

    alpha = Hyperparameter(check_unit_interval)
    temperature = Hyperparameter(check_positive)
    feature_weight = Hyperparameter(check_non_negative)

    def __init__(
        self,
        inputs,
        outputs,
        alpha=0.3,
        temperature=3.0,
        feature_weight=2.0,
        scale_by_temperature_squared=False,
        feature_reduction="mean",
        features=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_choice("feature_reduction", feature_reduction, ("sum", "mean"))
        _check_output_count(outputs)
        self.alpha = alpha
        self.temperature = temperature
        self.feature_weight = feature_weight
        self.scale_by_temperature_squared = bool(scale_by_temperature_squared)
        self.feature_reduction = feature_reduction

        outputs = list(outputs)
        head_layers = [producing_layer(output) for output in outputs]
        self._check_outputs(outputs, head_layers)
        self.num_classes = outputs[-1].shape[-1]
        self.head_names = [layer.name for layer in head_layers]
        if len(set(self.head_names)) != len(self.head_names):
            raise ValueError(
                "Each output must come from its own layer (one classifier per "
                f"head). Received outputs of layers {self.head_names}."
            )

        self.features = features
        training_logits, features = _logits_and_features(
            outputs, head_layers, self.features
        )
        # The traced graph of every head's logits and features. It is the
        # only tracked sub-model, so weights are saved once.
        self.network = keras.Model(
            inputs,
            {"logits": training_logits, "features": features},
            name=f"{self.name}_network",
        )
        self._set_views(inputs, outputs)
        self._feature_widths = [int(f.shape[-1]) for f in features]
        self.build(None)

    def _set_views(self, inputs, outputs):
        """Views over the same layers (untracked: no second copy of
        weights): every head's logits, and the backbone alone."""
        self._set_untracked("_inputs_structure", inputs)
        self._set_untracked("_head_outputs", outputs)
        self._set_untracked(
            "_heads_graph",
            keras.Model(inputs, outputs, name=f"{self.name}_heads"),
        )
        self._set_untracked(
            "_backbone_graph",
            keras.Model(inputs, outputs[-1], name=f"{self.name}_backbone"),
        )

    @staticmethod
    def _check_outputs(outputs, head_layers):
        class_counts = []
        for output, layer in zip(outputs, head_layers):
            if len(output.shape) != 2:
                raise ValueError(
                    "Every output must be logits of shape (batch, "
                    f"num_classes). Received: output of layer '{layer.name}' "
                    f"with shape {tuple(output.shape)}"
                )
            check_outputs_logits(layer, f"The output of layer '{layer.name}'")
            class_counts.append(output.shape[-1])
        if len(set(class_counts)) != 1 or class_counts[0] is None:
            listing = ", ".join(
                f"'{layer.name}': {count}"
                for layer, count in zip(head_layers, class_counts)
            )
            raise ValueError(
                "Every head must predict the same, known number of classes. "
                f"Received class counts {{{listing}}}."
            )

    def build(self, input_shape=None):
        """Creates the feature projections (one per narrower/wider head).

        Shapes come from the functional graph, so this runs at construction
        and every weight exists before `compile`, `fit` or `load_model`.
        """
        if getattr(self, "feature_projections", None) is not None:
            return
        deepest_width = self._feature_widths[-1]
        projections = []
        for name, width in zip(self.head_names[:-1], self._feature_widths):
            if width == deepest_width:
                projections.append(None)
                continue
            projection = keras.layers.Dense(
                deepest_width,
                use_bias=False,
                dtype=self.dtype_policy,
                name=f"{name}_feature_projection",
            )
            projection.build((None, width))
            projections.append(projection)
        self.feature_projections = projections
        self.built = True

    # ------------------------------------------------------------------ #
    # Forward pass.
    # ------------------------------------------------------------------ #

    def training_outputs(self, inputs, training=None):
        return self.network(inputs, training=training)

    def inference_outputs(self, inputs, training=None):
        return self._backbone_graph(inputs, training=training)

    def head_outputs(self, inputs, training=False):
        """Every head's logits and pooled features from one forward pass.

        Args:
            inputs: a batch of inputs.
            training: bool. Training mode (batch norm, dropout).

        Returns:
            A dict with `"logits"` and `"features"`, each a list of tensors,
            shallow to deep (features before projection).
        """
        return self.network(inputs, training=training)

    # ------------------------------------------------------------------ #
    # Inspection: the layers inside, as for a functional model.
    # ------------------------------------------------------------------ #

    def get_layer(self, name=None, index=None):
        """A layer by name: the backbone's, a head's, or a projection's.

        `keras.Model.get_layer` sees only this model's own attributes (one
        functional `network`); this also looks inside it, at any depth, so
        `model.get_layer("conv1")` and `model.get_layer("head_1")` work as
        on the user's functional model.

        Args:
            name: str or `None`. The layer's name.
            index: int or `None`. Index among this model's own layers (as
                in `keras.Model.get_layer`).

        Returns:
            A `keras.layers.Layer`.
        """
        try:
            return super().get_layer(name=name, index=index)
        except ValueError:
            if name is None:
                raise
        layers = self._inner_layers()
        for layer in layers:
            if layer.name == name:
                return layer
        raise ValueError(
            f"No such layer: {name}. Existing layers are: "
            f"{[layer.name for layer in layers]}."
        )

    def _inner_layers(self):
        """Every layer of the network (nested ones too) and projections."""
        found, stack = [], list(reversed(self._heads_graph.layers))
        stack = list(reversed(self.network.layers)) + stack
        while stack:
            layer = stack.pop()
            if any(layer is other for other in found):
                continue
            found.append(layer)
            if isinstance(layer, keras.Model):
                stack.extend(reversed(layer.layers))
        found.extend(p for p in self.feature_projections if p is not None)
        return found

    def parameter_counts(self):
        """Parameters of the served backbone, of each head, and their share.

        Returns:
            A dict: `"backbone"` (parameters on the path to the deepest
            classifier), `"heads"` (a dict, head name to the parameters
            only that head uses, its feature projection included), and
            `"heads_share"` (the heads' parameters over all the model's).
        """
        backbone_weights = {id(w) for w in self._backbone_graph.weights}
        heads = {}
        for name, projection in zip(self.head_names[:-1], self.feature_projections):
            head_graph = keras.Model(
                self._inputs_structure,
                self._head_outputs[self.head_names.index(name)],
            )
            weights = [w for w in head_graph.weights if id(w) not in backbone_weights]
            if projection is not None:
                weights += projection.weights
            heads[name] = int(sum(np.prod(w.shape) for w in weights))
        backbone = int(sum(np.prod(w.shape) for w in self._backbone_graph.weights))
        total = backbone + sum(heads.values())
        return {
            "backbone": backbone,
            "heads": heads,
            "heads_share": sum(heads.values()) / total if total else 0.0,
        }

    def summary(self, *args, print_fn=None, expand_nested=False, **kwargs):
        """Prints the network layer by layer, then the heads' parameters.

        The layer table is Keras's summary of the functional network (the
        backbone's layers and every head; `expand_nested=True` opens nested
        models), followed by the parameter count of the backbone, of each
        head and the heads' share. Arguments are `keras.Model.summary`'s.
        """
        self.network.summary(
            *args, print_fn=print_fn, expand_nested=expand_nested, **kwargs
        )
        counts = self.parameter_counts()
        write = print_fn or print
        lines = [f"Backbone (served by predict): {counts['backbone']:,} parameters"]
        for name, count in counts["heads"].items():
            lines.append(f"  {name}: {count:,} parameters")
        lines.append(
            f"Heads: {sum(counts['heads'].values()):,} parameters, "
            f"{100 * counts['heads_share']:.1f}% of the model"
        )
        for line in lines:
            write(line)

    # ------------------------------------------------------------------ #
    # Training.
    # ------------------------------------------------------------------ #

    def project_features(self, features):
        """Projects every shallow head's features to the deepest width.

        Args:
            features: list of tensors `(batch, width_i)`, shallow to deep.

        Returns:
            The list with each shallow entry passed through its projection
            (heads already as wide as the deepest are unchanged).
        """
        projected = []
        for feature, projection in zip(features[:-1], self.feature_projections):
            projected.append(feature if projection is None else projection(feature))
        projected.append(features[-1])
        return projected

    loss_term_names = ("cross_entropy", "distillation", "feature")

    @property
    def metric_head_names(self):
        return self.head_names

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        self.check_training_batch(y, y_pred)
        # The feature term is always computed (projections of pooled
        # vectors, a negligible cost) so a schedule can raise its weight.
        terms = losses.self_distillation_loss(
            y,
            y_pred["logits"],
            self.project_features(y_pred["features"]),
            alpha=self.alpha,
            temperature=self.temperature,
            feature_weight=self.feature_weight,
            feature_reduction=self.feature_reduction,
            sample_weight=sample_weight,
            scale_by_temperature_squared=self.scale_by_temperature_squared,
        )
        self.update_loss_trackers(terms, keras.ops.shape(y_pred["logits"][-1])[0])
        return self.add_extra_losses(terms["total"])

    # ------------------------------------------------------------------ #
    # Inference.
    # ------------------------------------------------------------------ #

    def export_backbone(self, name=None):
        """The plain network: inputs to the deepest logits, heads dropped.

        The returned functional `keras.Model` shares this model's layers (and
        so its trained weights); its predictions equal `predict`'s. Save or
        serve it like any Keras model; it needs nothing from this package.

        Args:
            name: str or `None`. Name of the returned model.

        Returns:
            A `keras.Model`.
        """
        return keras.Model(
            self._inputs_structure,
            self._head_outputs[-1],
            name=name or f"{self.name}_backbone",
        )

    def export_heads(self, name=None):
        """A plain model returning every head's logits, shallow to deep.

        For early-exit deployment, or to inspect the heads with ordinary
        Keras tools. It shares this model's layers (and weights) and needs
        `keras_selfdistill` only for its `AuxiliaryHead` layers.

        Args:
            name: str or `None`. Name of the returned model.

        Returns:
            A functional `keras.Model` with one output per head.
        """
        return keras.Model(
            self._inputs_structure,
            list(self._head_outputs),
            name=name or f"{self.name}_heads",
        )

    def predict_heads(self, x, **predict_kwargs):
        """Every head's logits, shallow to deep.

        Args:
            x: inputs, as for `predict`.
            **predict_kwargs: `batch_size`, `verbose`, `steps`, `callbacks`.

        Returns:
            A list of numpy arrays `(samples, num_classes)`, one per head.
        """
        return list(self._heads_graph.predict(x, **predict_kwargs))

    def predict_ensemble(self, x, **predict_kwargs):
        """The mean of every head's logits (the paper's "ensemble").

        Args:
            x: inputs, as for `predict`.
            **predict_kwargs: passed to `predict`.

        Returns:
            A numpy array `(samples, num_classes)`.
        """
        return np.mean(np.stack(self.predict_heads(x, **predict_kwargs)), axis=0)

    def predict_early_exit(self, x, threshold=0.9, **predict_kwargs):
        """Anytime prediction: each sample exits at its first confident head.

        A sample exits at the shallowest head whose largest softmax
        probability is at least `threshold`; samples no head is sure of exit
        at the deepest. This evaluates every head on every sample (batched
        inference cannot stop part of a batch), so it tells what an early-exit
        deployment would answer and how much of the network each sample
        needs, not a speed-up by itself.

        Args:
            x: inputs, as for `predict`.
            threshold: float in [0, 1]. Confidence needed to exit. Defaults
                to `0.9`.
            **predict_kwargs: passed to `predict`.

        Returns:
            An `EarlyExitPredictions` with the exiting head's logits, the exit
            head index per sample and the fraction of samples per head.
        """
        # Checked before the prediction pass, not after it.
        check_unit_interval("threshold", threshold)
        head_logits = np.stack(self.predict_heads(x, **predict_kwargs))
        return early_exit_predictions(head_logits, threshold)

    # ------------------------------------------------------------------ #
    # Construction from an existing model, and serialization.
    # ------------------------------------------------------------------ #

    @classmethod
    def from_backbone(
        cls,
        backbone,
        taps,
        head_width=None,
        head_num_downsampling="auto",
        head_block="single",
        head_attention=False,
        head_gradient_scale=1.0,
        alpha=0.3,
        temperature=3.0,
        feature_weight=2.0,
        scale_by_temperature_squared=False,
        feature_reduction="mean",
        features=None,
        **kwargs,
    ):
        """Attaches an `AuxiliaryHead` to named layers of a functional model.

        The backbone is not rewritten: its layers (and weights) are shared, and
        its output stays the deepest classifier.

        Args:
            backbone: a functional (or built Sequential) `keras.Model` with
                one output of logits `(batch, num_classes)`.
            taps: list of layer names, shallow to deep. A head named
                `head_1`, `head_2`, ... goes on each layer's output. A name
                may be that of a layer inside a nested functional or
                Sequential model at any depth (a keras-hub `Backbone`
                inside its `ImageClassifier`, a keras.applications model
                inside your own): the nested models are then called layer by
                layer in the new model (same layers, same weights). A layer
                with several outputs is tapped as a `(name, index)` pair,
                `index` counting its flattened outputs from 0, e.g.
                `("encoder", 0)`.
            head_width: int, `None` or `"doubling"`. Width of every head's
                blocks; `None` uses the width of the deepest classifier's
                features, so no projection is needed for the feature term.
                `"doubling"` is the paper's: each block doubles the tapped
                channels (`AuxiliaryHead(width=None)`), which ends at the
                deepest width on a backbone whose stages double theirs (a
                ResNet) with narrower, cheaper blocks on the way; elsewhere a
                projection maps the head's features to the deepest width.
                Defaults to `None`.
            head_num_downsampling: `"auto"` or int. Blocks per head
                (`AuxiliaryHead`'s `num_downsampling`); `"auto"`
                halves each tap's resolution until it reaches the resolution
                of the last feature map before the classifier (at least 1).
                Defaults to `"auto"`.
            head_block: `"single"` or `"double"`: convolutions per
                downsampling step of every head (`AuxiliaryHead`'s `block`;
                `"double"` is the authors' SepConv). Defaults to `"single"`.
            head_attention: bool. The authors' attention gate in every head
                (`AuxiliaryHead`'s `attention`; 4-D images only). Defaults
                to `False`.
            head_gradient_scale: float in [0, 1]. Fraction of every head's
                gradient that flows into the backbone (`AuxiliaryHead`'s
                `gradient_scale`): `1` is the paper's, smaller values soften
                the heads' pull on the shallow stages (see "Where it helps"
                in the self-distillation guide). Defaults to `1.0`.
            alpha: float in [0, 1]. See the class docstring.
            temperature: float > 0. See the class docstring.
            feature_weight: float >= 0. See the class docstring.
            scale_by_temperature_squared: bool. See the class docstring.
            feature_reduction: `"mean"` or `"sum"`. See the class docstring.
            features: str or `None`. Name of the layer whose output are the
                backbone's features before its classifier; see the class
                docstring. It also sets the heads' default width. Defaults
                to `None` (found from the classifier).
            **kwargs: base model arguments (`name`, ...).

        Returns:
            A `SelfDistillModel`.

        Example:

        ```python
        backbone = keras.applications.MobileNetV3Small(
            input_shape=(32, 32, 3), weights=None, classes=10,
            classifier_activation=None,
        )
        model = SelfDistillModel.from_backbone(
            backbone, taps=["expanded_conv_2_add", "expanded_conv_7_add"]
        )
        ```
        """
        if "head_downsampling" in kwargs:
            raise ValueError(
                "`head_downsampling` is now `head_num_downsampling` (the "
                "AuxiliaryHead argument `num_downsampling`, for every head). "
                f"Received: head_downsampling={kwargs['head_downsampling']!r}"
            )
        backbone_inputs, heads, backbone_output = attach_heads(
            backbone,
            taps,
            head_width,
            head_num_downsampling,
            head_block,
            head_attention,
            features=features,
            head_gradient_scale=head_gradient_scale,
        )
        return cls(
            backbone_inputs,
            heads + [backbone_output],
            alpha=alpha,
            temperature=temperature,
            feature_weight=feature_weight,
            scale_by_temperature_squared=scale_by_temperature_squared,
            feature_reduction=feature_reduction,
            features=features,
            **kwargs,
        )

    def get_config(self):
        _check_layers_rebuild(self._heads_graph)
        return {
            **self.base_config(),
            "graph": keras.saving.serialize_keras_object(self._heads_graph),
            "scale_by_temperature_squared": self.scale_by_temperature_squared,
            "feature_reduction": self.feature_reduction,
            "features": self.features,
        }

    @classmethod
    def from_config(cls, config):
        config = cls.constructor_arguments(config)
        # Models saved before `feature_reduction` existed summed the term.
        config.setdefault("feature_reduction", "sum")
        graph = keras.saving.deserialize_keras_object(config.pop("graph"))
        return cls(graph.input, list(graph.outputs), **config)


def _check_output_count(outputs) -> None:
    """At least two logits outputs, in a list."""
    if not isinstance(outputs, (list, tuple)) or len(outputs) < 2:
        count = len(outputs) if isinstance(outputs, (list, tuple)) else 1
        raise ValueError(
            "SelfDistillModel needs a list of at least 2 logits outputs, "
            "shallow to deep (the last one is the deepest classifier, the "
            f"teacher). Received: {count} output(s)."
        )


def _logits_and_features(outputs, head_layers, deepest_features=None):
    """Every head's logits and pooled features, from one pass of the graph.

    An `AuxiliaryHead`'s two halves are called on its input (same weights),
    so its pooled features and logits come from one pass; any other output
    is its own logits, with the pooled input of its classifier as features
    (found through Flatten/Reshape/Activation/Dropout, or the output of the
    layer named by `deepest_features` for the deepest head).
    """
    training_logits, features = [], []
    for index, (output, layer) in enumerate(zip(outputs, head_layers)):
        if isinstance(layer, AuxiliaryHead):
            if layer.output is not output:
                raise ValueError(
                    f"AuxiliaryHead '{layer.name}' is called more than "
                    "once in this graph. Create one head per tap."
                )
            head_features = layer.bottleneck(layer.input)
            logits = layer.classifier(head_features)
        else:
            logits = output
            named = deepest_features if index == len(outputs) - 1 else None
            classifier, head_features = classifier_features(output, named)
            head_features = _pooled_features(head_features, classifier, layer.name)
        training_logits.append(logits)
        features.append(head_features)
    return training_logits, features


def _check_layers_rebuild(graph):
    """Refuses to serialize a graph holding a layer that cannot be rebuilt
    from its own config.

    Tapping inside a nested model (`from_backbone`) puts its layers in this
    model's graph one by one. Some libraries' layers only rebuild inside
    their model's own `from_config` (keras-hub 0.32's ViT and MiT layers
    return constructor arguments their `__init__` does not take back), and
    Keras would fail deep inside loading; this names them before saving.
    """
    broken = []
    for layer in graph.layers:
        if type(layer).__module__.split(".")[0] in ("keras", "keras_selfdistill"):
            continue
        try:
            type(layer).from_config(layer.get_config())
        except Exception as error:  # Any failure means: cannot be loaded.
            broken.append(
                f"'{layer.name}' ({type(layer).__module__}."
                f"{type(layer).__name__}: {type(error).__name__})"
            )
    if broken:
        raise ValueError(
            f"This model cannot be saved to a `.keras` file: layer(s) "
            f"{', '.join(broken)} cannot be rebuilt from their own config "
            "(they load only inside the model that defined them, and a "
            "head tapped inside that model takes them out of it). Save the "
            "weights instead, `model.save_weights('model.weights.h5')`, and "
            "rebuild with the same `from_backbone(...)` call before "
            "`load_weights`; or tap a layer outside that nested model."
        )
