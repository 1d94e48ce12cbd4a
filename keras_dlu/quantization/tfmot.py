"""tfmot bridge: DLU dynamic fixed point for Keras 2 (``tf_keras``) models.

tensorflow-model-optimization 0.8.1 quantizes only ``tf_keras`` models, so this module
imports ``tf_keras`` and ``tensorflow_model_optimization``; it is imported only when asked
for (``from keras_dlu.quantization import tfmot``), never by ``import keras_dlu``.

    import tf_keras
    from keras_dlu.quantization import tfmot as dlu_tfmot

    annotated = tfmot.quantization.keras.quantize_annotate_model(model)
    with dlu_tfmot.quantize_scope():
        quantized = tfmot.quantization.keras.quantize_apply(
            annotated, scheme=dlu_tfmot.DLUQuantizeScheme(bits=8))

Save such a model as HDF5 (``quantized.save("m.h5")``) and load it inside
``dlu_tfmot.quantize_scope()``: tfmot 0.8.1's wrappers do not rebuild from tf_keras'
``.keras`` zip format (loading fails with a variable-count error).

Weights and activations are fake-quantized (``keras_dlu.ops.quantize``, straight-through
gradient) with an exponent per tensor that ``FixedPointPolicy`` chooses from the
histograms gathered while training.
"""

import os

import tensorflow as tf

_saved = os.environ.get("TF_USE_LEGACY_KERAS")
import tensorflow_model_optimization as tfmot  # noqa: E402
import tf_keras  # noqa: E402

# tfmot sets TF_USE_LEGACY_KERAS=1 for the whole process when imported; put it back so
# that code using Keras 3 (`tf.keras` resolved later) keeps working in the same process.
if _saved is None:
    os.environ.pop("TF_USE_LEGACY_KERAS", None)
else:
    os.environ["TF_USE_LEGACY_KERAS"] = _saved

from keras_dlu.fixed_point import FixedPointPolicy  # noqa: E402
from keras_dlu.ops import exponent_histogram, quantize  # noqa: E402
from keras_dlu.ops.constants import HISTOGRAM_BINS, check_rounding  # noqa: E402

_register = tf_keras.utils.register_keras_serializable(package="keras_dlu")


class _State:
    """The quantizer's variables seen through the attribute names the policy expects."""

    def __init__(self, weights):
        self.exponent = weights["exponent"]
        self.histograms = weights["histograms"]
        self.updates = weights["updates"]


@_register
class DynamicFixedPointQuantizer(tfmot.quantization.keras.quantizers.Quantizer):
    """A tfmot ``Quantizer`` with the DLU's per-tensor dynamic fixed-point exponent.

    ``y = clip(round(x * 2**-e), -2**(bits-1), 2**(bits-1)-1) * 2**e`` with a straight-
    through gradient. While training, each call stores the histogram of
    ``floor(log2|x|)`` and ``FixedPointPolicy`` picks ``e`` for the next call; the first
    call calibrates ``e`` from the tensor itself. Reference: Fujitsu DLU; Courbariaux
    et al. 2014.

    Args:
        bits: 8 or 16. Default 8.
        overflow_rate: share of values allowed to saturate, in [0, 1). Default 1e-4.
        history: histograms kept, >= 1. Default 4.
        rounding: ``"nearest"`` (half to even) or ``"stochastic"``. Default "nearest".
    """

    def __init__(self, bits=8, overflow_rate=1e-4, history=4, rounding="nearest"):
        self.policy = FixedPointPolicy(bits=bits, overflow_rate=overflow_rate,
                                       history=history)
        check_rounding(rounding)
        self.rounding = rounding

    def build(self, tensor_shape, name, layer):
        def add(suffix, shape, dtype, value=0):
            return layer.add_weight(
                f"{name}_{suffix}", shape=shape, dtype=dtype, trainable=False,
                initializer=tf_keras.initializers.Constant(value))

        return {"exponent": add("exponent", (), tf.int32),
                "histograms": add("histograms", (self.policy.history, HISTOGRAM_BINS),
                              tf.int64),
                "updates": add("updates", (), tf.int64)}

    def __call__(self, inputs, training, weights, **kwargs):
        state = _State(weights)
        histogram = exponent_histogram(inputs)
        exponent = tf.where(state.updates > 0, state.exponent,
                            self.policy.required_exponent(histogram))
        outputs = quantize(inputs, exponent, self.policy.bits, rounding=self.rounding)
        if training:
            with tf.control_dependencies([outputs]):
                self.policy.update(state, histogram)
        return outputs

    def get_config(self):
        return {"bits": self.policy.bits, "overflow_rate": self.policy.overflow_rate,
                "history": self.policy.history, "rounding": self.rounding}

    def __eq__(self, other):
        return (isinstance(other, DynamicFixedPointQuantizer)
                and self.get_config() == other.get_config())

    def __ne__(self, other):
        return not self == other


@_register
class DLUQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
    """Quantizes a Dense or Conv2D layer's kernel and activation output in DLU fixed point.

    Args:
        bits: 8 or 16. Default 8.
        overflow_rate: share of values allowed to saturate. Default 1e-4.
        history: histograms kept per tensor. Default 4.
        rounding: ``"nearest"`` or ``"stochastic"``. Default "nearest".
    """

    def __init__(self, bits=8, overflow_rate=1e-4, history=4, rounding="nearest"):
        self.quantizer_config = {"bits": bits, "overflow_rate": overflow_rate,
                                 "history": history, "rounding": rounding}
        DynamicFixedPointQuantizer(**self.quantizer_config)  # validates the arguments

    def _quantizer(self):
        return DynamicFixedPointQuantizer(**self.quantizer_config)

    def get_weights_and_quantizers(self, layer):
        return [(layer.kernel, self._quantizer())]

    def get_activations_and_quantizers(self, layer):
        return [(layer.activation, self._quantizer())]

    def set_quantize_weights(self, layer, quantize_weights):
        layer.kernel = quantize_weights[0]

    def set_quantize_activations(self, layer, quantize_activations):
        layer.activation = quantize_activations[0]

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return dict(self.quantizer_config)


class DLUQuantizeRegistry(tfmot.quantization.keras.QuantizeRegistry):
    """Gives ``tf_keras`` Dense and Conv2D layers a ``DLUQuantizeConfig``."""

    SUPPORTED = (tf_keras.layers.Dense, tf_keras.layers.Conv2D)

    def __init__(self, **quantizer_config):
        self.quantizer_config = quantizer_config

    def supports(self, layer):
        return type(layer) in self.SUPPORTED

    def get_quantize_config(self, layer):
        if not self.supports(layer):
            raise ValueError(f"`layer` {layer.name} ({type(layer).__name__}) is not "
                             f"supported; DLU quantizes Dense and Conv2D layers.")
        return DLUQuantizeConfig(**self.quantizer_config)


class _KeepLayout(tfmot.quantization.keras.QuantizeLayoutTransform):
    """No graph rewrites (no batch-norm folding): the layers are quantized as they are."""

    def apply(self, model, layer_quantize_map):
        return model, layer_quantize_map


class DLUQuantizeScheme(tfmot.quantization.keras.QuantizeScheme):
    """A tfmot ``QuantizeScheme`` for ``quantize_apply(..., scheme=DLUQuantizeScheme())``.

    Args:
        bits: 8 or 16. Default 8.
        overflow_rate: share of values allowed to saturate. Default 1e-4.
        history: histograms kept per tensor. Default 4.
        rounding: ``"nearest"`` or ``"stochastic"``. Default "nearest".
    """

    def __init__(self, bits=8, overflow_rate=1e-4, history=4, rounding="nearest"):
        DLUQuantizeConfig(bits, overflow_rate, history, rounding)  # validates
        self.registry = DLUQuantizeRegistry(bits=bits, overflow_rate=overflow_rate,
                                            history=history, rounding=rounding)

    def get_layout_transformer(self):
        return _KeepLayout()

    def get_quantize_registry(self):
        return self.registry

    def get_config(self):
        return dict(self.registry.quantizer_config)


def quantize_scope():
    """tfmot's ``quantize_scope`` with the DLU classes registered (for cloning/loading)."""
    return tfmot.quantization.keras.quantize_scope({
        "DynamicFixedPointQuantizer": DynamicFixedPointQuantizer,
        "DLUQuantizeConfig": DLUQuantizeConfig,
    })
