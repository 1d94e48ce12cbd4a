"""DLUConv2D: a Conv2D layer computed as an integer GEMM in the DLU's dynamic fixed point."""

import keras
import tensorflow as tf

from keras_dlu.layers.dlu_product import DLUProductMixin
from keras_dlu.ops import dlu_matmul
from keras_dlu.ops.im2col import dlu_conv2d, im2col


@keras.saving.register_keras_serializable(package="keras_dlu")
class DLUConv2D(DLUProductMixin, keras.layers.Conv2D):
    """Drop-in for ``keras.layers.Conv2D`` whose products run in 8- or 16-bit integers.

    The convolution is computed as a matrix product (im2col): the input's patches
    ``[N*OH*OW, kh*kw*C]`` times the kernel ``[kh*kw*C, filters]``, in the forward pass
    and in both backward products, exactly as ``DLUDense`` does (see there). At 8 bits on
    the CPU in training, one op (``keras_dlu.ops.im2col.dlu_conv2d``) quantizes the image
    once, gathers the patches from its one-byte digits and keeps them for the backward;
    otherwise the native ``im2col`` gathers float32 patches for ``dlu_matmul``. Both give
    the same results (nearest rounding; stochastic rounding keys on the image's element
    there, on the patch element here). The ``inputs`` histogram is the patches' (each
    pixel counted once per patch element that copies it); the first step's exponent,
    before any statistics, is calibrated on the image. The input gradient's patches are
    summed back into the image (the native ``col2im``) in float32, which only adds
    already-scaled integer products. Inputs, kernel and incoming gradient each keep their
    histograms and exponent, chosen by ``policy`` after every training step.

    Only ``data_format="channels_last"`` and ``groups=1`` are supported.

    Reference: Fujitsu Deep Learning Unit (DLU) dynamic fixed point; Courbariaux, Bengio
    & David, "Training deep neural networks with low precision multiplications" (2014).

    Args:
        filters, kernel_size: as in ``keras.layers.Conv2D``; so are the other Conv2D
            arguments.
        bits: integer width, 8 or 16; None takes ``policy.bits`` (8 without a policy).
        rounding: ``"nearest"`` (half to even) or ``"stochastic"``. Default "nearest".
        policy: a ``keras_dlu.quantization.FixedPointPolicy``; None gives
            ``FixedPointPolicy(bits=bits)``.
        seed: integer seed of stochastic rounding, or None. Default None.
    """

    def __init__(self, filters, kernel_size, bits=None, rounding="nearest", policy=None,
                 seed=None, **kwargs):
        policy = self._init_fixed_point(bits, rounding, policy, seed)
        data_format = kwargs.get("data_format")
        if data_format not in (None, "channels_last"):
            raise ValueError("`data_format` must be 'channels_last' for DLUConv2D; "
                             f"got {data_format!r}.")
        if kwargs.get("groups", 1) != 1:
            raise ValueError(f"`groups` must be 1 for DLUConv2D; got {kwargs['groups']!r}.")
        if kwargs.get("lora_rank"):
            raise ValueError("`lora_rank` is not supported by DLUConv2D; got "
                             f"{kwargs['lora_rank']!r}.")
        kwargs["data_format"] = "channels_last"
        super().__init__(filters, kernel_size, **kwargs)
        self._set_fixed_point(policy, rounding, seed)

    def build(self, input_shape):
        super().build(input_shape)
        self._build_fixed_point()

    def call(self, inputs, training=None):
        inputs = tf.convert_to_tensor(inputs)
        depth = self.kernel_size[0] * self.kernel_size[1] * inputs.shape[-1]
        kernel = tf.reshape(self.kernel, [depth, self.filters])
        outputs = self._fixed_point_matmul(inputs, kernel, training=bool(training))
        return self._bias_and_activation(tf.reshape(outputs, self._output_shape(inputs)))

    def _window(self):
        return dict(kernel_size=tuple(self.kernel_size), strides=tuple(self.strides),
                    dilations=tuple(self.dilation_rate), padding=self.padding)

    def _output_shape(self, images):
        """``[N, OH, OW, filters]`` as tf.nn.conv2d (SAME: ceil(n / stride))."""
        shape = tf.shape(images)
        sizes = []
        for axis in (0, 1):
            size, stride = shape[1 + axis], self.strides[axis]
            span = (self.kernel_size[axis] - 1) * self.dilation_rate[axis] + 1
            sizes.append((size + stride - 1) // stride if self.padding == "same"
                         else tf.maximum(0, (size - span + stride) // stride))
        return tf.stack([shape[0], sizes[0], sizes[1], self.filters])

    def _product(self, images, kernel, x_exponent, kernel_exponent, keep_digits=False,
                 grad_a=True, bits=None, product_histograms=True, **arguments):
        """The patches' product: from the image's digits when they are kept (8-bit CPU
        training), else float32 patches through ``dlu_matmul``."""
        if keep_digits:
            return dlu_conv2d(images, kernel, x_exponent, kernel_exponent, **self._window(),
                              grad_images=grad_a, product_histograms=product_histograms,
                              **arguments)
        patches = im2col(images, **self._window())
        flat = tf.reshape(patches, [-1, kernel.shape[0]])
        return dlu_matmul(flat, kernel, x_exponent, kernel_exponent, bits=bits, **arguments)

    def get_config(self):
        config = super().get_config()
        config.update(self._fixed_point_config())
        return config
