"""keras_dlu.callbacks (filled by its capability issue)."""

__all__ = []

from keras_dlu.callbacks.memory_optimizer import MemoryOptimizer  # noqa: E402  (issue 7)
__all__ += ["MemoryOptimizer"]  # issue 7
