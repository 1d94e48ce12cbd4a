"""When the restructured step cannot apply: ``unsupported_reason(model)``.

Each rule names a case where applying updates layer by layer would change what stock
``fit`` computes, or where keras-dlu does not understand the training set-up well enough
to restructure it safely. ``MemoryOptimizer`` prints the reason and leaves ``fit`` stock.
"""

import keras

from keras_dlu.memory import keras_internals as internals
from keras_dlu.memory.keras_internals import layer_graph

_BASE_APPLY = ("apply", "apply_gradients", "_backend_apply_gradients")


def _optimizer_reason(optimizer):
    cls = type(optimizer)
    if getattr(cls, "is_distributed_wrapper", False) or cls.__module__.startswith(
        "horovod"
    ):
        return (
            f"the optimizer {cls.__name__} is a distributed wrapper; its gradient "
            "exchange needs every gradient of the step"
        )
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return (
            "LossScaleOptimizer checks all gradients for overflow before any update"
        )
    if getattr(cls, "requires_all_gradients", False):
        return f"the optimizer {cls.__name__} needs every gradient at once"
    if getattr(optimizer, "global_clipnorm", None):
        return "global_clipnorm clips by the norm of all gradients together"
    if getattr(optimizer, "use_ema", False):
        return "use_ema averages every variable once per apply"
    if getattr(optimizer, "gradient_accumulation_steps", None):
        return "gradient_accumulation_steps is not supported by the fused update"
    for name in _BASE_APPLY:
        if getattr(cls, name) is not getattr(keras.optimizers.Optimizer, name):
            return f"the optimizer {cls.__name__} overrides {name}()"
    return None


def unsupported_reason(model):
    """Why the restructured train step cannot replace ``model``'s, or None when it can.

    Args:
        model: a compiled Keras model (TensorFlow backend).

    Returns:
        A sentence, or None.
    """
    if keras.backend.backend() != "tensorflow":
        return "the model is not a TensorFlow-backend Keras model"
    if internals.overrides_train_step(model):
        return f"{type(model).__name__} overrides train_step"
    if layer_graph(model) is None:
        return "the model has no layer graph (a subclassed model or an unbuilt Sequential)"
    if getattr(model, "optimizer", None) is None:
        return "the model is not compiled with an optimizer"
    reason = _optimizer_reason(model.optimizer)
    if reason:
        return reason
    if model.distribute_strategy.num_replicas_in_sync != 1 or (
        internals.built_under_strategy(model)
    ):
        return "the model is trained under a tf.distribute strategy"
    if model.jit_compile:
        return "jit_compile=True lets XLA schedule the whole step"
    if model.dtype_policy.name != "float32" or any(
        layer.dtype_policy.name != "float32" for layer in internals.all_layers(model)
    ):
        return "mixed-precision policies are not supported"
    for layer in internals.all_layers(model):
        if getattr(layer, "activity_regularizer", None) is not None:
            return f"layer {layer.name} has an activity regularizer (a loss off the output path)"
    for variable in model.trainable_variables:
        if getattr(variable, "regularizer", None) is not None:
            return f"variable {variable.path} has a regularizer"
    for layer in internals.all_layers(model):
        for attr in ("kernel_regularizer", "bias_regularizer", "recurrent_regularizer",
                     "depthwise_regularizer", "pointwise_regularizer",
                     "beta_regularizer", "gamma_regularizer", "embeddings_regularizer"):
            if getattr(layer, attr, None) is not None:
                return f"layer {layer.name} has a {attr} (a loss off the output path)"
    owners = {}
    for layer in layer_graph(model).operations:
        for variable in getattr(layer, "trainable_variables", []):
            if id(variable) in owners and owners[id(variable)] is not layer:
                return (
                    f"variable {variable.path} is shared by layers "
                    f"{owners[id(variable)].name} and {layer.name}"
                )
            owners[id(variable)] = layer
    missing = [v.path for v in model.trainable_variables if id(v) not in owners]
    if missing:
        return f"trainable variables outside the layer graph: {missing[:3]}"
    return None
