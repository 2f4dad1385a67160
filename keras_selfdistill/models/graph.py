"""Small helpers for reading functional graphs: who made a tensor, what it
is computed from, and is it probabilities or logits."""

import keras

from keras_selfdistill.compat import tensor_parents
from keras_selfdistill.compat import tensor_producer


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
