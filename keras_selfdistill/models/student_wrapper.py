"""`StudentWrapper`: what every wrapper around one student model shares."""

import keras

from keras_selfdistill.models.distillation_base import DistillationBase


class StudentWrapper(DistillationBase):
    """A `DistillationBase` that wraps one model, `self.student`.

    Gives its subclasses (the temporal teachers, `ClassWiseSelfDistillation`,
    `ProgressiveSelfDistillation`, `LastBatchSelfDistillation`) one way to
    serialize the student and rebuild it, and the student's metrics under
    their plain names. Each subclass sets `self.student` in its `__init__`,
    which takes the student as its first argument, and adds its own
    constructor arguments in `get_config` with `student_config()`.
    """

    @property
    def metric_head_names(self):
        return ["student"]

    def student_config(self) -> dict:
        """`base_config()` plus the serialized student: the start of every
        subclass's `get_config`."""
        return {
            **self.base_config(),
            "student": keras.saving.serialize_keras_object(self.student),
        }

    def get_config(self):
        return self.student_config()

    @classmethod
    def from_config(cls, config):
        config = cls.constructor_arguments(config)
        student = keras.saving.deserialize_keras_object(config.pop("student"))
        return cls(student, **config)
