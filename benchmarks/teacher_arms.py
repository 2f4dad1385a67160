"""Evidence arms taught by a model trained earlier on the same seed:
knowledge distillation from a bigger teacher and a born-again student.

Both are `harness.Arm`s with `uses`: the harness trains the teacher (or
generation 0) as an arm of its own first, reports it, and passes its final
model to these builders. The student is built first after seeding, so it
starts from the `plain` arm's initial weights of the same seed.
"""

import harness

from keras_selfdistill import Distiller
from keras_selfdistill.models.copies import copy_with_weights


def teacher_arms(plain, teacher) -> dict:
    """Arms `teacher`, `kd` and `born_again` around a plain model builder.

    - `teacher`: `teacher()` trained on the labels with the same recipe.
    - `kd`: `Distiller(trained teacher, plain())` with the library's
      defaults (`alpha=0.9`, `T=4`, `T^2` on): Hinton KD.
    - `born_again`: generation 1 of `BornAgain` with its defaults
      (`alpha=0.5`, `T=1`): `Distiller(trained plain arm, plain())`. The
      harness also scores the two generations' ensemble.

    Args:
        plain: callable returning a new plain `keras.Model` (logits).
        teacher: callable returning a new, bigger `keras.Model` (logits).

    Returns:
        dict `name -> build` (`teacher`) or `name -> harness.Arm`.
    """
    # Each builder gets the trained models it `uses` as keyword arguments,
    # named after their arms; the student is built first, after seeding.
    def kd(**trained):
        student = plain()
        return Distiller(copy_with_weights(trained["teacher"], "kd_teacher"), student)

    def born_again(**trained):
        student = plain()
        return Distiller(copy_with_weights(trained["plain"], "generation_0"), student,
                         alpha=0.5, temperature=1.0)

    return dict(teacher=teacher,
                kd=harness.Arm(kd, uses=("teacher",)),
                born_again=harness.Arm(born_again, uses=("plain",)))
