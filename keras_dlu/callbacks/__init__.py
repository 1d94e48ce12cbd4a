"""keras_dlu.callbacks (filled by its capability issue)."""

from keras_dlu.callbacks.distributed import (  # noqa: E402  (issue 6)
    BroadcastGlobalVariables, LearningRateWarmup, MetricAverage)

__all__ = []
__all__ += ["BroadcastGlobalVariables", "MetricAverage", "LearningRateWarmup"]  # issue 6
from keras_dlu.callbacks.memory_optimizer import MemoryOptimizer  # noqa: E402  (issue 7)
__all__ += ["MemoryOptimizer"]  # issue 7
from keras_dlu.callbacks.fixed_point_monitor import FixedPointMonitor  # noqa: E402  (issue 5)
__all__ += ["FixedPointMonitor"]  # issue 5
