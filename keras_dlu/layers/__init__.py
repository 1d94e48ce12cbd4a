"""Keras layers of keras-dlu: ``StableGRU`` (Kanai et al., NIPS 2017; every Keras backend)
and the dynamic fixed-point ``DLUDense`` / ``DLUConv2D`` (Fujitsu DLU; TensorFlow).

On the TensorFlow backend the DLU layers are imported with the package, so that
``keras.models.load_model`` finds them after ``import keras_dlu.layers``; on the other
backends they load on first access and, without TensorFlow, raise an ImportError.
"""

import keras

from keras_dlu import _lazy
from keras_dlu.layers.stable_gru import StableGRU

__all__ = ["DLUConv2D", "DLUDense", "StableGRU"]

__getattr__, __dir__ = _lazy.lazy_exports(
    __name__, {"DLUConv2D": "dlu_conv2d", "DLUDense": "dlu_dense"}, tensorflow_only="*")

if keras.backend.backend() == "tensorflow":
    from keras_dlu.layers.dlu_conv2d import DLUConv2D  # noqa: E402,F401
    from keras_dlu.layers.dlu_dense import DLUDense  # noqa: E402,F401
