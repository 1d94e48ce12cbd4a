"""Lazy exports: ``import keras_dlu`` imports neither Keras nor TensorFlow.

The pure-Keras parts (``keras_dlu.optimizers``, ``keras_dlu.layers.StableGRU``) run on
every Keras backend; the rest needs TensorFlow. Packages list their public names here and
import each on first access (module ``__getattr__``, PEP 562), so a JAX or PyTorch user
without TensorFlow can use the former and gets an ImportError naming the part that needs
TensorFlow for the latter.
"""

import importlib
import sys


def require_tensorflow(part):
    """Imports TensorFlow; raises ``ImportError`` naming ``part`` when it cannot.

    Called just before ``part`` imports TensorFlow itself, so trying costs nothing extra.
    """
    try:
        importlib.import_module("tensorflow")
    except ImportError as error:
        raise ImportError(
            f"{part} needs TensorFlow, which cannot be imported here ({error}). Install it "
            "(`pip install keras-dlu` brings the version it is built for), or use only "
            "the parts that run on every Keras backend: keras_dlu.optimizers (SDProp, "
            "Proxtone) and keras_dlu.layers.StableGRU.") from error


def lazy_exports(package, exports, tensorflow_only=()):
    """``__getattr__`` and ``__dir__`` for ``package`` that import ``exports`` on use.

    Args:
        package: the package's ``__name__``.
        exports: public name -> submodule (relative to ``package``) that defines it.
        tensorflow_only: names (or ``"*"`` for all) that need TensorFlow; without it,
            accessing one raises ``ImportError`` saying so.
    """
    module = sys.modules[package]

    def __getattr__(name):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        if tensorflow_only == "*" or name in tensorflow_only:
            require_tensorflow(f"{package}.{name}")
        value = importlib.import_module(f"{package}.{exports[name]}")
        if name != exports[name]:  # a name defined in the submodule, not the submodule
            value = getattr(value, name)
        setattr(module, name, value)  # later look-ups skip __getattr__
        return value

    def __dir__():
        return sorted(set(vars(module)) | set(exports))

    return __getattr__, __dir__
