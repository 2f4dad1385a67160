"""`DINO`: label-free self-distillation from a momentum teacher, in `fit`."""

import keras
from keras import ops

from keras_selfdistill.dino_loss import dino_loss_terms
from keras_selfdistill.dino_loss import teacher_temperature_at
from keras_selfdistill.dino_loss import updated_center
from keras_selfdistill.layers.dino_head import DINOHead
from keras_selfdistill.metrics import with_direction
from keras_selfdistill.models.copies import companion_copy
from keras_selfdistill.models.copies import copy_with_weights
from keras_selfdistill.models.distillation_base import DistillationBase
from keras_selfdistill.models.graph import known_outputs
from keras_selfdistill.models.hyperparameters import Hyperparameter
from keras_selfdistill.models.labels import bound_arguments
from keras_selfdistill.models.temporal_teacher import FullPrecisionCall
from keras_selfdistill.models.temporal_teacher import averaged_variables
from keras_selfdistill.multi_crop import MultiCrop
from keras_selfdistill.validation import check_integer
from keras_selfdistill.validation import check_positive
from keras_selfdistill.validation import check_unit_interval

_SERVED = ("teacher", "student")


class DINOEpoch(keras.callbacks.Callback):
    """Tells a `DINO` model which epoch runs (`DINO.fit` adds it itself).

    Sets `model.epoch` when each epoch begins (the teacher temperature's
    warm-up and the last layer's freeze read it inside the compiled step)
    and logs the epoch's `teacher_temperature`.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self.model.set_epoch(epoch)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["teacher_temperature"] = float(
                ops.convert_to_numpy(self.model.current_teacher_temperature())
            )


@keras.saving.register_keras_serializable(package="keras_selfdistill")
class DINO(DistillationBase):
    """Self-distillation with no labels (DINO), trained with `model.fit(images)`.

    A student (`backbone` + `DINOHead`) and a teacher of the same
    architecture whose weights are an exponential moving average of the
    student's. Each step, `MultiCrop` makes 2 global and N local views of
    every image; the teacher sees the global ones, the student all of them,
    and the student's output on every view learns the teacher's output on
    every *other* view (`keras_selfdistill.losses.dino_loss_terms`):

    `L = mean_{i in global, v != i} H(softmax((t_i - c) / tau_t), softmax(s_v / tau_s))`

    - **Centre**: `c <- m_c * c + (1 - m_c) * mean(t)` after each training
      step (`updated_center`), a non-trainable variable saved with the model.
    - **Teacher temperature** `tau_t` rises linearly from
      `warmup_teacher_temperature` to `teacher_temperature` over
      `warmup_teacher_temperature_epochs` epochs, then stays;
      `tau_s = student_temperature`.
    - **Teacher**: `xi <- m * xi + (1 - m) * theta` after each optimizer step
      (every float weight, batch-norm statistics included); give `fit`
      `keras_selfdistill.callbacks.MomentumScheduler()` for DINO's cosine
      schedule of `m` from 0.996 to 1. The update runs at the start of the
      next step (see `TemporalTeacherBase`: the same exact, deferred
      update), and when `fit` returns.
    - **Last layer** of the student's head gets no gradient during the first
      `freeze_last_layer_epochs` epochs.

    `fit` reports `loss`, `teacher_entropy` (mean entropy of the teacher's
    centred, sharpened distribution: near `log K` is uniform collapse, near
    0 one-hot collapse; see `CollapseMonitor`), `kl_divergence` (mean
    `KL(teacher || student)` over the loss's pairs) and
    `teacher_temperature`. `fit` adds a `DINOEpoch` callback, which sets
    `model.epoch`; a custom loop calls `model.set_epoch(epoch)` itself.

    `predict` and `model(x)` return **backbone features** `(batch, D)` of
    the teacher (`serve="teacher"`, the network the paper evaluates) or
    the student, from the un-augmented images. `export_backbone()` gives
    either backbone as a plain `keras.Model`. `evaluate(images)` reports
    the loss on random views, without updating the centre.

    **Several replicas.** DINO's centre is the mean over the *global*
    batch. Under a `tf.distribute` strategy each replica computes its own
    batch mean and assigns its own new centre; the centre variable is
    created with `aggregation="mean"`, so the replicas' assignments are
    averaged: with equal per-replica batches, the mean of the replicas'
    `m c + (1 - m) mean_r` is exactly `m c + (1 - m) mean_global`
    (a ragged last batch weights its replicas equally, not by size).
    Under JAX's `keras.distribution` the step is one program over the
    global batch, so the mean is global already; torch runs one replica.

    **Not included**: DINO's weight-decay schedule (0.04 to 0.4). Keras
    optimizers read `weight_decay` as a constant when the step is traced;
    use `keras.optimizers.AdamW(weight_decay=...)` at a fixed value.
    DINO's gradient clipping (each parameter's gradient norm to 3.0) is
    Keras's `clipnorm=3.0`. With decoupled weight decay, a frozen last
    layer still decays.

    Args:
        backbone: a built `keras.Model` mapping images `(batch, H, W, C)` to
            features `(batch, D)`, rebuildable from its config (functional,
            Sequential, or subclassed with `get_config`). It must accept
            both crop sizes (e.g. `keras.Input((None, None, C))` and global
            pooling), or set `local_size` equal to `global_size` in
            `multi_crop`. It is trained in place.
        output_dim: int >= 1. `K`, the head's outputs. Defaults to `65536`
            (the paper's); a few thousand suit CIFAR-sized runs.
        hidden_dim: int >= 1. Defaults to `2048`.
        bottleneck_dim: int >= 1. Defaults to `256`.
        num_head_layers: int >= 1. Dense layers of the head's MLP. Defaults
            to `3`.
        use_batch_norm_in_head: bool. Defaults to `False`.
        normalize_last_layer: bool. Defaults to `True`.
        multi_crop: a `MultiCrop` layer or `None` (`MultiCrop()`, the
            32x32 defaults, with `seed`). Defaults to `None`.
        student_temperature: float > 0. `tau_s`. Defaults to `0.1`.
        teacher_temperature: float > 0. `tau_t` after the warm-up.
            Defaults to `0.07`.
        warmup_teacher_temperature: float > 0. `tau_t` at epoch 0. Defaults
            to `0.04`.
        warmup_teacher_temperature_epochs: int >= 0. Defaults to `30`.
        momentum: float in [0, 1]. The teacher's momentum `m` (a variable;
            `MomentumScheduler` sets it). Defaults to `0.996`.
        center_momentum: float in [0, 1]. `m_c`. Defaults to `0.9`.
        freeze_last_layer_epochs: int >= 0. Defaults to `1`.
        serve: `"teacher"` or `"student"`. Whose features `predict`
            returns. Defaults to `"teacher"`.
        seed: int or `None`. Seed of the default `multi_crop`. Defaults to
            `None`.
        **kwargs: base model arguments (`name`, `trainable`, `dtype`).

    Example:

    ```python
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(32, 3, activation="relu")(inputs)
    features = keras.layers.GlobalAveragePooling2D()(x)
    backbone = keras.Model(inputs, features)
    model = DINO(backbone, output_dim=1024, hidden_dim=256,
                 bottleneck_dim=64, warmup_teacher_temperature_epochs=5)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3, clipnorm=3.0))
    model.fit(images, epochs=20, batch_size=128,  # images in [0, 1]
              callbacks=[MomentumScheduler(), CollapseMonitor()])
    features = model.export_backbone("teacher").predict(images)
    ```

    References:
        Caron et al. "Emerging Properties in Self-Supervised Vision
        Transformers" (DINO), ICCV 2021, section 3.1, Algorithm 1,
        appendix. https://arxiv.org/abs/2104.14294
    """

    momentum = Hyperparameter(check_unit_interval)
    student_temperature = Hyperparameter(check_positive)
    center_momentum = Hyperparameter(check_unit_interval)

    def __init__(
        self,
        backbone,
        output_dim=65536,
        hidden_dim=2048,
        bottleneck_dim=256,
        num_head_layers=3,
        use_batch_norm_in_head=False,
        normalize_last_layer=True,
        multi_crop=None,
        student_temperature=0.1,
        teacher_temperature=0.07,
        warmup_teacher_temperature=0.04,
        warmup_teacher_temperature_epochs=30,
        momentum=0.996,
        center_momentum=0.9,
        freeze_last_layer_epochs=1,
        serve="teacher",
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        feature_dim = _check_backbone(backbone)
        _check_schedule_arguments(
            teacher_temperature, warmup_teacher_temperature,
            warmup_teacher_temperature_epochs, freeze_last_layer_epochs, serve,
        )
        self.momentum = momentum
        self.student_temperature = student_temperature
        self.center_momentum = center_momentum
        self.teacher_temperature = float(teacher_temperature)
        self.warmup_teacher_temperature = float(warmup_teacher_temperature)
        self.warmup_teacher_temperature_epochs = warmup_teacher_temperature_epochs
        self.freeze_last_layer_epochs = freeze_last_layer_epochs
        self.serve = serve
        self.seed = seed
        self.multi_crop = _checked_multi_crop(multi_crop, seed)
        self.backbone = backbone
        self.head = DINOHead(
            output_dim, hidden_dim=hidden_dim, bottleneck_dim=bottleneck_dim,
            num_layers=num_head_layers, use_batch_norm=use_batch_norm_in_head,
            normalize_last_layer=normalize_last_layer, name="head",
        )
        self.head.build((None, feature_dim))
        self._build_teacher(feature_dim)
        self._add_state_variables(output_dim)
        self._pair_teacher_with_student()
        self.built = True

    def _build_teacher(self, feature_dim):
        """The teacher: a copy of the backbone and of the head, not trained."""
        # Renamed layers: the teacher's variable paths must differ from the
        # student's (get_state_tree, torch's parameter tracking).
        self.teacher_backbone = companion_copy(self.backbone, "teacher")
        self.teacher_head = DINOHead.from_config(
            {**self.head.get_config(), "name": "teacher_head"}
        )
        self.teacher_head.build((None, feature_dim))
        self.teacher_head.trainable = False

    def _add_state_variables(self, output_dim):
        """The centre (mean-aggregated across replicas), the epoch, and the
        flag of a teacher update left pending by the last optimizer step."""
        self.center = self.add_weight(
            name="center",
            shape=(output_dim,),
            initializer="zeros",
            trainable=False,
            autocast=False,
            aggregation="mean",
        )
        self.epoch = self.add_weight(
            name="epoch", shape=(), initializer="zeros", trainable=False,
            autocast=False,
        )
        self.teacher_update_pending = self.add_weight(
            name="teacher_update_pending", shape=(), initializer="zeros",
            trainable=False, autocast=False,
        )

    def _pair_teacher_with_student(self):
        """Pairs each averaged teacher variable with its student variable,
        starts the teacher equal to the student, and sets up the update."""
        student_weights = self.backbone.weights + self.head.weights
        teacher_weights = self.teacher_backbone.weights + self.teacher_head.weights
        self._set_untracked(
            "_weight_pairs",
            [
                (teacher_weights[index], student_weights[index])
                for index in averaged_variables(student_weights)
            ],
        )
        for teacher_variable, student_variable in self._weight_pairs:
            teacher_variable.assign(ops.copy(student_variable.value))
        self._set_untracked(
            "_full_precision_fold",
            FullPrecisionCall(self._fold_and_return, name="teacher_update"),
        )

    # -- the teacher ----------------------------------------------------- #

    def _fold_and_return(self, pending):
        # keep = m when an optimizer step is pending, 1 otherwise (see
        # EMATeacher.fold_student_weights).
        keep = 1.0 - pending * (1.0 - ops.convert_to_tensor(self.momentum))
        for teacher_variable, student_variable in self._weight_pairs:
            teacher_value = ops.cast(teacher_variable, "float32")
            student_value = ops.cast(student_variable, "float32")
            teacher_variable.assign(
                ops.cast(
                    keep * teacher_value + (1.0 - keep) * student_value,
                    teacher_variable.dtype,
                )
            )
        return pending

    def update_teacher(self):
        """Takes the student's latest weights into the teacher now, if an
        optimizer step happened since the last update (`fit` and
        `train_on_batch` call it when they return)."""
        self._full_precision_fold(ops.convert_to_tensor(self.teacher_update_pending))
        self.teacher_update_pending.assign(0.0)

    # -- schedules ------------------------------------------------------- #

    def set_epoch(self, epoch):
        """Sets `model.epoch` (read by the temperature warm-up and the
        last-layer freeze). `fit` does it through `DINOEpoch`."""
        self.epoch.assign(float(epoch))

    def current_teacher_temperature(self):
        """`tau_t` at `model.epoch` (float32 scalar tensor)."""
        return teacher_temperature_at(
            self.epoch,
            self.warmup_teacher_temperature,
            self.teacher_temperature,
            self.warmup_teacher_temperature_epochs,
        )

    def fit(self, *args, **kwargs):
        arguments = bound_arguments(keras.Model.fit, self, args, kwargs)
        if arguments:
            arguments.pop("self")
            if arguments.get("y") is not None:
                raise ValueError(
                    "DINO learns without labels: call fit(images). "
                    f"Received: y of type {type(arguments['y']).__name__}"
                )
            callbacks = arguments.get("callbacks") or []
            arguments["callbacks"] = list(callbacks) + [DINOEpoch()]
            args, kwargs = (), arguments
        history = super().fit(*args, **kwargs)
        self.update_teacher()
        return history

    def train_on_batch(self, *args, **kwargs):
        logs = super().train_on_batch(*args, **kwargs)
        self.update_teacher()
        return logs

    # -- forward passes -------------------------------------------------- #

    def _student_outputs(self, images, frozen, training):
        features = self.backbone(images, training=training)
        return self.head(features, freeze_last_layer=frozen, training=training)

    def training_outputs(self, inputs, training=None):
        # Take the weights the last optimizer step left, then predict.
        self._full_precision_fold(ops.convert_to_tensor(self.teacher_update_pending))
        self.teacher_update_pending.assign(1.0 if training else 0.0)
        views = self.multi_crop(inputs)
        num_outputs = self.head.output_dim
        frozen = ops.cast(
            ops.less(ops.convert_to_tensor(self.epoch), float(self.freeze_last_layer_epochs)),
            "float32",
        )
        global_views = ops.concatenate(views[:2], axis=0)
        student = [
            ops.reshape(
                self._student_outputs(global_views, frozen, training),
                (2, -1, num_outputs),
            )
        ]
        if len(views) > 2:
            local_views = ops.concatenate(views[2:], axis=0)
            student.append(
                ops.reshape(
                    self._student_outputs(local_views, frozen, training),
                    (len(views) - 2, -1, num_outputs),
                )
            )
        teacher = self.teacher_head(
            self.teacher_backbone(global_views, training=False), training=False
        )
        teacher = ops.stop_gradient(ops.reshape(teacher, (2, -1, num_outputs)))
        # A copy: on torch an assignment writes the variable's tensor in
        # place, and the loss needs the centre from before this step.
        center = ops.copy(ops.convert_to_tensor(self.center))
        if training:
            self.center.assign(updated_center(center, teacher, self.center_momentum))
        return {
            "student": ops.concatenate(student, axis=0),
            "teacher": teacher,
            "center": center,
        }

    def inference_outputs(self, inputs, training=None):
        if self.serve == "teacher":
            return self.teacher_backbone(inputs, training=False)
        return self.backbone(inputs, training=training)

    # -- loss and metrics ------------------------------------------------ #

    @property
    def metric_head_names(self):
        """`["student"]`: DINO has no per-head metrics (no labels)."""
        return ["student"]

    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None,
                metrics=None, weighted_metrics=None, **kwargs):
        """Configures the model for training (`keras.Model.compile`).

        The loss is DINO's and there are no labels, so `loss`,
        `loss_weights`, `metrics` and `weighted_metrics` must stay `None`;
        the history has `loss`, `teacher_entropy` and `kl_divergence`.

        Args:
            optimizer: optimizer name or instance (DINO: AdamW with
                `clipnorm=3.0`). Defaults to `"rmsprop"`.
            loss: must be `None`.
            loss_weights: must be `None`.
            metrics: must be `None`.
            weighted_metrics: must be `None`.
            **kwargs: other `keras.Model.compile` arguments (`jit_compile`,
                `steps_per_execution`, ...).
        """
        for argument, value in (
            ("metrics", metrics), ("weighted_metrics", weighted_metrics)
        ):
            if value:
                raise ValueError(
                    f"DINO trains without labels, so `{argument}` must be "
                    f"None (the history reports loss, teacher_entropy and "
                    f"kl_divergence). Received: {argument}={value!r}"
                )
        super().compile(
            optimizer=optimizer, loss=loss, loss_weights=loss_weights, **kwargs
        )
        self._compiled_state["trackers"] = {
            "teacher_entropy": keras.metrics.Mean(name="teacher_entropy"),
            "kl_divergence": with_direction(
                keras.metrics.Mean(name="kl_divergence"), "down"
            ),
        }

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        if y is not None:
            raise ValueError(
                "DINO learns without labels: the data must yield images "
                "only (fit(images) or a dataset of image batches). Received: "
                f"y of shape {tuple(ops.shape(y))}"
            )
        if not isinstance(y_pred, dict):
            raise ValueError(
                "DINO.compute_loss needs the training outputs (a dict), "
                "which the model returns for model(TrainingInputs(x)) as its "
                "train_step and test_step call it; model(x) returns "
                f"features. Received y_pred of type {type(y_pred).__name__}."
            )
        terms = dino_loss_terms(
            y_pred["student"],
            y_pred["teacher"],
            y_pred["center"],
            student_temperature=self.student_temperature,
            teacher_temperature=self.current_teacher_temperature(),
        )
        self.update_loss_trackers(terms, ops.shape(y_pred["teacher"])[1])
        return self.add_extra_losses(terms["loss"])

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return self.get_metrics_result()

    # -- downstream ------------------------------------------------------ #

    def export_backbone(self, which="teacher"):
        """A backbone as a plain `keras.Model`, for k-NN, linear probes or
        fine-tuning.

        A trainable copy with its own weights (changing it leaves the DINO
        model as it is); it loads without this package.

        Args:
            which: `"teacher"` (the EMA network, the paper's choice) or
                `"student"`. Defaults to `"teacher"`.

        Returns:
            A `keras.Model` from images to features `(batch, D)`.
        """
        if which not in _SERVED:
            raise ValueError(
                f"`which` must be one of {list(_SERVED)}. Received: which={which!r}"
            )
        self.update_teacher()
        # A copy of the student's architecture (its layer names, not the
        # teacher's renamed ones) holding the chosen weights.
        exported = copy_with_weights(
            self.backbone, name=f"{self.backbone.name}_{which}_export", trainable=True
        )
        if which == "teacher":
            exported.set_weights(self.teacher_backbone.get_weights())
        return exported

    # -- serialization --------------------------------------------------- #

    def get_config(self):
        return {
            **self.base_config(),
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "output_dim": self.head.output_dim,
            "hidden_dim": self.head.hidden_dim,
            "bottleneck_dim": self.head.bottleneck_dim,
            "num_head_layers": self.head.num_layers,
            "use_batch_norm_in_head": self.head.use_batch_norm,
            "normalize_last_layer": self.head.normalize_last_layer,
            "multi_crop": keras.saving.serialize_keras_object(self.multi_crop),
            "teacher_temperature": self.teacher_temperature,
            "warmup_teacher_temperature": self.warmup_teacher_temperature,
            "warmup_teacher_temperature_epochs": self.warmup_teacher_temperature_epochs,
            "freeze_last_layer_epochs": self.freeze_last_layer_epochs,
            "serve": self.serve,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        config = cls.constructor_arguments(config)
        backbone = keras.saving.deserialize_keras_object(config.pop("backbone"))
        multi_crop = keras.saving.deserialize_keras_object(config.pop("multi_crop"))
        return cls(backbone, multi_crop=multi_crop, **config)

    def layout_description(self) -> str:
        """What a weights file of this model holds, in words."""
        return "DINO: student and teacher backbones and heads"


def _check_schedule_arguments(
    teacher_temperature,
    warmup_teacher_temperature,
    warmup_teacher_temperature_epochs,
    freeze_last_layer_epochs,
    serve,
) -> None:
    """Raises on a bad temperature, epoch count or `serve`."""
    check_positive("teacher_temperature", teacher_temperature)
    check_positive("warmup_teacher_temperature", warmup_teacher_temperature)
    check_integer(
        "warmup_teacher_temperature_epochs", warmup_teacher_temperature_epochs, 0
    )
    check_integer("freeze_last_layer_epochs", freeze_last_layer_epochs, 0)
    if serve not in _SERVED:
        raise ValueError(
            f"`serve` must be one of {list(_SERVED)}. Received: serve={serve!r}"
        )


def _checked_multi_crop(multi_crop, seed):
    """`multi_crop`, or `MultiCrop(seed=seed)` for `None`; raises otherwise."""
    if multi_crop is None:
        return MultiCrop(seed=seed)
    if not isinstance(multi_crop, MultiCrop):
        raise ValueError(
            "`multi_crop` must be a keras_selfdistill.MultiCrop layer or "
            f"None. Received: multi_crop of type {type(multi_crop).__name__}"
        )
    return multi_crop


def _check_backbone(backbone) -> int:
    """The feature width `D` of a backbone mapping images to `(batch, D)`."""
    if not isinstance(backbone, keras.Model) or not backbone.built:
        raise ValueError(
            "`backbone` must be a built keras.Model mapping images to "
            "features (batch, D). Received: "
            f"{type(backbone).__name__}"
            + ("" if not isinstance(backbone, keras.Model) else " (unbuilt)")
        )
    outputs = known_outputs(backbone)
    if outputs:
        shapes = [tuple(output.shape) for output in outputs]
        if len(shapes) != 1 or len(shapes[0]) != 2 or shapes[0][-1] is None:
            raise ValueError(
                "`backbone` must have one output of features (batch, D) with "
                f"D known. Received: output shape(s) {shapes}"
            )
        return shapes[0][-1]
    build_config = backbone.get_build_config() or {}
    if "input_shape" not in build_config:
        raise ValueError(
            "`backbone` was built without a recorded input shape: call it "
            f"once on a batch before wrapping it. Received: '{backbone.name}'"
        )
    shape = backbone.compute_output_shape(build_config["input_shape"])
    return shape[-1]
