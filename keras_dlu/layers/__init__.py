"""Keras layers of keras-dlu: ``StableGRU`` (Kanai et al., NIPS 2017) and the dynamic
fixed-point ``DLUDense`` / ``DLUConv2D`` (Fujitsu DLU)."""

from keras_dlu.layers.dlu_conv2d import DLUConv2D
from keras_dlu.layers.dlu_dense import DLUDense
from keras_dlu.layers.stable_gru import StableGRU

__all__ = ["DLUConv2D", "DLUDense", "StableGRU"]
