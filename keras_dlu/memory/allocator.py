"""TensorFlow's allocator statistics: the one place keras-dlu reads a step's peak bytes.

``tf.config.experimental.get_memory_info(device)`` reports the bytes the allocator holds
now (``current``) and at most since ``reset_memory_stats`` (``peak``). On the CPU,
TensorFlow 2.21 keeps these statistics only when its oneDNN mode is on: the default on
Linux x86 CPUs with AVX-512 VNNI, BF16 or AMX, off elsewhere (AMD EPYC, older Intel),
where ``get_memory_info("CPU:0")`` raises. ``TF_ENABLE_ONEDNN_OPTS=1``, set before
TensorFlow is imported, turns the mode and its statistics on for any x86 CPU;
``keras_dlu.utils.quiet_tensorflow(allocator_stats=True)`` sets it.
"""

import tensorflow as tf

from keras_dlu.utils.quiet import ALLOCATOR_STATS_ENV


def device():
    """The device whose allocator a step's peak is read from: the GPU if any, else the CPU."""
    return "GPU:0" if tf.config.list_logical_devices("GPU") else "CPU:0"


def stats_available(name="CPU:0"):
    """True if the allocator of device ``name`` keeps statistics in this process."""
    try:
        tf.config.experimental.get_memory_info(name)
    except ValueError:
        return False
    return True


def require_stats(name="CPU:0"):
    """Raises RuntimeError, naming the remedy, if device ``name`` keeps no statistics."""
    if not stats_available(name):
        variable, value = ALLOCATOR_STATS_ENV
        raise RuntimeError(
            f"TensorFlow's allocator keeps no statistics for {name} in this process, so no "
            "peak can be measured: on CPUs without AVX-512 VNNI (AMD EPYC, older Intel) "
            f"TensorFlow leaves oneDNN off; set {variable}={value} before TensorFlow is "
            "imported (keras_dlu.utils.quiet_tensorflow(allocator_stats=True) does).")


def peak_above_current(run, name=None):
    """Calls ``run()`` and returns the allocator's peak bytes during it above what was
    held before it (on device ``name``, default ``device()``), and ``run``'s result.

    Raises:
        RuntimeError: the device keeps no allocator statistics (see ``require_stats``).
    """
    name = name or device()
    require_stats(name)
    tf.config.experimental.reset_memory_stats(name)
    before = tf.config.experimental.get_memory_info(name)["current"]
    result = run()
    return tf.config.experimental.get_memory_info(name)["peak"] - before, result
