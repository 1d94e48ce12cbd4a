"""Native im2col and col2im: the patch gather of DLUConv2D's integer GEMM and its adjoint.

``im2col(images, kernel_size, ...)`` lays out the patches of ``[N, H, W, C]`` images as
``tf.image.extract_patches`` does, ``[N, OH, OW, kh * kw * C]`` ordered (kernel row,
kernel column, channel), so that ``patches @ reshape(kernel, [kh * kw * C, filters])`` is
the convolution ``tf.nn.conv2d`` computes (Chellapilla, Puri and Simard, "High performance
convolutional neural networks for document processing", 2006). ``col2im`` adds every patch
element back to the pixel it came from; each is the other's registered gradient. Both are
single C++ passes, in place of ``extract_patches`` and its gather/scatter gradient.

``dlu_conv2d`` is the 8-bit convolution of ``keras_dlu.layers.DLUConv2D`` on the CPU: one
op (``KerasDluConv2dFused``) quantizes the image once, gathers its patches as bytes and
multiplies them with the kernel's digits; its gradient computes both products from those
digits (``KerasDluMatmulFusedGrad``) and sums the patches' gradient into the image
(``col2im``).
"""

import tensorflow as tf

from keras_dlu.ops.dlu_matmul import (AUTO_GRAD_EXPONENT, kept_digits_backward,
                                      operand_seeds, stats_sink)
from keras_dlu.ops.constants import check_rounding
from keras_dlu.ops.gemm_info import warn_if_portable
from keras_dlu.ops.histogram import check_float
from keras_dlu.ops.loader import load_library, string_attr
from keras_dlu.ops.quantize import exponent_tensor

PADDINGS = ("SAME", "VALID")
"""Padding modes, as ``tf.nn.conv2d`` (case-insensitive)."""


def _window(kernel_size, strides, dilations, padding):
    """The op attributes, each checked, the error naming the argument."""
    pairs = {}
    for name, value in (("kernel_size", kernel_size), ("strides", strides),
                        ("dilations", dilations)):
        value = (value, value) if isinstance(value, int) and not isinstance(value, bool) \
            else tuple(value)
        if len(value) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1
                                  for v in value):
            raise ValueError(f"`{name}` must be a positive integer or a pair of them; "
                             f"got {value!r}.")
        pairs[name] = list(value)
    if not isinstance(padding, str) or padding.upper() not in PADDINGS:
        raise ValueError(f"`padding` must be one of {PADDINGS} (any case); got {padding!r}.")
    return dict(kernel_size=pairs["kernel_size"], strides=pairs["strides"],
                dilations=pairs["dilations"], padding=padding.upper())


def im2col(images, kernel_size, strides=1, dilations=1, padding="VALID", name=None):
    """The patches of ``images`` for a convolution window (see the module docstring).

    Args:
        images: float tensor ``[N, H, W, C]`` (cast to float32).
        kernel_size, strides, dilations: an int or a pair ``(rows, cols)``, positive.
        padding: ``"SAME"`` or ``"VALID"``, as ``tf.nn.conv2d``; padded positions are 0.
        name: optional op name.

    Returns:
        float32 ``[N, OH, OW, kh * kw * C]``, equal to ``tf.image.extract_patches``.

    Raises:
        TypeError: non-float ``images``. ValueError: bad window arguments or rank.
    """
    images = tf.cast(check_float(images, "images"), tf.float32)
    if images.shape.rank not in (None, 4):
        raise ValueError(f"`images` must be [batch, height, width, channels]; got shape "
                         f"{images.shape}.")
    return load_library().keras_dlu_im2col(
        images, **_window(kernel_size, strides, dilations, padding), name=name)


def col2im(patches, image_shape, kernel_size, strides=1, dilations=1, padding="VALID",
           name=None):
    """The adjoint of ``im2col``: sums each patch element into its pixel of an image of
    ``image_shape`` ``[N, H, W, C]`` (arguments as ``im2col``); returns float32 images."""
    patches = tf.cast(check_float(patches, "patches"), tf.float32)
    image_shape = tf.cast(image_shape, tf.int32)
    return load_library().keras_dlu_col2im(
        patches, image_shape, **_window(kernel_size, strides, dilations, padding), name=name)


def dlu_conv2d(images, kernel, images_exponent, kernel_exponent, kernel_size, strides=1,
               dilations=1, padding="VALID", rounding="nearest", seed=None, *,
               grad_exponent=None, grad_stats_sink=None, grad_images=True,
               product_histograms=True, name=None):
    """8-bit dynamic fixed-point convolution ``im2col(images) @ kernel`` from the image's
    digits (CPU; see the module docstring).

    The same product, statistics and gradients as ``dlu_matmul(im2col(images, ...),
    kernel, ..., bits=8, keep_digits=True)``, bit for bit with nearest rounding: the
    ``inputs`` histogram is the patches' (each pixel counted once per patch element that
    copies it). Stochastic rounding keys on the image's element index, so all copies of a
    pixel round alike (the patch path keys on the patch element).

    Args:
        images: float ``[N, H, W, C]``.
        kernel: float ``[kh * kw * C, filters]``.
        images_exponent, kernel_exponent: int exponents in [-512, 512].
        kernel_size, strides, dilations, padding: the window, as ``im2col``.
        rounding, seed, grad_exponent, grad_stats_sink: as ``dlu_matmul``.
        grad_images: False when ``images`` needs no gradient (a network's input).
        product_histograms: False leaves the products' histograms uncounted, as
            ``dlu_matmul``'s.
        name: optional op name.

    Returns:
        ``(product, stats)``: float32 ``[N * OH * OW, filters]`` and int64 ``[3, 64]``.

    Raises:
        TypeError: non-float operands. ValueError: bad window, rank, rounding, exponent.
    """
    check_rounding(rounding)
    warn_if_portable()
    images = tf.cast(check_float(images, "images"), tf.float32)
    kernel = tf.cast(check_float(kernel, "kernel"), tf.float32)
    if images.shape.rank not in (None, 4):
        raise ValueError(f"`images` must be [batch, height, width, channels]; got shape "
                         f"{images.shape}.")
    if kernel.shape.rank not in (None, 2):
        raise ValueError(f"`kernel` must be [kh * kw * channels, filters]; got shape "
                         f"{kernel.shape}.")
    grad_exponent = tf.constant(AUTO_GRAD_EXPONENT, tf.int32) if grad_exponent is None \
        else exponent_tensor(grad_exponent, "grad_exponent")
    return load_library().keras_dlu_conv2d_fused(
        images, kernel, exponent_tensor(images_exponent, "images_exponent"),
        exponent_tensor(kernel_exponent, "kernel_exponent"), operand_seeds(seed, rounding),
        grad_exponent, stats_sink(grad_stats_sink),
        **_window(kernel_size, strides, dilations, padding), rounding=rounding,
        compute_grad_a=grad_images, product_histograms=bool(product_histograms),
        name=name)[:2]


@tf.RegisterGradient("KerasDluConv2dFused")
def _dlu_conv2d_fused_grad(op, grad, *unused_grads):
    """dW and the patches' gradient from the kept digits, the latter summed into the image."""
    del unused_grads
    d_patches, d_kernel, sink_grad = kept_digits_backward(op, grad)
    d_images = None
    if d_patches is not None:
        d_images = load_library().keras_dlu_col2im(
            _as_patch_image(d_patches, op), tf.shape(op.inputs[0]), **_attrs(op))
    return [d_images, d_kernel, None, None, None, None, sink_grad]


def _as_patch_image(d_patches, op):
    """``[N * OH * OW, depth]`` as ``[N, OH, OW, depth]`` (the layout col2im reads)."""
    images = op.inputs[0]
    kh, kw = op.get_attr("kernel_size")
    window = _attrs(op)
    rows = _out_size(tf.shape(images)[1], kh, window["strides"][0], window["dilations"][0],
                     window["padding"])
    cols = _out_size(tf.shape(images)[2], kw, window["strides"][1], window["dilations"][1],
                     window["padding"])
    return tf.reshape(d_patches, tf.stack([tf.shape(images)[0], rows, cols, -1]))


def _out_size(size, kernel, stride, dilation, padding):
    """Output length of one axis, as tf.nn.conv2d (SAME: ceil(n / s))."""
    if padding == "SAME":
        return (size + stride - 1) // stride
    return tf.maximum(0, (size - (kernel - 1) * dilation - 1 + stride) // stride)


def _attrs(op):
    return {key: op.get_attr(key) for key in ("kernel_size", "strides", "dilations")} | {
        "padding": string_attr(op, "padding")}


@tf.RegisterGradient("KerasDluIm2col")
def _im2col_grad(op, grad):
    return [load_library().keras_dlu_col2im(grad, tf.shape(op.inputs[0]), **_attrs(op))]


@tf.RegisterGradient("KerasDluCol2im")
def _col2im_grad(op, grad):
    return [load_library().keras_dlu_im2col(grad, **_attrs(op)), None]
