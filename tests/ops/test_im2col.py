"""Native im2col / col2im against a NumPy patch gather, tf.image.extract_patches and its
gradient, the adjoint identity, and bad input."""

import numpy as np
import pytest
import tensorflow as tf

from keras_dlu.ops.im2col import col2im, im2col

pytestmark = pytest.mark.usefixtures("native_ops")


def im2col_reference(x, size, stride, dilation, padding):
    """NumPy patches [N, OH, OW, kh*kw*C], padding as tf.nn.conv2d."""
    n, h, w, c = x.shape
    out, before = [], []
    for axis, extent in enumerate((h, w)):
        effective = (size[axis] - 1) * dilation[axis] + 1
        if padding == "SAME":
            o = -(-extent // stride[axis])
            before.append(max((o - 1) * stride[axis] + effective - extent, 0) // 2)
        else:
            o = max(0, (extent - effective) // stride[axis] + 1)
            before.append(0)
        out.append(o)
    patches = np.zeros((n, out[0], out[1], size[0] * size[1] * c), x.dtype)
    for oh in range(out[0]):
        for ow in range(out[1]):
            for i in range(size[0]):
                for j in range(size[1]):
                    r = oh * stride[0] - before[0] + i * dilation[0]
                    s = ow * stride[1] - before[1] + j * dilation[1]
                    if 0 <= r < h and 0 <= s < w:
                        at = (i * size[1] + j) * c
                        patches[:, oh, ow, at:at + c] = x[:, r, s, :]
    return patches


CASES = [((3, 3), (1, 1), (1, 1), "VALID"), ((3, 2), (2, 1), (1, 1), "SAME"),
         ((2, 2), (1, 1), (1, 1), "SAME"), ((3, 3), (2, 3), (2, 1), "SAME"),
         ((2, 3), (1, 2), (1, 3), "VALID"), ((5, 5), (1, 1), (1, 1), "SAME"),
         ((1, 1), (3, 3), (1, 1), "VALID")]


@pytest.mark.parametrize("size,stride,dilation,padding", CASES)
@pytest.mark.parametrize("channels", [1, 3])
def test_matches_reference_and_extract_patches_forward_and_backward(
        size, stride, dilation, padding, channels):
    rng = np.random.default_rng(channels + sum(size) + sum(stride))
    x = rng.standard_normal((2, 9, 8, channels)).astype(np.float32)
    expected = im2col_reference(x, size, stride, dilation, padding)
    xt = tf.constant(x)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(xt)
        ours = im2col(xt, size, stride, dilation, padding.lower())
        stock = tf.image.extract_patches(xt, [1, *size, 1], [1, *stride, 1],
                                         [1, *dilation, 1], padding)
        weights = tf.constant(rng.standard_normal(expected.shape).astype(np.float32))
        loss_ours, loss_stock = tf.reduce_sum(ours * weights), tf.reduce_sum(stock * weights)
    np.testing.assert_array_equal(ours.numpy(), expected)
    np.testing.assert_array_equal(stock.numpy(), expected)
    grad_ours = tape.gradient(loss_ours, xt).numpy()
    np.testing.assert_allclose(grad_ours, tape.gradient(loss_stock, xt).numpy(),
                               rtol=1e-6, atol=1e-6)
    # col2im is the adjoint of im2col: <im2col(x), p> == <x, col2im(p)> (float64 sums)
    p = weights.numpy()
    back = col2im(p, x.shape, size, stride, dilation, padding).numpy()
    np.testing.assert_allclose(np.sum(expected.astype(np.float64) * p),
                               np.sum(x.astype(np.float64) * back), rtol=1e-5)
    np.testing.assert_array_equal(back, grad_ours)


def test_col2im_gradient_is_im2col_and_empty_windows():
    x = tf.constant(np.arange(2 * 4 * 4 * 2, dtype=np.float32).reshape(2, 4, 4, 2))
    patches = tf.Variable(tf.ones([2, 2, 2, 18]))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(col2im(patches, tf.shape(x), 3, 1, 1, "VALID") * x)
    np.testing.assert_array_equal(tape.gradient(loss, patches).numpy(),
                                  im2col(x, 3).numpy())
    empty = im2col(tf.ones([1, 2, 2, 1]), 3)  # window larger than the image (VALID)
    assert empty.shape == (1, 0, 0, 9)


@pytest.mark.parametrize("kwargs,message", [
    ({"kernel_size": 0}, "`kernel_size`"), ({"kernel_size": (3, 3, 3)}, "`kernel_size`"),
    ({"kernel_size": 3, "strides": -1}, "`strides`"),
    ({"kernel_size": 3, "dilations": (1, True)}, "`dilations`"),
    ({"kernel_size": 3, "padding": "full"}, "`padding`")])
def test_bad_window_arguments_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        im2col(tf.ones([1, 4, 4, 1]), **kwargs)


def test_bad_ranks_and_shapes():
    with pytest.raises(ValueError, match="`images`"):
        im2col(tf.ones([4, 4, 1]), 3)
    with pytest.raises(TypeError, match="`images`"):
        im2col(tf.ones([1, 4, 4, 1], tf.int32), 3)
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match="`patches`"):
        col2im(tf.ones([1, 2, 2, 8]), [1, 4, 4, 1], 3)
