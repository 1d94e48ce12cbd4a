"""keras_dlu.layers (filled by its capability issue)."""

from keras_dlu.layers.dlu_conv2d import DLUConv2D  # issue 5
from keras_dlu.layers.dlu_dense import DLUDense  # issue 5
from keras_dlu.layers.stable_gru import StableGRU

__all__ = ["DLUConv2D", "DLUDense", "StableGRU"]
