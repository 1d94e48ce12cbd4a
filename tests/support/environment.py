"""What the machine offers the tests: native library, Horovod, GPU; CI turns skips into failures."""

import functools
import os

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
