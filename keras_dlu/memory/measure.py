"""Measures the peak memory of a training step with TensorFlow's allocator.

The allocator's statistics are read by ``keras_dlu.memory.allocator`` (on CPUs where
TensorFlow leaves oneDNN off they need ``TF_ENABLE_ONEDNN_OPTS=1``; see there). Resident memory (weights,
optimizer state, the input pipeline's buffers) is what is allocated before the step, so
``peak - current_before`` is the step's own peak: activations, gradients and update
temporaries. Memory oneDNN allocates outside TensorFlow's allocator (primitive scratch
pads) is not counted, for stock and optimized steps alike.
"""

import statistics
import time

import tensorflow as tf

from keras_dlu.memory.allocator import device, peak_above_current, require_stats
from keras_dlu.memory.compat import unsupported_reason
from keras_dlu.memory.keras_internals import make_train_function
from keras_dlu.memory.planner import measure_update_factor, plan
from keras_dlu.memory.train_step import make_train_step


def stock_train_function(model):
    """The train function stock ``fit`` uses for ``model`` (compiled, built)."""
    model.make_train_function(force=True)
    return model.train_function


def optimized_train_function(model, batch_size, fuse_update=True):
    """A train function with the restructured step, planned for ``batch_size``.

    Raises:
        ValueError: the step cannot be restructured for ``model`` (the reason of
            ``unsupported_reason``), so there is nothing to measure against stock.
    """
    reason = unsupported_reason(model)
    if reason is not None:
        raise ValueError(f"model cannot use the restructured step: {reason}.")
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    the_plan = plan(model, batch_size, update_factor=measure_update_factor(model.optimizer))
    return make_train_function(model, make_train_step(model, the_plan, fuse_update))


def step_peak_bytes(train_function, x, y, repeats=3):
    """Median peak bytes above resident and median seconds of one training step.

    Args:
        train_function: a Keras train function (``stock_train_function`` or
            ``optimized_train_function``); it is called once first to trace it.
        x, y: one batch (arrays).
        repeats: number of measured steps (default 3).

    Returns:
        ``(peak_bytes, seconds)``, the medians over ``repeats`` steps.

    Raises:
        RuntimeError: the allocator keeps no statistics in this process (checked before
            any step runs; ``keras_dlu.memory.allocator.require_stats`` names the remedy).
    """
    require_stats(device())
    iterator = iter(tf.data.Dataset.from_tensors((x, y)).repeat())
    train_function(iterator)

    def timed_step():
        start = time.perf_counter()
        logs = train_function(iterator)
        tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, logs)
        return time.perf_counter() - start

    peaks, seconds = zip(*(peak_above_current(timed_step) for _ in range(repeats)))
    return statistics.median(peaks), statistics.median(seconds)
