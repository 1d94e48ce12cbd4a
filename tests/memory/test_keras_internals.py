"""The private Keras names keras_dlu.memory uses: all in one module, checked."""

import pathlib

import pytest

from keras_dlu.memory import keras_internals

PACKAGE = pathlib.Path(keras_internals.__file__).parent


def test_every_private_name_exists_in_the_installed_keras():
    keras_internals.check()


def test_a_removed_name_fails_with_a_message_naming_it_and_its_use(monkeypatch):
    private = dict(keras_internals.PRIVATE)
    private[("keras.Model", "_removed_in_a_future_keras")] = "what it was used for"
    monkeypatch.setattr(keras_internals, "PRIVATE", private)
    with pytest.raises(ImportError, match=r"keras\.Model\._removed_in_a_future_keras "
                                          r"\(what it was used for\)"):
        keras_internals.check()


def test_only_keras_internals_imports_private_keras_modules():
    sources = list(PACKAGE.glob("*.py")) + [PACKAGE.parent / "callbacks" / "memory_optimizer.py"]
    offenders = [p.name for p in sources
                 if p.name != "keras_internals.py" and "keras.src" in p.read_text()]
    assert offenders == []
