"""What the machine offers the tests: native library, Horovod, GPU; CI turns skips into failures."""

import functools
import os
import shutil

import pytest


def in_ci():
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(reason):
    """Skips the test; in CI (``CI=true``) fails it, since CI must exercise everything."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing prerequisite is a failure, not a skip)")
    pytest.skip(reason)


def require_native_library():
    from keras_dlu.ops import NativeLibraryError, load_library

    try:
        return load_library()
    except NativeLibraryError as error:
        skip_or_fail(str(error))


def require_cuda_library():
    """The native library with its CUDA kernels, for ``gpu`` tests (which run only on a GPU).

    A CPU-only build skips them, except where CUDA could have been built (a GPU and nvcc):
    there, with ``CI=true``, it fails, so a GPU machine can never pass by skipping them.
    """
    library = require_native_library()
    from keras_dlu.ops import built_with_cuda

    if not built_with_cuda():
        reason = "the native library was built without CUDA"
        if cuda_buildable():
            skip_or_fail(f"{reason}, although this machine has a GPU and nvcc")
        pytest.skip(reason)
    return library


def cuda_buildable():
    """A CUDA GPU that TensorFlow sees and an nvcc to compile the kernels with."""
    return gpu_available() and shutil.which("nvcc") is not None


def require_horovod():
    try:
        import horovod.tensorflow as hvd
    except ImportError as error:
        skip_or_fail(f"Horovod is not installed: {error}")
    return hvd


@functools.cache
def gpu_available():
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


@functools.cache
def cpu_flags():
    """The CPU's feature flags from /proc/cpuinfo (empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            return frozenset(f.read().split())
    except OSError:
        return frozenset()
