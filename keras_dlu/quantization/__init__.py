"""keras_dlu.quantization (filled by its capability issue)."""

__all__ = []
