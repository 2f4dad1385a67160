"""Small helpers for reading functional graphs: who made a tensor, and is
it probabilities or logits."""

import keras


def producing_layer(tensor):
    """The layer whose call produced the symbolic `tensor`.

    Args:
        tensor: a `KerasTensor` of a functional graph.

    Returns:
        The producing `keras.layers.Layer`.
    """
    # `_keras_history` is how every Keras 3 functional graph records which
    # layer made a symbolic tensor; there is no public accessor for it.
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        raise ValueError(
            "Every output must be a symbolic tensor made by a Keras layer "
            f"(functional API). Received: {tensor!r}"
        )
    return history[0]


def outputs_probabilities(layer) -> bool:
    """Whether `layer` ends in a softmax (probabilities, not logits)."""
    activation = getattr(layer, "activation", None)
    if isinstance(layer, keras.layers.Softmax):
        return True
    return activation is keras.activations.softmax or getattr(
        activation, "__name__", ""
    ) == "softmax"
