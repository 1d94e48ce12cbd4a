"""keras_dlu.memory: the memory-reordering planner and train step behind MemoryOptimizer.

Reference: Shirahata et al., "Memory reduction method for deep neural network training",
IEEE MLSP 2016.
"""

from keras_dlu.memory.compat import unsupported_reason
from keras_dlu.memory.measure import step_peak_bytes
from keras_dlu.memory.planner import LayerPlan, MemoryPlan, measure_update_factor, plan
from keras_dlu.memory.train_step import make_train_step

__all__ = [
    "LayerPlan",
    "MemoryPlan",
    "make_train_step",
    "measure_update_factor",
    "plan",
    "step_peak_bytes",
    "unsupported_reason",
]
