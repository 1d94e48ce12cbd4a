"""The DLU matmul: dynamic fixed-point matrix product with fused statistics, and its gradient.

Reference: Fujitsu's Deep Learning Unit (8/16-bit integer arithmetic whose decimal point
is chosen from statistics the compute core collects); Courbariaux, Bengio and David,
"Training deep neural networks with low precision multiplications", 2014.

Gradient contract (for layers such as ``keras_dlu.layers.DLUDense``)
--------------------------------------------------------------------
With ``product, stats = dlu_matmul(a, b, ea, eb, bits, rounding, seed,
grad_exponent=eg, grad_stats_sink=sink)``, the registered gradient computes, for the
incoming gradient ``G = d loss / d product``::

    dA = dlu_matmul(G, b^T, eg, eb)      # G quantized with eg, b with eb (same digits as
    dB = dlu_matmul(a^T, G, ea, eg)      # the forward pass: same seed, same element keys)

i.e. both backward products in the same integer arithmetic (exact integer sums scaled
once), straight-through with respect to the quantization of ``a`` and ``b``.

* ``grad_exponent`` (``eg``): the exponent of ``G``, managed by the layer from the
  histograms below (a tensor value is clipped to [-512, 512]). ``None`` (or :data:`AUTO_GRAD_EXPONENT`) picks it per step from
  ``max|G|`` so that nothing saturates: ``eg = floor(log2 max|G|) - (bits - 2)``.
* ``grad_stats_sink``: a float32/float64 tensor of shape ``[3, 64]`` that the forward
  pass ignores; its *gradient* is the backward statistics, as floats holding integer
  counts: row 0 the exponent histogram of ``G`` (the incoming gradient), row 1 that of
  ``dA``, row 2 that of ``dB``. A layer passes a zero tensor or variable and reads
  ``tape.gradient(loss, sink)`` (or receives it as that input's gradient inside a
  ``tf.custom_gradient``), then feeds row 0 to its gradient-exponent policy. Counts are
  exact up to 2**24 per bin in float32 (2**53 in float64).
* ``a_exponent``, ``b_exponent``, ``grad_exponent`` and ``seed`` get no gradient.
* Stochastic rounding in the backward pass: ``G`` is keyed by a seed derived from the
  forward seed, ``a`` and ``b`` reuse their forward keys (so they round identically).

Kept digits (``keep_digits=True``, 8 bits, no transposes)
---------------------------------------------------------
The forward op (``KerasDluMatmulFused``) also outputs the 8-bit digits of ``a`` and ``b``
(one byte per element, a quarter of float32) and per row and column a flag for non-finite
inputs. Its registered gradient (``KerasDluMatmulFusedGrad``) quantizes ``G`` once and
multiplies it with those digits: the same ``dA``, ``dB`` and statistics as above, bit for
bit, without quantizing ``a`` and ``b`` again, and the float ``a`` and ``b`` are not held
for the backward (the digits are). CPU only: on a GPU, TensorFlow places both ops on the CPU.
"""

import os

import numpy as np
import tensorflow as tf

from keras_dlu.ops.gemm_info import warn_if_portable
from keras_dlu.ops.histogram import check_float
from keras_dlu.ops.loader import load_library, string_attr
from keras_dlu.ops.constants import (MATMUL_BITS, MAX_EXPONENT, STATS_SHAPE, check_bits,
                                     check_rounding)
from keras_dlu.ops.quantize import exponent_tensor, seed_tensor

# The CPU kernel and oneDNN run on OpenMP. Its default busy-waiting threads steal the cores
# from TensorFlow's own thread pool between ops (measured: 100x slower small products on 2
# busy cores), so sleep instead, unless the user chose. Read when the library loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

AUTO_GRAD_EXPONENT = -(2**31)
"""``grad_exponent`` value meaning: choose from ``max|G|`` at each step."""

_GRAD_SEED_KEY = 0x7F4A7C159E3779B9


def dlu_matmul(a, b, a_exponent, b_exponent, bits=8, rounding="nearest", seed=None, *,
               grad_exponent=None, grad_stats_sink=None, transpose_a=False,
               transpose_b=False, keep_digits=False, grad_a=True, product_histograms=True,
               name=None):
    """Dynamic fixed-point product ``op(a) @ op(b)`` with the DLU analysis block fused in.

    Each operand is quantized with its own exponent,
    ``q = clip(round(x * 2**-e), -2**(bits-1), 2**(bits-1) - 1)``, the integer sum of
    ``qa * qb`` is computed exactly (int32 accumulation for 8 bits, int64 for 16 bits or
    deep K) and scaled by ``2**(a_exponent + b_exponent)`` into float32 once (results
    below 2**-126 flush to signed zeros, on every device, as in TensorFlow's CPU kernels).
    See the module docstring for the gradient contract.

    Args:
        a: float tensor ``[M, K]`` (``[K, M]`` with ``transpose_a``); other float dtypes
            are cast to float32.
        b: float tensor ``[K, N]`` (``[N, K]`` with ``transpose_b``).
        a_exponent: exponent of ``a``, a Python int or int scalar tensor in [-512, 512].
        b_exponent: exponent of ``b``, likewise.
        bits: 8 or 16.
        rounding: ``"nearest"`` (half to even) or ``"stochastic"``.
        seed: integer (or int scalar tensor) keying the stochastic rounding on (seed,
            operand, element index): same seed, same result; ``None`` draws a fresh one
            per call. Ignored by ``"nearest"``.
        grad_exponent: exponent of the incoming gradient in the backward pass (int or int
            scalar tensor); ``None`` chooses it from ``max|G|`` per step.
        grad_stats_sink: ``[3, 64]`` float tensor whose gradient receives the backward
            histograms (incoming gradient, dA, dB); ``None`` for a zero constant.
        transpose_a, transpose_b: multiply by the transposed operand without copying.
        keep_digits: keep the 8-bit digits of ``a`` and ``b`` for the backward instead of
            the float operands (see the module docstring); needs ``bits=8`` and no
            transposes. Same results. Default False.
        grad_a: with ``keep_digits``, False when ``a`` needs no gradient (a network's
            input): the backward computes only ``dB``, ``a`` gets None and row 1 of the
            sink's gradient is zeros. Default True.
        product_histograms: with ``keep_digits``, False leaves the histograms of the
            products uncounted (zeros): ``stats[2]`` and rows 1 and 2 of the sink's
            gradient. Counting them reads each product back (the dW of a 2048x2048 layer
            is 16 MB); the DLU layers read only the operands' and the incoming gradient's
            histograms and pass False. Default True.
        name: optional op name.

    Returns:
        ``(product, stats)``: float32 ``[M, N]``, where every element whose row of
        ``op(a)`` or column of ``op(b)`` holds a NaN or infinity is NaN; and int64
        ``[3, 64]``, the exponent histograms (as ``exponent_histogram``) of ``a``, ``b``
        and ``product``.

    Raises:
        TypeError: non-float operands, non-integer exponents or seed.
        ValueError: wrong ranks, inner-dimension mismatch, ``bits`` not in {8, 16},
            unknown ``rounding``, exponent out of range, bad sink shape, ``keep_digits``
            with 16 bits or a transpose, ``grad_a`` or ``product_histograms`` False
            without ``keep_digits``.
    """
    _check_options(bits, rounding, transpose_a, transpose_b, keep_digits, grad_a,
                   product_histograms)
    warn_if_portable()
    a, b = _operands(a, b, transpose_a, transpose_b)
    a_exponent = exponent_tensor(a_exponent, "a_exponent")
    b_exponent = exponent_tensor(b_exponent, "b_exponent")
    if grad_exponent is None:
        grad_exponent = tf.constant(AUTO_GRAD_EXPONENT, tf.int32)
    else:
        grad_exponent = exponent_tensor(grad_exponent, "grad_exponent")
    grad_stats_sink = stats_sink(grad_stats_sink)
    seeds = operand_seeds(seed, rounding)
    if keep_digits:
        return load_library().keras_dlu_matmul_fused(
            a, b, a_exponent, b_exponent, seeds, grad_exponent, grad_stats_sink,
            rounding=rounding, compute_grad_a=grad_a,
            product_histograms=bool(product_histograms), name=name)[:2]
    return _op(a, b, a_exponent, b_exponent, seeds, grad_exponent, grad_stats_sink, bits,
               rounding, transpose_a, transpose_b, name)


def _check_options(bits, rounding, transpose_a, transpose_b, keep_digits, grad_a,
                   product_histograms):
    """``dlu_matmul``'s non-tensor arguments, checked before any op is built."""
    check_bits(bits, MATMUL_BITS)
    check_rounding(rounding)
    if keep_digits and (bits != 8 or transpose_a or transpose_b):
        raise ValueError("`keep_digits=True` needs bits=8 and no transposes; got "
                         f"bits={bits}, transpose_a={transpose_a}, transpose_b={transpose_b}.")
    if not grad_a and not keep_digits:
        raise ValueError("`grad_a=False` needs keep_digits=True.")
    if not product_histograms and not keep_digits:
        raise ValueError("`product_histograms=False` needs keep_digits=True.")


def _operands(a, b, transpose_a, transpose_b):
    """``a`` and ``b`` as float32 matrices whose inner dimensions match where known."""
    a = _matrix(a, "a")
    b = _matrix(b, "b")
    ka = a.shape[0 if transpose_a else 1]
    kb = b.shape[1 if transpose_b else 0]
    if ka is not None and kb is not None and ka != kb:
        raise ValueError(f"inner dimensions of `a` and `b` do not match: `a` has shape "
                         f"{a.shape} (transpose_a={transpose_a}), `b` has shape {b.shape} "
                         f"(transpose_b={transpose_b}).")
    return a, b


_ZERO_SINK = np.zeros(STATS_SHAPE, np.float32)


def stats_sink(grad_stats_sink):
    """The ``[3, 64]`` float sink tensor (a zero constant for ``None``), checked (also
    used by ``keras_dlu.ops.im2col.dlu_conv2d``)."""
    if grad_stats_sink is None:
        return _ZERO_SINK
    grad_stats_sink = tf.convert_to_tensor(grad_stats_sink)
    if grad_stats_sink.dtype not in (tf.float32, tf.float64) or \
            not grad_stats_sink.shape.is_compatible_with(STATS_SHAPE):
        raise ValueError("`grad_stats_sink` must be a float32 or float64 tensor of shape "
                         f"{list(STATS_SHAPE)}; got {grad_stats_sink.dtype.name} "
                         f"{grad_stats_sink.shape}.")
    return grad_stats_sink


def operand_seeds(seed, rounding):
    """The two operands' rounding keys ``[2*seed, 2*seed + 1]`` (int64)."""
    if isinstance(seed, int) and not isinstance(seed, bool) or \
            (seed is None and rounding == "nearest"):
        seed = _wrap_int64(2 * (seed or 0))
        return np.array([seed, _wrap_int64(seed + 1)], np.int64)  # no extra eager ops
    seed = seed_tensor(seed, rounding)
    return tf.stack([seed * 2, seed * 2 + 1])


def _wrap_int64(value):
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def _matrix(x, name):
    x = check_float(x, name)
    if x.shape.rank is not None and x.shape.rank != 2:
        raise ValueError(f"`{name}` must be a matrix (rank 2); got shape {x.shape}.")
    return tf.cast(x, tf.float32) if x.dtype != tf.float32 else x


def _op(a, b, ea, eb, seeds, grad_exponent, sink, bits, rounding, transpose_a, transpose_b,
        name=None):
    return load_library().keras_dlu_matmul(
        a, b, ea, eb, seeds, grad_exponent, sink, bits=bits, rounding=rounding,
        transpose_a=transpose_a, transpose_b=transpose_b, name=name)


def auto_exponent(x, bits):
    """``floor(log2 max|x|) - (bits - 2)`` over the finite values (0 when there are none):
    the smallest exponent at which the largest value does not saturate before rounding."""
    finite = tf.where(tf.math.is_finite(x), tf.abs(x), tf.zeros_like(x))
    peak = tf.reduce_max(tf.reshape(finite, [-1]))
    field = tf.bitwise.bitwise_and(tf.bitwise.right_shift(
        tf.bitcast(tf.maximum(peak, 0.0), tf.int32), 23), 0xFF)
    exponent = tf.where(peak > 0, field - 127 - (bits - 2), 0)
    return tf.clip_by_value(exponent, -MAX_EXPONENT, MAX_EXPONENT)


def _grad_exponent(grad_exponent, grad, bits):
    """The exponent of the incoming gradient: the layer's, or chosen from ``max|G|`` (a
    cond: the pass over ``G`` runs only then)."""
    return tf.cond(tf.equal(grad_exponent, AUTO_GRAD_EXPONENT),
                   lambda: auto_exponent(grad, bits),
                   lambda: tf.clip_by_value(grad_exponent, -MAX_EXPONENT, MAX_EXPONENT))


def _grad_seed(seed_a):
    return tf.bitwise.bitwise_xor(seed_a, tf.constant(_GRAD_SEED_KEY, tf.int64))


@tf.RegisterGradient("KerasDluMatmul")
def _dlu_matmul_grad(op, grad, grad_stats):
    """dA and dB in dynamic fixed point; the backward histograms go to the sink input."""
    del grad_stats
    a, b, ea, eb, seeds, grad_exponent, sink = op.inputs
    bits = op.get_attr("bits")
    rounding = string_attr(op, "rounding")
    ta, tb = op.get_attr("transpose_a"), op.get_attr("transpose_b")
    eg = _grad_exponent(grad_exponent, grad, bits)
    seed_a, seed_b = seeds[0], seeds[1]
    seed_g = _grad_seed(seed_a)
    no_exp = tf.constant(AUTO_GRAD_EXPONENT, tf.int32)
    zeros = tf.zeros(STATS_SHAPE, tf.float32)

    def mm(x, y, ex, ey, sx, sy, tx, ty):
        return _op(x, y, ex, ey, tf.stack([sx, sy]), no_exp, zeros, bits, rounding, tx, ty)

    if not ta:  # dA [M, K] = G op(B)^T
        da, da_stats = mm(grad, b, eg, eb, seed_g, seed_b, False, not tb)
        grad_hist = da_stats[0]
    else:       # dA as stored [K, M] = op(B) G^T
        da, da_stats = mm(b, grad, eb, eg, seed_b, seed_g, tb, True)
        grad_hist = da_stats[1]
    if not tb:  # dB [K, N] = op(A)^T G
        db, db_stats = mm(a, grad, ea, eg, seed_a, seed_g, not ta, False)
    else:       # dB as stored [N, K] = G^T op(A)
        db, db_stats = mm(grad, a, eg, ea, seed_g, seed_a, True, ta)
    sink_grad = tf.cast(tf.stack([grad_hist, da_stats[2], db_stats[2]]), sink.dtype)
    return [da, db, None, None, None, None, sink_grad]


def kept_digits_backward(op, grad):
    """``(dA or None, dB, sink gradient)`` of a kept-digit forward op (KerasDluMatmulFused,
    KerasDluConv2dFused: inputs a, b, ea, eb, seeds, grad_exponent, sink; outputs product,
    stats, a_digits, a_flags, b_digits, b_flags), from the digits alone."""
    ea, eb, seeds, grad_exponent, sink = op.inputs[2:]
    a_digits, a_flags, b_digits, b_flags = op.outputs[2:]
    grad_a = op.get_attr("compute_grad_a")
    da, db, stats = load_library().keras_dlu_matmul_fused_grad(
        grad, a_digits, a_flags, b_digits, b_flags, ea, eb,
        _grad_exponent(grad_exponent, grad, 8), _grad_seed(seeds[0]),
        rounding=string_attr(op, "rounding"), compute_grad_a=grad_a,
        product_histograms=op.get_attr("product_histograms"))
    return da if grad_a else None, db, tf.cast(stats, sink.dtype)


@tf.RegisterGradient("KerasDluMatmulFused")
def _dlu_matmul_fused_grad(op, grad, *unused_grads):
    """dA and dB from the kept digits (reads no float operand); statistics to the sink."""
    del unused_grads
    da, db, sink_grad = kept_digits_backward(op, grad)
    return [da, db, None, None, None, None, sink_grad]
