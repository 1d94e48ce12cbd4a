"""keras_dlu.distributed (filled by its capability issue)."""

__all__ = []
