"""Training wrappers: every model here is a `keras.Model` you `fit`."""

from keras_selfdistill.models.self_distill_model import EarlyExitPredictions
from keras_selfdistill.models.self_distill_model import SelfDistillModel

__all__ = ["EarlyExitPredictions", "SelfDistillModel"]
