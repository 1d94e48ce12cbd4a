"""In-place optimizer updates for the fused step: temporaries of at most one row block.

Keras' ``update_step`` builds an update from whole-tensor ops: SGD's ``m * momentum`` and
``g * lr``, Adam's ``g - m``, ``g**2 - v``, ``m * alpha`` and ``sqrt(v) + eps`` are each a
new buffer the size of the variable before ``assign`` copies the result in. In the fused
step a dense layer's update runs while activations of the layers below are still alive,
so those extra copies of the largest weight land on top of them and cancel the saving.

SGD (plain or with momentum) runs TensorFlow's dense in-place kernels, whose formulas are
Keras' (``ResourceApplyKerasMomentum``: ``accum = accum * momentum - grad * lr; var +=
accum``; ``ResourceApplyGradientDescent``): no temporaries at all. Adam and AdamW run
Keras' arithmetic op for op (so the result is bit for bit Keras') on blocks of at most
``BLOCK_BYTES`` of rows, one block after the other, so the temporaries are one block
whatever the variable's size (see ``_adam`` for how the blocks are read and written).
TensorFlow's ``ResourceApplyAdam`` is not used: it rounds differently from Keras' Adam
(weights it updates are not bit for bit Keras' after a few steps).

A weight's rows cannot be updated block by block from a partial weight gradient: every
TensorFlow op that writes part of a resource variable (scatter, sparse apply, strided-slice
assign) switches it to copy-on-read mode, after which each read, the forward pass's
included, copies the whole variable. So a layer's whole weight gradient exists once, and
the largest one is the floor of the optimized peak.

Supported: ``keras.optimizers.SGD`` (no Nesterov), ``Adam`` and ``AdamW`` (no AMSGrad),
without EMA or gradient accumulation, under the default distribution strategy; every other
optimizer keeps Keras' own update (``plan().summary()`` says what it costs).
"""

import keras
import numpy as np
import tensorflow as tf

from keras_dlu.memory import keras_internals as internals

BLOCK_BYTES = 1 << 18  # rows per block: at most this many bytes (at least one row)


def supported(optimizer):
    """True when ``apply`` reproduces ``optimizer``'s update exactly."""
    if optimizer.gradient_accumulation_steps or optimizer.use_ema or (
        tf.distribute.has_strategy()
    ):
        return False
    if type(optimizer) is keras.optimizers.SGD:
        return not optimizer.nesterov
    if type(optimizer) in (keras.optimizers.Adam, keras.optimizers.AdamW):
        return not optimizer.amsgrad
    return False


def row_blocks(shape, itemsize=4):
    """``[(start, stop), ...]``: the row blocks of a matrix of ``shape`` [rows, columns]."""
    row = int(np.prod(shape[1:], dtype=np.int64)) * itemsize
    step = max(1, BLOCK_BYTES // max(row, 1))
    return [(s, min(s + step, shape[0])) for s in range(0, shape[0], step)]


def apply(optimizer, grads, variables, owned=False):
    """Keras' clipping and weight decay, then each variable's update, in place.

    Args:
        optimizer: an optimizer ``supported`` accepts.
        grads, variables: lists of the same length.
        owned: True when no other op of the step reads the gradient tensors (so Adam's
            update may overwrite them); otherwise Adam copies each gradient first.

    Returns the ops of the updates; one variable's blocks run after the other's, so
    blocks of different variables never coexist.
    """
    clipped = internals.clip_gradients(optimizer, grads)
    owned = [owned or c is not g for c, g in zip(clipped, grads)]  # clipping made a copy
    grads = [tf.cast(g, v.dtype) for g, v in zip(clipped, variables)]
    if _is_sgd(optimizer):
        internals.apply_weight_decay(optimizer, variables)
        return [_sgd(optimizer, v, g) for g, v in zip(grads, variables)]
    done = []
    for grad, variable, own in zip(grads, variables, owned):
        with tf.control_dependencies(done):
            grad = grad if own else tf.raw_ops.DeepCopy(x=grad)
            done = [_adam(optimizer, variable, grad)]
    return done


def _is_sgd(optimizer):
    return type(optimizer) is keras.optimizers.SGD


def _handle(variable):
    return variable.value.handle


def _sgd(optimizer, variable, grad):
    """TensorFlow's dense in-place kernels, no temporaries."""
    lr = tf.cast(optimizer.learning_rate, variable.dtype)
    if optimizer.momentum != 0:
        accum = optimizer.momentums[internals.variable_index(optimizer, variable)]
        return tf.raw_ops.ResourceApplyKerasMomentum(
            var=_handle(variable), accum=_handle(accum), lr=lr, grad=grad,
            momentum=tf.cast(optimizer.momentum, variable.dtype), use_locking=False,
            use_nesterov=False)
    return tf.raw_ops.ResourceApplyGradientDescent(var=_handle(variable), alpha=lr,
                                                   delta=grad)


def _adam(optimizer, variable, grad):
    """Keras' weight decay and ``Adam.update_step``, op for op, one row block at a time.

    The slots are read and written per block (``ResourceGather``/``ResourceScatterUpdate``).
    The variable's own rows cannot be written that way: any sparse write puts a
    TensorFlow variable into copy-on-read mode, after which every read, the forward
    pass's included, copies it. So each block's new values overwrite the same rows of the
    gradient, which no other op reads (``InplaceUpdate`` writes into its buffer;
    ``tensor_scatter_nd_update`` would copy the whole gradient per block), and one dense
    ``AssignVariableOp`` hands that buffer to the variable.
    """
    ops = keras.ops
    dtype = variable.dtype
    lr = tf.cast(optimizer.learning_rate, dtype)
    local_step = ops.cast(optimizer.iterations + 1, dtype)
    beta_1_power = ops.power(ops.cast(optimizer.beta_1, dtype), local_step)
    beta_2_power = ops.power(ops.cast(optimizer.beta_2, dtype), local_step)
    alpha = lr * ops.sqrt(1 - beta_2_power) / (1 - beta_1_power)
    slots = internals.adam_slots(optimizer, variable)
    decay = internals.uses_weight_decay(optimizer, variable)
    view = _Rows(variable.shape)
    grad = view.of(grad)
    done = [grad]
    for start, stop in row_blocks(view.shape, np.dtype(dtype).itemsize):
        with tf.control_dependencies(done):
            rows = tf.range(start, stop)
            g = grad[start:stop]
            m, v = (view.gather(slot, rows) for slot in slots)
            weights = view.of(tf.raw_ops.ReadVariableOp(
                resource=_handle(variable), dtype=dtype))[start:stop]
            if decay:  # Keras: variable.assign_sub(variable * wd * lr)
                weights = weights - weights * tf.cast(optimizer.weight_decay, dtype) * lr
            m = m + ops.multiply(ops.subtract(g, m), 1 - optimizer.beta_1)
            v = v + ops.multiply(ops.subtract(ops.square(g), v), 1 - optimizer.beta_2)
            weights = weights - ops.divide(
                ops.multiply(m, alpha), ops.add(ops.sqrt(v), optimizer.epsilon))
            written = [view.scatter(slot, rows, new) for slot, new in zip(slots, (m, v))]
            grad = tf.raw_ops.InplaceUpdate(x=grad, i=rows, v=weights)
            done = written + [grad]
    with tf.control_dependencies(done):
        return tf.raw_ops.AssignVariableOp(resource=_handle(variable),
                                           value=tf.reshape(grad, variable.shape))


class _Rows:
    """A variable of any rank seen as a matrix [rows, columns] (a scalar as [1, 1])."""

    def __init__(self, shape):
        self.full = tuple(shape)
        rows = self.full[0] if self.full else 1
        columns = int(np.prod(self.full[1:], dtype=np.int64)) if self.full else 1
        self.shape = (rows, columns)

    def of(self, tensor):
        return tf.reshape(tensor, self.shape)

    def gather(self, slot, rows):
        if not self.full:
            return tf.reshape(slot.value, [1, 1])
        block = tf.raw_ops.ResourceGather(resource=_handle(slot), indices=rows,
                                          dtype=slot.dtype)
        return tf.reshape(block, [-1, self.shape[1]])

    def scatter(self, slot, rows, value):
        if not self.full:
            return tf.raw_ops.AssignVariableOp(resource=_handle(slot),
                                               value=tf.reshape(value, []))
        value = tf.reshape(value, (-1,) + self.full[1:])
        return tf.raw_ops.ResourceScatterUpdate(resource=_handle(slot), indices=rows,
                                                updates=value)
