"""Every example runs end to end, offline, in its --smoke mode.

The examples read CIFAR through `tensorflow_datasets`; here
`tfds.testing.mock_data` serves random images of the right shapes instead
(no download, no files), and any attempt to open a network connection
fails the test. Each example runs in this process through its
`main(argv)`, which returns what it printed as numbers.
"""

import importlib.util
import os
import pathlib
import socket
import sys

import keras
import numpy as np
import pytest

if not os.environ.get("CI"):
    # CI installs the examples' extra (scripts/setup.sh); elsewhere skip.
    pytest.importorskip("tensorflow_datasets", reason='pip install -e ".[examples]"')
    pytest.importorskip("matplotlib", reason='pip install -e ".[examples]"')

import tensorflow_datasets as tfds  # noqa: E402

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the examples are TensorFlow programs (tf.data, tensorflow_datasets)",
)

EXAMPLES_DIR = pathlib.Path(__file__).resolve().parents[1] / "examples"
EXAMPLES = (
    "cifar100_byot",
    "cifar10_kd_vs_sd",
    "born_again_example",
    "mutual_learning_example",
    "ema_teacher_example",
    "dino_cifar10",
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def load_example(name):
    spec = importlib.util.spec_from_file_location(
        f"examples_{name}", EXAMPLES_DIR / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def offline(monkeypatch):
    """Mocked CIFAR, and no network: a connection attempt raises."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"an example tried to open a connection: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    with tfds.testing.mock_data(num_examples=64):
        yield


def run_smoke(name, *argv):
    # A fresh Keras state per example, as in its own process.
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    return load_example(name).main(["--smoke", "--run-eagerly", *argv])


def assert_accuracy(value):
    assert 0.0 <= value <= 1.0


def assert_png(path):
    data = pathlib.Path(path).read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000


# -- end to end, offline ---------------------------------------------------- #


def test_cifar100_byot_reports_every_head_and_writes_plots(offline, tmp_path, capsys):
    results = run_smoke("cifar100_byot", "--plots-dir", str(tmp_path))
    assert len(results["head_accuracy"]) == 4
    for value in [*results["head_accuracy"], results["ensemble_accuracy"]]:
        assert_accuracy(value)
    curve = results["anytime_curve"]
    assert curve.head_cost_fraction[0] < curve.head_cost_fraction[1] < 1.0
    assert sorted(os.path.basename(path) for path in results["plots"]) == [
        "anytime_curve.png", "head_accuracy.png",
    ]
    for path in results["plots"]:
        assert_png(path)
    printed = capsys.readouterr().out
    assert "| head 4/4 |" in printed and "78.64" in printed  # The paper's number.
    assert "SMOKE RUN" in printed


def test_cifar10_kd_vs_sd_trains_and_saves_the_teacher(offline, tmp_path, capsys):
    results = run_smoke("cifar10_kd_vs_sd", "--output-dir", str(tmp_path))
    assert set(results) == {"baseline", "teacher", "kd", "sd", "sd_ensemble"}
    for value in results.values():
        assert_accuracy(value)
    assert (tmp_path / "resnet50_teacher.keras").is_file()
    assert "ResNet18 (heads dropped)" in capsys.readouterr().out


def test_born_again_example_checkpoints_every_generation(offline, tmp_path):
    results = run_smoke(
        "born_again_example", "--generations", "2", "--checkpoint-dir", str(tmp_path)
    )
    assert len(results["generation_accuracy"]) == 2
    for value in [*results["generation_accuracy"], *results["ensemble_accuracy"]]:
        assert_accuracy(value)
    # The first ensemble is generation 0 alone.
    assert results["ensemble_accuracy"][0] == results["generation_accuracy"][0]
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "born_again.json", "generation_0.keras", "generation_1.keras",
    ]


def test_mutual_learning_example_reports_peers_and_ensemble(offline, tmp_path):
    results = run_smoke(
        "mutual_learning_example", "--baseline", "--plots-dir", str(tmp_path)
    )
    assert set(results) == {"resnet18_a", "resnet18_b", "ensemble", "baseline"}
    for value in results.values():
        assert_accuracy(value)
    assert_png(tmp_path / "head_accuracy.png")


def test_ema_teacher_example_ends_with_the_final_momentum(offline):
    results = run_smoke("ema_teacher_example")
    assert_accuracy(results["student"])
    assert_accuracy(results["teacher"])
    assert results["final_momentum"] == pytest.approx(1.0)
    assert "val_teacher_accuracy" in results["history"]


def test_dino_example_trains_without_labels_and_scores_the_teacher(offline):
    results = run_smoke("dino_cifar10")
    assert_accuracy(results["knn"])
    for key in ("loss", "teacher_entropy", "kl_divergence", "teacher_temperature"):
        assert np.isfinite(results["history"][key][-1])


# -- the recipe --------------------------------------------------------------- #


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_example_documents_colab_and_smoke(name, capsys):
    module = load_example(name)
    assert "Run in Colab" in module.__doc__
    assert 'pip install -q -e ".[examples]"' in module.__doc__
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    assert "--smoke" in capsys.readouterr().out


def test_byot_defaults_are_the_papers_recipe():
    args = load_example("cifar100_byot").parse_arguments([])
    assert (args.learning_rate, args.momentum, args.weight_decay) == (0.1, 0.9, 5e-4)
    assert (args.batch_size, args.epochs, args.width) == (128, 250, 64)
    assert args.lr_drops == [83, 166, 240]
    assert (args.alpha, args.temperature, args.feature_weight) == (0.3, 3.0, 0.03)
    # The authors' code has no T^2 factor on the KL term.
    assert args.temperature_squared is False
    assert args.jit_compile == "auto"


def test_byot_model_passes_the_recipe_to_self_distill_model():
    module = load_example("cifar100_byot")
    args = module.parse_arguments(["--smoke"])
    model = module.build_model(100, args)
    assert model.head_names == ["head_1", "head_2", "head_3", "logits"]
    assert model.scale_by_temperature_squared is False
    np.testing.assert_allclose(
        [float(model.alpha), float(model.temperature), float(model.feature_weight)],
        [0.3, 3.0, 0.03],
    )
    # Every head reaches the deepest feature width: no projections needed.
    assert model.feature_projections == [None, None, None]


def test_weight_decay_is_pytorchs_coupled_l2_on_every_weight():
    sys.path.insert(0, str(EXAMPLES_DIR))
    import example_utils

    inputs = keras.Input((3,))
    hidden = keras.layers.BatchNormalization()(keras.layers.Dense(4)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2)(hidden))
    example_utils.add_weight_decay(model, 5e-4)
    squares = sum(np.sum(np.square(v.numpy())) for v in model.trainable_variables)
    penalty = sum(float(loss) for loss in model.losses)
    # Its gradient is 5e-4 * w, as PyTorch's SGD(weight_decay=5e-4) adds.
    np.testing.assert_allclose(penalty, 5e-4 / 2 * squares, rtol=1e-5)
    assert len(model.losses) == len(model.trainable_variables)
