"""Native TensorFlow ops of keras-dlu (C++ CPU kernels, CUDA kernels when built with CUDA)."""

from keras_dlu.ops.dlu_matmul import AUTO_GRAD_EXPONENT, dlu_matmul
from keras_dlu.ops.histogram import HISTOGRAM_BINS, HISTOGRAM_OFFSET, exponent_histogram
from keras_dlu.ops.loader import NativeLibraryError, built_with_cuda, load_library
from keras_dlu.ops.quantize import quantize

__all__ = [
    "AUTO_GRAD_EXPONENT",
    "HISTOGRAM_BINS",
    "HISTOGRAM_OFFSET",
    "NativeLibraryError",
    "built_with_cuda",
    "dlu_matmul",
    "exponent_histogram",
    "load_library",
    "quantize",
]
