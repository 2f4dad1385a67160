"""Hyper-parameters in variables: one config, and a pinned checkpoint order.

A model's own variables are stored in the order its constructor creates them,
so that order is the format of every saved file: a reordering would load
`alpha` into `temperature`. It is pinned here for every model family, and
`get_config` takes every `Hyperparameter` from one function.
"""

import pytest
from model_families import FAMILIES

from keras_selfdistill.models.hyperparameters import hyperparameter_config
from keras_selfdistill.models.hyperparameters import hyperparameter_names
from keras_selfdistill.models.hyperparameters import hyperparameter_value

#: Each family's own variables, in creation (= checkpoint) order.
CHECKPOINT_ORDER = {
    "Distiller": ["alpha", "temperature", "feature_weight"],
    "EMATeacher": ["alpha", "temperature", "teacher_update_pending", "momentum"],
    "MutualLearning": ["alpha", "temperature"],
    "SelfDistillModel": ["alpha", "temperature", "feature_weight"],
    "SelfEnsembleTeacher": [
        "alpha", "temperature", "teacher_update_pending", "snapshot_steps",
        "next_snapshot_slot",
    ],
}


def own_variable_names(model):
    prefix = f"{model.name}/"
    return [
        variable.path.removeprefix(prefix)
        for variable in model.weights
        if variable.path.startswith(prefix) and variable.path.count("/") == 1
    ]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_own_variables_keep_their_checkpoint_order(family):
    assert own_variable_names(FAMILIES[family]()) == CHECKPOINT_ORDER[family]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_hyperparameters_are_created_in_declaration_order(family):
    model = FAMILIES[family]()
    declared = hyperparameter_names(type(model))
    created = [name for name in own_variable_names(model) if name in declared]
    assert created == declared


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_config_holds_every_hyperparameter_at_its_current_value(family):
    model = FAMILIES[family]()
    model.temperature = 2.5
    config = model.get_config()
    assert hyperparameter_config(model) == {
        name: config[name] for name in hyperparameter_names(type(model))
    }
    assert config["temperature"] == 2.5
    rebuilt = type(model).from_config(config)
    assert hyperparameter_value(rebuilt.temperature) == 2.5
