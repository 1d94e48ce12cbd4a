"""keras_dlu.optimizers (filled by its capability issue)."""

__all__ = []
