"""Native im2col and col2im: the patch gather of DLUConv2D's integer GEMM and its adjoint.

``im2col(images, kernel_size, ...)`` lays out the patches of ``[N, H, W, C]`` images as
``tf.image.extract_patches`` does, ``[N, OH, OW, kh * kw * C]`` ordered (kernel row,
kernel column, channel), so that ``patches @ reshape(kernel, [kh * kw * C, filters])`` is
the convolution ``tf.nn.conv2d`` computes (Chellapilla, Puri and Simard, "High performance
convolutional neural networks for document processing", 2006). ``col2im`` adds every patch
element back to the pixel it came from; each is the other's registered gradient. Both are
single C++ passes, in place of ``extract_patches`` and its gather/scatter gradient.
"""

import tensorflow as tf

from keras_dlu.ops.histogram import check_float
from keras_dlu.ops.loader import load_library, string_attr

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


def _attrs(op):
    return {key: op.get_attr(key) for key in ("kernel_size", "strides", "dilations")} | {
        "padding": string_attr(op, "padding")}


@tf.RegisterGradient("KerasDluIm2col")
def _im2col_grad(op, grad):
    return [load_library().keras_dlu_col2im(grad, tf.shape(op.inputs[0]), **_attrs(op))]


@tf.RegisterGradient("KerasDluCol2im")
def _col2im_grad(op, grad):
    return [load_library().keras_dlu_im2col(grad, **_attrs(op)), None]
