"""Independent NumPy references shared by several tests."""

import numpy as np


def exponent_histogram_reference(x):
    """The DLU analysis block in NumPy: bins floor(log2|x|) + 32 via ``np.frexp``."""
    x = np.asarray(x, dtype=np.float64).ravel()
    x = x[np.isfinite(x) & (x != 0)]
    _, exponent = np.frexp(x)  # x = m * 2**exponent with 0.5 <= |m| < 1
    bins = np.clip(exponent.astype(np.int64) - 1 + 32, 0, 63)
    return np.bincount(bins, minlength=64).astype(np.int64)
