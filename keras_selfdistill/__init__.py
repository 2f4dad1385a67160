"""keras-selfdistill: self-distillation and knowledge distillation for Keras 3.

Importing the package registers every public class with Keras serialization,
so `keras.saving.load_model(path)` needs no `custom_objects`.
"""

from keras_selfdistill import losses
from keras_selfdistill.layers import AuxiliaryHead
from keras_selfdistill.models import EarlyExitPredictions
from keras_selfdistill.models import SelfDistillModel

__version__ = "0.1.0"

__all__ = [
    "AuxiliaryHead",
    "EarlyExitPredictions",
    "SelfDistillModel",
    "losses",
    "__version__",
]
