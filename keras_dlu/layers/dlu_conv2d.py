"""DLUConv2D: a Conv2D layer computed as an integer GEMM in the DLU's dynamic fixed point."""

import keras
import tensorflow as tf

from keras_dlu.layers.dlu_product import DLUProductMixin
from keras_dlu.ops.im2col import im2col


@keras.saving.register_keras_serializable(package="keras_dlu")
class DLUConv2D(DLUProductMixin, keras.layers.Conv2D):
    """Drop-in for ``keras.layers.Conv2D`` whose products run in 8- or 16-bit integers.

    The convolution is computed as a matrix product (im2col): the input's patches
    ``[N*OH*OW, kh*kw*C]`` (gathered by the native ``keras_dlu.ops.im2col.im2col``) times
    the kernel ``[kh*kw*C, filters]``, through ``keras_dlu.ops.dlu_matmul`` in the forward
    pass and in both backward products, exactly as ``DLUDense`` does (see there). The
    input gradient's patches are summed back into the image (the native ``col2im``) in
    float32, which only adds already-scaled integer products. Inputs, kernel and incoming
    gradient each keep their histograms and exponent, chosen by ``policy`` after every
    training step.

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
        kh, kw = self.kernel_size
        sh, sw = self.strides
        dh, dw = self.dilation_rate
        patches = im2col(inputs, (kh, kw), (sh, sw), (dh, dw), self.padding)
        shape = tf.shape(patches)
        depth = kh * kw * inputs.shape[-1]
        flat = tf.reshape(patches, [-1, depth])
        kernel = tf.reshape(self.kernel, [depth, self.filters])
        outputs = self._fixed_point_matmul(flat, kernel, training=bool(training))
        outputs = tf.reshape(outputs, tf.concat([shape[:3], [self.filters]], axis=0))
        return self._bias_and_activation(outputs)

    def get_config(self):
        config = super().get_config()
        config.update(self._fixed_point_config())
        return config
