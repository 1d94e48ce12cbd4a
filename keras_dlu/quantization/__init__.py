"""Dynamic fixed-point training (Fujitsu DLU): policy, ``quantize_model``, tfmot bridge.

The tfmot bridge (``keras_dlu.quantization.tfmot``) is imported only when asked for, so
``import keras_dlu`` does not import tensorflow_model_optimization or tf_keras.
"""

from keras_dlu.quantization.policy import FixedPointPolicy
from keras_dlu.quantization.quantize_model import quantize_model
from keras_dlu.quantization.state import FixedPointState

__all__ = ["FixedPointPolicy", "FixedPointState", "quantize_model"]
