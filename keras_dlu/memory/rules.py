"""Keras' optimizer updates, op for op, on a block of rows of one variable.

``rule(optimizer, variable)`` returns the ``Rule`` of a supported optimizer: the slots the
update reads and writes, and ``step(g, w, slots)``, which maps one block of the gradient,
of the variable (after weight decay) and of each slot to the new blocks. Each is the
arithmetic of the optimizer's ``update_step`` in the installed Keras, the same ops in the
same order, so that an update applied block by block (``keras_dlu.memory.inplace``) is bit
for bit Keras' whole-tensor one; ``tests/memory/test_inplace.py`` checks it.

Supported: ``SGD`` (plain, momentum, Nesterov), ``Adam`` and ``AdamW`` (no AMSGrad),
``RMSprop`` (plain, momentum, centered).
"""

import dataclasses
from typing import Callable

import keras
from keras import ops

from keras_dlu.memory import keras_internals as internals


@dataclasses.dataclass(frozen=True)
class Rule:
    """The block update of one variable.

    Attributes:
        slots: the optimizer variables the update reads and writes, in ``step``'s order.
        step: ``step(g, w, slots) -> (w, slots)`` on blocks of the same rows.
    """

    slots: tuple
    step: Callable


def supports(optimizer):
    """True when ``rule`` has the update of ``optimizer`` (its class and options)."""
    kind = type(optimizer)
    if kind is keras.optimizers.SGD or kind is keras.optimizers.RMSprop:
        return True
    return kind in (keras.optimizers.Adam, keras.optimizers.AdamW) and not optimizer.amsgrad


def rule(optimizer, variable):
    """The ``Rule`` of ``optimizer`` (``supports`` must accept it) for ``variable``."""
    lr = ops.cast(optimizer.learning_rate, variable.dtype)
    if type(optimizer) is keras.optimizers.SGD:
        return _sgd(optimizer, variable, lr)
    if type(optimizer) is keras.optimizers.RMSprop:
        return _rmsprop(optimizer, variable, lr)
    return _adam(optimizer, variable, lr)


def _sgd(optimizer, variable, lr):
    """``SGD.update_step``."""
    if optimizer.momentum == 0:
        return Rule((), lambda g, w, slots: (ops.subtract(w, ops.multiply(g, lr)), ()))
    momentum = ops.cast(optimizer.momentum, variable.dtype)

    def step(g, w, slots):
        (m,) = slots
        m = ops.subtract(ops.multiply(m, momentum), ops.multiply(g, lr))
        if optimizer.nesterov:
            return ops.add(w, ops.subtract(ops.multiply(m, momentum),
                                           ops.multiply(g, lr))), (m,)
        return ops.add(w, m), (m,)

    return Rule((internals.sgd_momentum(optimizer, variable),), step)


def _adam(optimizer, variable, lr):
    """``Adam.update_step`` (AdamW's is Adam's; its decay is the weight decay)."""
    local_step = ops.cast(optimizer.iterations + 1, variable.dtype)
    beta_1_power = ops.power(ops.cast(optimizer.beta_1, variable.dtype), local_step)
    beta_2_power = ops.power(ops.cast(optimizer.beta_2, variable.dtype), local_step)
    alpha = lr * ops.sqrt(1 - beta_2_power) / (1 - beta_1_power)

    def step(g, w, slots):
        m, v = slots
        m = m + ops.multiply(ops.subtract(g, m), 1 - optimizer.beta_1)
        v = v + ops.multiply(ops.subtract(ops.square(g), v), 1 - optimizer.beta_2)
        w = w - ops.divide(ops.multiply(m, alpha), ops.add(ops.sqrt(v), optimizer.epsilon))
        return w, (m, v)

    return Rule(internals.adam_slots(optimizer, variable), step)


def _rmsprop(optimizer, variable, lr):
    """``RMSprop.update_step``; slots: velocity, then momentum and the average gradient
    when the optimizer has them."""
    rho = optimizer.rho
    velocity, momentum, average = internals.rmsprop_slots(optimizer, variable)
    slots = tuple(s for s in (velocity, momentum, average) if s is not None)

    def step(g, w, values):
        values = list(values)
        v = values.pop(0)
        m = values.pop(0) if momentum is not None else None
        a = values.pop(0) if average is not None else None
        v = ops.add(ops.multiply(rho, v), ops.multiply(1 - rho, ops.square(g)))
        if a is not None:
            a = ops.add(ops.multiply(rho, a), ops.multiply(1 - rho, g))
            denominator = v - ops.square(a) + optimizer.epsilon
        else:
            denominator = ops.add(v, optimizer.epsilon)
        # Keras writes (lr * g) / sqrt(denominator); TensorFlow's graph optimizer turns
        # that into (lr * g) * rsqrt(denominator) in stock's step, and only sometimes in
        # ours, so the product is written as it runs in stock.
        increment = ops.multiply(ops.multiply(lr, g), ops.rsqrt(denominator))
        if m is not None:
            m = ops.add(ops.multiply(optimizer.momentum, m), increment)
            w = ops.subtract(w, m)
        else:
            w = ops.subtract(w, increment)
        return w, tuple(s for s in (v, m, a) if s is not None)

    return Rule(slots, step)
