"""Dynamic fixed-point fake quantization (Fujitsu DLU; Courbariaux et al. 2014).

``quantize`` rounds a tensor onto the grid ``q * 2**exponent`` with a ``bits``-bit integer
``q`` and returns the dequantized float tensor; its gradient is straight-through. The
argument checks and the seed handling here are shared with :mod:`keras_dlu.ops.dlu_matmul`.
"""

import tensorflow as tf

from keras_dlu.ops.constants import MAX_EXPONENT, QUANTIZE_BITS, check_bits, check_rounding
from keras_dlu.ops.histogram import check_float
from keras_dlu.ops.loader import load_library


def exponent_tensor(exponent, name):
    """An int32 scalar tensor; Python ints are range-checked here, tensors in the kernel."""
    if isinstance(exponent, bool):
        raise TypeError(f"`{name}` must be an integer; got {exponent!r}.")
    if isinstance(exponent, int):
        if not -MAX_EXPONENT <= exponent <= MAX_EXPONENT:
            raise ValueError(f"`{name}` must be in [{-MAX_EXPONENT}, {MAX_EXPONENT}]; "
                             f"got {exponent}.")
        return tf.constant(exponent, tf.int32)
    exponent = tf.convert_to_tensor(exponent)
    if not exponent.dtype.is_integer:
        raise TypeError(f"`{name}` must be an integer scalar; got dtype {exponent.dtype.name}.")
    if exponent.shape.rank not in (None, 0):
        raise ValueError(f"`{name}` must be a scalar; got shape {exponent.shape}.")
    return tf.cast(exponent, tf.int32)


def seed_tensor(seed, rounding):
    """The int64 seed: 0 for round-to-nearest, a fresh random one for ``seed=None``."""
    if seed is None:
        if rounding == "nearest":
            return tf.constant(0, tf.int64)
        return tf.random.uniform([], minval=0, maxval=2**62, dtype=tf.int64)
    if isinstance(seed, bool):
        raise TypeError(f"`seed` must be an integer or None; got {seed!r}.")
    seed = tf.convert_to_tensor(seed)
    if not seed.dtype.is_integer or seed.shape.rank not in (None, 0):
        raise TypeError(f"`seed` must be an integer scalar or None; got {seed!r}.")
    return tf.cast(seed, tf.int64)


def quantize(x, exponent, bits, rounding="nearest", seed=None, name=None):
    """Fake-quantizes ``x`` to dynamic fixed point and returns the dequantized values.

    ``y = clip(round(x * 2**-exponent), -2**(bits-1), 2**(bits-1) - 1) * 2**exponent``,
    computed exactly and rounded once to ``x``'s dtype (float32 results below 2**-126 flush
    to signed zeros). NaN and infinities pass through
    unchanged (never hidden by the quantization). The gradient is straight-through: the
    incoming gradient is passed to ``x`` unchanged (also where ``x`` saturates); ``exponent``
    and ``seed`` get none. Reference: Fujitsu DLU dynamic fixed point; Courbariaux, Bengio
    and David, "Training deep neural networks with low precision multiplications", 2014.

    Args:
        x: float tensor of any shape (float16 and bfloat16 are computed in float32).
        exponent: the shared exponent ``e`` (decimal point position), a Python int or an
            integer scalar tensor in ``[-512, 512]``.
        bits: integer width, 2 to 16.
        rounding: ``"nearest"`` (half to even) or ``"stochastic"`` (down or up with
            probability equal to the fraction, unbiased).
        seed: for ``"stochastic"``: an integer (or int scalar tensor) keying a counter-based
            generator on (seed, flat element index), so the same seed gives the same result
            on every device; ``None`` draws a fresh seed on every call.
        name: optional op name.

    Returns:
        A tensor of ``x``'s shape and dtype.

    Raises:
        TypeError: if ``x`` is not floating point or ``exponent``/``seed`` not integers.
        ValueError: if ``bits`` is not in 2..16, ``rounding`` unknown, ``exponent`` out of
            range.
    """
    x = check_float(x, "x")
    check_bits(bits, QUANTIZE_BITS)
    check_rounding(rounding)
    exponent = exponent_tensor(exponent, "exponent")
    seed = seed_tensor(seed, rounding)
    dtype = x.dtype
    if dtype in (tf.float16, tf.bfloat16):
        x = tf.cast(x, tf.float32)
    y = load_library().keras_dlu_quantize(x, exponent, seed, bits=bits, rounding=rounding,
                                          name=name)
    return tf.cast(y, dtype) if y.dtype != dtype else y


@tf.RegisterGradient("KerasDluQuantize")
def _quantize_grad(op, grad):
    """Straight-through estimator: d quantize(x) / dx = 1."""
    del op
    return [grad, None, None]
