"""keras_dlu.layers (filled by its capability issue)."""

__all__ = []
