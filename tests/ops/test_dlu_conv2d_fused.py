"""keras_dlu.ops.im2col.dlu_conv2d (the 8-bit convolution from the image's digits) against
the float-patch path (im2col + dlu_matmul with kept digits) bit for bit, and against the
integer NumPy reference with stochastic rounding keyed on the image."""

import numpy as np
import pytest
import tensorflow as tf

from keras_dlu.ops import dlu_matmul
from keras_dlu.ops.im2col import dlu_conv2d, im2col
from tests.ops.test_im2col import im2col_reference
from tests.support.fixed_point import quantize_int, to_float32_flushed

pytestmark = pytest.mark.usefixtures("native_ops")

WINDOWS = [dict(kernel_size=3, padding="VALID"),
           dict(kernel_size=(3, 2), strides=2, padding="SAME"),
           dict(kernel_size=3, dilations=2, padding="SAME"),
           dict(kernel_size=(2, 3), strides=(1, 2), padding="VALID")]


def _pair(window):
    size = window["kernel_size"]
    return (size, size) if isinstance(size, int) else size


def _run(product, x, kernel, dy):
    """Product, stats and the gradients of sum(product * dy) w.r.t. x, kernel, sink."""
    sink = tf.zeros([3, 64])
    with tf.GradientTape() as tape:
        tape.watch([x, kernel, sink])
        p, stats = product(x, kernel, sink)
        loss = tf.reduce_sum(p * dy)
    return [p, stats] + tape.gradient(loss, [x, kernel, sink])


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("nonfinite", [False, True])
def test_equals_the_float_patch_path_bit_for_bit(window, nonfinite):
    rng = np.random.default_rng(len(str(window)))
    x = rng.standard_normal((2, 9, 8, 3)).astype(np.float32)
    if nonfinite:
        x[0, 4, 5, 1], x[1, 0, 0, 2] = np.nan, np.inf
    kh, kw = _pair(window)
    kernel = tf.constant(rng.standard_normal((kh * kw * 3, 5)).astype(np.float32))
    x = tf.constant(x)
    args = dict(grad_exponent=-4)
    rows = dlu_conv2d(x, kernel, -5, -6, **window)[0].shape[0]
    dy = tf.constant(rng.standard_normal((rows, 5)).astype(np.float32) * 1e-1)
    fused = _run(lambda a, b, sink: dlu_conv2d(a, b, -5, -6, **window, grad_stats_sink=sink,
                                               **args), x, kernel, dy)

    def patch_path(a, b, sink):
        flat = tf.reshape(im2col(a, **window), [-1, kh * kw * 3])
        return dlu_matmul(flat, b, -5, -6, keep_digits=True, grad_stats_sink=sink, **args)

    reference = _run(patch_path, x, kernel, dy)
    for got, want in zip(fused, reference):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    assert np.isnan(fused[0].numpy()).any() == nonfinite
    assert fused[1].numpy()[0].sum() > 0
    # without the products' histograms (what DLUConv2D asks for): only those rows are zeros
    lean = _run(lambda a, b, sink: dlu_conv2d(a, b, -5, -6, **window, grad_stats_sink=sink,
                                              product_histograms=False, **args), x, kernel, dy)
    for got, want in zip(lean[:1] + lean[2:4], fused[:1] + fused[2:4]):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    np.testing.assert_array_equal(lean[1].numpy()[:2], fused[1].numpy()[:2])
    np.testing.assert_array_equal(lean[4].numpy()[0], fused[4].numpy()[0])
    assert not lean[1].numpy()[2].any() and not lean[4].numpy()[1:].any()


def test_stochastic_rounding_keys_on_the_image():
    """Every copy of a pixel rounds alike: the product is the integer reference of the
    image quantized once (keyed by 2 * seed and its element index) gathered into patches."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 7, 6, 2)).astype(np.float32)
    kernel = rng.standard_normal((3 * 3 * 2, 4)).astype(np.float32)
    window = dict(kernel_size=3, strides=1, padding="SAME")
    seed, ex, ek = 11, -5, -6
    product, _ = dlu_conv2d(x, kernel, ex, ek, **window, rounding="stochastic", seed=seed)
    qx = quantize_int(x, ex, 8, "stochastic", 2 * seed).astype(np.float64)
    qk = quantize_int(kernel, ek, 8, "stochastic", 2 * seed + 1)
    patches = im2col_reference(qx, (3, 3), (1, 1), (1, 1), "SAME").reshape(-1, 18)
    want = to_float32_flushed((patches.astype(np.int64) @ qk) * 2.0 ** (ex + ek))
    np.testing.assert_array_equal(product.numpy(), want)


def test_no_image_gradient_when_not_asked():
    x = tf.constant(np.random.default_rng(0).standard_normal((1, 5, 5, 1)), tf.float32)
    kernel = tf.constant(np.ones((9, 2), np.float32))
    with tf.GradientTape() as tape:
        tape.watch([x, kernel])
        loss = tf.reduce_sum(dlu_conv2d(x, kernel, -5, -5, 3, grad_images=False)[0])
    dx, dk = tape.gradient(loss, [x, kernel])
    assert dx is None and dk is not None


@pytest.mark.parametrize("call, error, match", [
    (lambda: dlu_conv2d(np.zeros((2, 5, 5), np.float32), np.zeros((9, 2), np.float32), 0, 0,
                        3), ValueError, "`images`"),
    (lambda: dlu_conv2d(np.zeros((1, 5, 5, 1), np.float32), np.zeros((9,), np.float32), 0, 0,
                        3), ValueError, "`kernel`"),
    (lambda: dlu_conv2d(np.zeros((1, 5, 5, 1), np.float32), np.zeros((9, 2), np.float32), 0, 0,
                        3, padding="full"), ValueError, "`padding`"),
    (lambda: dlu_conv2d(np.zeros((1, 5, 5, 1), np.float32), np.zeros((9, 2), np.float32), 600,
                        0, 3), ValueError, "`images_exponent`"),
    (lambda: dlu_conv2d(np.zeros((1, 5, 5, 1), np.float32), np.zeros((8, 2), np.float32), 0, 0,
                        3), tf.errors.InvalidArgumentError, "kernel"),
])
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()
