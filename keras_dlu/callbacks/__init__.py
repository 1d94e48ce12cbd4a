"""Keras callbacks of keras-dlu.

``MemoryOptimizer`` (memory-reordering train step, Shirahata et al. MLSP 2016),
``FixedPointMonitor`` (DLU statistics to TensorBoard), and the distributed-training
callbacks ``BroadcastGlobalVariables``, ``MetricAverage`` and ``LearningRateWarmup``.
"""

from keras_dlu.callbacks.distributed import (BroadcastGlobalVariables, LearningRateWarmup,
                                             MetricAverage)
from keras_dlu.callbacks.fixed_point_monitor import FixedPointMonitor
from keras_dlu.callbacks.memory_optimizer import MemoryOptimizer

__all__ = [
    "BroadcastGlobalVariables",
    "FixedPointMonitor",
    "LearningRateWarmup",
    "MemoryOptimizer",
    "MetricAverage",
]
