"""keras-dlu: published training-acceleration research for the ordinary Keras 3 workflow.

Subpackages:
    optimizers    SDProp (NTT) and PROXTONE (Fujitsu) optimizers.
    layers        StableGRU (NTT) and the dynamic fixed-point DLU layers (Fujitsu).
    quantization  fixed-point policy, ``quantize_model`` and the tfmot bridge.
    distributed   Horovod-based overlapped allreduce with tensor fusion.
    callbacks     MemoryOptimizer, fixed-point monitor and distributed callbacks.
    memory        the memory-reordering planner behind MemoryOptimizer.
    ops           the native TensorFlow ops (C++ and CUDA kernels).
"""

__version__ = "0.1.0"

from keras_dlu import callbacks, distributed, layers, memory, ops, optimizers, quantization

__all__ = [
    "callbacks",
    "distributed",
    "layers",
    "memory",
    "ops",
    "optimizers",
    "quantization",
]
