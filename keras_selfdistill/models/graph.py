"""Small helpers for reading functional graphs: who made a tensor, what it
is computed from, and is it probabilities or logits."""

import keras

from keras_selfdistill.compat import tensor_parents
from keras_selfdistill.compat import tensor_producer

#: Layers that pass a classifier's logits on unchanged in meaning: walking
#: back through them from an output finds the layer that maps features to
#: classes (keras.applications' MobileNetV3 ends Conv2D "Logits" -> Flatten
#: -> Activation "Predictions").
PASS_THROUGH_LAYERS = (
    keras.layers.Flatten,
    keras.layers.Reshape,
    keras.layers.Activation,
    keras.layers.Dropout,
    keras.layers.GaussianDropout,
    keras.layers.GaussianNoise,
    keras.layers.AlphaDropout,
    keras.layers.Identity,
)


def producing_layer(tensor):
    """The layer whose call produced the symbolic `tensor`.

    Args:
        tensor: a `KerasTensor` of a functional graph.

    Returns:
        The producing `keras.layers.Layer`.
    """
    layer = tensor_producer(tensor)
    if layer is None:
        raise ValueError(
            "Every output must be a symbolic tensor made by a Keras layer "
            f"(functional API). Received: {tensor!r}"
        )
    return layer


def outputs_probabilities(layer) -> bool:
    """Whether `layer` ends in a softmax (probabilities, not logits)."""
    activation = getattr(layer, "activation", None)
    if isinstance(layer, keras.layers.Softmax):
        return True
    return activation is keras.activations.softmax or getattr(
        activation, "__name__", ""
    ) == "softmax"


def check_outputs_logits(layer, subject) -> None:
    """Refuses a layer that outputs softmax probabilities where distillation
    needs logits.

    Args:
        layer: the layer producing the output.
        subject: str. What the message calls the output's owner, e.g.
            "The teacher 'big'" or "The output of layer 'logits'".

    Raises:
        ValueError: naming `subject`, the layer and what to build instead.
    """
    if outputs_probabilities(layer):
        raise ValueError(
            f"{subject} outputs softmax probabilities (layer '{layer.name}'), "
            "but distillation needs logits (the temperature divides logits). "
            "Build the classifier without the softmax (e.g. "
            "Dense(num_classes) or keras.applications.*("
            "classifier_activation=None)) and apply keras.ops.softmax to "
            "predictions if you need probabilities."
        )


def ancestor_tensors(tensor):
    """Every symbolic tensor `tensor` is computed from, `tensor` included.

    Args:
        tensor: a `KerasTensor` of a functional graph.

    Returns:
        A list of `KerasTensor`s, each once, `tensor` first.
    """
    found, stack, seen = [], [tensor], set()
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        found.append(current)
        stack.extend(tensor_parents(current))
    return found


def check_logits_student(student) -> None:
    """`student` must be a built `keras.Model` with one logits output.

    The check every single-model wrapper (`EMATeacher`,
    `ClassWiseSelfDistillation`, `ProgressiveSelfDistillation`,
    `LastBatchSelfDistillation`, ...) runs on construction. A subclassed
    model has no symbolic outputs; its shapes are checked when the loss runs.

    Raises:
        ValueError: naming what was received and what is allowed.
    """
    if not isinstance(student, keras.Model):
        raise ValueError(
            "`student` must be a keras.Model mapping inputs to logits "
            f"(batch, num_classes). Received: student of type "
            f"{type(student).__name__}"
        )
    if not student.built or not student.weights:
        raise ValueError(
            "`student` must be built (have its weights), so they are saved, "
            "restored and copied with the model: build it with a keras.Input "
            "(functional/Sequential) or call it once on a batch. Received: "
            f"unbuilt student '{student.name}'."
        )
    outputs = known_outputs(student)
    if not outputs:
        return
    if len(outputs) != 1 or len(outputs[0].shape) != 2:
        raise ValueError(
            "`student` must have one output of logits (batch, num_classes). "
            f"Received: output shape(s) {[tuple(o.shape) for o in outputs]}"
        )
    check_outputs_logits(producing_layer(outputs[0]), f"Student '{student.name}'")


def known_outputs(model):
    """A model's symbolic outputs, or `None` for a subclassed model."""
    try:
        return model.outputs
    except (AttributeError, ValueError):
        return None


def known_num_classes(student):
    """The student's class count, or `None` (a subclassed student)."""
    outputs = known_outputs(student)
    return outputs[0].shape[-1] if outputs else None


def classifier_features(output, features=None):
    """The features the classifier making `output` reads, and its layer.

    Walks back from `output` through layers that only reshape, activate or
    drop out (`PASS_THROUGH_LAYERS`) to the layer that maps features to
    the classes, and returns that call's input: for `Dense(10)(pooled)` the
    pooled vector, for MobileNetV3's `Conv2D("Logits") -> Flatten` the
    1024 channels before the 1x1 convolution, never the logits themselves.

    Args:
        output: a `KerasTensor`, the logits `(batch, num_classes)`.
        features: str or `None`. The name of the layer whose output are the
            features, to name them instead of finding them.

    Returns:
        `(classifier_layer, features_tensor)`; with `features` given,
        `classifier_layer` is the named layer.

    Raises:
        ValueError: when the features cannot be found or `features` does
            not name one tensor on the way to `output`; the message says
            how to name them.
    """
    if features is not None:
        return _named_features(output, features)
    layer = producing_layer(output)
    tensor = output
    parents = tensor_parents(tensor)
    while isinstance(layer, PASS_THROUGH_LAYERS) and len(parents) == 1:
        tensor = parents[0]
        layer = producing_layer(tensor)
        parents = tensor_parents(tensor)
    if len(parents) != 1 or isinstance(parents[0], (list, tuple, dict)):
        raise ValueError(
            f"Cannot tell which tensor is the features of the classifier "
            f"'{layer.name}' (it reads {len(parents)} inputs). Name the "
            "layer whose output are the features: features='layer_name' "
            "(pooled to a vector if it has spatial axes), or set "
            "feature_weight=0."
        )
    return layer, parents[0]


def _named_features(output, features):
    if not isinstance(features, str):
        raise ValueError(
            "`features` must be the name (str) of the layer whose output "
            f"are the deepest classifier's features. Received: "
            f"features={features!r}"
        )
    ancestors = ancestor_tensors(output)
    calls = [t for t in ancestors[1:] if producing_layer(t).name == features]
    if not calls:
        names = []
        for tensor in ancestors[1:]:
            name = producing_layer(tensor).name
            if name not in names:
                names.append(name)
        raise ValueError(
            f"`features` must name a layer on the way to the output. "
            f"Received: features={features!r}; layers on the way: "
            f"{names[:40]}"
        )
    if len(calls) > 1:
        raise ValueError(
            f"Layer '{features}' makes {len(calls)} tensors on the way to "
            "the output (several outputs, or called more than once), so "
            "which are the features is ambiguous. Name a layer with one "
            f"output, called once. Received: features={features!r}"
        )
    return producing_layer(calls[0]), calls[0]
