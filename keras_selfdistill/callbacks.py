"""Schedules for distillation hyper-parameters, as Keras callbacks.

Every model of this package holds its hyper-parameters (`alpha`,
`temperature`, `feature_weight`, `momentum`, ...) in non-trainable
variables, so assigning one between steps changes what the next compiled
step computes, `jit_compile=True` included. `HyperparameterScheduler` does
the assigning from a schedule, per epoch or per optimizer step, like
`keras.callbacks.LearningRateScheduler` does for the learning rate;
`LinearSchedule` and `CosineSchedule` are the usual shapes (a warm-up of
`alpha`, DINO's momentum from 0.996 to 1), and `MomentumScheduler` is the
DINO momentum schedule for `EMATeacher` in one line.

`PlotWriter` writes the per-head accuracy curves and the anytime curve
(`keras_selfdistill.plots`) as PNG files when `fit` ends.
"""

import copy
import math
import os
import re
import warnings

import keras

from keras_selfdistill.models.hyperparameters import hyperparameter_names
from keras_selfdistill.models.hyperparameters import hyperparameter_value
from keras_selfdistill import plots
from keras_selfdistill.models import early_exit
from keras_selfdistill.saving import write_atomically
from keras_selfdistill.validation import check_integer
from keras_selfdistill.validation import check_number
from keras_selfdistill.validation import check_unit_interval

_PERIODS = ("epoch", "step")

#: Files `PlotWriter` writes in its directory.
HEAD_ACCURACY_FILENAME = "head_accuracy.png"
ANYTIME_FILENAME = "anytime_curve.png"


def _check_finite(name, value):
    check_number(name, value, -math.inf, math.inf, True, "finite")


def _check_total_steps(total_steps):
    check_integer("total_steps", total_steps, 1)


class _RampConfig:
    """The config of an object made from `start`, `end` and `total_steps`
    (the ramp schedules and `MomentumScheduler`)."""

    def get_config(self):
        return {
            "start": self.start,
            "end": self.end,
            "total_steps": self.total_steps,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class _RampSchedule(_RampConfig):
    """Shared arguments and checks of the schedules below."""

    def __init__(self, start, end, total_steps):
        _check_finite("start", start)
        _check_finite("end", end)
        _check_total_steps(total_steps)
        self.start = start
        self.end = end
        self.total_steps = total_steps

    def progress(self, step) -> float:
        """Fraction of the ramp done at `step`, in [0, 1]."""
        return min(max(int(step), 0), self.total_steps) / self.total_steps


@keras.saving.register_keras_serializable(package="keras_selfdistill")
class LinearSchedule(_RampSchedule):
    """A straight line from `start` to `end`, then flat.

    `value(i) = start + (end - start) * min(i, total_steps) / total_steps`

    `i` counts epochs or steps, whichever the scheduler uses. Use it for a
    warm-up of `alpha` (labels first, then more and more distillation).

    Args:
        start: float. Value at `i = 0`.
        end: float. Value from `i = total_steps` on.
        total_steps: int >= 1. Length of the ramp, in epochs or steps.

    Example:

    >>> schedule = LinearSchedule(start=0.0, end=0.5, total_steps=5)
    >>> [schedule(i) for i in (0, 1, 5, 9)]
    [0.0, 0.1, 0.5, 0.5]
    """

    def __call__(self, step) -> float:
        progress = self.progress(step)
        return float(self.start + (self.end - self.start) * progress)


@keras.saving.register_keras_serializable(package="keras_selfdistill")
class CosineSchedule(_RampSchedule):
    """Half a cosine from `start` to `end`, then flat.

    `value(i) = end + (start - end) * (1 + cos(pi * min(i, T) / T)) / 2`

    with `T = total_steps`. From 0.996 to 1 over training, per step, it is
    DINO's teacher momentum schedule (Caron et al., 2021, section 3.1).

    Args:
        start: float. Value at `i = 0`.
        end: float. Value from `i = total_steps` on.
        total_steps: int >= 1. Length of the curve, in epochs or steps.

    Example:

    >>> schedule = CosineSchedule(start=0.996, end=1.0, total_steps=100)
    >>> [round(schedule(i), 4) for i in (0, 50, 100)]
    [0.996, 0.998, 1.0]

    References:
        Caron et al. "Emerging Properties in Self-Supervised Vision
        Transformers", ICCV 2021. https://arxiv.org/abs/2104.14294
    """

    def __call__(self, step) -> float:
        progress = self.progress(step)
        cosine = (1.0 + math.cos(math.pi * progress)) / 2.0
        return float(self.end + (self.start - self.end) * cosine)


@keras.saving.register_keras_serializable(package="keras_selfdistill")
class HyperparameterScheduler(keras.callbacks.Callback):
    """Sets a distillation hyper-parameter from a schedule during `fit`.

    `model.<name> = schedule(i)` where `i` is the epoch index (0-based,
    `per="epoch"`, set when each epoch begins) or the optimizer step
    (`per="step"`: the number of optimizer steps taken so far,
    `model.optimizer.iterations`, set when `fit` begins and after each
    step, so step `i` runs with `schedule(i)` and the value left after
    `fit` is the next step's). The
    hyper-parameter is a non-trainable variable read by the compiled train
    step, so the change reaches it under `jit_compile=True`; the value is
    validated as in the model's constructor. It works for every model of
    this package and every hyper-parameter it has (`alpha`, `temperature`,
    `feature_weight`, `momentum`, ...; see `hyperparameter_names`). The
    current value is logged as `logs[name]` at the end of each epoch (so it
    is in the history; with `per="step"` it is the value the next step will
    use).

    Args:
        name: str. The hyper-parameter, e.g. `"alpha"`.
        schedule: callable `(i: int) -> float`, e.g. a `LinearSchedule`.
        per: `"epoch"` or `"step"`. Defaults to `"epoch"`.
        verbose: int. `1` prints each new value per epoch. Defaults to `0`.

    Example:

    ```python
    # Labels only in epoch 0, then ramp the distillation weight up to 0.5.
    warmup = HyperparameterScheduler(
        "alpha", LinearSchedule(start=0.0, end=0.5, total_steps=5)
    )
    model.fit(x, y, epochs=20, callbacks=[warmup])
    ```
    """

    def __init__(self, name, schedule, per="epoch", verbose=0):
        super().__init__()
        if not isinstance(name, str) or not name:
            raise ValueError(
                "`name` must be the name of a hyper-parameter, e.g. 'alpha'. "
                f"Received: name={name!r}"
            )
        if not callable(schedule):
            raise ValueError(
                "`schedule` must be a callable (int) -> float, e.g. "
                f"LinearSchedule(0.0, 0.5, 5). Received: schedule={schedule!r}"
            )
        if per not in _PERIODS:
            raise ValueError(
                f"`per` must be one of {list(_PERIODS)}. Received: per={per!r}"
            )
        self.name = name
        self.schedule = schedule
        self.per = per
        self.verbose = verbose

    def _check_model(self):
        names = sorted(hyperparameter_names(type(self.model)))
        if self.name not in names:
            raise ValueError(
                f"{type(self.model).__name__} has no schedulable "
                f"hyper-parameter '{self.name}'. Its hyper-parameters are "
                f"{names}. Received: name={self.name!r}"
            )

    def _optimizer_step(self) -> int:
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def _assign(self, index):
        value = self.schedule(index)
        if not isinstance(value, (int, float)):
            value = float(keras.ops.convert_to_numpy(value))
        try:
            setattr(self.model, self.name, float(value))
        except ValueError as error:
            raise ValueError(
                f"The schedule for '{self.name}' gave {value!r} at "
                f"{self.per} {index}, which is out of range: {error}"
            ) from error
        return value

    def on_train_begin(self, logs=None):
        self._check_model()
        if self.per == "step":
            self._assign(self._optimizer_step())

    def on_epoch_begin(self, epoch, logs=None):
        if self.per != "epoch":
            return
        value = self._assign(epoch)
        if self.verbose:
            print(
                f"\nEpoch {epoch + 1}: HyperparameterScheduler setting "
                f"{self.name} to {value}."
            )

    def on_train_batch_end(self, batch, logs=None):
        # Set right after step t (not before step t + 1), so that whatever
        # reads the value next (the next step, a validation pass, the
        # `EMATeacher` update when `fit` returns) sees schedule(t).
        if self.per == "step":
            self._assign(self._optimizer_step())

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs[self.name] = hyperparameter_value(getattr(self.model, self.name))

    def get_config(self):
        return {
            "name": self.name,
            "schedule": keras.saving.serialize_keras_object(self.schedule),
            "per": self.per,
            "verbose": self.verbose,
        }

    @classmethod
    def from_config(cls, config):
        # Deserializing consumes nested configs: work on a copy.
        config = copy.deepcopy(config)
        config["schedule"] = keras.saving.deserialize_keras_object(
            config["schedule"]
        )
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_selfdistill")
class MomentumScheduler(_RampConfig, HyperparameterScheduler):
    """DINO's cosine schedule of an `EMATeacher`'s momentum, per step.

    `momentum_t = end + (start - end) * (1 + cos(pi * t / T)) / 2`, `t` the
    optimizer step and `T = total_steps`, so the teacher follows the
    student closely at first and freezes as training ends. The value for
    step `t` is what `EMATeacher` averages the student's weights after step
    `t` with (see its docstring).

    Args:
        start: float in [0, 1]. Momentum at step 0. Defaults to `0.996`.
        end: float in [0, 1]. Momentum at step `total_steps`. Defaults to
            `1.0`.
        total_steps: int >= 1 or `None`. `None` uses the length of the
            `fit` call it is given to (epochs x steps per epoch). Defaults to
            `None`.

    Example:

    ```python
    model = EMATeacher(student)
    model.fit(x, y, epochs=100, callbacks=[MomentumScheduler()])
    ```

    References:
        Caron et al. "Emerging Properties in Self-Supervised Vision
        Transformers", ICCV 2021, section 3.1.
        https://arxiv.org/abs/2104.14294
    """

    def __init__(self, start=0.996, end=1.0, total_steps=None):
        check_unit_interval("start", start)
        check_unit_interval("end", end)
        if total_steps is not None:
            _check_total_steps(total_steps)
        self.start = start
        self.end = end
        self.total_steps = total_steps
        schedule = (
            CosineSchedule(start, end, total_steps) if total_steps else None
        )
        super().__init__("momentum", schedule or self._unset, per="step")

    @staticmethod
    def _unset(step):
        raise RuntimeError("MomentumScheduler: the schedule is set in fit.")

    def on_train_begin(self, logs=None):
        total_steps = self.total_steps
        if total_steps is None:
            epochs = (self.params or {}).get("epochs")
            steps = (self.params or {}).get("steps")
            if not epochs or not steps:
                raise ValueError(
                    "MomentumScheduler(total_steps=None) takes the length of "
                    "training from fit, but fit does not know the number of "
                    "steps per epoch here (a dataset of unknown length). "
                    f"Pass total_steps=... . Received: epochs={epochs}, "
                    f"steps per epoch={steps}"
                )
            total_steps = epochs * steps
        self.schedule = CosineSchedule(self.start, self.end, total_steps)
        super().on_train_begin(logs)


class PlotWriter(keras.callbacks.Callback):
    """Writes the per-head accuracy curves (and the anytime curve) as PNGs.

    Records every epoch's logs and, when `fit` ends, writes
    `<directory>/head_accuracy.png` (`plots.plot_head_accuracy`) and, if
    `anytime_data` is given and the model has several heads
    (`SelfDistillModel`), `<directory>/anytime_curve.png`
    (`plots.plot_anytime_curve` of `early_exit.anytime_curve` on that
    data). matplotlib is checked at
    construction, so a missing install fails before training, not after.

    Args:
        directory: str or path-like. Where the files go (created if
            missing).
        anytime_data: `(x, labels)` or `None`. Inputs and labels for the
            anytime curve, e.g. the validation set. Defaults to `None` (no
            anytime curve).
        thresholds: sequence of floats in [0, 1]. Thresholds of the anytime
            curve. Defaults to `early_exit.DEFAULT_THRESHOLDS`.
        metric: str. The metric of the per-head curves. Defaults to
            `"accuracy"`.
        batch_size: int. Batch size of the anytime curve's prediction pass
            (ignored for a dataset). Defaults to `256`.

    Attributes:
        written_paths: list of str. The files written by the last `fit`.

    Example:

    ```python
    model.fit(x_train, y_train, epochs=30, validation_data=(x_val, y_val),
              callbacks=[PlotWriter("plots", anytime_data=(x_val, y_val))])
    # plots/head_accuracy.png, plots/anytime_curve.png
    ```
    """

    def __init__(
        self,
        directory,
        anytime_data=None,
        thresholds=early_exit.DEFAULT_THRESHOLDS,
        metric: str = "accuracy",
        batch_size: int = 256,
    ):
        super().__init__()
        try:
            directory = os.fspath(directory)
        except TypeError:
            raise ValueError(
                "`directory` must be a path (str or os.PathLike). Received: "
                f"directory={directory!r}"
            ) from None
        if anytime_data is not None and (
            not isinstance(anytime_data, (list, tuple)) or len(anytime_data) != 2
        ):
            raise ValueError(
                "`anytime_data` must be a pair (x, labels) or None. Received: "
                f"anytime_data of type {type(anytime_data).__name__}"
            )
        thresholds = tuple(thresholds)
        for threshold in thresholds:
            check_unit_interval("threshold", threshold)
        plots.require_matplotlib()
        self.directory = directory
        self.anytime_data = anytime_data
        self.thresholds = thresholds
        self.metric = metric
        self.batch_size = batch_size
        self.written_paths = []
        self._logs = {}

    def on_train_begin(self, logs=None):
        self._logs = {}
        self.written_paths = []

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self._logs.setdefault(key, []).append(float(value))

    def on_train_end(self, logs=None):
        if not self._logs:
            return
        os.makedirs(self.directory, exist_ok=True)
        served = getattr(self.model, "served_head_name", None)
        path = os.path.join(self.directory, HEAD_ACCURACY_FILENAME)
        plots.plot_head_accuracy(
            self._logs, path, metric=self.metric, served_name=served
        )
        self.written_paths.append(path)
        if self.anytime_data is not None and hasattr(self.model, "predict_heads"):
            x, labels = self.anytime_data
            curve = early_exit.anytime_curve(
                self.model, x, labels, self.thresholds, batch_size=self.batch_size
            )
            path = os.path.join(self.directory, ANYTIME_FILENAME)
            plots.plot_anytime_curve(curve, path)
            self.written_paths.append(path)


#: How `CheckpointExchange` names a group's checkpoint of a given step.
_EXCHANGE_PATTERN = re.compile(r"^group-(\d+)-step-(\d+)\.weights\.h5$")


def exchange_checkpoint_name(group: int, step: int) -> str:
    """The file name `CheckpointExchange` gives group `group`'s weights after
    `step` optimizer steps (`group-0-step-0000000100.weights.h5`).

    Args:
        group: int. The group's number.
        step: int. The group's optimizer steps when it wrote the file.

    Returns:
        str.
    """
    return f"group-{group}-step-{step:010d}.weights.h5"


def complete_exchange_checkpoints(directory, group: int) -> list:
    """Group `group`'s complete checkpoints in `directory`, newest first.

    Only files with the final name count: `write_atomically` writes under a
    hidden `.partial-` name and renames, so a file being written is never
    listed.

    Args:
        directory: str. The shared exchange directory.
        group: int. The group whose checkpoints to list.

    Returns:
        A list of `(step, path)`, highest step first.
    """
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        match = _EXCHANGE_PATTERN.match(name)
        if match and int(match.group(1)) == group:
            found.append((int(match.group(2)), os.path.join(directory, name)))
    return sorted(found, reverse=True)


class CheckpointExchange(keras.callbacks.Callback):
    """Swaps weights between co-distillation groups through a directory.

    The cross-process half of co-distillation (Anil et al., 2018): each of
    `num_groups` groups trains its own `CoDistillation(peer,
    remote_peers=num_groups - 1)` in its own process (one device, or its
    own data-parallel strategy) on its own data shard, and this callback,
    every `refresh_steps` optimizer steps,

    1. writes the group's peer weights to `directory` as
       `group-<g>-step-<step>.weights.h5`, atomically (a hidden temporary
       file, then a rename: a reader never sees half a file), keeping the
       group's `keep` newest files; then
    2. loads the newest complete checkpoint of every other group into the
       model's remote snapshot for that group (`CoDistillation.
       remote_snapshots`, in the order of the other groups' numbers), and
       lets it teach from the next step on.

    It also loads the others' newest checkpoints when training begins, so a
    restarted group gets its teachers back at once. A group that has written
    nothing yet, or whose newest checkpoint is more than `stale_after_steps`
    steps older than this group's step, is **missing**: training goes on
    (with the teacher it last had, or on the labels alone if it never had
    one), a warning names the group, and the history reports it:

    - `missing_peers`: how many other groups are missing;
    - `snapshot_age`: the largest age, in this group's steps, of a loaded
      snapshot (this group's step minus the step its checkpoint was written
      at; 0 for a peer that is ahead, and 0 when none is loaded).

    `exchanges` holds one record per exchange (`step`, and per other group
    the step of the loaded checkpoint or `None`). To resume a killed group
    from its own state, add `keras.callbacks.BackupAndRestore` before this
    callback: the model's weights, snapshots and `step_count` are restored,
    and so is the exchange schedule (it follows `step_count`).

    Args:
        directory: str. A directory every group can read and write (a local
            path or a shared file system). Created if missing.
        group: int in `[0, num_groups)`. This group's number.
        num_groups: int >= 2. How many groups co-distil.
        refresh_steps: int >= 1 or `None`. Steps between exchanges. Defaults
            to `None`: the model's `refresh_steps`.
        stale_after_steps: int >= 1 or `None`. Age beyond which another
            group counts as missing. Defaults to `None`: `2 * refresh_steps`.
        keep: int >= 1. How many of its own checkpoints a group keeps (the
            older ones are deleted; a reader that loses a race to a deletion
            loads the next newest). Defaults to `2`.

    Example:

    ```python
    # Process g of K, each on its own machine or device, same directory.
    group = CoDistillation(make_peer(), remote_peers=K - 1, refresh_steps=200,
                           burn_in_steps=1000)
    group.compile(optimizer="adam", metrics=["accuracy"])
    group.fit(shard(g), epochs=10, callbacks=[
        keras.callbacks.BackupAndRestore(f"/shared/backup-{g}"),
        CheckpointExchange("/shared/exchange", group=g, num_groups=K),
    ])
    ```

    References:
        Anil, Pereyra, Passos, Ormandi, Dahl, Hinton. "Large scale
        distributed neural network training through online distillation",
        ICLR 2018, section 2 ("exchanging checkpoints").
        https://arxiv.org/abs/1804.03235
    """

    def __init__(
        self,
        directory,
        group,
        num_groups,
        refresh_steps=None,
        stale_after_steps=None,
        keep=2,
    ):
        super().__init__()
        if not isinstance(directory, (str, os.PathLike)):
            raise ValueError(
                "`directory` must be a path (str). Received: "
                f"directory={directory!r}"
            )
        check_integer("num_groups", num_groups, 2)
        if isinstance(group, bool) or not isinstance(group, int) or not (
            0 <= group < num_groups
        ):
            raise ValueError(
                f"`group` must be an integer in [0, {num_groups}) (one of "
                f"num_groups={num_groups}). Received: group={group!r}"
            )
        if refresh_steps is not None:
            check_integer("refresh_steps", refresh_steps, 1)
        if stale_after_steps is not None:
            check_integer("stale_after_steps", stale_after_steps, 1)
        check_integer("keep", keep, 1)
        self.directory = os.fspath(directory)
        self.group = group
        self.num_groups = num_groups
        self.refresh_steps = refresh_steps
        self.stale_after_steps = stale_after_steps
        self.keep = keep
        self.other_groups = [g for g in range(num_groups) if g != group]
        self.exchanges = []
        self._loaded_steps = {g: None for g in self.other_groups}
        self._newest_steps = {g: None for g in self.other_groups}
        self._reported_missing = set()
        self._last_exchange_step = 0

    # -- the schedule ---------------------------------------------------- #

    def _period(self):
        return self.refresh_steps or self.model.refresh_steps

    def _stale_after(self):
        return self.stale_after_steps or 2 * self._period()

    def _step(self):
        return int(keras.ops.convert_to_numpy(self.model.step_count))

    def on_train_begin(self, logs=None):
        from keras_selfdistill.models.co_distillation import CoDistillation

        model = self.model
        if (
            not isinstance(model, CoDistillation)
            or len(model.peers) != 1
            or model.remote_peers != self.num_groups - 1
        ):
            description = (
                f"{type(model).__name__} with {len(model.peers)} peer(s) and "
                f"remote_peers={model.remote_peers}"
                if isinstance(model, CoDistillation)
                else type(model).__name__
            )
            raise ValueError(
                "CheckpointExchange trains one group: a CoDistillation with "
                f"one peer and remote_peers={self.num_groups - 1} "
                f"(num_groups - 1). Received: a {description}."
            )
        os.makedirs(self.directory, exist_ok=True)
        self._last_exchange_step = self._step()
        self._load_newest()
        self._record(self._last_exchange_step)

    def on_train_batch_end(self, batch, logs=None):
        step = self._step()
        period = self._period()
        if step // period > self._last_exchange_step // period:
            self._last_exchange_step = step
            self._write(step)
            self._load_newest()
            self._record(step)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(self.report(self._step()))

    # -- writing and loading --------------------------------------------- #

    def _write(self, step):
        path = os.path.join(
            self.directory, exchange_checkpoint_name(self.group, step)
        )
        write_atomically(path, self.model.peer(0).save_weights)
        for _, old in complete_exchange_checkpoints(self.directory, self.group)[
            self.keep:
        ]:
            try:
                os.remove(old)
            except FileNotFoundError:
                pass

    def _load_newest(self):
        snapshots = self.model.remote_snapshots
        for slot, other in enumerate(self.other_groups):
            candidates = complete_exchange_checkpoints(self.directory, other)
            if candidates:
                self._newest_steps[other] = candidates[0][0]
            for step, path in candidates:
                if step == self._loaded_steps[other]:
                    break  # Already the teacher: nothing newer loads.
                try:
                    snapshots[slot].load_weights(path)
                except (OSError, ValueError, KeyError) as error:
                    # Deleted by its owner since the listing, or unreadable:
                    # try the next newest.
                    warnings.warn(
                        f"CheckpointExchange (group {self.group}): could not "
                        f"load {path!r} ({type(error).__name__}: {error}); "
                        "trying an older checkpoint of that group.",
                        stacklevel=2,
                    )
                    continue
                self.model.mark_remote_snapshot_loaded(slot)
                self._loaded_steps[other] = step
                break

    # -- reporting ------------------------------------------------------- #

    def missing_groups(self, step):
        """The other groups with no checkpoint, or none newer than
        `stale_after_steps` before `step`.

        Args:
            step: int. This group's current step.

        Returns:
            list of int.
        """
        return [
            other
            for other in self.other_groups
            if self._newest_steps[other] is None
            or step - self._newest_steps[other] > self._stale_after()
        ]

    def report(self, step):
        """`{"missing_peers": ..., "snapshot_age": ...}` at `step` (what
        the history gets at the end of each epoch).

        Args:
            step: int. This group's current step.

        Returns:
            dict of str to int.
        """
        ages = [
            max(step - loaded, 0)
            for loaded in self._loaded_steps.values()
            if loaded is not None
        ]
        return {
            "missing_peers": len(self.missing_groups(step)),
            "snapshot_age": max(ages) if ages else 0,
        }

    def _record(self, step):
        self.exchanges.append(
            {"step": step, "loaded": dict(self._loaded_steps)}
        )
        missing = set(self.missing_groups(step))
        for other in sorted(missing - self._reported_missing):
            newest = self._newest_steps[other]
            what = (
                "has written no checkpoint yet"
                if newest is None
                else f"last wrote a checkpoint at its step {newest}"
            )
            warnings.warn(
                f"CheckpointExchange (group {self.group}, step {step}): group "
                f"{other} {what} in {self.directory!r}; training goes on "
                "with "
                + (
                    f"its snapshot of step {self._loaded_steps[other]}."
                    if self._loaded_steps[other] is not None
                    else "the labels alone for that group."
                ),
                stacklevel=2,
            )
        self._reported_missing = missing
# DINO's collapse warning lives in its own module; re-exported here.
from keras_selfdistill.collapse_monitor import CollapseMonitor  # noqa: E402,F401
