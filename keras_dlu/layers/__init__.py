"""keras_dlu.layers (filled by its capability issue)."""

from keras_dlu.layers.stable_gru import StableGRU

__all__ = ["StableGRU"]
