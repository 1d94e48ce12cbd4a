"""Independent NumPy references of dynamic fixed-point quantization and the DLU matmul.

Written from the documented rules (keras_dlu/ops/dlu_matmul.py, ops/cc/kernels/
dlu_quantize.h), not from the kernels: the integer product is an int64 NumPy matmul, the
stochastic generator is re-implemented on uint64 arrays.
"""

import numpy as np

from tests.support.references import exponent_histogram_reference

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix(z):
    z = z.astype(np.uint64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def counter_uniform(seed, count):
    """The generator of stochastic rounding: uniform [0, 1) for indices 0..count-1."""
    with np.errstate(over="ignore"):
        key = _mix(np.array([np.uint64(seed & 0xFFFFFFFFFFFFFFFF) ^
                             np.uint64(0x6A09E667F3BCC909)]))[0]
        index = np.arange(count, dtype=np.uint64)
        bits = _mix(key + index * np.uint64(0x9E3779B97F4A7C15))
    return (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53


def quantize_int(x, exponent, bits, rounding="nearest", seed=0):
    """Integer digits q (int64, x's shape) of x; non-finite values give 0."""
    x = np.asarray(x, np.float64)
    finite = np.isfinite(x)
    s = np.ldexp(np.where(finite, x, 0.0), -exponent)
    if rounding == "nearest":
        r = np.rint(s)  # half to even
    else:
        u = counter_uniform(seed, x.size).reshape(x.shape)
        f = np.floor(s)
        r = f + (u < s - f)
    r = np.clip(r, -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1)
    return np.where(finite, r, 0).astype(np.int64)


def to_float32_flushed(v):
    """float64 -> float32 rounded once; magnitudes below 2**-126 become signed zeros."""
    v = np.asarray(v, np.float64)
    with np.errstate(over="ignore"):
        return np.where(np.abs(v) < 2.0**-126, np.copysign(0.0, v), v).astype(np.float32)


def quantize_reference(x, exponent, bits, rounding="nearest", seed=0):
    """Dequantized x in x's dtype (float32 results below 2**-126 flush to zero); NaN and
    infinities pass through."""
    x = np.asarray(x)
    q = quantize_int(x, exponent, bits, rounding, seed)
    y = np.ldexp(q.astype(np.float64), exponent)
    y = to_float32_flushed(y) if x.dtype == np.float32 else y.astype(x.dtype)
    return np.where(np.isfinite(x), y, x)


def signed64(value):
    """A Python int wrapped to int64 (the op derives seeds with int64 arithmetic)."""
    value &= 0xFFFFFFFFFFFFFFFF
    return value - (1 << 64) if value >= 1 << 63 else value


def dlu_matmul_reference(a, b, a_exponent, b_exponent, bits=8, rounding="nearest",
                         a_seed=0, b_seed=0, transpose_a=False, transpose_b=False):
    """(product float32, stats int64 [3, 64]) by the issue's rule (products below 2**-126
    flush to zero), with per-operand seeds
    (``dlu_matmul(seed=s)`` uses ``a_seed = 2 s`` and ``b_seed = 2 s + 1``)."""
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    qa = quantize_int(a, a_exponent, bits, rounding, a_seed)
    qb = quantize_int(b, b_exponent, bits, rounding, b_seed)
    op_a = (a.T if transpose_a else a).astype(np.float64)
    op_b = (b.T if transpose_b else b).astype(np.float64)
    qa = qa.T if transpose_a else qa
    qb = qb.T if transpose_b else qb
    integer = qa @ qb  # exact int64
    product = to_float32_flushed(np.ldexp(integer.astype(np.float64), a_exponent + b_exponent))
    bad_rows = ~np.all(np.isfinite(op_a), axis=1)
    bad_cols = ~np.all(np.isfinite(op_b), axis=0)
    product[bad_rows, :] = np.nan
    product[:, bad_cols] = np.nan
    stats = np.stack([exponent_histogram_reference(a), exponent_histogram_reference(b),
                      exponent_histogram_reference(product)])
    return product, stats


def check_dlu_matmul(a, b, ea, eb, bits, **kwargs):
    """Runs ``dlu_matmul`` and asserts product and stats equal the reference bit for bit;
    returns them as NumPy arrays."""
    import tensorflow as tf

    from keras_dlu.ops import dlu_matmul

    product, stats = dlu_matmul(a, b, ea, eb, bits=bits, **kwargs)
    seed = kwargs.get("seed") or 0
    want_p, want_s = dlu_matmul_reference(
        a, b, ea, eb, bits, kwargs.get("rounding", "nearest"), 2 * seed, 2 * seed + 1,
        kwargs.get("transpose_a", False), kwargs.get("transpose_b", False))
    assert product.dtype == tf.float32 and stats.dtype == tf.int64
    assert product.shape == want_p.shape and stats.shape == (3, 64)
    np.testing.assert_array_equal(product.numpy(), want_p)
    np.testing.assert_array_equal(stats.numpy(), want_s)
    return product.numpy(), stats.numpy()
