"""Package-wide consistency: every public Keras object is registered and configurable."""

import inspect

import keras
import pytest

import keras_dlu

SUBPACKAGES = ["callbacks", "distributed", "layers", "memory", "ops", "optimizers",
               "quantization"]
KERAS_BASES = (keras.layers.Layer, keras.optimizers.Optimizer, keras.callbacks.Callback,
               keras.constraints.Constraint)


def public_keras_classes():
    for package in SUBPACKAGES:
        module = getattr(keras_dlu, package)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) and issubclass(obj, KERAS_BASES):
                yield f"{package}.{name}", obj


def test_every_subpackage_exports_what_it_lists():
    for package in SUBPACKAGES:
        module = getattr(keras_dlu, package)
        assert module.__all__, package
        for name in module.__all__:
            assert hasattr(module, name), f"keras_dlu.{package}.{name}"


@pytest.mark.parametrize("name,cls", list(public_keras_classes()))
def test_public_keras_classes_are_registered_and_configurable(name, cls):
    registered = keras.saving.get_registered_name(cls)
    assert registered == f"keras_dlu>{cls.__name__}", name
    assert keras.saving.get_registered_object(registered) is cls
    assert "get_config" in vars(cls) or any(
        "get_config" in vars(base) for base in cls.__mro__[1:] if base.__module__.startswith(
            "keras_dlu")), f"{name} must define get_config"
    assert cls.__doc__ and len(cls.__doc__.strip()) > 40, f"{name} needs a docstring"
