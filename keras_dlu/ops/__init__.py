"""Native TensorFlow ops of keras-dlu (C++ CPU kernels, CUDA kernels when built with CUDA)."""

from keras_dlu._lazy import require_tensorflow

require_tensorflow("keras_dlu.ops (the native TensorFlow ops)")

from keras_dlu.ops.dlu_matmul import AUTO_GRAD_EXPONENT, dlu_matmul  # noqa: E402
from keras_dlu.ops.gemm_info import gemm_info  # noqa: E402
from keras_dlu.ops.histogram import (  # noqa: E402
    HISTOGRAM_BINS, HISTOGRAM_OFFSET, exponent_histogram)
from keras_dlu.ops.loader import NativeLibraryError, built_with_cuda, load_library  # noqa: E402
from keras_dlu.ops.quantize import quantize  # noqa: E402

__all__ = [
    "AUTO_GRAD_EXPONENT",
    "HISTOGRAM_BINS",
    "HISTOGRAM_OFFSET",
    "NativeLibraryError",
    "built_with_cuda",
    "dlu_matmul",
    "exponent_histogram",
    "gemm_info",
    "load_library",
    "quantize",
]
