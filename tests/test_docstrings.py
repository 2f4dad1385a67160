"""Every public symbol has a docstring (the API reference is built from them).

Public: every name in `keras_selfdistill.__all__`; for a module there (and
for the model-side modules in `PUBLIC_MODULES`), every class and function it
defines whose name has no leading underscore; for a
class, every public method and property defined by a class of this package
(methods inherited from Keras carry Keras's documentation). A method
overriding a documented one inherits its docstring (`inspect.getdoc`).

Exempt: the Keras protocol methods that Keras itself calls (`call`,
`build`, `get_config`, `from_config`, ...). Their contract is Keras's, and
the API pages leave them out (mkdocs.yml, `filters`).
"""

import inspect
import types

import pytest

import keras_selfdistill
from keras_selfdistill.models import compute_cost
from keras_selfdistill.models import early_exit

PACKAGE = keras_selfdistill.__name__
#: Public modules that `keras_selfdistill.__all__` does not list.
PUBLIC_MODULES = (compute_cost, early_exit)
KERAS_PROTOCOL_METHODS = frozenset({
    "build",
    "call",
    "compute_output_shape",
    "compute_output_spec",
    "from_config",
    "get_config",
})


def _defined_here(module):
    for name, member in vars(module).items():
        if name.startswith("_"):
            continue
        if (inspect.isclass(member) or inspect.isfunction(member)) and (
            member.__module__ == module.__name__
        ):
            yield f"{module.__name__}.{name}", member


def public_symbols():
    """`(qualified name, object)` of every public symbol."""
    symbols = []
    for name in keras_selfdistill.__all__:
        if name == "__version__":
            continue
        member = getattr(keras_selfdistill, name)
        symbols.append((f"{PACKAGE}.{name}", member))
        if isinstance(member, types.ModuleType):
            symbols.extend(_defined_here(member))
    for module in PUBLIC_MODULES:
        symbols.extend(_defined_here(module))
    classes = [(name, member) for name, member in symbols if inspect.isclass(member)]
    for class_name, cls in classes:
        for name in sorted(dir(cls)):
            if name.startswith("_") or name in KERAS_PROTOCOL_METHODS:
                continue
            owner = next((k for k in cls.__mro__ if name in vars(k)), None)
            if owner is None or not owner.__module__.startswith(PACKAGE):
                continue
            attribute = vars(owner)[name]
            if isinstance(attribute, property):
                symbols.append((f"{class_name}.{name}", attribute))
            elif inspect.isfunction(inspect.unwrap(getattr(attribute, "__func__", attribute))):
                symbols.append((f"{class_name}.{name}", getattr(cls, name)))
    return symbols


def test_public_symbols_are_found():
    names = {name for name, _ in public_symbols()}
    # One of each kind, so the walk above cannot silently find nothing.
    assert f"{PACKAGE}.SelfDistillModel" in names
    assert f"{PACKAGE}.SelfDistillModel.predict_early_exit" in names
    assert f"{PACKAGE}.losses.softened_kl_divergence" in names
    assert f"{PACKAGE}.callbacks.PlotWriter" in names
    assert f"{PACKAGE}.models.early_exit.anytime_curve" in names
    assert f"{PACKAGE}.BornAgain.models" in names  # A property.


@pytest.mark.parametrize("name, symbol", public_symbols(), ids=lambda value: (
    value if isinstance(value, str) else ""
))
def test_public_symbol_has_a_docstring(name, symbol):
    docstring = inspect.getdoc(symbol)
    assert docstring and docstring.strip(), f"{name} has no docstring"
