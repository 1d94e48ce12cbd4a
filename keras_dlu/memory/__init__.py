"""keras_dlu.memory: the memory-reordering planner and train step behind MemoryOptimizer.

Reference: Shirahata et al., "Memory reduction method for deep neural network training",
IEEE MLSP 2016.
"""

from keras_dlu._lazy import require_tensorflow

require_tensorflow("keras_dlu.memory (the memory-reordering train step)")

from keras_dlu.memory.compat import unsupported_reason  # noqa: E402
from keras_dlu.memory.measure import step_peak_bytes  # noqa: E402
from keras_dlu.memory.planner import (  # noqa: E402
    LayerPlan, MemoryPlan, measure_update_factor, plan)
from keras_dlu.memory.train_step import make_train_step  # noqa: E402

__all__ = [
    "LayerPlan",
    "MemoryPlan",
    "make_train_step",
    "measure_update_factor",
    "plan",
    "step_peak_bytes",
    "unsupported_reason",
]
