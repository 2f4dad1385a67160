"""keras_selfdistill.plots and the PlotWriter callback: PNG output."""

import os
import sys

import keras
import pytest

import model_families
from keras_selfdistill import callbacks
from keras_selfdistill import plots
from keras_selfdistill.models import early_exit

if not os.environ.get("CI"):
    # CI installs matplotlib (scripts/setup.sh); elsewhere it is optional.
    pytest.importorskip("matplotlib", reason='pip install -e ".[plots]"')

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def trained(digits_split):
    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = digits_split
    model = model_families.self_distill_model()
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
    curve = early_exit.anytime_curve(model, x_test, y_test)
    plots.plot_anytime_curve(curve, tmp_path / "anytime.png")
    assert_valid_png(tmp_path / "anytime.png")


def test_plot_writer_writes_both_pngs_when_fit_ends(digits_split, tmp_path):
    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = digits_split
    model = model_families.self_distill_model()
    model.compile(optimizer="adam", metrics=["accuracy"])
    writer = callbacks.PlotWriter(tmp_path / "plots", anytime_data=(x_test, y_test))
    model.fit(
        x_train[:256], y_train[:256], epochs=2, batch_size=64, verbose=0,
        validation_data=(x_test, y_test), callbacks=[writer],
    )
    assert sorted(os.path.basename(path) for path in writer.written_paths) == [
        callbacks.ANYTIME_FILENAME, callbacks.HEAD_ACCURACY_FILENAME,
    ]
    for path in writer.written_paths:
        assert_valid_png(path)


def test_missing_matplotlib_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        callbacks.PlotWriter("unused")
    with pytest.raises(ImportError, match="pip install matplotlib"):
        plots.plot_head_accuracy({"accuracy": [0.5]})
