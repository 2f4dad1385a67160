"""Layers users attach to their models."""

from keras_selfdistill.layers.auxiliary_head import AuxiliaryHead
from keras_selfdistill.layers.dino_head import DINOHead

__all__ = ["AuxiliaryHead", "DINOHead"]
