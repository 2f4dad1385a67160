"""Layers users attach to their models."""

from keras_selfdistill.layers.auxiliary_head import AuxiliaryHead

__all__ = ["AuxiliaryHead"]
