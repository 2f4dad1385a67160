"""Copies of models: new inputs, a copy with its own weights, an average.

Every model of the package that needs a second model made from the user's
(a teacher copy, an ensemble, a voted teacher) makes it here, one way.
"""

import keras
from keras import ops


def fresh_inputs_like(model):
    """New `keras.Input`s with the structure, shapes and dtypes of `model`'s.

    Args:
        model: a functional or Sequential `keras.Model`.

    Returns:
        The new input tensor(s), in the structure of `model.input`.
    """
    try:
        structure = model.input
    except (AttributeError, ValueError):
        # A Sequential built from a keras.Input lists its inputs only.
        inputs = getattr(model, "inputs", None)
        if not inputs:
            raise ValueError(
                "This needs a functional keras.Model (or a Sequential built "
                "with a keras.Input), whose inputs are known. Received: "
                f"'{model.name}' of type {type(model).__name__}."
            ) from None
        structure = inputs[0] if len(inputs) == 1 else inputs
    return keras.tree.map_structure(
        lambda tensor: keras.Input(
            shape=tuple(tensor.shape[1:]), dtype=tensor.dtype
        ),
        structure,
    )


def _prefixed_layer(prefix):
    def clone_layer(layer):
        config = layer.get_config()
        config["name"] = f"{prefix}{layer.name}"
        return layer.__class__.from_config(config)

    return clone_layer


def teacher_layer_prefix(student, role: str):
    """The `layer_prefix` for a copy of `student` that lives beside it.

    Inside one model every variable path must be unique: Keras's
    `get_state_tree` refuses duplicates, and the torch backend tracks a
    model's parameters by path. A copy of a functional or Sequential
    student keeps the student's layer names, hence its paths, unless its
    layers are renamed; a copy of a subclassed student gets fresh,
    uniquified layer names from Keras already (and `clone_model` cannot
    rename them).

    Args:
        student: a built `keras.Model`.
        role: str. What the copy is, e.g. `"ema_teacher"`.

    Returns:
        `f"{student.name}_{role}_"` for a functional or Sequential
        student, `None` for a subclassed one.
    """
    if isinstance(student, keras.Sequential) or type(student).__name__ == "Functional":
        return f"{student.name}_{role}_"
    return None


def companion_copy(student, role: str):
    """A frozen copy of `student` to live beside it in one model (a teacher,
    a snapshot): named `f"{student.name}_{role}"`, its layers renamed by
    `teacher_layer_prefix(student, role)` so no variable path repeats.

    Args:
        student: a built `keras.Model` (as for `copy_with_weights`).
        role: str. What the copy is, e.g. `"ema_teacher"`.

    Returns:
        The copy, a non-trainable `keras.Model` holding `student`'s values.
    """
    return copy_with_weights(
        student,
        name=f"{student.name}_{role}",
        layer_prefix=teacher_layer_prefix(student, role),
    )


def copy_with_weights(student, name, trainable=False, layer_prefix=None):
    """A copy of `student` with its own variables holding the same values.

    Args:
        student: a built `keras.Model` that `keras.models.clone_model` can
            clone (functional, Sequential, or subclassed with `get_config`).
        name: str. Name of the copy.
        trainable: bool. Whether the copy is trainable. Defaults to `False`
            (a teacher).
        layer_prefix: str or `None`. Prefix for the names of the copy's
            (top-level) layers, so its variable paths differ from the
            student's: the torch backend tracks a model's parameters by
            variable path, and a second variable with the same path inside
            one model hides the first from `zero_grad`. Weight files do not
            depend on layer names, so the copy still loads the student's.
            Functional and Sequential students only. Defaults to `None`
            (the student's names).

    Returns:
        A `keras.Model` whose `weights` pair one-to-one, in order, with
        `student.weights`, holding the same values in new variables.
    """
    clone = keras.models.clone_model(
        student,
        clone_function=_prefixed_layer(layer_prefix) if layer_prefix else None,
    )
    clone.name = name
    if not clone.built:
        # A subclassed model rebuilt from its config: build it like the
        # student was built.
        build_config = student.get_build_config() or {}
        if "input_shape" not in build_config:
            raise ValueError(
                f"Could not build a copy of student '{student.name}': it "
                "was built without a recorded input shape. Call it once on "
                "a batch, e.g. student(x[:1]), before wrapping it."
            )
        clone.build(build_config["input_shape"])
    pairs = list(zip(clone.weights, student.weights))
    if len(clone.weights) != len(student.weights) or any(
        tuple(a.shape) != tuple(b.shape) or a.dtype != b.dtype for a, b in pairs
    ):
        raise ValueError(
            f"Could not copy student '{student.name}': its clone's weights do "
            "not match its own one-to-one. The student must be rebuildable "
            "from its config (keras.models.clone_model)."
        )
    for copy_variable, variable in pairs:
        copy_variable.assign(ops.copy(variable.value))
    clone.trainable = trainable
    return clone


def mean_logits_model(members, name):
    """A functional model averaging the logits of `members`.

    Args:
        members: list of functional or Sequential `keras.Model`s with the
            same inputs, each returning logits `(batch, num_classes)`, with
            distinct names.
        name: str. Name of the returned model.

    Returns:
        A `keras.Model` from new inputs to the mean of the members' logits
        (layer `mean_logits`; one member's logits when there is one). It
        shares the members' weights and saves without this package.
    """
    inputs = fresh_inputs_like(members[0])
    logits = [member(inputs) for member in members]
    output = logits[0]
    if len(logits) > 1:
        output = keras.layers.Average(name="mean_logits")(logits)
    return keras.Model(inputs, output, name=name)
