"""keras-dlu: published training-acceleration research for the ordinary Keras 3 workflow.

Subpackages (each imported on first use, so ``import keras_dlu`` imports neither Keras nor
TensorFlow):
    optimizers    SDProp (NTT) and PROXTONE (Fujitsu) optimizers; every Keras backend.
    layers        StableGRU (NTT; every Keras backend) and the dynamic fixed-point DLU
                  layers (Fujitsu; TensorFlow).
    quantization  fixed-point policy, ``quantize_model`` and the tfmot bridge (TensorFlow).
    distributed   Horovod-based overlapped allreduce with tensor fusion (TensorFlow).
    callbacks     MemoryOptimizer, fixed-point monitor and distributed callbacks (TensorFlow).
    memory        the memory-reordering planner behind MemoryOptimizer (TensorFlow).
    ops           the native TensorFlow ops (C++ and CUDA kernels).

A subpackage registers its Keras classes (``keras_dlu>Name``) when it is imported: import
it (``import keras_dlu.layers``) before ``keras.models.load_model`` of a file that uses them.
"""

__version__ = "0.1.0"

__all__ = [
    "callbacks",
    "distributed",
    "layers",
    "memory",
    "ops",
    "optimizers",
    "quantization",
]

from keras_dlu import _lazy  # noqa: E402

__getattr__, __dir__ = _lazy.lazy_exports(__name__, {name: name for name in __all__})
