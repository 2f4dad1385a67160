"""Training wrappers: every model here is a `keras.Model` you `fit`."""

from keras_selfdistill.models.born_again import BornAgain
from keras_selfdistill.models.distiller import Distiller
from keras_selfdistill.models.early_exit import EarlyExitPredictions
from keras_selfdistill.models.ema_teacher import EMATeacher
from keras_selfdistill.models.last_batch_self_kd import LastBatchSelfKD
from keras_selfdistill.models.mutual_learning import MutualLearning
from keras_selfdistill.models.progressive_self_kd import ProgressiveSelfKD
from keras_selfdistill.models.self_distill_model import SelfDistillModel
from keras_selfdistill.models.self_ensemble import SelfEnsembleTeacher
from keras_selfdistill.models.training_inputs import TrainingInputs

__all__ = [
    "BornAgain",
    "Distiller",
    "EMATeacher",
    "EarlyExitPredictions",
    "LastBatchSelfKD",
    "MutualLearning",
    "ProgressiveSelfKD",
    "SelfDistillModel",
    "SelfEnsembleTeacher",
    "TrainingInputs",
]
