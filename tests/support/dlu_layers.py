"""NumPy references for the DLU layer and quantization tests (layers, quantize_model)."""

import numpy as np

from tests.support.references import exponent_histogram_reference


def required_exponent_reference(x, bits, overflow_rate=0.0):
    """Smallest e with the share of non-zero |x| >= 2**(bits-1+e) at most the rate."""
    x = np.abs(np.asarray(x, np.float64)).ravel()
    x = x[(x > 0) & np.isfinite(x)]
    for exponent in range(-70, 70):
        if x.size == 0 or np.mean(x >= 2.0 ** (bits - 1 + exponent)) <= overflow_rate:
            return exponent
    raise AssertionError("no exponent")


def quantize_nearest(x, exponent, bits):
    """Integers q = clip(round_half_even(x * 2**-e)) as float64."""
    q = np.round(np.asarray(x, np.float64) * 2.0 ** -exponent)  # NumPy rounds half to even
    return np.clip(q, -2 ** (bits - 1), 2 ** (bits - 1) - 1)


def fixed_point_product(a, b, a_exponent, b_exponent, bits):
    """The exact integer product of the quantized operands, scaled back (float64)."""
    qa = quantize_nearest(a, a_exponent, bits)
    qb = quantize_nearest(b, b_exponent, bits)
    return (qa @ qb) * 2.0 ** (a_exponent + b_exponent)


def rounding_bound(a, b, a_exponent, b_exponent):
    """|Q(a)Q(b) - ab| bound elementwise, when nothing saturates (half an ulp each)."""
    ha, hb = 2.0 ** (a_exponent - 1), 2.0 ** (b_exponent - 1)
    a, b = np.abs(np.asarray(a, np.float64)), np.abs(np.asarray(b, np.float64))
    return a @ np.full(b.shape, hb) + np.full(a.shape, ha) @ b + a.shape[-1] * ha * hb


__all__ = ["exponent_histogram_reference", "fixed_point_product", "quantize_nearest",
           "required_exponent_reference", "rounding_bound"]
