"""keras_dlu.optimizers: SDProp (NTT) and PROXTONE (Fujitsu) for `model.compile`."""

from keras_dlu.optimizers.proxtone import Proxtone
from keras_dlu.optimizers.sdprop import SDProp

__all__ = ["Proxtone", "SDProp"]
