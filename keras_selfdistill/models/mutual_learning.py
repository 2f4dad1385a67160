"""`MutualLearning`: peers that train together and teach each other."""

import keras
from keras import ops

from keras_selfdistill import losses
from keras_selfdistill.models.copies import mean_logits_model
from keras_selfdistill.models.distillation_base import DistillationBase
from keras_selfdistill.models.hyperparameters import Hyperparameter
from keras_selfdistill.models.graph import check_outputs_logits
from keras_selfdistill.models.graph import producing_layer
from keras_selfdistill.validation import check_positive
from keras_selfdistill.validation import check_unit_interval

#: Names a peer may not have: they would collide with the history keys
#: `accuracy` (the ensemble's), `cross_entropy_loss` and `distillation_loss`.
_RESERVED_PEER_NAMES = ("ensemble", "cross_entropy", "distillation")


def _peer_signature(peer, index):
    """`(input_shapes, num_classes)` of a peer, with clear errors."""
    if not isinstance(peer, keras.Model):
        raise ValueError(
            f"Each peer must be a keras.Model. Received: peers[{index}] of "
            f"type {type(peer).__name__}"
        )
    try:
        inputs, outputs = peer.inputs, peer.outputs
    except (AttributeError, ValueError):
        inputs = outputs = None
    if not inputs or not outputs:
        raise ValueError(
            "Each peer must be a functional keras.Model (or a Sequential "
            "built with a keras.Input), so its input shape and class count "
            f"are known. Received: peers[{index}] '{peer.name}' of type "
            f"{type(peer).__name__} without symbolic inputs."
        )
    if len(outputs) != 1 or len(outputs[0].shape) != 2:
        shapes = [tuple(output.shape) for output in outputs]
        raise ValueError(
            "Each peer must have one output of logits (batch, num_classes). "
            f"Received: peers[{index}] '{peer.name}' with output shape(s) "
            f"{shapes}"
        )
    check_outputs_logits(producing_layer(outputs[0]), f"Peer '{peer.name}'")
    input_shapes = tuple(tuple(tensor.shape[1:]) for tensor in inputs)
    return input_shapes, outputs[0].shape[-1]


@keras.saving.register_keras_serializable(package="keras_selfdistill")
class MutualLearning(DistillationBase):
    """Peers trained together, each distilling from the others.

    Deep mutual learning (Zhang et al., 2018) and online co-distillation
    (Anil et al., 2018) in plain `model.fit`: no pre-trained teacher, every
    peer is at once a student and, for the others, a teacher. With `K >= 2`
    peers of logits `z_1..z_K` and `p_bar_i` the mean of the other peers'
    softened predictions,

    `L_i = (1 - alpha) * CE(y, z_i)
           + alpha * T^2 * KL(stop_gradient(p_bar_i) || softmax(z_i / T))`,
    `p_bar_i = 1/(K-1) * sum_{j != i} softmax(z_j / T)`,

    and `fit` minimises (and reports as `loss`) `L = sum_i L_i`. The paper's
    `L_i = CE + KL` is twice this loss at `alpha=0.5, T=1` (the defaults);
    `alpha` is a convex weight here, as everywhere in this package, so one
    `alpha` schedule means the same for every model. Because each teacher is
    a `stop_gradient` target, no gradient flows from peer `i`'s loss into
    another peer: every peer's update is exactly the gradient of its own
    `L_i`. The math lives in `mutual_learning_loss`.

    Peers may differ in architecture (a CNN and an MLP, say) but must take
    the same inputs, predict the same classes as logits, and share no
    weights. One forward pass per peer per step.

    What is served: `predict` and `__call__` return the peers' ensemble,
    the mean of their logits. `compile(metrics=["accuracy"])` gives every
    peer its own metrics, prefixed with the peer's name
    (`cnn_accuracy`), and the ensemble the plain names (`accuracy`,
    `val_accuracy`). The history also has `cross_entropy_loss` and
    `distillation_loss` (summed over peers) and each peer's own loss
    `<peer name>_loss`. Take any peer out as a plain model with
    `peer(i)` / `peers`, or the ensemble with `ensemble()`.

    Args:
        peers: list of at least 2 functional (or Sequential, built with a
            `keras.Input`) `keras.Model`s, each mapping the same inputs to
            logits `(batch, num_classes)`, with distinct names.
        alpha: float in [0, 1]. Weight of the peer (distillation) term
            against the labels. Held in a non-trainable variable: assign
            `model.alpha = 0.8` between steps, or schedule it with
            `keras_selfdistill.callbacks.HyperparameterScheduler`. Defaults to
            `0.5`.
        temperature: float > 0. Softmax temperature of the peer term.
            Defaults to `1.0` (the paper's).
        scale_by_temperature_squared: bool. Multiply the peer term by `T^2`
            (Hinton et al., 2015). Defaults to `True`.
        **kwargs: base model arguments (`name`, `trainable`, `dtype`).

    Example:

    ```python
    def make_peer(width, name):
        inputs = keras.Input((8, 8, 1))
        hidden = keras.layers.Dense(width, activation="relu")(
            keras.layers.Flatten()(inputs)
        )
        return keras.Model(inputs, keras.layers.Dense(10)(hidden), name=name)

    model = MutualLearning([make_peer(64, "wide"), make_peer(16, "narrow")])
    model.compile(optimizer="adam", metrics=["accuracy"])
    history = model.fit(x_train, y_train, epochs=3)
    # history keys: loss, accuracy (ensemble), wide_accuracy,
    # narrow_accuracy, wide_loss, narrow_loss, cross_entropy_loss, ...
    deployable = model.peer(1)  # a plain keras.Model
    ```

    References:
        Zhang, Xiang, Hospedales, Lu. "Deep Mutual Learning", CVPR 2018.
        https://arxiv.org/abs/1706.00384

        Anil, Pereyra, Passos, Ormandi, Dahl, Hinton. "Large scale
        distributed neural network training through online distillation",
        ICLR 2018. https://arxiv.org/abs/1804.03235
    """

    alpha = Hyperparameter(check_unit_interval)
    temperature = Hyperparameter(check_positive)
    #: How many peers the constructor needs (`CoDistillation` takes 1).
    minimum_peers = 2

    def __init__(
        self,
        peers,
        alpha=0.5,
        temperature=1.0,
        scale_by_temperature_squared=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        minimum = self.minimum_peers
        if not isinstance(peers, (list, tuple)) or len(peers) < minimum:
            count = len(peers) if isinstance(peers, (list, tuple)) else 1
            raise ValueError(
                f"{type(self).__name__} needs a list of at least {minimum} "
                f"peer model{'s' if minimum > 1 else ''}. "
                f"Received: {count} peer(s)."
            )
        peers = list(peers)
        self._check_peers(peers)
        self.alpha = alpha
        self.temperature = temperature
        self.scale_by_temperature_squared = bool(scale_by_temperature_squared)
        self._peers = peers
        self.num_classes = peers[0].outputs[0].shape[-1]
        self.built = True

    @staticmethod
    def _check_peers(peers):
        signatures = [
            _peer_signature(peer, index) for index, peer in enumerate(peers)
        ]
        names = [peer.name for peer in peers]
        input_shapes = {name: shapes for name, (shapes, _) in zip(names, signatures)}
        if len(set(input_shapes.values())) != 1:
            raise ValueError(
                "Every peer must take the same inputs. Received input shapes "
                f"(without the batch axis) {input_shapes}."
            )
        class_counts = {name: count for name, (_, count) in zip(names, signatures)}
        if len(set(class_counts.values())) != 1 or None in class_counts.values():
            raise ValueError(
                "Every peer must predict the same, known number of classes. "
                f"Received class counts {class_counts}."
            )
        if len(set(names)) != len(names):
            raise ValueError(
                "Peers must have distinct names (they prefix each peer's "
                "metrics in the history); pass name=... when building them. "
                f"Received peer names {names}."
            )
        reserved = [name for name in names if name in _RESERVED_PEER_NAMES]
        if reserved:
            raise ValueError(
                f"Peer names {list(_RESERVED_PEER_NAMES)} are reserved for "
                f"history keys. Received peer names {names}."
            )
        owners = {}
        for peer in peers:
            for variable in peer.weights:
                other = owners.setdefault(id(variable), peer.name)
                if other != peer.name:
                    raise ValueError(
                        "Peers must not share weights: a shared weight would "
                        "carry one peer's loss into another. Received peers "
                        f"'{other}' and '{peer.name}' sharing weight "
                        f"'{variable.path}'."
                    )

    # -- the peers ------------------------------------------------------ #

    @property
    def peers(self):
        """The peer models, in order (a new list; the models are shared)."""
        return list(self._peers)

    @property
    def peer_names(self):
        """The peers' names, in order."""
        return [peer.name for peer in self._peers]

    def peer(self, index):
        """Peer number `index` as a plain `keras.Model` (shares weights).

        Args:
            index: int in `[0, len(peers))`, or a peer's name.

        Returns:
            The peer `keras.Model`. It needs nothing from this package to
            predict, save or serve.
        """
        if isinstance(index, str):
            if index not in self.peer_names:
                raise ValueError(
                    f"No peer named '{index}'. The peers are "
                    f"{self.peer_names}. Received: index={index!r}"
                )
            return self._peers[self.peer_names.index(index)]
        if isinstance(index, bool) or not isinstance(index, int) or not (
            -len(self._peers) <= index < len(self._peers)
        ):
            raise ValueError(
                f"`index` must be an integer in [0, {len(self._peers)}) or a "
                f"peer name. Received: index={index!r}"
            )
        return self._peers[index]

    def ensemble(self, name=None):
        """The peers' ensemble as a plain functional `keras.Model`.

        It averages the peers' logits (`keras.layers.Average`) and shares
        their weights; its predictions equal this model's `predict`. It
        saves and loads as a `.keras` file without this package.

        Args:
            name: str or `None`. Name of the returned model.

        Returns:
            A functional `keras.Model` from the peers' inputs to the mean
            logits `(batch, num_classes)`.
        """
        return mean_logits_model(self._peers, name or f"{self.name}_ensemble")

    # -- forward pass ---------------------------------------------------- #

    def training_outputs(self, inputs, training=None):
        return {"logits": [peer(inputs, training=training) for peer in self._peers]}

    def inference_outputs(self, inputs, training=None):
        return self._mean_logits(
            [peer(inputs, training=training) for peer in self._peers]
        )

    @staticmethod
    def _mean_logits(peer_logits):
        stacked = ops.stack([ops.cast(z, "float32") for z in peer_logits])
        return ops.mean(stacked, axis=0)

    # -- training -------------------------------------------------------- #

    @property
    def loss_term_names(self):
        return ("cross_entropy", "distillation", *self.peer_names)

    @property
    def metric_head_names(self):
        return [*self.peer_names, "ensemble"]

    @property
    def served_head_name(self):
        return "ensemble"

    def head_logits_for_metrics(self, y_pred):
        peer_logits = list(y_pred["logits"])
        return [*peer_logits, self._mean_logits(peer_logits)]

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        self.check_training_batch(y, y_pred)
        terms = self.peer_loss_terms(y, y_pred, sample_weight)
        tracked = {
            "cross_entropy": terms["cross_entropy"],
            "distillation": terms["distillation"],
            **dict(zip(self.peer_names, terms["peer_totals"])),
        }
        self.update_loss_trackers(tracked, ops.shape(y_pred["logits"][0])[0])
        return self.add_extra_losses(terms["total"])

    def peer_loss_terms(self, y, y_pred, sample_weight):
        """The loss terms of a training batch (`mutual_learning_loss`'s
        dict: `total`, `cross_entropy`, `distillation`, `peer_totals`);
        subclasses with other teachers override only this."""
        return losses.mutual_learning_loss(
            y,
            y_pred["logits"],
            alpha=self.alpha,
            temperature=self.temperature,
            sample_weight=sample_weight,
            scale_by_temperature_squared=self.scale_by_temperature_squared,
        )

    # -- serialization --------------------------------------------------- #

    def get_config(self):
        return {
            **self.base_config(),
            "peers": [
                keras.saving.serialize_keras_object(peer) for peer in self._peers
            ],
            "scale_by_temperature_squared": self.scale_by_temperature_squared,
        }

    @classmethod
    def from_config(cls, config):
        config = cls.constructor_arguments(config)
        peers = [
            keras.saving.deserialize_keras_object(peer)
            for peer in config.pop("peers")
        ]
        return cls(peers, **config)
