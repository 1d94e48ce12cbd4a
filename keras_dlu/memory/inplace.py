"""In-place SGD updates for the fused step: no temporaries the size of the variable.

Keras' ``SGD.update_step`` builds its update from whole-tensor ops: ``m * momentum``,
``g * lr`` and their difference (plain SGD: ``g * lr``) are each a new buffer the size of
the variable before ``assign`` copies the result in. In the fused step a dense layer's
update runs while activations of the layers below are still alive, so those one to two
extra copies of the largest weight gradient land on top of them and can cancel the
saving. TensorFlow's fused kernels ``ResourceApplyKerasMomentum`` (``accum = accum *
momentum - lr * grad; var += accum``, Keras' formula) and ``ResourceApplyGradientDescent``
(``var -= lr * grad``) update the variables in place, element by element.

Only the plain ``keras.optimizers.SGD`` (no Nesterov, no EMA, no gradient accumulation)
under the default distribution strategy takes this path; every other optimizer keeps
Keras' own ``_backend_apply_gradients``.
"""

import keras
import tensorflow as tf


def supported(optimizer):
    """True when ``apply`` reproduces ``optimizer``'s update exactly."""
    return (
        type(optimizer) is keras.optimizers.SGD
        and not optimizer.nesterov
        and not optimizer.gradient_accumulation_steps
        and not optimizer.use_ema
        and not tf.distribute.has_strategy()
    )


def apply(optimizer, grads, variables):
    """Clipping and weight decay as Keras applies them, then in-place SGD updates."""
    grads = optimizer._clip_gradients(grads)
    optimizer._apply_weight_decay(variables)
    learning_rate = optimizer.learning_rate
    for grad, variable in zip(grads, variables):
        dtype = variable.dtype
        lr = tf.cast(learning_rate, dtype)
        grad = tf.cast(grad, dtype)
        handle = variable.value.handle
        if optimizer.momentum != 0:
            accum = optimizer.momentums[optimizer._get_variable_index(variable)]
            tf.raw_ops.ResourceApplyKerasMomentum(
                var=handle, accum=accum.value.handle, lr=lr, grad=grad,
                momentum=tf.cast(optimizer.momentum, dtype), use_locking=False,
                use_nesterov=False)
        else:
            tf.raw_ops.ResourceApplyGradientDescent(var=handle, alpha=lr, delta=grad)
