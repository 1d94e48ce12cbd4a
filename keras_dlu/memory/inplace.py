"""In-place optimizer updates for the fused step: temporaries of at most one row block.

Keras' ``update_step`` builds an update from whole-tensor ops: SGD's ``m * momentum`` and
``g * lr``, Adam's ``g - m``, ``g**2 - v``, ``m * alpha`` and ``sqrt(v) + eps`` are each a
new buffer the size of the variable before ``assign`` copies the result in. In the fused
step a dense layer's update runs while activations of the layers below are still alive,
so those extra copies of the largest weight land on top of them and cancel the saving.

Plain and momentum SGD with a whole gradient run TensorFlow's dense in-place kernels,
whose formulas are Keras' (``ResourceApplyKerasMomentum``: ``accum = accum * momentum -
grad * lr; var += accum``; ``ResourceApplyGradientDescent``): no temporaries at all. Every
other supported update runs Keras' arithmetic op for op (``keras_dlu.memory.rules``, so the
result is bit for bit Keras') on blocks of at most ``BLOCK_BYTES`` of rows, one block after
the other, writing each block into the variable's and the slots' own buffers
(``_Rows``), so the temporaries are one block whatever the variable's size. The gradient
block comes from a whole gradient or, for a large dense kernel, is computed block by block
(``apply_blocks``, used by ``keras_dlu.memory.dense_blocks``), so that the kernel's whole
weight gradient never exists.

TensorFlow's ``ResourceApplyAdam`` is not used: it rounds differently from Keras' Adam.

Supported: ``keras.optimizers.SGD``, ``Adam`` and ``AdamW`` (no AMSGrad), ``RMSprop``,
without EMA or gradient accumulation, under the default distribution strategy; every other
optimizer keeps Keras' own update (``plan().summary()`` says what it costs).
"""

import math

import keras
import numpy as np
import tensorflow as tf

from keras_dlu.memory import keras_internals as internals
from keras_dlu.memory import rules

BLOCK_BYTES = 1 << 18  # rows per block: at most this many bytes (at least one row)
VECTOR_BYTES = 64  # the widest SIMD register (AVX-512)


def supported(optimizer):
    """True when ``apply`` reproduces ``optimizer``'s update exactly."""
    if optimizer.gradient_accumulation_steps or optimizer.use_ema or (
        tf.distribute.has_strategy()
    ):
        return False
    return rules.supports(optimizer)


def matrix_shape(shape):
    """``shape`` seen as [rows, columns]: the first axis, the others flattened."""
    shape = tuple(shape)
    if not shape:
        return (1, 1)
    return (shape[0], int(np.prod(shape[1:], dtype=np.int64)))


def row_blocks(shape, itemsize=4):
    """``[(start, stop), ...]``: the row blocks of a matrix of ``shape`` [rows, columns].

    Every block but the last holds a multiple of ``VECTOR_BYTES``, so an element-wise
    kernel computes each element on the same path (vector or scalar tail; Eigen's
    vectorized ``rsqrt`` rounds differently from its scalar one) as on the whole tensor.
    """
    columns = int(np.prod(shape[1:], dtype=np.int64))
    row = columns * itemsize
    vector = max(1, VECTOR_BYTES // itemsize)
    align = vector // math.gcd(vector, max(columns, 1))  # rows per whole vector
    step = max(align, BLOCK_BYTES // max(row, 1) // align * align)
    return [(s, min(s + step, shape[0])) for s in range(0, shape[0], step)]


def apply(optimizer, grads, variables):
    """Keras' clipping and weight decay, then each variable's update, in place.

    Args:
        optimizer: an optimizer ``supported`` accepts.
        grads, variables: lists of the same length.

    Returns the ops of the updates; one variable's blocks run after the other's, so
    blocks of different variables never coexist.
    """
    grads = internals.clip_gradients(optimizer, grads)
    grads = [tf.cast(g, v.dtype) for g, v in zip(grads, variables)]
    if _has_kernel(optimizer):
        internals.apply_weight_decay(optimizer, variables)
        return [_sgd_kernel(optimizer, v, g) for g, v in zip(grads, variables)]
    done = []
    for grad, variable in zip(grads, variables):
        with tf.control_dependencies(done):
            whole = tf.reshape(grad, matrix_shape(variable.shape))
            done = apply_blocks(optimizer, variable, lambda s, e, g=whole: g[s:e])
    return done


def apply_blocks(optimizer, variable, gradient_rows):
    """Weight decay and the update of ``variable``, one row block after the other.

    Args:
        optimizer: an optimizer ``supported`` accepts, without per-variable clipping
            (which needs the whole gradient).
        variable: the Keras variable.
        gradient_rows: ``gradient_rows(start, stop)``: the gradient's rows ``start:stop``
            of the variable seen as a matrix (``_Rows``), already clipped and scaled.

    Returns the ops that hand the written buffers back to their variables (after them,
    every read of the variable or a slot sees the update).
    """
    rule = rules.rule(optimizer, variable)
    weights = _Rows(variable)
    slots = [_Rows(slot) for slot in rule.slots]
    decay = _decay(optimizer, variable)
    done = []
    for start, stop in row_blocks(weights.shape, np.dtype(variable.dtype).itemsize):
        with tf.control_dependencies(done):
            w = decay(weights.read(start, stop))
            w, news = rule.step(gradient_rows(start, stop), w,
                                [s.read(start, stop) for s in slots])
            done = [r.write(start, stop, new) for r, new in zip([weights] + slots,
                                                                 [w] + list(news))]
    with tf.control_dependencies(done):
        return [r.commit() for r in [weights] + slots]


def _decay(optimizer, variable):
    """Keras' ``variable.assign(variable - variable * wd * lr)``, as a block function."""
    if not internals.uses_weight_decay(optimizer, variable):
        return lambda w: w
    lr = tf.cast(optimizer.learning_rate, variable.dtype)
    wd = tf.cast(optimizer.weight_decay, variable.dtype)
    return lambda w: w - w * wd * lr


def _has_kernel(optimizer):
    """Plain or momentum SGD: TensorFlow has a dense in-place kernel of Keras' formula."""
    return type(optimizer) is keras.optimizers.SGD and not optimizer.nesterov


def _handle(variable):
    return variable.value.handle


def _sgd_kernel(optimizer, variable, grad):
    """TensorFlow's dense in-place kernels, no temporaries."""
    lr = tf.cast(optimizer.learning_rate, variable.dtype)
    if optimizer.momentum != 0:
        accum = internals.sgd_momentum(optimizer, variable)
        return tf.raw_ops.ResourceApplyKerasMomentum(
            var=_handle(variable), accum=_handle(accum), lr=lr, grad=grad,
            momentum=tf.cast(optimizer.momentum, variable.dtype), use_locking=False,
            use_nesterov=False)
    return tf.raw_ops.ResourceApplyGradientDescent(var=_handle(variable), alpha=lr,
                                                   delta=grad)


class _Rows:
    """A variable of any rank seen as a matrix [rows, columns] (a scalar as [1, 1]),
    whose rows are rewritten in its own buffer.

    ``ReadVariableOp`` returns the variable's buffer itself (no copy: the variable is
    never put in copy-on-read mode, which every sparse write op would do, after which
    every read, the forward pass's included, copies it), ``InplaceUpdate`` writes rows into
    the buffer of its input (it aliases by design; that is the raw op, not the copying
    ``tf.tensor_scatter_nd_update``), and ``commit`` assigns the written buffer, which is
    the variable's own, back to it: no copy, but a write that TensorFlow's automatic
    control dependencies order every later read of the variable after. The step must
    order the first write after the step's last other use of the variable (the fused
    step makes an update wait for its node's dX).

    Unlike Keras' assign (a new buffer) and TensorFlow's ``ResourceApply*`` kernels (which
    copy a buffer that something else still holds), the write does not check whether
    another tensor shares the buffer: an eager ``tf.Tensor`` read from the variable before
    the step (``variable.value``) and still held sees the update. NumPy copies
    (``get_weights()``, ``.numpy()``) and reads made inside the step are not affected.
    """

    def __init__(self, variable):
        self.variable = variable
        self.shape = matrix_shape(variable.shape)
        self.value = tf.reshape(tf.raw_ops.ReadVariableOp(resource=_handle(variable),
                                                          dtype=variable.dtype), self.shape)

    def read(self, start, stop):
        return self.value[start:stop]

    def write(self, start, stop, block):
        self.value = tf.raw_ops.InplaceUpdate(x=self.value, i=tf.range(start, stop),
                                              v=block)
        return self.value

    def commit(self):
        return tf.raw_ops.AssignVariableOp(
            resource=_handle(self.variable),
            value=tf.reshape(self.value, self.variable.shape))
