"""Shared fixtures and markers of the keras-dlu test suite.

* ``multiprocess`` tests launch ``horovodrun`` (``tests.support.horovod.run_horovod``, always
  with a timeout); ``gpu`` tests are skipped without a CUDA GPU, and their ``cuda_ops``
  fixture skips a CPU-only native library, except in CI on a machine with a GPU and nvcc,
  where that is a failure.
* Outside CI a missing Horovod or native library skips the tests that need it; with
  ``CI=true`` it is a failure, so CI can never pass by skipping them.
"""

import os

from keras_dlu.utils import quiet_tensorflow

# The memory tests read TensorFlow's allocator statistics, which TensorFlow keeps only in
# its oneDNN mode: on by default on CPUs with AVX-512 VNNI, turned on here for the others
# (keras_dlu.memory.allocator), so the suite runs the same mode on every x86 CPU.
tf = quiet_tensorflow(allocator_stats=True)

import pytest  # noqa: E402

from tests.support import environment  # noqa: E402


def pytest_collection_modifyitems(config, items):
    has_gpu = environment.gpu_available()
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(pytest.mark.skip(reason="no CUDA GPU on this machine"))


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Each test starts from Keras' default state: fresh names, float32 policy, seed 0."""
    import keras

    keras.backend.clear_session()
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(0)
    yield


@pytest.fixture
def native_ops():
    """The loaded native op library (skips, or fails in CI, when it is not built)."""
    return environment.require_native_library()


@pytest.fixture
def cuda_ops():
    """The native library built with CUDA; skips without it (fails in CI on a GPU + nvcc)."""
    return environment.require_cuda_library()


@pytest.fixture
def horovod():
    """``horovod.tensorflow``; skips, or fails in CI, when Horovod is not installed."""
    return environment.require_horovod()


@pytest.fixture
def tmp_reports(tmp_path, monkeypatch):
    """Points ``KERAS_DLU_REPORTS`` at a temporary folder for code that writes plots."""
    monkeypatch.setenv("KERAS_DLU_REPORTS", str(tmp_path))
    return tmp_path


def pytest_report_header(config):
    return f"keras-dlu tests: CI={os.environ.get('CI', 'false')}, GPU={environment.gpu_available()}"
