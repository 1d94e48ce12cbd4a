"""Keeps TensorFlow's start-up chatter out of tutorials, benchmarks and test workers."""

import contextlib
import os
import sys


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


def quiet_tensorflow():
    """Imports TensorFlow with its C++ log lines (oneDNN, CUDA probing) silenced.

    TensorFlow prints some lines from C++ before its logging is configured, so an
    environment variable alone does not hide them; they are written while file descriptor
    2 points at /dev/null. Python errors raised by the import still propagate. Call this
    before anything imports TensorFlow; later calls only set the log level.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with _stderr_to_devnull():
        import tensorflow as tf
        tf.config.list_physical_devices()  # probes CUDA (and logs) now, while silenced
    tf.get_logger().setLevel("ERROR")
    return tf
