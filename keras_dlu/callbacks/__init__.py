"""Keras callbacks of keras-dlu (TensorFlow backend; each imported on first access).

``MemoryOptimizer`` (memory-reordering train step, Shirahata et al. MLSP 2016),
``FixedPointMonitor`` (DLU statistics to TensorBoard), and the distributed-training
callbacks ``BroadcastGlobalVariables``, ``MetricAverage``, ``LearningRateWarmup`` and
``ForwardOverlap``.
"""

from keras_dlu import _lazy

__all__ = [
    "BroadcastGlobalVariables",
    "FixedPointMonitor",
    "ForwardOverlap",
    "LearningRateWarmup",
    "MemoryOptimizer",
    "MetricAverage",
]

__getattr__, __dir__ = _lazy.lazy_exports(__name__, {
    "BroadcastGlobalVariables": "distributed",
    "FixedPointMonitor": "fixed_point_monitor",
    "ForwardOverlap": "distributed",
    "LearningRateWarmup": "distributed",
    "MemoryOptimizer": "memory_optimizer",
    "MetricAverage": "distributed",
}, tensorflow_only="*")
