"""exponent_histogram against a NumPy reference (frexp), on CPU and on GPU when present."""

import numpy as np
import pytest
import tensorflow as tf

from keras_dlu.ops import exponent_histogram
from tests.support.references import exponent_histogram_reference

pytestmark = pytest.mark.usefixtures("native_ops")

SHAPES = [(), (0,), (0, 5), (1,), (7, 3), (2, 3, 4, 5), (300_001,)]


def _random(shape, dtype, rng):
    x = rng.standard_normal(shape) * np.exp2(rng.integers(-40, 40, size=shape))
    with np.errstate(over="ignore"):  # float16 overflows to inf: part of the test
        return np.asarray(x, dtype=dtype)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_matches_reference_on_random_tensors(shape, dtype):
    x = _random(shape, dtype, np.random.default_rng(len(shape)))
    got = exponent_histogram(x).numpy()
    assert got.shape == (64,) and got.dtype == np.int64
    np.testing.assert_array_equal(got, exponent_histogram_reference(x))


def test_bfloat16_bins_like_the_float_it_equals():
    x = tf.constant(_random((1000,), np.float32, np.random.default_rng(1)))
    x16 = tf.cast(x, tf.bfloat16)
    np.testing.assert_array_equal(
        exponent_histogram(x16).numpy(),
        exponent_histogram_reference(tf.cast(x16, tf.float32).numpy()))


def test_power_of_two_boundaries():
    # 2**k and the largest value below it fall in adjacent bins; both signs alike.
    k = np.arange(-31, 31)
    exact = np.exp2(k).astype(np.float32)
    below = np.nextafter(exact, np.float32(0))
    x = np.concatenate([exact, -exact, below, -below])
    got = exponent_histogram(x).numpy()
    np.testing.assert_array_equal(got, exponent_histogram_reference(x))
    single = exponent_histogram(np.float32(1.0)).numpy()
    assert single[32] == 1 and single.sum() == 1
    assert exponent_histogram(np.float32(0.99999994)).numpy()[31] == 1


def test_clamping_subnormals_and_extremes():
    tiny = np.array([1e-45, 1e-40, np.finfo(np.float32).tiny, 2.0 ** -33], np.float32)
    huge = np.array([2.0 ** 31, 3e38, -np.finfo(np.float32).max], np.float32)
    got = exponent_histogram(np.concatenate([tiny, huge])).numpy()
    assert got[0] == len(tiny) and got[63] == len(huge) and got.sum() == len(tiny) + len(huge)
    sub64 = np.array([5e-324, 1e-310], np.float64)
    assert exponent_histogram(sub64).numpy()[0] == 2


def test_zeros_infinities_and_nans_are_not_counted():
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1.5], np.float32)
    got = exponent_histogram(x).numpy()
    assert got.sum() == 1 and got[32] == 1


def test_works_inside_tf_function_with_unknown_shape():
    fn = tf.function(exponent_histogram,
                     input_signature=[tf.TensorSpec([None, None], tf.float32)])
    x = _random((33, 17), np.float32, np.random.default_rng(3))
    np.testing.assert_array_equal(fn(x).numpy(), exponent_histogram_reference(x))
    assert fn.get_concrete_function().structured_outputs.shape == (64,)


@pytest.mark.parametrize("bad", [tf.constant([1, 2]), tf.constant([True]), tf.constant(["a"]),
                                 np.array([1, 2], np.int64)])
def test_rejects_non_float_input(bad):
    with pytest.raises(TypeError, match=r"`x` must be a floating-point tensor"):
        exponent_histogram(bad)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gpu_kernel_matches_cpu(dtype, cuda_ops):
    x = _random((1 << 20,), dtype, np.random.default_rng(7))
    x[::97] = np.nan
    x[::101] = 0
    with tf.device("/GPU:0"):
        got = exponent_histogram(tf.constant(x)).numpy()
    with tf.device("/CPU:0"):
        want = exponent_histogram(tf.constant(x)).numpy()
    np.testing.assert_array_equal(got, want)
