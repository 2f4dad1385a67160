"""Hyper-parameters held in variables: `alpha`, `temperature`, ...

A model attribute declared as `Hyperparameter` reads as a non-trainable
float32 scalar `keras.Variable` and validates a number assigned to it (like
`optimizer.learning_rate`). A compiled step reads the variable, so a schedule
(a callback assigning `model.alpha = ...`) reaches it under `jit`, and the
current value is saved and restored with the weights.

**The checkpoint format.** Keras stores a model's own variables in the order
they were created, and each variable is created by the first assignment in
the model's constructor. That order is part of the format of every saved
file: `hyperparameter_names` lists the declared attributes in the order the
package's models create them (declaration order, base classes first), and
tests/models/test_hyperparameters.py pins each model's order.
"""

import keras
import numpy as np


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
        value = _python_scalar(self.name, value)
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


def _python_scalar(name, value):
    if isinstance(value, np.generic) or (
        isinstance(value, np.ndarray) and value.ndim == 0
    ):
        return value.item()
    if hasattr(value, "shape") and tuple(value.shape) != ():
        raise ValueError(
            f"`{name}` must be a scalar (one number for the whole model). "
            f"Received: {name} with shape {tuple(value.shape)}"
        )
    return value


def hyperparameter_value(variable) -> float:
    """The current value of a `Hyperparameter` as a Python float."""
    return float(keras.ops.convert_to_numpy(variable))


def hyperparameter_names(model_class) -> list:
    """The `Hyperparameter` attributes of a model class, in declaration
    order (base classes first).

    Args:
        model_class: a class.

    Returns:
        list of str.
    """
    names = []
    for cls in reversed(model_class.__mro__):
        for name, attribute in vars(cls).items():
            if isinstance(attribute, Hyperparameter) and name not in names:
                names.append(name)
    return names


def hyperparameter_config(model) -> dict:
    """`{name: current value}` of every `Hyperparameter` of `model`, for
    `get_config` (the constructor takes each under the same name).

    Args:
        model: a model with `Hyperparameter` attributes.

    Returns:
        dict of str to float.
    """
    return {
        name: hyperparameter_value(getattr(model, name))
        for name in hyperparameter_names(type(model))
    }
