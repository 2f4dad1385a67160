"""Training wrappers: every model here is a `keras.Model` you `fit`."""

from keras_selfdistill.models.born_again import BornAgain
from keras_selfdistill.models.class_wise_self_distillation import ClassWiseSelfDistillation
from keras_selfdistill.models.distiller import Distiller
from keras_selfdistill.models.early_exit import EarlyExitPredictions
from keras_selfdistill.models.ema_teacher import EMATeacher
from keras_selfdistill.models.last_batch_self_distillation import LastBatchSelfDistillation
from keras_selfdistill.models.mutual_learning import MutualLearning
from keras_selfdistill.models.progressive_self_distillation import ProgressiveSelfDistillation
from keras_selfdistill.models.self_distill_model import SelfDistillModel
from keras_selfdistill.models.self_ensemble import SelfEnsembleTeacher
from keras_selfdistill.models.training_inputs import TrainingInputs
from keras_selfdistill.models.co_distillation import CoDistillation
from keras_selfdistill.models.dino import DINO

__all__ = [
    "BornAgain",
    "ClassWiseSelfDistillation",
    "Distiller",
    "EMATeacher",
    "EarlyExitPredictions",
    "LastBatchSelfDistillation",
    "MutualLearning",
    "ProgressiveSelfDistillation",
    "SelfDistillModel",
    "SelfEnsembleTeacher",
    "TrainingInputs",
    "CoDistillation",
    "DINO",
]
