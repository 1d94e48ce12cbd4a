"""Dynamic fixed-point training (Fujitsu DLU): policy, ``quantize_model``, tfmot bridge.

The tfmot bridge (``keras_dlu.quantization.tfmot``) is imported only when asked for, so
``import keras_dlu`` does not import tensorflow_model_optimization or tf_keras.
"""

from keras_dlu._lazy import require_tensorflow

require_tensorflow("keras_dlu.quantization (dynamic fixed-point training)")

from keras_dlu.quantization.policy import FixedPointPolicy  # noqa: E402
from keras_dlu.quantization.quantize_model import quantize_model  # noqa: E402
from keras_dlu.quantization.state import FixedPointState  # noqa: E402

__all__ = ["FixedPointPolicy", "FixedPointState", "quantize_model"]
