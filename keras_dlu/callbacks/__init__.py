"""keras_dlu.callbacks (filled by its capability issue)."""

__all__ = []
