"""Native TensorFlow ops of keras-dlu (C++ CPU kernels, CUDA kernels when built with CUDA)."""

from keras_dlu.ops.histogram import HISTOGRAM_BINS, HISTOGRAM_OFFSET, exponent_histogram
from keras_dlu.ops.loader import NativeLibraryError, built_with_cuda, load_library

__all__ = [
    "HISTOGRAM_BINS",
    "HISTOGRAM_OFFSET",
    "NativeLibraryError",
    "built_with_cuda",
    "exponent_histogram",
    "load_library",
]
