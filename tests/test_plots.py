"""keras_selfdistill.plots: compute per head, the anytime curve, PNG output."""

import os
import sys

import keras
import numpy as np
import pytest

from keras_selfdistill import AuxiliaryHead
from keras_selfdistill import SelfDistillModel
from keras_selfdistill import plots

if not os.environ.get("CI"):
    # CI installs matplotlib (scripts/setup.sh); elsewhere it is optional.
    pytest.importorskip("matplotlib", reason='pip install -e ".[plots]"')

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NUM_CLASSES = 10


def build_model():
    """8x8 digits, a head after each of the two first stages."""
    inputs = keras.Input((8, 8, 1), name="image")
    x1 = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stage1")(inputs)
    x2 = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="stage2")(x1)
    x3 = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="stage3")(x2)
    head_1 = AuxiliaryHead(NUM_CLASSES, num_downsampling=2, name="head_1")(x1)
    head_2 = AuxiliaryHead(NUM_CLASSES, width=32, name="head_2")(x2)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(x3)
    logits = keras.layers.Dense(NUM_CLASSES, name="logits")(pooled)
    return SelfDistillModel(inputs, [head_1, head_2, logits])


# MACs by hand: output positions x kernel entries.
STAGE1 = 8 * 8 * (3 * 3 * 1 * 8)          # 4,608
STAGE2 = 4 * 4 * (3 * 3 * 8 * 16)         # 18,432
STAGE3 = 2 * 2 * (3 * 3 * 16 * 32)        # 18,432
LOGITS = 32 * NUM_CLASSES                 # 320
# head_1 on 8x8x8: separable 8->16 at 4x4, separable 16->32 at 2x2, dense.
HEAD_1 = 4 * 4 * (3 * 3 * 8 + 8 * 16) + 2 * 2 * (3 * 3 * 16 + 16 * 32) + 32 * NUM_CLASSES
# head_2 on 4x4x16: separable 16->32 at 2x2, dense.
HEAD_2 = 2 * 2 * (3 * 3 * 16 + 16 * 32) + 32 * NUM_CLASSES


@pytest.fixture(scope="module")
def trained(digits_split):
    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = digits_split
    model = build_model()
    model.compile(optimizer=keras.optimizers.Adam(0.01), metrics=["accuracy"])
    history = model.fit(
        x_train, y_train, epochs=3, batch_size=64, verbose=0,
        validation_data=(x_test, y_test),
    )
    return model, history, (x_test, y_test)


def assert_valid_png(path):
    assert os.path.getsize(path) > 1000
    with open(path, "rb") as png:
        assert png.read(8) == PNG_SIGNATURE
    import matplotlib.image

    height, width, _ = matplotlib.image.imread(path).shape
    assert height > 100 and width > 100


# -- compute per head ---------------------------------------------------- #


def test_layer_macs_counts_kernel_entries_times_output_positions():
    inputs = keras.Input((8, 8, 3))
    conv = keras.layers.Conv2D(4, 3, strides=2, padding="same")
    separable = keras.layers.SeparableConv2D(6, 3, padding="valid")
    dense = keras.layers.Dense(5)
    dense(keras.layers.Flatten()(separable(conv(inputs))))
    assert plots.layer_macs(conv) == 4 * 4 * (3 * 3 * 3 * 4)
    assert plots.layer_macs(separable) == 2 * 2 * (3 * 3 * 4 + 4 * 6)
    assert plots.layer_macs(dense) == (2 * 2 * 6) * 5


def test_layer_macs_ignores_layers_without_kernels():
    inputs = keras.Input((4, 4, 2))
    norm = keras.layers.BatchNormalization()
    pool = keras.layers.GlobalAveragePooling2D()
    pool(norm(inputs))
    assert plots.layer_macs(norm) == 0
    assert plots.layer_macs(pool) == 0


def test_auxiliary_head_macs_follow_each_block_resolution():
    model = build_model()
    assert plots.layer_macs(model.export_heads().get_layer("head_1")) == HEAD_1
    assert plots.layer_macs(model.export_heads().get_layer("head_2")) == HEAD_2


def test_head_costs_count_every_layer_up_to_the_exit_once():
    model = build_model()
    assert plots.head_costs(model) == [
        STAGE1 + HEAD_1,
        STAGE1 + HEAD_1 + STAGE2 + HEAD_2,
        STAGE1 + HEAD_1 + STAGE2 + HEAD_2 + STAGE3 + LOGITS,
    ]
    assert plots.backbone_cost(model) == STAGE1 + STAGE2 + STAGE3 + LOGITS


def test_head_costs_need_static_spatial_shapes():
    inputs = keras.Input((None, None, 1))
    x = keras.layers.Conv2D(4, 3)(inputs)
    head = AuxiliaryHead(3, name="head_1")(x)
    logits = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))
    with pytest.raises(ValueError, match="static spatial shapes"):
        plots.head_costs(SelfDistillModel(inputs, [head, logits]))


# -- the anytime curve ----------------------------------------------------- #


def test_anytime_curve_matches_predict_early_exit(trained):
    model, _, (x_test, y_test) = trained
    thresholds = (0.0, 0.5, 0.9, 0.99, 1.0)
    curve = plots.anytime_curve(model, x_test, y_test, thresholds)
    costs = np.asarray(plots.head_costs(model)) / plots.backbone_cost(model)
    for index, threshold in enumerate(thresholds):
        exits = model.predict_early_exit(x_test, threshold=threshold, verbose=0)
        accuracy = np.mean(exits.logits.argmax(axis=-1) == y_test)
        np.testing.assert_allclose(curve.accuracy[index], accuracy)
        np.testing.assert_allclose(curve.exit_fractions[index], exits.exit_fractions)
        np.testing.assert_allclose(
            curve.cost_fraction[index], np.dot(exits.exit_fractions, costs)
        )


def test_anytime_curve_ends_are_the_first_and_deepest_heads(trained):
    model, _, (x_test, y_test) = trained
    curve = plots.anytime_curve(model, x_test, y_test, (0.0,))
    heads = model.predict_heads(x_test, verbose=0)
    head_accuracy = [np.mean(h.argmax(axis=-1) == y_test) for h in heads]
    np.testing.assert_allclose(curve.head_accuracy, head_accuracy)
    # Threshold 0: every sample leaves at the first head, for its cost.
    np.testing.assert_allclose(curve.accuracy[0], head_accuracy[0])
    np.testing.assert_allclose(curve.cost_fraction[0], curve.head_cost_fraction[0])
    assert curve.head_cost_fraction[0] < 1.0 < curve.head_cost_fraction[-1]


def test_anytime_curve_accepts_one_hot_labels():
    logits = [np.array([[3.0, 0.0], [0.0, 0.1]]), np.array([[0.0, 3.0], [0.0, 3.0]])]
    one_hot = np.array([[1.0, 0.0], [0.0, 1.0]])
    from_ids = plots.anytime_curve_from_logits(logits, [0, 1], [1, 2], 2, (0.9,))
    from_one_hot = plots.anytime_curve_from_logits(logits, one_hot, [1, 2], 2, (0.9,))
    # Sample 0 exits at head 1 (p = 0.95), right; sample 1 goes deep, right.
    np.testing.assert_allclose(from_ids.accuracy, [1.0])
    np.testing.assert_allclose(from_ids.cost_fraction, [0.75])
    np.testing.assert_allclose(from_one_hot.accuracy, from_ids.accuracy)


def test_anytime_curve_rejects_a_threshold_outside_the_unit_interval():
    with pytest.raises(ValueError, match="threshold=1.5"):
        plots.anytime_curve_from_logits([np.zeros((1, 2))], [0], [1], 1, (1.5,))


# -- pictures -------------------------------------------------------------- #


def test_plot_head_accuracy_writes_a_png_with_every_head(trained, tmp_path):
    _, history, _ = trained
    path = tmp_path / "nested" / "heads.png"
    figure = plots.plot_head_accuracy(history, path)
    assert_valid_png(path)
    labels = [line.get_label() for line in figure.axes[0].get_lines()]
    assert labels == [
        "head_1 (train)", "head_1 (validation)",
        "head_2 (train)", "head_2 (validation)",
        "logits (train)", "logits (validation)",
    ]


def test_plot_head_accuracy_names_the_missing_metric():
    with pytest.raises(ValueError, match="no 'auc' values"):
        plots.plot_head_accuracy({"loss": [1.0]}, metric="auc")


def test_plot_anytime_curve_writes_a_png(trained, tmp_path):
    model, _, (x_test, y_test) = trained
    curve = plots.anytime_curve(model, x_test, y_test)
    plots.plot_anytime_curve(curve, tmp_path / "anytime.png")
    assert_valid_png(tmp_path / "anytime.png")


def test_plot_writer_writes_both_pngs_when_fit_ends(digits_split, tmp_path):
    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = digits_split
    model = build_model()
    model.compile(optimizer="adam", metrics=["accuracy"])
    writer = plots.PlotWriter(tmp_path / "plots", anytime_data=(x_test, y_test))
    model.fit(
        x_train[:256], y_train[:256], epochs=2, batch_size=64, verbose=0,
        validation_data=(x_test, y_test), callbacks=[writer],
    )
    assert sorted(os.path.basename(path) for path in writer.written_paths) == [
        plots.ANYTIME_FILENAME, plots.HEAD_ACCURACY_FILENAME,
    ]
    for path in writer.written_paths:
        assert_valid_png(path)


def test_missing_matplotlib_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        plots.PlotWriter("unused")
    with pytest.raises(ImportError, match="pip install matplotlib"):
        plots.plot_head_accuracy({"accuracy": [0.5]})
