"""Loads ``keras_dlu/_dlu_ops.so`` once, on first use, and checks what it was built for."""

import functools
import json
import os

import tensorflow as tf

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBRARY_PATH = os.path.join(_PACKAGE_DIR, "_dlu_ops.so")
BUILD_INFO_PATH = os.path.join(_PACKAGE_DIR, "_build_info.json")
REBUILD_HINT = ("Rebuild it with `make build` in the keras-dlu checkout (or "
                "`pip install --no-build-isolation .` in this environment).")


class NativeLibraryError(ImportError):
    """The native op library is missing, stale, or does not load."""


def build_info():
    """What the library was built against: ``{"tensorflow": version, "cuda": bool}``."""
    if not os.path.exists(BUILD_INFO_PATH):
        return None
    with open(BUILD_INFO_PATH) as f:
        return json.load(f)


@functools.cache
def load_library():
    """Returns the loaded op module; raises ``NativeLibraryError`` saying how to fix it."""
    if not os.path.exists(LIBRARY_PATH):
        raise NativeLibraryError(
            f"keras-dlu's native library {LIBRARY_PATH} is missing. {REBUILD_HINT}")
    built_for = (build_info() or {}).get("tensorflow", "unknown")
    if built_for != tf.__version__:
        raise NativeLibraryError(
            f"keras-dlu's native library was built for TensorFlow {built_for}, but "
            f"TensorFlow {tf.__version__} is running. {REBUILD_HINT}")
    try:
        return tf.load_op_library(LIBRARY_PATH)
    except tf.errors.NotFoundError as error:
        raise NativeLibraryError(
            f"keras-dlu's native library {LIBRARY_PATH} (built for TensorFlow {built_for}) "
            f"failed to load in TensorFlow {tf.__version__}: {error}. {REBUILD_HINT}"
        ) from error


def built_with_cuda():
    """Whether the library holds CUDA kernels."""
    return bool((build_info() or {}).get("cuda", False))


def string_attr(op, name):
    """The string attribute ``name`` of ``op`` as ``str`` (graph ops give bytes, eager str)."""
    value = op.get_attr(name)
    return value.decode() if isinstance(value, bytes) else value
