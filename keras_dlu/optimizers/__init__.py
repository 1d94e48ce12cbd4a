"""keras_dlu.optimizers: SDProp (NTT) and PROXTONE (Fujitsu) for `model.compile`.

Written in `keras.ops` only: they run on the TensorFlow, JAX and PyTorch backends.
"""

from keras_dlu.optimizers.proxtone import Proxtone
from keras_dlu.optimizers.sdprop import SDProp

__all__ = ["Proxtone", "SDProp"]
