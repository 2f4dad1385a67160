"""`CoDistillation`: peers taught by stale snapshots of the other peers."""

import keras
import numpy as np
from keras import ops

from keras_selfdistill import losses
from keras_selfdistill.models.copies import copy_with_weights
from keras_selfdistill.models.mutual_learning import MutualLearning
from keras_selfdistill.models.temporal_teacher import FullPrecisionCall
from keras_selfdistill.models.temporal_teacher import averaged_variables
from keras_selfdistill.validation import check_integer


def _check_counts(peers, remote_peers, refresh_steps, burn_in_steps) -> None:
    """The step counts are integers, and there are 2 peers or more in all
    (local plus `remote_peers`)."""
    check_integer("remote_peers", remote_peers, 0)
    check_integer("refresh_steps", refresh_steps, 1)
    check_integer("burn_in_steps", burn_in_steps, 0)
    count = len(peers) if isinstance(peers, (list, tuple)) else 0
    if isinstance(peers, (list, tuple)) and count + remote_peers < 2:
        raise ValueError(
            "CoDistillation needs at least 2 peers in all: peers in this "
            "model plus `remote_peers` trained elsewhere. Received: "
            f"{count} peer(s) and remote_peers={remote_peers}."
        )


@keras.saving.register_keras_serializable(package="keras_selfdistill")
class CoDistillation(MutualLearning):
    """Online distillation from stale snapshots of the other peers.

    Co-distillation (Anil et al., 2018) in plain `model.fit`. Like
    `MutualLearning`, every peer learns from the labels and from the other
    peers, but the teacher of peer `i` is the mean prediction of **stale
    snapshots** of the others: copies of their weights taken every
    `refresh_steps` optimizer steps, not their weights of this step. After
    `burn_in_steps` steps of labels-only training, with peer logits `z_i`,
    snapshot logits `t_j` and `p_bar_i` the mean of the softened
    predictions of the snapshots of the other peers,

    `L_i = (1 - alpha) * CE(y, z_i)
           + alpha * T^2 * KL(p_bar_i || softmax(z_i / T))`,
    `p_bar_i = 1/(K-1) * sum_{j != i} softmax(t_j / T)`,

    and `fit` minimises `L = sum_i L_i` (the math: `losses.co_distillation_loss`).
    The teacher averages **probabilities**, as the paper's Algorithm 1 does;
    at `alpha=0.5, T=1` the loss is half the paper's `CE + CE(p_bar, p)` plus
    a constant (the teacher's entropy), so the gradients are the paper's up
    to the factor 1/2. During burn-in, and for a peer with no snapshot of
    another peer yet, `alpha` is 0: the labels alone, with weight 1, and a
    distillation term (and gradient) of exactly zero.

    **Why stale teachers.** In the paper the peers are groups of machines
    that train their own copy of the model on their own data; exchanging
    weights every few hundred or thousand steps costs almost nothing next to
    the all-reduce of gradients every step that data parallelism needs, and
    the staleness barely hurts. The snapshots are ordinary model copies in
    this model, so one design serves both settings:

    - **One process, K peers** (`CoDistillation([peer_a, peer_b])`): each
      peer has a snapshot, refreshed inside the compiled train step when
      `step_count % refresh_steps == 0`, before that step's forward pass.
      Step `t` (counting from 0) learns from the peers' weights after
      `refresh_steps * floor(t / refresh_steps)` steps.
    - **One group per process** (`CoDistillation(peer, remote_peers=K - 1)`
      with the callback `keras_selfdistill.callbacks.CheckpointExchange`):
      the model holds one trainable peer and `K - 1` *remote* snapshots
      (copies of the peer's architecture) that the callback fills with the
      newest complete checkpoints of the other groups, written to a shared
      directory every `refresh_steps` steps. A remote snapshot teaches only
      once a checkpoint was loaded into it (`snapshot_ready`); until then
      the group trains on the labels.

    The snapshots are non-trainable: no gradient reaches them, and each peer
    runs one forward pass with gradient per step, plus one forward pass
    (inference mode, no gradient) per snapshot that teaches it. Every bit of
    state (snapshots, `step_count`, `snapshot_ready`, `alpha`,
    `temperature`) lives in Keras variables, updated inside the train step,
    so it is exact under `jit_compile=True`, saved with the model, and a
    run resumed from a `.keras` file continues exactly (and one restored by
    `keras.callbacks.BackupAndRestore` resumes from its last backup).
    `step_count` counts training forward passes (`fit`, `train_on_batch`,
    a loop calling `train_step`), i.e. optimizer steps.

    What is served: `predict` returns the mean of the peers' logits (the
    single peer's logits with one peer). Metrics and history keys are
    `MutualLearning`'s: with several peers each peer's metrics carry its
    name (`a_accuracy`) and the ensemble's the plain names; with one peer,
    the peer's metrics have the plain names. The history also has
    `cross_entropy_loss`, `distillation_loss` and `<peer name>_loss`.

    Args:
        peers: a functional (or Sequential, built with a `keras.Input`)
            `keras.Model` mapping inputs to logits `(batch, num_classes)`,
            or a list of them with distinct names. With one peer,
            `remote_peers` must be at least 1.
        remote_peers: int >= 0. How many snapshots of peers trained
            elsewhere (other processes or machines) to hold, each a copy of
            the first peer's architecture, filled by `CheckpointExchange`.
            Defaults to `0`.
        refresh_steps: int >= 1. Optimizer steps between two refreshes of
            the in-model snapshots (and, by default, between two checkpoint
            exchanges of `CheckpointExchange`). Defaults to `100`.
        burn_in_steps: int >= 0. Optimizer steps of labels-only training
            before any distillation. Defaults to `0`.
        alpha: float in [0, 1]. Weight of the teacher term. Held in a
            non-trainable variable (schedulable). Defaults to `0.5`.
        temperature: float > 0. Softmax temperature of the teacher term.
            Defaults to `1.0` (the paper's).
        scale_by_temperature_squared: bool. Multiply the teacher term by
            `T^2`. Defaults to `True`.
        **kwargs: base model arguments (`name`, `trainable`, `dtype`).

    Example:

    ```python
    def make_peer(name):
        inputs = keras.Input((8, 8, 1))
        hidden = keras.layers.Dense(32, activation="relu")(
            keras.layers.Flatten()(inputs)
        )
        return keras.Model(inputs, keras.layers.Dense(10)(hidden), name=name)

    # Two peers in one model, snapshots refreshed every 50 steps.
    model = CoDistillation(
        [make_peer("a"), make_peer("b")], refresh_steps=50, burn_in_steps=100
    )
    model.compile(optimizer="adam", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=3)

    # One group of K = 3 in its own process (group 0 here).
    group = CoDistillation(make_peer("peer"), remote_peers=2, refresh_steps=50)
    group.compile(optimizer="adam")
    group.fit(shard_0, epochs=3, callbacks=[
        keras_selfdistill.callbacks.CheckpointExchange(
            "/shared/exchange", group=0, num_groups=3
        )
    ])
    ```

    References:
        Anil, Pereyra, Passos, Ormandi, Dahl, Hinton. "Large scale
        distributed neural network training through online distillation",
        ICLR 2018, section 2 and Algorithm 1.
        https://arxiv.org/abs/1804.03235
    """

    minimum_peers = 1

    def __init__(
        self,
        peers,
        remote_peers=0,
        refresh_steps=100,
        burn_in_steps=0,
        alpha=0.5,
        temperature=1.0,
        scale_by_temperature_squared=True,
        **kwargs,
    ):
        if isinstance(peers, keras.Model):
            peers = [peers]
        _check_counts(peers, remote_peers, refresh_steps, burn_in_steps)
        super().__init__(
            peers,
            alpha=alpha,
            temperature=temperature,
            scale_by_temperature_squared=scale_by_temperature_squared,
            **kwargs,
        )
        self.remote_peers = remote_peers
        self.refresh_steps = refresh_steps
        self.burn_in_steps = burn_in_steps
        peers = self._peers
        local_snapshots = len(peers) if len(peers) >= 2 else 0
        self._add_counters(local_snapshots + remote_peers)
        self.snapshots = self._make_snapshots(peers, local_snapshots, remote_peers)
        self._set_snapshot_bookkeeping(peers, local_snapshots, remote_peers)
        # Untracked: it has no weights and is no part of the saved model.
        self._set_untracked(
            "_full_precision_refresh",
            FullPrecisionCall(self._refresh_and_return, name="snapshot_refresh"),
        )
        self.built = True

    def _add_counters(self, num_snapshots):
        """`step_count` (forward passes in training) and `snapshot_ready`
        (1 per snapshot once it holds a peer's weights)."""
        self.step_count = self.add_weight(
            name="step_count",
            shape=(),
            dtype="int32",
            initializer="zeros",
            trainable=False,
            autocast=False,
        )
        self.snapshot_ready = self.add_weight(
            name="snapshot_ready",
            shape=(num_snapshots,),
            dtype="float32",
            initializer="zeros",
            trainable=False,
            autocast=False,
        )

    def _make_snapshots(self, peers, local_snapshots, remote_peers):
        """A copy of each local peer (when there are two or more), then one
        copy of the first peer per remote peer; each with its own layer
        names (torch tracks parameters by path)."""
        local = [
            copy_with_weights(
                peer,
                name=f"{peer.name}_snapshot",
                layer_prefix=f"{peer.name}_snapshot_",
            )
            for peer in peers[:local_snapshots]
        ]
        remote = [
            copy_with_weights(
                peers[0],
                name=f"remote_snapshot_{index}",
                layer_prefix=f"remote_snapshot_{index}_",
            )
            for index in range(remote_peers)
        ]
        return local + remote

    def _set_snapshot_bookkeeping(self, peers, local_snapshots, remote_peers):
        """Which snapshot teaches which peer, and which weights refresh which."""
        # Which snapshot may teach which peer: not its own, every remote one.
        ownership = np.ones((len(peers), len(self.snapshots)), "float32")
        for index in range(local_snapshots):
            ownership[index, index] = 0.0
        self._set_untracked("_ownership", ownership)
        self._set_untracked(
            "_local_indicator",
            np.array(
                [1.0] * local_snapshots + [0.0] * remote_peers, "float32"
            ),
        )
        pairs = []
        for peer, snapshot in zip(peers, self.snapshots[:local_snapshots]):
            indices = averaged_variables(peer.weights)
            pairs.extend(
                (snapshot.weights[index], peer.weights[index])
                for index in indices
            )
        self._set_untracked("_snapshot_pairs", pairs)

    # -- the snapshots ------------------------------------------------- #

    @property
    def remote_snapshots(self):
        """The snapshots of peers trained elsewhere, in order (the models
        `CheckpointExchange` loads the other groups' weights into)."""
        return list(self.snapshots[len(self.snapshots) - self.remote_peers:])

    def mark_remote_snapshot_loaded(self, index):
        """Lets remote snapshot `index` teach from the next step on.

        `CheckpointExchange` calls it after loading weights into
        `remote_snapshots[index]`; call it yourself after loading them some
        other way.

        Args:
            index: int in `[0, remote_peers)`.
        """
        if isinstance(index, bool) or not isinstance(index, int) or not (
            0 <= index < self.remote_peers
        ):
            raise ValueError(
                f"`index` must be an integer in [0, {self.remote_peers}) (the "
                f"remote snapshots). Received: index={index!r}"
            )
        ready = ops.convert_to_numpy(self.snapshot_ready).copy()
        ready[len(self.snapshots) - self.remote_peers + index] = 1.0
        self.snapshot_ready.assign(ready)

    def refresh_snapshots(self):
        """Copies the peers' current weights into their snapshots now
        (outside the every-`refresh_steps` schedule; `fit` never needs it)."""
        self._copy_peers_into_snapshots(ops.convert_to_tensor(True))

    def _copy_peers_into_snapshots(self, refresh):
        for snapshot_variable, peer_variable in self._snapshot_pairs:
            snapshot_variable.assign(
                ops.where(refresh, peer_variable.value, snapshot_variable.value)
            )
        refreshed = ops.cast(refresh, "float32") * ops.convert_to_tensor(
            self._local_indicator
        )
        self.snapshot_ready.assign(
            ops.maximum(ops.convert_to_tensor(self.snapshot_ready), refreshed)
        )

    def _refresh_and_return(self, step):
        # Branch-free: every step selects either the peer's or the
        # snapshot's own value, so nothing changes between refreshes and a
        # compiled step has no control flow.
        refresh = ops.equal(ops.mod(step, self.refresh_steps), 0)
        self._copy_peers_into_snapshots(refresh)
        return step

    # -- forward pass ---------------------------------------------------- #

    def training_outputs(self, inputs, training=None):
        # A copy: on TensorFlow a converted variable may be read lazily, after
        # the increment below.
        step = ops.copy(ops.convert_to_tensor(self.step_count))
        if training:
            # Order matters (kept inside a compiled step): refresh from the
            # weights the last optimizer step left, then predict.
            if self._snapshot_pairs:
                self._full_precision_refresh(step)
            self.step_count.assign(step + 1)
        distilling = ops.cast(step >= self.burn_in_steps, "float32")
        ready = ops.convert_to_tensor(self.snapshot_ready)
        teacher_mask = (
            ops.convert_to_tensor(self._ownership)
            * ops.expand_dims(ready, 0)
            * distilling
        )
        return {
            "logits": [peer(inputs, training=training) for peer in self._peers],
            "teacher_logits": [
                snapshot(inputs, training=False) for snapshot in self.snapshots
            ],
            "teacher_mask": teacher_mask,
        }

    # -- training -------------------------------------------------------- #

    @property
    def metric_head_names(self):
        if len(self._peers) == 1:
            return list(self.peer_names)
        return super().metric_head_names

    @property
    def served_head_name(self):
        return self.metric_head_names[-1]

    def head_logits_for_metrics(self, y_pred):
        if len(self._peers) == 1:
            return list(y_pred["logits"])
        return super().head_logits_for_metrics(y_pred)

    def peer_loss_terms(self, y, y_pred, sample_weight):
        return losses.co_distillation_loss(
            y,
            y_pred["logits"],
            y_pred["teacher_logits"],
            y_pred["teacher_mask"],
            alpha=self.alpha,
            temperature=self.temperature,
            sample_weight=sample_weight,
            scale_by_temperature_squared=self.scale_by_temperature_squared,
        )

    def layout_description(self) -> str:
        return (
            f"peers {self.peer_names}, remote_peers={self.remote_peers}"
        )

    # -- serialization --------------------------------------------------- #

    def get_config(self):
        return {
            **super().get_config(),
            "remote_peers": self.remote_peers,
            "refresh_steps": self.refresh_steps,
            "burn_in_steps": self.burn_in_steps,
        }
