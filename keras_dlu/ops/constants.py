"""The constants of dynamic fixed point, each defined once, and their argument checks.

The native ops hold the same values as op attribute constraints (``rounding``), shape
functions (``[3, 64]`` statistics, from ``kHistogramBins`` in ``ops/cc/kernels/
exponent_bin.h``) and kernel checks (``bits``, ``kMaxExponent`` in ``dlu_quantize.h``).
Everything above the ops (the fixed-point core ``keras_dlu.fixed_point``, the DLU layers,
``quantize_model``, the tfmot bridge, ``FixedPointMonitor``) imports them from here.
"""

ROUNDINGS = ("nearest", "stochastic")
"""Rounding modes: half to even, or stochastic (unbiased, keyed by seed and index)."""

MATMUL_BITS = (8, 16)
"""Integer widths of ``dlu_matmul`` and of the DLU layers."""

QUANTIZE_BITS = range(2, 17)
"""Integer widths of ``quantize`` (fake quantization)."""

MAX_EXPONENT = 512
"""Exponents (decimal point positions) lie in ``[-MAX_EXPONENT, MAX_EXPONENT]``."""

HISTOGRAM_BINS = 64
"""Bins of the exponent histogram: bin ``floor(log2|x|) + HISTOGRAM_OFFSET``, clamped."""

HISTOGRAM_OFFSET = 32

STATS_SHAPE = (3, HISTOGRAM_BINS)
"""``dlu_matmul``'s statistics: histograms of a, b and the product (backward: of the
incoming gradient, dA and dB)."""


def check_rounding(rounding):
    """``rounding`` if it is one of ``ROUNDINGS``, else ``ValueError`` naming it."""
    if rounding not in ROUNDINGS:
        raise ValueError(f"`rounding` must be one of {ROUNDINGS}; got {rounding!r}.")
    return rounding


def check_bits(bits, allowed=MATMUL_BITS):
    """``bits`` if it is an int in ``allowed``, else ``ValueError`` naming it."""
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in allowed:
        raise ValueError(f"`bits` must be one of {tuple(allowed)}; got {bits!r}.")
    return bits
