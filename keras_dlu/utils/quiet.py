"""Keeps TensorFlow's start-up chatter out of tutorials, benchmarks and test workers."""

import contextlib
import os
import sys

ALLOCATOR_STATS_ENV = ("TF_ENABLE_ONEDNN_OPTS", "1")
"""The setting under which TensorFlow's CPU allocator keeps statistics on every x86 CPU
(``keras_dlu.memory.allocator``); set before TensorFlow is imported."""


@contextlib.contextmanager
def _stderr_to_devnull():
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)


def quiet_tensorflow(allocator_stats=False):
    """Imports TensorFlow with its C++ log lines (oneDNN, CUDA probing) silenced.

    TensorFlow prints some lines from C++ before its logging is configured, so an
    environment variable alone does not hide them; they are written while file descriptor
    2 points at /dev/null. Python errors raised by the import still propagate. Call this
    before anything imports TensorFlow; later calls only set the log level.

    Args:
        allocator_stats: if True, turn on TensorFlow's oneDNN mode (``ALLOCATOR_STATS_ENV``,
            unless the environment already sets it), under which the CPU allocator keeps
            the statistics that memory measurements read; TensorFlow's default turns it
            on only on CPUs with AVX-512 VNNI or newer. Default False: TensorFlow's default.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if allocator_stats:
        os.environ.setdefault(*ALLOCATOR_STATS_ENV)
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with _stderr_to_devnull():
        import tensorflow as tf
        tf.config.list_physical_devices()  # probes CUDA (and logs) now, while silenced
    tf.get_logger().setLevel("ERROR")
    return tf
