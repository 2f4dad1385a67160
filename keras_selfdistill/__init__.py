"""keras-selfdistill: self-distillation and knowledge distillation for Keras 3.

Importing the package registers every public class with Keras serialization,
so `keras.saving.load_model(path)` needs no `custom_objects`.
"""

from keras_selfdistill import callbacks
from keras_selfdistill import class_pairs
from keras_selfdistill import losses
from keras_selfdistill import plots
from keras_selfdistill.class_pairs import ClassPairedBatches
from keras_selfdistill.class_pairs import pair_by_class
from keras_selfdistill.last_batch_repeats import LastBatchRepeats
from keras_selfdistill.last_batch_repeats import last_batch_repeat_order
from keras_selfdistill.last_batch_repeats import repeat_last_half_batches
from keras_selfdistill.layers import AuxiliaryHead
from keras_selfdistill.losses import TeacherFreeLoss
from keras_selfdistill.models import BornAgain
from keras_selfdistill.models import ClassWiseSelfDistillation
from keras_selfdistill.models import Distiller
from keras_selfdistill.models import EarlyExitPredictions
from keras_selfdistill.models import EMATeacher
from keras_selfdistill.models import LastBatchSelfDistillation
from keras_selfdistill.models import MutualLearning
from keras_selfdistill.models import ProgressiveSelfDistillation
from keras_selfdistill.models import SelfDistillModel
from keras_selfdistill.models import SelfEnsembleTeacher
from keras_selfdistill.models import TrainingInputs
from keras_selfdistill.sample_index import with_sample_index
from keras_selfdistill.models import CoDistillation
from keras_selfdistill.collapse_monitor import CollapseMonitor
from keras_selfdistill.layers.dino_head import DINOHead
from keras_selfdistill.models import DINO
from keras_selfdistill.multi_crop import MultiCrop

__version__ = "0.1.0"

__all__ = [
    "AuxiliaryHead",
    "BornAgain",
    "ClassPairedBatches",
    "ClassWiseSelfDistillation",
    "CoDistillation",
    "CollapseMonitor",
    "DINO",
    "DINOHead",
    "Distiller",
    "EarlyExitPredictions",
    "EMATeacher",
    "LastBatchRepeats",
    "LastBatchSelfDistillation",
    "MultiCrop",
    "MutualLearning",
    "ProgressiveSelfDistillation",
    "SelfDistillModel",
    "SelfEnsembleTeacher",
    "TeacherFreeLoss",
    "TrainingInputs",
    "callbacks",
    "class_pairs",
    "last_batch_repeat_order",
    "losses",
    "pair_by_class",
    "plots",
    "repeat_last_half_batches",
    "with_sample_index",
    "__version__",
]
