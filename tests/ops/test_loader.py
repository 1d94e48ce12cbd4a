"""The loader says what the library was built for, what is running and how to rebuild."""

import json

import pytest
import tensorflow as tf

from keras_dlu.ops import loader


@pytest.fixture
def fake_library(tmp_path, monkeypatch):
    library = tmp_path / "_dlu_ops.so"
    info = tmp_path / "_build_info.json"
    monkeypatch.setattr(loader, "LIBRARY_PATH", str(library))
    monkeypatch.setattr(loader, "BUILD_INFO_PATH", str(info))
    loader.load_library.cache_clear()
    yield library, info
    loader.load_library.cache_clear()


def test_missing_library_says_how_to_rebuild(fake_library):
    with pytest.raises(loader.NativeLibraryError, match=r"missing.*make build"):
        loader.load_library()


def test_library_built_for_another_tensorflow(fake_library):
    library, info = fake_library
    library.write_bytes(b"")
    info.write_text(json.dumps({"tensorflow": "2.99.0", "cuda": False}))
    with pytest.raises(loader.NativeLibraryError) as error:
        loader.load_library()
    message = str(error.value)
    assert "built for TensorFlow 2.99.0" in message
    assert f"TensorFlow {tf.__version__} is running" in message
    assert "make build" in message


def test_real_library_loads_once(native_ops):
    assert loader.load_library() is native_ops
    assert hasattr(native_ops, "keras_dlu_exponent_histogram")
    assert loader.build_info()["tensorflow"] == tf.__version__
