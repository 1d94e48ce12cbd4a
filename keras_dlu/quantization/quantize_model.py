"""quantize_model: a copy of a Keras model whose Dense/Conv2D layers train in fixed point."""

import keras

from keras_dlu.fixed_point import resolve_policy
from keras_dlu.layers.dlu_conv2d import DLUConv2D
from keras_dlu.layers.dlu_dense import DLUDense
from keras_dlu.ops.constants import check_rounding

REPLACEMENTS = {keras.layers.Dense: DLUDense, keras.layers.Conv2D: DLUConv2D}


def quantize_model(model, bits=8, policy=None, rounding="nearest"):
    """Returns a copy of ``model`` with Dense and Conv2D layers replaced by DLU layers.

    The copy has the same structure, layer names and weights; its ``keras.layers.Dense``
    and ``keras.layers.Conv2D`` layers (exactly those classes, not subclasses) become
    ``DLUDense`` and ``DLUConv2D`` with the same configuration, computing their forward
    and backward products in ``bits``-bit dynamic fixed point (Fujitsu DLU; Courbariaux
    et al. 2014). Other layers are copied unchanged. The copy is not compiled: compile
    and ``fit`` it as usual. The original model is not modified.

    Args:
        model: a Keras 3 ``Sequential`` or functional ``Model`` (built).
        bits: 8 or 16. Default 8.
        policy: a ``FixedPointPolicy`` shared by the new layers (its ``bits`` must equal
            ``bits``); None gives ``FixedPointPolicy(bits=bits)``.
        rounding: ``"nearest"`` or ``"stochastic"``. Default "nearest".

    Returns:
        The new ``keras.Model``.

    Raises:
        ValueError: for a subclassed or unbuilt model, or bad ``bits``/``policy``/
            ``rounding``.
    """
    if not isinstance(model, (keras.Sequential, keras.Model)) or not (
            isinstance(model, keras.Sequential) or model.__class__.__name__ == "Functional"):
        raise ValueError("`model` must be a Keras Sequential or functional model; got "
                         f"{type(model).__name__}.")
    if not model.built:
        raise ValueError("`model` must be built (give it an Input) before quantize_model.")
    if bits is None:
        raise ValueError("`bits` must be 8 or 16; got None.")
    policy = resolve_policy(bits, policy)
    check_rounding(rounding)
    replacements = REPLACEMENTS

    def clone(layer):
        replacement = replacements.get(type(layer))
        if replacement is None:
            return layer.__class__.from_config(layer.get_config())
        config = layer.get_config()
        config.pop("quantization_config", None)
        return replacement(**config, policy=policy, rounding=rounding)

    copy = keras.models.clone_model(model, clone_function=clone)
    for original, layer in zip(model.layers, copy.layers):  # clone_model keeps the order
        if type(original) in replacements:
            layer.kernel.assign(original.kernel)
            if original.use_bias:
                layer.bias.assign(original.bias)
        else:
            layer.set_weights(original.get_weights())
    return copy
