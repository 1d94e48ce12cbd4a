"""DLUDense: a Dense layer computed in the DLU's dynamic fixed point."""

import keras
import tensorflow as tf

from keras_dlu.layers.dlu_product import DLUProductMixin


@keras.saving.register_keras_serializable(package="keras_dlu")
class DLUDense(DLUProductMixin, keras.layers.Dense):
    """Drop-in for ``keras.layers.Dense`` whose products run in 8- or 16-bit integers.

    The inputs, the kernel and the incoming gradient each have a dynamic fixed-point
    format (``q * 2**e``, one exponent per tensor). The forward product ``x @ W`` and
    both backward products (``dy @ W^T`` and ``x^T @ dy``) run through
    ``keras_dlu.ops.dlu_matmul``: operands quantized to ``bits``-bit integers,
    multiplied and accumulated exactly in wide integers, then scaled back. Each product
    also returns its operands' exponent histograms, and after each training step
    ``policy`` picks every tensor's next exponent from them. The bias, the activation and
    the weight update stay in float32 (the DLU accumulates in wide registers; the
    master weights are kept in full precision, as in Courbariaux et al.). Before any
    statistics exist, an exponent is calibrated from the tensor itself.

    Reference: Fujitsu Deep Learning Unit (DLU) dynamic fixed point; Courbariaux, Bengio
    & David, "Training deep neural networks with low precision multiplications" (2014).

    Args:
        units: as in ``keras.layers.Dense``; so are all other Dense arguments.
        bits: integer width, 8 or 16; None takes ``policy.bits`` (8 without a policy).
        rounding: ``"nearest"`` (half to even) or ``"stochastic"``. Default "nearest".
        policy: a ``keras_dlu.quantization.FixedPointPolicy``; None gives
            ``FixedPointPolicy(bits=bits)``.
        seed: integer seed of stochastic rounding, or None. Default None.
    """

    def __init__(self, units, bits=None, rounding="nearest", policy=None, seed=None,
                 **kwargs):
        policy = self._init_fixed_point(bits, rounding, policy, seed)
        if kwargs.get("lora_rank"):
            raise ValueError("`lora_rank` is not supported by DLUDense; got "
                             f"{kwargs['lora_rank']!r}.")
        super().__init__(units, **kwargs)
        self._set_fixed_point(policy, rounding, seed)

    def build(self, input_shape):
        super().build(input_shape)
        self._build_fixed_point()

    def call(self, inputs, training=None):
        inputs = tf.convert_to_tensor(inputs)
        leading = tf.shape(inputs)[:-1]
        flat = tf.reshape(inputs, [-1, inputs.shape[-1]])
        outputs = self._fixed_point_matmul(flat, self.kernel, training=bool(training))
        outputs = tf.reshape(outputs, tf.concat([leading, [self.units]], axis=0))
        return self._bias_and_activation(outputs)

    def get_config(self):
        config = super().get_config()
        config.update(self._fixed_point_config())
        return config
