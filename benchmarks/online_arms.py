"""Evidence arms for the online and temporal teachers: `MutualLearning` and
`EMATeacher`, built around any plain model, for the evidence scripts.

The harness scores what each arm serves (the peers' ensemble; the student
of the momentum teacher) and, through `harness.component_models`, each peer
and the momentum teacher on their own, so a table shows "peer vs trained
alone" and "teacher vs its student" on the same seeds.
"""

import keras

from keras_selfdistill import EMATeacher
from keras_selfdistill import MutualLearning


def renamed(model: keras.Model, name: str) -> keras.Model:
    """The same functional model (same layers and weights) under `name`."""
    return keras.Model(model.inputs, model.outputs, name=name)


def online_arms(plain, ema_momentum: float = 0.99) -> dict:
    """Arms that train the `plain` model with a teacher made during training.

    - `mutual_learning`: `MutualLearning` of two `plain` peers with the
      library's defaults (`alpha=0.5`, `T=1`). The first peer is built first
      after seeding, so it starts from the same weights as the `plain` arm
      of the same seed.
    - `ema_teacher`: `EMATeacher` of one `plain` model (`alpha=0.5`, `T=1`),
      momentum `ema_momentum`. It serves the student; the harness also
      scores the teacher (`ema_teacher teacher`).

    Args:
        plain: callable returning a new plain `keras.Model` (logits).
        ema_momentum: float. The teacher's momentum. Defaults to `0.99`
            (an average over about 100 steps: the evidence runs are a few
            hundred steps long, too short for the library's 0.996).

    Returns:
        dict `name -> build()`.
    """
    def mutual_learning():
        return MutualLearning([renamed(plain(), "peer1"), renamed(plain(), "peer2")])

    def ema_teacher():
        return EMATeacher(plain(), momentum=ema_momentum)

    return dict(mutual_learning=mutual_learning, ema_teacher=ema_teacher)
