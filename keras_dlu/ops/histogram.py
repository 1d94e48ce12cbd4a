"""The DLU analysis block: a histogram of the most significant bit's position."""

import tensorflow as tf

from keras_dlu.ops.constants import HISTOGRAM_BINS, HISTOGRAM_OFFSET  # noqa: F401 (re-export)
from keras_dlu.ops.loader import load_library
FLOAT_DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64)


def check_float(x, name):
    """Converts ``x`` to a tensor, raising ``TypeError`` naming ``name`` if not float."""
    x = tf.convert_to_tensor(x)
    if x.dtype not in FLOAT_DTYPES:
        allowed = ", ".join(d.name for d in FLOAT_DTYPES)
        raise TypeError(f"`{name}` must be a floating-point tensor ({allowed}); "
                        f"got dtype {x.dtype.name}.")
    return x


def exponent_histogram(x, name=None):
    """Counts the finite non-zero elements of ``x`` by ``floor(log2|x|)``.

    This is the analysis block of Fujitsu's DLU: the distribution of the position of each
    value's most significant bit, from which a dynamic fixed-point format chooses its
    exponent.

    Args:
        x: a float tensor (float16, bfloat16, float32 or float64) of any shape.
        name: optional op name.

    Returns:
        An int64 tensor of shape ``[64]``: element ``i`` counts the values with
        ``floor(log2|x|) + 32 == i``, the index clamped to ``[0, 63]`` (so bin 0 also holds
        everything below ``2**-32`` and bin 63 everything from ``2**31`` up). Zeros,
        infinities and NaNs are not counted.

    Raises:
        TypeError: if ``x`` is not a floating-point tensor.
    """
    x = check_float(x, "x")
    return load_library().keras_dlu_exponent_histogram(x, name=name)
