"""The train-step hook of Proxtone's variance reduction: a second gradient on the same batch.

Proxtone's variance-reduced direction and its same-batch curvature pairs need, besides the
batch gradient ``g_B(w)`` that ``fit`` computes, the gradient of the same batch at the
optimizer's snapshot weights, ``g_B(w_snap)``. Keras gives an optimizer gradients only, so
this module wraps the model's stock ``train_step``: the wrapper computes ``g_B(w_snap)``
with the model's public stateless API (``stateless_call`` and ``stateless_compute_loss``,
the functions Keras' JAX trainer uses: the same forward, the same loss, the variables read
as the snapshot values, nothing assigned), hands it to the optimizer, and then runs the
stock step unchanged (same loss tracker, metrics and ``apply_gradients``).

It is installed on first use: when Proxtone is built inside ``fit`` (TensorFlow builds an
unbuilt optimizer while tracing the first step) or by ``load_model``. The stock function
traced for that first call runs as it is; the step it traces sees no reference gradient and
takes the plain step with the batch gradient, which at the first step is exactly the
variance-reduced step (the snapshot is the current weights, so ``g_B(w_snap) = g_B(w)``).
From the next call on, ``fit`` runs the hooked function.

When the hook cannot be installed, :func:`attach` returns the reason and Proxtone uses its
block-averaged pairs without variance reduction (``Proxtone.variance_reduction_fallback``
holds the reason; a warning says it unless no model was training with the optimizer, as
when ``apply`` is called directly).
"""

import sys

import keras

# How many calling frames are searched for the model: build runs a few frames below
# TensorFlowTrainer.train_step (first trace) or Trainer.compile_from_config (load_model).
_MAX_FRAMES = 40
# The reason when the optimizer is applied directly (no warning: nothing else was asked for).
NO_MODEL = "no model is training with this optimizer (apply was called directly)"
# Keras' gradient-clipping arguments: ``apply`` clips the batch gradient only.
_CLIPPING = ("clipnorm", "clipvalue", "global_clipnorm")


def _training_model(optimizer):
    """The ``keras.Model`` that is building ``optimizer``, or ``(None, None)``.

    Keras passes no model to ``Optimizer.build``; the model is found as the ``self`` of the
    calling frames (the one place keras-dlu reads Keras' call stack). Returns
    ``(model, wrapped)``, ``wrapped`` true when the model's optimizer wraps ``optimizer``
    (``DistributedOptimizer``, ``LossScaleOptimizer``) instead of being it.
    """
    frame = sys._getframe(1)
    for _ in range(_MAX_FRAMES):
        if frame is None:
            break
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, keras.Model):
            compiled = getattr(candidate, "optimizer", None)
            if compiled is optimizer:
                return candidate, False
            if getattr(compiled, "inner_optimizer", None) is optimizer:
                return candidate, True
        frame = frame.f_back
    return None, False


def _fallback_reason(model, wrapped, optimizer):
    if model is None:
        return NO_MODEL
    if wrapped:
        return (f"the model's optimizer {type(model.optimizer).__name__} wraps Proxtone, and "
                "its reference gradients would not be averaged like the gradients")
    if keras.backend.backend() != "tensorflow":
        return ("the hook is written for the TensorFlow backend (this is "
                f"{keras.backend.backend()})")
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

    if "train_step" in vars(model) or type(model).train_step is not TensorFlowTrainer.train_step:
        return f"{type(model).__name__} has its own train_step"
    if optimizer.gradient_accumulation_steps:
        return "gradient_accumulation_steps is set (one reference gradient per applied step)"
    clipping = [name for name in _CLIPPING if getattr(optimizer, name, None) is not None]
    if clipping:
        return (f"{clipping[0]} is set: Keras clips the batch gradient but not the reference "
                "gradient, and their difference would be biased")
    return None


def attach(optimizer):
    """Installs the hooked ``train_step`` on the model building ``optimizer``.

    Returns None when installed, else the reason it was not (nothing changed then).
    """
    model, wrapped = _training_model(optimizer)
    reason = _fallback_reason(model, wrapped, optimizer)
    if reason is not None:
        return reason
    stock_step = model.train_step

    def train_step(data):
        if model.optimizer is optimizer:  # not after a re-compile with another optimizer
            x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
            point = optimizer.reference_point(model.trainable_variables)
            references = gradients_at(model, point, x, y, sample_weight)
            optimizer.set_reference_gradients(references, _probe(
                model, optimizer, point, references, (x, y, sample_weight)))
        return stock_step(data)

    model.train_step = train_step
    if model.train_function is not None:  # fit already made (and may be tracing) the stock one
        model.make_train_function(force=True)
    return None


def gradients_at(model, values, x, y, sample_weight):
    """The gradient of the model's training loss on ``(x, y)`` with the trainable variables
    read as ``values`` (a list of tensors in ``model.trainable_variables`` order), computed
    statelessly: no variable, metric or seed changes."""
    import tensorflow as tf

    non_trainable = [v.value for v in model.non_trainable_variables]
    metrics = [v.value for v in model.metrics_variables]
    with tf.GradientTape() as tape:
        tape.watch(values)
        y_pred, _ = model.stateless_call(values, non_trainable, x, training=True)
        loss, _ = model.stateless_compute_loss(values, non_trainable, metrics, x, y, y_pred,
                                               sample_weight, training=True)
    return tape.gradient(loss, values)


def _probe(model, optimizer, point, references, batch):
    """At a new snapshot (``optimizer.probe_due()``), a few power-iteration steps on the
    batch Hessian there (``keras_dlu.optimizers._sharpness``); else the stored direction
    and a zero estimate. Returns ``(direction, estimate)``, model-variable order."""
    import tensorflow as tf

    from keras_dlu.optimizers._sharpness import power_iteration

    variables = model.trainable_variables
    direction = optimizer.probe_direction(variables)
    point = [tf.cast(w, "float32") for w in point]
    zeros = [tf.zeros(v.shape, "float32") for v in variables]
    gradient = [z if g is None else tf.cast(g, "float32") for g, z in zip(references, zeros)]

    def gradient_at(values):
        moved = gradients_at(model, [tf.cast(w, v.dtype) for w, v in zip(values, variables)],
                             *batch)
        return [z if g is None else tf.cast(g, "float32") for g, z in zip(moved, zeros)]

    return tf.cond(optimizer.probe_due(),
                   lambda: power_iteration(gradient_at, point, gradient, direction),
                   lambda: (direction, tf.zeros((), "float32")))
