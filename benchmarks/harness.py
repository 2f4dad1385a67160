"""The evidence harness: paired seeds, a schedule to zero, final weights.

Every evidence script in `benchmarks/` trains its arms through this module, so
every number in `docs/results/` comes from the same protocol:

- **Paired seeds.** `keras.utils.set_random_seed(seed)` runs right before an
  arm's model is built, and the data order and augmentation come from
  `numpy.random.default_rng(seed)`, so every arm of one seed starts from the
  same backbone initialisation and sees the same batches.
- **A learning rate that ends at 0**: cosine decay over all training steps
  (SGD with momentum, or Adam).
- **The final weights**, evaluated once after the last epoch; nothing is
  selected on the test split.
- Per run: test accuracy, NLL and expected calibration error (15 equal-width
  bins); training accuracy in inference mode on a fixed subset of the
  training images next to the training-mode accuracy of the last epoch (with
  a flag when they disagree: the BatchNormalization moving-statistics trap);
  CPU time (`time.process_time`) and wall time; for `SelfDistillModel` arms
  each head's test accuracy and the heads' ensemble (mean of the heads'
  logits, as `SelfDistillModel.predict_ensemble`).
- Aggregation: per arm mean ± standard error across seeds, and the paired
  difference against the `plain` arm, mean ± SE (SE = std(ddof=1)/sqrt(n)),
  with the number of seeds on which the arm is better.

`run_arms` returns a JSON-ready dict; `save_results` writes it and
`render_markdown` turns it into the tables of a docs/results page.
"""

import json
import os
import shlex
import sys
import time
from dataclasses import dataclass
from typing import Callable, Optional

import keras
import numpy as np

from keras_selfdistill import Distiller
from keras_selfdistill import EMATeacher
from keras_selfdistill import MutualLearning
from keras_selfdistill import SelfEnsembleTeacher
from keras_selfdistill.models.copies import mean_logits_model

#: Flag a run when training accuracy in inference mode and in training mode
#: differ by more than this (fraction). Augmentation alone moves them by a few
#: points; the BatchNormalization trap moves them by tens of points.
MODE_GAP_FLAG = 0.10

ECE_BINS = 15


# ---------------------------------------------------------------------- #
# Metrics (pure numpy).
# ---------------------------------------------------------------------- #


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of logits `(samples, classes)`, computed stably."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exponentials = np.exp(shifted)
    return exponentials / exponentials.sum(axis=-1, keepdims=True)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of logits `(samples, classes)` against class ids."""
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean `-log softmax(logits)[label]`, with a stable log-sum-exp."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_normaliser = np.log(np.exp(shifted).sum(axis=-1))
    picked = shifted[np.arange(len(labels)), labels]
    return float(np.mean(log_normaliser - picked))


def expected_calibration_error(
    logits: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS
) -> float:
    """Expected calibration error with equal-width confidence bins.

    `ECE = sum_b |B_b| / n * |accuracy(B_b) - confidence(B_b)|`, where the
    confidence of a sample is its largest softmax probability and bin `b`
    holds confidences in `(b / bins, (b + 1) / bins]` (Guo et al., 2017,
    "On Calibration of Modern Neural Networks").

    Args:
        logits: float array `(samples, classes)`.
        labels: int array `(samples,)`.
        bins: int. Number of bins. Defaults to 15.

    Returns:
        The ECE as a fraction in [0, 1].
    """
    probabilities = softmax(np.asarray(logits, dtype=np.float64))
    confidence = probabilities.max(axis=-1)
    correct = probabilities.argmax(axis=-1) == labels
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(error)


def mean_and_standard_error(values) -> tuple:
    """`(mean, std(ddof=1) / sqrt(n))`; the error is 0 for a single value."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return float(values.mean()), 0.0
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values)))


def paired_difference(arm_values, baseline_values) -> dict:
    """Per-seed `arm - baseline`: mean, standard error, seeds better."""
    differences = np.subtract(arm_values, baseline_values)
    mean, error = mean_and_standard_error(differences)
    return dict(mean=mean, standard_error=error,
                better=int(np.sum(differences > 0)), seeds=len(differences))


# ---------------------------------------------------------------------- #
# Training.
# ---------------------------------------------------------------------- #


#: `head_gradient_scale` values the evidence scripts offer as arms
#: `sd_gradient_<scale>`.
HEAD_GRADIENT_SCALES = (0.1, 0.3, 0.5)


@dataclass
class Recipe:
    """How every arm is trained.

    Attributes:
        epochs: int.
        batch_size: int.
        optimizer: `"sgd"` (momentum, coupled L2 weight decay) or `"adam"`.
        learning_rate: float. Peak learning rate; cosine decay to 0 over
            all steps.
        momentum: float. SGD momentum.
        weight_decay: float. PyTorch-style weight decay (`wd * w` added to
            every gradient: an L2 penalty `wd / 2 * ||w||^2` in the loss).
        augment: callable `(images, rng) -> images` or `None`. Applied to the
            training images once per epoch.
        train_eval_samples: int. Size of the fixed, evenly spaced training
            subset on which accuracy is measured in inference mode.
        run_eagerly: bool. Skip tracing (for smoke runs of a few steps).
        schedule: `"cosine"` (decay to 0 over all steps: every accuracy
            claim) or `"constant"` (the learning rate most Keras users keep:
            only for checking that a method does no harm in that recipe; the
            final iterate is noisy, so such a table needs many seeds).
    """

    epochs: int
    batch_size: int = 128
    optimizer: str = "sgd"
    learning_rate: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    augment: Optional[Callable] = None
    train_eval_samples: int = 2000
    run_eagerly: bool = False
    schedule: str = "cosine"

    def describe(self) -> dict:
        """The recipe as JSON-ready settings (the augmentation by name)."""
        settings = dict(self.__dict__)
        settings["augment"] = getattr(self.augment, "__name__", None)
        settings["schedule"] = ("cosine decay to 0 over all steps" if self.schedule == "cosine"
                                else "constant learning rate (no claim: a no-harm check)")
        return settings


def cosine_schedule(learning_rate: float, total_steps: int):
    """Cosine decay from `learning_rate` to exactly 0 at `total_steps`."""
    return keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=total_steps, alpha=0.0)


def make_optimizer(recipe: Recipe, total_steps: int):
    """SGD+momentum or Adam with a cosine learning rate that reaches 0 (or
    a constant one, `recipe.schedule="constant"`)."""
    if recipe.schedule not in ("cosine", "constant"):
        raise ValueError("schedule must be 'cosine' or 'constant'. "
                         f"Received: schedule={recipe.schedule}")
    schedule = (cosine_schedule(recipe.learning_rate, total_steps)
                if recipe.schedule == "cosine" else recipe.learning_rate)
    if recipe.optimizer == "sgd":
        return keras.optimizers.SGD(schedule, momentum=recipe.momentum)
    if recipe.optimizer == "adam":
        return keras.optimizers.Adam(schedule)
    raise ValueError(f"optimizer must be 'sgd' or 'adam'. Received: optimizer={recipe.optimizer}")


def add_weight_decay(model, weight_decay: float) -> None:
    """Coupled (PyTorch-style) weight decay on every trainable variable."""
    if weight_decay:
        regularizer = keras.regularizers.L2(weight_decay / 2)
        for variable in model.trainable_variables:
            variable.regularizer = regularizer


def is_self_distilled(model) -> bool:
    """Whether the model has heads (`predict_heads`)."""
    return hasattr(model, "predict_heads")


def computes_own_loss(model) -> bool:
    """Whether the model is one of the library's wrappers, which compile
    without a `loss` (they all report `loss_term_names`)."""
    return hasattr(model, "loss_term_names")


def with_loss(model, loss):
    """`model`, to be trained with `loss` instead of the harness's sparse
    cross-entropy (a plain model's arm: label smoothing, `TeacherFreeLoss`).

    Args:
        model: a plain `keras.Model` (not one of the package's wrappers,
            which compute their own loss).
        loss: a `keras.losses.Loss` taking integer labels and logits.

    Returns:
        `model`, with the loss recorded on it for `train`.
    """
    model.harness_loss = loss
    return model


def compile_loss(model) -> dict:
    """The `loss` argument of `compile`: none for the package's wrappers,
    the arm's own (`with_loss`), else sparse cross-entropy from logits."""
    if computes_own_loss(model):
        return {}
    loss = getattr(model, "harness_loss", None)
    return dict(loss=loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True))


def plain_epoch_inputs(order, x_train, y_train, recipe: "Recipe", rng):
    """One epoch's `fit` inputs for a plain arm: the images in `order`,
    augmented, and their labels, in batches of `recipe.batch_size`.

    Returns:
        `(x, y, batch_size)`.
    """
    images = x_train[order]
    if recipe.augment is not None:
        images = recipe.augment(images, rng)
    return images, y_train[order], recipe.batch_size


def plain_steps_per_epoch(num_samples: int, recipe: "Recipe") -> int:
    """Optimizer steps of one epoch of `plain_epoch_inputs`."""
    return int(np.ceil(num_samples / recipe.batch_size))


@dataclass
class Arm:
    """An arm whose training inputs are not plain `(images, labels)`.

    `run_arms` takes a builder function (a plain arm) or an `Arm`.

    Attributes:
        build: callable `() -> keras.Model`.
        epoch_inputs: callable `(order, x_train, y_train, recipe, rng) ->
            (x, y, batch_size)`, one epoch's `fit` arguments from the epoch's
            sample order (the same for every arm of a seed). Defaults to
            `plain_epoch_inputs`.
        steps_per_epoch: callable `(num_samples, recipe) -> int`, for the
            learning-rate schedule. Defaults to `plain_steps_per_epoch`.
        uses: tuple of arm names. Arms trained earlier on the same seed
            whose final models `build` takes as keyword arguments (a
            teacher for knowledge distillation, generation 0 for a born-again
            student). Their training time is theirs, not this arm's.
            Defaults to `()`.
    """

    build: Callable
    epoch_inputs: Callable = plain_epoch_inputs
    steps_per_epoch: Callable = plain_steps_per_epoch
    uses: tuple = ()


def as_arm(build) -> Arm:
    """`build` itself if it is an `Arm`, else a plain `Arm` around it."""
    return build if isinstance(build, Arm) else Arm(build)


def train(model, recipe: Recipe, x_train, y_train, seed: int, arm: Optional[Arm] = None) -> list:
    """Trains for `recipe.epochs`; returns each epoch's training-mode accuracy.

    The order of the samples and the augmentation come from
    `numpy.random.default_rng(seed)`, the same for every arm of a seed; an
    `Arm`'s `epoch_inputs` turns the order into its own `fit` inputs.
    """
    arm = arm or Arm(build=None)
    steps_per_epoch = arm.steps_per_epoch(len(x_train), recipe)
    add_weight_decay(model, recipe.weight_decay if recipe.optimizer == "sgd" else 0.0)
    model.compile(
        optimizer=make_optimizer(recipe, steps_per_epoch * recipe.epochs),
        metrics=["accuracy"],
        jit_compile=False,
        run_eagerly=recipe.run_eagerly,
        **compile_loss(model),
    )
    rng = np.random.default_rng(seed)
    curve = []
    for _ in range(recipe.epochs):
        order = rng.permutation(len(x_train))
        x, y, batch_size = arm.epoch_inputs(order, x_train, y_train, recipe, rng)
        history = model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
        curve.append(float(history.history["accuracy"][-1]))
    return curve


def component_models(model) -> dict:
    """Models inside an arm scored besides what it serves: each peer of a
    `MutualLearning` (which serves their ensemble), the teacher of a momentum
    or self-ensemble teacher (which serves the student)."""
    if isinstance(model, MutualLearning):
        return {name: model.peer(name) for name in model.peer_names}
    if isinstance(model, (EMATeacher, SelfEnsembleTeacher)):
        return {"teacher": model.export_teacher()}
    if isinstance(model, Distiller):
        # Teacher and student averaged: the generations' ensemble of a
        # born-again student.
        return {"ensemble": mean_logits_model([model.teacher, model.student], "ensemble")}
    return {}


def evaluate(model, x, y, batch_size: int = 500) -> dict:
    """Test metrics of the final weights; per head and ensemble for SD
    models, per peer (or student) for the online and temporal teachers."""
    if not is_self_distilled(model):
        scores = dict(served=_scores(model.predict(x, batch_size=batch_size, verbose=0), y))
        for name, component in component_models(model).items():
            scores[name] = _scores(component.predict(x, batch_size=batch_size, verbose=0), y)
        return scores
    heads = model.predict_heads(x, batch_size=batch_size, verbose=0)
    # The deepest head is the served model: reported once, as "served".
    scores = dict(served=_scores(heads[-1], y))
    scores.update({name: _scores(logits, y)
                   for name, logits in zip(model.head_names[:-1], heads[:-1])})
    scores["ensemble"] = _scores(np.mean(np.stack(heads), axis=0), y)
    return scores


def _scores(logits, labels) -> dict:
    return dict(accuracy=accuracy(logits, labels),
                nll=negative_log_likelihood(logits, labels),
                ece=expected_calibration_error(logits, labels))


def run_once(arm: str, build: Callable, recipe: Recipe, data, seed: int,
             trained: Optional[dict] = None) -> dict:
    """Builds (after seeding), trains and evaluates one arm for one seed.

    `trained` maps the names in the arm's `uses` to those arms' trained
    models of this seed. The result holds the trained model under `model`
    (`run_arms` drops it before saving)."""
    (x_train, y_train), (x_test, y_test) = data
    arm_spec = as_arm(build)
    keras.utils.set_random_seed(seed)
    model = arm_spec.build(**{name: trained[name] for name in arm_spec.uses})
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    curve = train(model, recipe, x_train, y_train, seed, arm_spec)
    train_mode_accuracy = curve[-1]
    train_seconds = dict(cpu=time.process_time() - cpu_start,
                         wall=time.perf_counter() - wall_start)
    # Evenly spaced, so a class-sorted training set gives every class.
    subset = np.unique(np.linspace(0, len(x_train) - 1, recipe.train_eval_samples).astype(int))
    train_logits = model.predict(x_train[subset], batch_size=500, verbose=0)
    train_accuracy = accuracy(train_logits, y_train[subset])
    test = evaluate(model, x_test, y_test)
    gap = abs(train_accuracy - train_mode_accuracy)
    return dict(
        arm=arm, seed=seed, test=test,
        train_accuracy_inference=train_accuracy,
        train_accuracy_inference_images=len(subset),
        train_accuracy_training_mode=train_mode_accuracy,
        train_accuracy_training_mode_per_epoch=curve,
        mode_gap_flag=bool(gap > MODE_GAP_FLAG),
        cpu_seconds=time.process_time() - cpu_start,
        wall_seconds=time.perf_counter() - wall_start,
        train_cpu_seconds=train_seconds["cpu"], train_wall_seconds=train_seconds["wall"],
        model=model,
    )


def run_arms(arms: dict, recipe: Recipe, data, seeds, settings: dict,
             log: Callable = print, save_to: Optional[str] = None,
             command: Optional[str] = None) -> dict:
    """Every arm on every seed, seed-major (so a partial run stays paired).

    Args:
        arms: dict `name -> build()` or `name -> Arm` (an arm with its
            own inputs); a `plain` arm is the baseline.
        recipe: `Recipe`.
        data: `((x_train, y_train), (x_test, y_test))`.
        seeds: iterable of ints.
        settings: dict. What else the result should record (data split,
            model), stored under `settings`.
        log: callable taking one line. Defaults to `print`.
        save_to: str or `None`. Rewrites this JSON file after every run.
        command: str or `None`. The command line to record; defaults to
            `command_line()`.

    Returns:
        `{"command", "settings", "recipe", "runs"}`.
    """
    results = dict(command=command or command_line(), environment=environment(),
                   settings=settings,
                   recipe=recipe.describe(), backend=keras.backend.backend(),
                   keras_version=keras.__version__, runs=[])
    _check_uses(arms)
    for seed in seeds:
        trained = {}
        for arm, build in arms.items():
            run = run_once(arm, build, recipe, data, seed, trained)
            trained[arm] = run.pop("model")
            results["runs"].append(run)
            log(f"seed {seed} {arm}: test {run['test']['served']['accuracy']:.4f}"
                f" train(inference) {run['train_accuracy_inference']:.4f}"
                f" train(training mode) {run['train_accuracy_training_mode']:.4f}"
                f" cpu {run['cpu_seconds']:.0f}s wall {run['wall_seconds']:.0f}s"
                + (" MODE-GAP FLAG" if run["mode_gap_flag"] else ""))
            if save_to:
                save_results(results, save_to)
    return results


def _check_uses(arms: dict) -> None:
    """Every arm named in an `Arm.uses` must come earlier in `arms`."""
    names = list(arms)
    for position, (arm, build) in enumerate(arms.items()):
        missing = [name for name in as_arm(build).uses if name not in names[:position]]
        if missing:
            raise ValueError(f"Arm {arm!r} uses the trained {missing}: list them before it "
                             f"in the arms. Received: arms={names}")


def command_line(script: Optional[str] = None, argv=None) -> str:
    """`python SCRIPT ARGS...`, shell-quoted; defaults to `sys.argv`."""
    script = sys.argv[0] if script is None else script
    argv = sys.argv[1:] if argv is None else argv
    if os.path.isabs(script):
        script = os.path.relpath(script)
    return "python " + " ".join(shlex.quote(argument) for argument in [script, *argv])


def environment() -> dict:
    """What else decides speed: thread settings, CPU affinity, backend."""
    names = ("KERAS_BACKEND", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
    settings = {name: os.environ.get(name) for name in names}
    if hasattr(os, "sched_getaffinity"):
        settings["cpu_affinity"] = sorted(os.sched_getaffinity(0))
    settings["cpu_count"] = os.cpu_count()
    settings.update(library_version())
    return settings


def library_version() -> dict:
    """Where `keras_selfdistill` was imported from, and its git commit."""
    import subprocess

    import keras_selfdistill

    folder = os.path.dirname(os.path.dirname(os.path.abspath(keras_selfdistill.__file__)))
    version = dict(keras_selfdistill=folder)
    try:
        def git(*arguments):
            return subprocess.run(["git", "-C", folder, *arguments], capture_output=True,
                                  text=True, check=True, timeout=30).stdout.strip()
        version["library_commit"] = git("rev-parse", "--short", "HEAD")
        changed = git("status", "--porcelain", "--", "keras_selfdistill")
        version["library_uncommitted_changes"] = bool(changed)
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        version["library_commit"] = None
    return version


def save_results(results: dict, path: str) -> None:
    """Writes the results as indented JSON."""
    with open(path, "w") as file:
        json.dump(results, file, indent=1)


# ---------------------------------------------------------------------- #
# Aggregation and the markdown page.
# ---------------------------------------------------------------------- #


def _rows(results: dict) -> dict:
    """`{row name: {seed: run-metrics}}`: each arm's served model, and every
    head and the ensemble of the self-distilled arms."""
    rows = {}
    for run in results["runs"]:
        for output, scores in run["test"].items():
            name = run["arm"] if output == "served" else f"{run['arm']} {output}"
            rows.setdefault(name, {})[run["seed"]] = dict(
                scores, run=run, served=output == "served")
    return rows


def summarise(results: dict, baseline: str = "plain") -> list:
    """One dict per row: mean ± SE of each metric, and the paired
    difference in test accuracy against `baseline` on the seeds both share."""
    rows = _rows(results)
    reference = rows.get(baseline, {})
    summary = []
    for name, by_seed in rows.items():
        seeds = sorted(by_seed)
        row = dict(name=name, seeds=seeds)
        for metric in ("accuracy", "nll", "ece"):
            row[metric] = mean_and_standard_error([by_seed[s][metric] for s in seeds])
        served = all(by_seed[s]["served"] for s in seeds)
        for key in ("train_accuracy_inference", "train_accuracy_training_mode", "cpu_seconds"):
            row[key] = (mean_and_standard_error([by_seed[s]["run"][key] for s in seeds])
                        if served else None)
        row["flags"] = sum(by_seed[s]["run"]["mode_gap_flag"] for s in seeds) if served else 0
        shared = [s for s in seeds if s in reference]
        row["paired"] = (paired_difference([by_seed[s]["accuracy"] for s in shared],
                                           [reference[s]["accuracy"] for s in shared])
                         if shared and name != baseline else None)
        summary.append(row)
    return summary


def _train_eval_images(results: dict):
    counts = {run.get("train_accuracy_inference_images") for run in results["runs"]}
    counts.discard(None)
    return counts.pop() if len(counts) == 1 else results["recipe"]["train_eval_samples"]


def _pm(pair, scale: float = 100.0, digits: int = 2) -> str:
    if pair is None:
        return "–"
    mean, error = pair
    return f"{mean * scale:.{digits}f} ± {error * scale:.{digits}f}"


def _per_seed_table(results: dict) -> list:
    """Test accuracy of every row on every seed, and the training accuracy
    (inference mode) of every arm, as markdown lines."""
    rows = _rows(results)
    seeds = sorted({run["seed"] for run in results["runs"]})
    names = list(rows)
    lines = ["Per seed: test accuracy (%); in brackets, training accuracy in inference mode (%).",
             "", "| seed | " + " | ".join(names) + " |",
             "| ---: | " + " | ".join("---:" for _ in names) + " |"]
    for seed in seeds:
        cells = []
        for name in names:
            entry = rows[name].get(seed)
            if entry is None:
                cells.append("–")
            elif entry["served"]:
                cells.append(f"{entry['accuracy'] * 100:.2f} "
                             f"({entry['run']['train_accuracy_inference'] * 100:.1f})")
            else:
                cells.append(f"{entry['accuracy'] * 100:.2f}")
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    return lines


#: Paired comparisons between arms other than the baseline, shown when present.
COMPARISONS = (("sd", "heads_ce"), ("sd ensemble", "sd"),
               ("sd ensemble", "heads_ce ensemble"), ("heads_ce ensemble", "heads_ce"),
               ("ema_teacher teacher", "ema_teacher"),
               ("mutual_learning", "mutual_learning peer1"),
               ("sd_doubling", "sd"), ("sd_doubling ensemble", "sd_doubling"))


def _comparison_lines(results: dict, comparisons) -> list:
    """Paired Δ test accuracy (and Δ ECE) for each `(row, reference)` present."""
    rows = _rows(results)
    lines = []
    for name, reference in comparisons:
        if name not in rows or reference not in rows:
            continue
        seeds = sorted(set(rows[name]) & set(rows[reference]))
        paired = {metric: paired_difference([rows[name][s][metric] for s in seeds],
                                            [rows[reference][s][metric] for s in seeds])
                  for metric in ("accuracy", "ece")}
        accuracy_delta, ece_delta = paired["accuracy"], paired["ece"]
        lines.append(
            f"| {name} − {reference} | {accuracy_delta['mean'] * 100:+.2f} ± "
            f"{accuracy_delta['standard_error'] * 100:.2f} | "
            f"{accuracy_delta['better']}/{accuracy_delta['seeds']} | "
            f"{ece_delta['mean'] * 100:+.2f} ± {ece_delta['standard_error'] * 100:.2f} |")
    if not lines:
        return []
    return ["Other paired comparisons (same seeds):", "",
            "| comparison | Δ test accuracy (pt) | better on | Δ test ECE (pt) |",
            "| --- | ---: | ---: | ---: |", *lines, ""]


def render_markdown(results: dict, baseline: str = "plain",
                    comparisons=COMPARISONS) -> str:
    """The tables of a docs/results page, from `run_arms`'s results."""
    summary = summarise(results, baseline)
    seeds = sorted({run["seed"] for run in results["runs"]})
    lines = [
        f"Command: `{results['command']}`",
        "",
        "Environment: " + ", ".join(
            f"{k}={v}" for k, v in results.get("environment", {}).items()),
        "",
        f"Seeds {seeds} (paired: same backbone initialisation and data order per "
        f"seed), final-epoch weights, {results['backend']} backend, Keras "
        f"{results['keras_version']}.",
        "",
        "Settings: " + ", ".join(f"{k}={v}" for k, v in results["settings"].items()),
        "",
        "Recipe: " + ", ".join(f"{k}={v}" for k, v in results["recipe"].items()),
        "",
        f"| model | test accuracy (%) | paired Δ vs {baseline} (pt) | better on | "
        "train acc, inference (%) | train acc, training mode, last epoch (%) | "
        "test NLL | test ECE (%) | CPU s per run |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in summary:
        paired = row["paired"]
        delta = ("–" if paired is None else
                 f"{paired['mean'] * 100:+.2f} ± {paired['standard_error'] * 100:.2f}")
        better = "–" if paired is None else f"{paired['better']}/{paired['seeds']}"
        cpu = "–" if row["cpu_seconds"] is None else f"{row['cpu_seconds'][0]:.0f}"
        lines.append(
            f"| {row['name']} | {_pm(row['accuracy'])} | {delta} | {better} | "
            f"{_pm(row['train_accuracy_inference'])} | "
            f"{_pm(row['train_accuracy_training_mode'])} | "
            f"{_pm(row['nll'], 1, 3)} | {_pm(row['ece'])} | {cpu} |"
        )
    lines += ["", *_comparison_lines(results, comparisons), *_per_seed_table(results)]
    flags = sum(row["flags"] for row in summary)
    total_cpu = sum(run["cpu_seconds"] for run in results["runs"])
    lines += [
        "",
        "Mean ± standard error over seeds; the paired Δ is the mean ± SE of the "
        "per-seed difference in test accuracy (SE = std(ddof=1)/√n). `ensemble` "
        "is the mean of the heads' logits (of the teacher's and the student's for `kd` "
        "and `born_again`). Training accuracy in inference mode is "
        f"on {_train_eval_images(results)} evenly spaced training images "
        "(not augmented); training-mode accuracy is Keras's running accuracy over "
        f"the last epoch (augmentation: {results['recipe'].get('augment')}).",
        "",
        f"Runs where the two training accuracies differ by more than "
        f"{MODE_GAP_FLAG * 100:.0f} pt (BatchNorm moving-statistics check): {flags}. "
        f"Total CPU time: {total_cpu / 60:.1f} min over {len(results['runs'])} runs.",
    ]
    return "\n".join(lines) + "\n"


def pool_results(replications: list) -> dict:
    """Several runs of the same experiment as one result.

    Runs of one command in different processes are not bitwise identical
    (floating-point order, thread scheduling), so a second run of the same
    seeds is a replication, not a copy. Pooling keeps each run paired with
    the baseline *of its own replication*: seed `s` of replication `r`
    becomes the seed `"r:s"`.

    Args:
        replications: list of result dicts (`run_arms`'s), with the same
            recipe and the same data and model settings.

    Returns:
        One result dict with every replication's runs.

    Raises:
        ValueError: when the replications' recipe, data or model differ.
    """
    first = replications[0]
    for index, other in enumerate(replications[1:], start=2):
        for key in ("recipe", "settings"):
            mine = {k: v for k, v in first[key].items() if k != "smoke"}
            theirs = {k: v for k, v in other[key].items() if k != "smoke"}
            if mine != theirs:
                raise ValueError(
                    f"Replication {index} has a different {key} ({theirs}) from "
                    f"replication 1 ({mine}); only runs of the same experiment pool.")
    runs = [dict(run, seed=f"{index}:{run['seed']}")
            for index, result in enumerate(replications, start=1) for run in result["runs"]]
    return dict(first, runs=runs,
                command=" ; ".join(f"({i}) {r['command']}"
                                   for i, r in enumerate(replications, start=1)),
                environment={f"run {i}": r.get("environment", {}).get("library_commit")
                             for i, r in enumerate(replications, start=1)})


def main(argv=None) -> None:
    """`python benchmarks/harness.py RESULTS.json [MORE.json ...]`: prints the
    markdown tables; several files are pooled as replications
    (`pool_results`)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("results", nargs="+",
                        help="JSON files written by run_arms/save_results")
    args = parser.parse_args(argv)
    replications = []
    for path in args.results:
        with open(path) as file:
            replications.append(json.load(file))
    results = replications[0] if len(replications) == 1 else pool_results(replications)
    print(render_markdown(results), end="")


if __name__ == "__main__":
    main()
