"""keras_dlu.memory (filled by its capability issue)."""

__all__ = []
