"""quantize (fake quantization) against the NumPy reference, stochastic rounding, the
straight-through gradient and bad input."""

import numpy as np
import pytest
import tensorflow as tf

from keras_dlu.ops import quantize
from tests.support.fixed_point import quantize_reference

pytestmark = pytest.mark.usefixtures("native_ops")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bits,exponent", [(8, -4), (16, -10), (4, 1), (2, 0), (8, -120)])
def test_matches_reference(bits, exponent, dtype):
    rng = np.random.default_rng(bits)
    for shape in [(), (0,), (5, 7), (3, 4, 5)]:
        x = (rng.standard_normal(shape) * 2.0 ** (exponent + bits - 2)).astype(dtype)
        for rounding, seed in (("nearest", None), ("stochastic", 77)):
            got = quantize(x, exponent, bits, rounding=rounding, seed=seed).numpy()
            assert got.dtype == dtype and got.shape == x.shape
            np.testing.assert_array_equal(
                got, quantize_reference(x, exponent, bits, rounding, seed or 0))


def test_half_to_even_clipping_and_non_finite_pass_through():
    x = np.array([0.5, 1.5, 2.5, -2.5, 126.5, 127.5, 300.0, -128.5, -500.0,
                  np.nan, np.inf, -np.inf], np.float32)
    got = quantize(x, 0, 8).numpy()
    np.testing.assert_array_equal(
        got[:9], np.array([0, 2, 2, -2, 126, 127, 127, -128, -128], np.float32))
    assert np.isnan(got[9]) and got[10] == np.inf and got[11] == -np.inf
    half = quantize(np.float16([3.3]), -2, 8)
    assert half.dtype == tf.float16 and float(half.numpy()[0]) == 3.25


def test_stochastic_is_deterministic_and_unbiased():
    x = np.full(200_000, 0.3, np.float32)
    y1 = quantize(x, -2, 8, rounding="stochastic", seed=5).numpy()
    y2 = quantize(x, -2, 8, rounding="stochastic", seed=5).numpy()
    y3 = quantize(x, -2, 8, rounding="stochastic", seed=6).numpy()
    np.testing.assert_array_equal(y1, y2)
    assert set(np.unique(y1)) == {0.25, 0.5}
    assert np.mean(y1 != y3) > 0.2
    # P(up) = 0.2: mean 0.3, sd of the mean 0.25 * sqrt(0.16 / 200000)
    assert abs(y1.mean() - 0.3) < 5 * 0.25 * np.sqrt(0.16 / 200_000)
    neg = quantize(-x, -2, 8, rounding="stochastic", seed=5).numpy()
    assert abs(neg.mean() + 0.3) < 5 * 0.25 * np.sqrt(0.16 / 200_000)


def test_straight_through_gradient():
    x = tf.constant([0.1, 2.7, 500.0, -3.3])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = quantize(x, 0, 8)
        loss = tf.reduce_sum(y * tf.constant([1.0, 2.0, 3.0, 4.0]))
    np.testing.assert_array_equal(tape.gradient(loss, x).numpy(), [1.0, 2.0, 3.0, 4.0])


def test_tensor_exponent_inside_tf_function():
    fn = tf.function(lambda x, e: quantize(x, e, 16),
                     input_signature=[tf.TensorSpec([None], tf.float32),
                                      tf.TensorSpec([], tf.int32)])
    x = np.random.default_rng(1).standard_normal(100).astype(np.float32)
    np.testing.assert_array_equal(fn(x, tf.constant(-9)).numpy(),
                                  quantize_reference(x, -9, 16))


@pytest.mark.parametrize("call,error,match", [
    (lambda: quantize(np.ones(3, np.int32), 0, 8), TypeError, r"`x` must be a floating"),
    (lambda: quantize(np.ones(3, np.float32), 0, 17), ValueError, r"`bits` must be one of"),
    (lambda: quantize(np.ones(3, np.float32), 0, 8, rounding="floor"), ValueError,
     r"`rounding` must be one of"),
    (lambda: quantize(np.ones(3, np.float32), -513, 8), ValueError, r"`exponent` must be in"),
    (lambda: quantize(np.ones(3, np.float32), tf.ones([2], tf.int32), 8), ValueError,
     r"`exponent` must be a scalar"),
    (lambda: quantize(np.ones(3, np.float32), 0, 8, seed=1.5), TypeError, r"`seed` must be"),
])
def test_bad_input_names_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.gpu
def test_gpu_kernel_matches_cpu_bit_for_bit(cuda_ops):
    x = np.random.default_rng(2).standard_normal(100_000).astype(np.float32)
    x[::97] = np.nan
    outs = []
    for device in ("/GPU:0", "/CPU:0"):
        with tf.device(device):
            outs.append(quantize(tf.constant(x), -5, 8, rounding="stochastic", seed=3).numpy())
    np.testing.assert_array_equal(outs[0], outs[1])
