"""Keras's inspection tools on a `SelfDistillModel`: `summary()` shows the
layers and what the heads cost, `get_layer` finds layers inside."""

import keras
import numpy as np
import pytest

from keras_selfdistill import SelfDistillModel

NUM_CLASSES = 10


def backbone():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", name="c1")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="c2")(x)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    logits = keras.layers.Dense(NUM_CLASSES, name="logits")(pooled)
    return keras.Model(inputs, logits, name="plain")


def model_with_a_narrow_head():
    return SelfDistillModel.from_backbone(backbone(), taps=["c1"], head_width=4)


def test_get_layer_finds_backbone_and_head_layers_by_name():
    model = model_with_a_narrow_head()
    assert model.get_layer("c1").kernel.shape == (3, 3, 1, 4)
    assert model.get_layer("head_1").num_classes == NUM_CLASSES
    assert model.get_layer("head_1_bottleneck").num_downsampling == 1
    assert model.get_layer("head_1_feature_projection").units == 8
    with pytest.raises(ValueError, match="No such layer: c3.*'c1', 'c2'"):
        model.get_layer("c3")


def test_get_layer_shares_the_trained_layer():
    model = model_with_a_narrow_head()
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    before = keras.ops.convert_to_numpy(model.get_layer("c1").kernel)
    x = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype("float32")
    model.fit(x, np.arange(4), epochs=1, verbose=0)
    after = keras.ops.convert_to_numpy(model.get_layer("c1").kernel)
    assert not np.allclose(before, after)


def test_parameter_counts_split_backbone_and_heads():
    model = model_with_a_narrow_head()
    counts = model.parameter_counts()
    assert counts["backbone"] == backbone().count_params()
    head = model.get_layer("head_1")
    projection = model.get_layer("head_1_feature_projection")
    expected_head = head.count_params() + projection.count_params()
    assert counts["heads"] == {"head_1": expected_head}
    total = counts["backbone"] + expected_head
    assert counts["heads_share"] == pytest.approx(expected_head / total)
    # Every layer weight of the model is counted once (the hyper-parameter
    # variables, alpha and co., are not parameters).
    layer_weights = model.network.weights + projection.weights
    assert total == sum(int(np.prod(w.shape)) for w in layer_weights)


def test_summary_lists_the_layers_and_the_heads_share():
    model = model_with_a_narrow_head()
    lines = []
    model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line))
    text = "\n".join(lines)
    for name in ("c1", "c2", "logits", "head_1_bottleneck", "head_1_classifier"):
        assert name in text
    counts = model.parameter_counts()
    assert f"Backbone (served by predict): {counts['backbone']:,} parameters" in text
    assert f"head_1: {counts['heads']['head_1']:,} parameters" in text
    assert f"{100 * counts['heads_share']:.1f}% of the model" in text


def test_plot_model_draws_the_heads(tmp_path):
    pytest.importorskip("pydot")
    try:
        keras.utils.model_to_dot(keras.Sequential([keras.Input((1,))]))
    except (ImportError, OSError):
        pytest.skip("graphviz is not installed")
    model = model_with_a_narrow_head()
    dot = keras.utils.model_to_dot(model.network, expand_nested=True)
    names = {node.get_label() for node in dot.get_nodes()}
    assert any("head_1_classifier" in str(name) for name in names)
