"""The pure-Keras parts on whatever Keras backend runs: SDProp, Proxtone, StableGRU.

`make test` runs this folder on every backend: in .venv (TensorFlow) with the rest of the
suite, then without TensorFlow (scripts/test_backends.sh) in .venv-jax (JAX, with the newest
and the oldest Keras we claim) and .venv-torch (PyTorch, CPU build). References: the NumPy SDProp rule and
NumPy's SVD; a `.keras` file saved on the TensorFlow backend (tests/backends/data).
"""

import json
import os
import subprocess
import sys
import textwrap
import zipfile

import keras
import numpy as np
import pytest

from keras_dlu.layers import StableGRU
from keras_dlu.layers import stable_gru as stable_gru_module
from keras_dlu.optimizers import Proxtone, SDProp
from tests.layers.test_stable_gru import numpy_clip, spectral_norm
from tests.optimizers.test_sdprop import sdprop_reference

BACKEND = keras.backend.backend()
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
TF_SAVED_MODEL = os.path.join(DATA, "stable_gru_sdprop_tensorflow.keras")
BOUND = 1.8


@pytest.fixture(autouse=True)
def _seeded():
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)


# what an environment without TensorFlow looks like to `import tensorflow`
NO_TENSORFLOW = 'import sys\nsys.modules["tensorflow"] = None\n'


def _python(code, backend=None, without_tensorflow=False):
    """Runs ``code`` in a fresh interpreter; TensorFlow made unimportable when asked."""
    env = dict(os.environ, KERAS_BACKEND=backend or BACKEND, TF_CPP_MIN_LOG_LEVEL="2")
    code = (NO_TENSORFLOW if without_tensorflow else "") + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", code], env=env,
                          capture_output=True, text=True, timeout=120)


# --- lazy imports -------------------------------------------------------------------

def test_import_keras_dlu_imports_neither_keras_nor_tensorflow():
    done = _python("""
        import sys
        import keras_dlu
        keras_dlu.__version__, keras_dlu.__all__, dir(keras_dlu)
        print(sorted(m for m in ("keras", "tensorflow", "jax", "torch") if m in sys.modules))
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]"]


# Keras on TensorFlow cannot import without TensorFlow (and Keras' numpy backend needs
# JAX), so cases that import Keras run in .venv-jax only; the rest run in both.
needs_other_backend = pytest.mark.skipif(
    BACKEND == "tensorflow", reason="needs a Keras backend other than TensorFlow: runs in "
    ".venv-jax (scripts/test_backends.sh, part of `make test`)")


@needs_other_backend
def test_pure_keras_parts_import_and_build_without_tensorflow():
    backend = BACKEND
    done = _python("""
        import keras, keras_dlu
        from keras_dlu.optimizers import Proxtone, SDProp
        from keras_dlu.layers import StableGRU
        layer = StableGRU(4)
        layer.build((2, 3, 5))
        print(keras.backend.backend(), keras_dlu.layers.StableGRU is StableGRU,
              keras.saving.get_registered_name(SDProp), keras.saving.get_registered_name(Proxtone),
              keras.saving.get_registered_name(StableGRU))
    """, backend=backend, without_tensorflow=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [backend, "True", "keras_dlu>SDProp", "keras_dlu>Proxtone",
                                   "keras_dlu>StableGRU"]


TENSORFLOW_ONLY = ["keras_dlu.ops", "keras_dlu.quantization", "keras_dlu.distributed",
                   "keras_dlu.memory", "keras_dlu.callbacks.MemoryOptimizer",
                   "keras_dlu.callbacks.FixedPointMonitor",
                   pytest.param("keras_dlu.layers.DLUDense", marks=needs_other_backend),
                   pytest.param("keras_dlu.layers.DLUConv2D", marks=needs_other_backend)]


@pytest.mark.parametrize("part", TENSORFLOW_ONLY)
def test_tensorflow_only_parts_raise_an_import_error_naming_the_part(part):
    backend = BACKEND
    done = _python(f"""
        import importlib
        import keras_dlu
        package, _, name = "{part}".rpartition(".")
        try:
            if name[0].isupper():
                getattr(importlib.import_module(package), name)
            else:
                importlib.import_module("{part}")
        except ImportError as error:
            print("ImportError:", error)
    """, backend=backend, without_tensorflow=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"ImportError: {part}") and "needs TensorFlow" in done.stdout, (
        done.stdout)


# --- SDProp and Proxtone ------------------------------------------------------------

def test_sdprop_matches_the_numpy_reference_on_this_backend():
    rng = np.random.default_rng(1)
    theta0 = rng.normal(size=(6, 4)).astype("float32")
    grads = rng.normal(size=(25, 6, 4)).astype("float32")
    variable = keras.Variable(theta0)
    optimizer = SDProp(learning_rate=0.01, gamma=0.9, momentum=0.5)
    for g in grads:
        optimizer.apply([keras.ops.convert_to_tensor(g)], [variable])
    expected = sdprop_reference(theta0, grads, lr=0.01, gamma=0.9, momentum=0.5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), expected, rtol=1e-4,
                               atol=1e-5)


def _regression(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(128, 8)).astype("float32")
    w = rng.normal(size=(8, 1)).astype("float32")
    return x, x @ w + 0.01 * rng.normal(size=(128, 1)).astype("float32")


def _fit_round_trip(optimizer, tmp_path):
    x, y = _regression()
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="tanh"),
                              keras.layers.Dense(1)])
    model.compile(optimizer, "mse")
    first = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=32, epochs=15, verbose=0, shuffle=False)
    trained = model.evaluate(x, y, verbose=0)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.optimizer) is type(optimizer)
    for a, b in zip(loaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    # both go on identically from the saved state
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
    loaded.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)
    return first, trained


def test_sdprop_trains_and_round_trips_on_this_backend(tmp_path):
    first, trained = _fit_round_trip(SDProp(learning_rate=0.01), tmp_path)
    assert trained < 0.1 * first


def test_proxtone_trains_and_round_trips_on_this_backend(tmp_path):
    first, trained = _fit_round_trip(Proxtone(l1=1e-4), tmp_path)
    assert trained < 0.1 * first


# --- StableGRU ----------------------------------------------------------------------

@pytest.mark.parametrize("projection", ["exact", "power"])
def test_stable_gru_projection_matches_numpy_on_this_backend(projection):
    units = 24
    rng = np.random.default_rng(3)
    layer = StableGRU(units, projection=projection)
    layer.build((4, 5, 3))
    kernel = (rng.normal(size=(units, 3 * units)) * 2.0 / np.sqrt(units)).astype("float32")
    assert spectral_norm(kernel[:, 2 * units:]) > 1.5 * BOUND
    constraint = layer.cell.recurrent_kernel.constraint
    projected = kernel
    for _ in range(3 if projection == "power" else 1):  # the power path warms up
        projected = keras.ops.convert_to_numpy(constraint(keras.ops.convert_to_tensor(kernel)))
    np.testing.assert_array_equal(projected[:, : 2 * units], kernel[:, : 2 * units])
    limit = BOUND * (1 + (stable_gru_module.POWER_TOLERANCE if projection == "power" else 1e-5))
    assert spectral_norm(projected[:, 2 * units:]) <= limit
    np.testing.assert_allclose(projected[:, 2 * units:], numpy_clip(kernel[:, 2 * units:], BOUND),
                               atol=2e-3 if projection == "power" else 2e-4)


def _sequences(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(32, 12, 3)).astype("float32")
    return x, np.cumsum(x[..., :1], axis=1)[:, -1] / 4


def test_stable_gru_trains_with_sdprop_and_round_trips_on_this_backend(tmp_path):
    x, y = _sequences()
    layer = StableGRU(16, projection="power")
    model = keras.Sequential([keras.Input((12, 3)), layer, keras.layers.Dense(1)])
    model.compile(SDProp(learning_rate=0.02), "mse")
    first = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=8, epochs=8, verbose=0, shuffle=False)
    assert model.evaluate(x, y, verbose=0) < 0.5 * first
    candidate = keras.ops.convert_to_numpy(layer.cell.recurrent_kernel)[:, 32:]
    assert spectral_norm(candidate) <= BOUND * (1 + stable_gru_module.POWER_TOLERANCE)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded.layers[0]._spectral_projection.basis),
        keras.ops.convert_to_numpy(layer._spectral_projection.basis))


def _saved_with_keras():
    with zipfile.ZipFile(TF_SAVED_MODEL) as archive:
        return json.loads(archive.read("metadata.json"))["keras_version"]


def _older_keras():
    version = [int(part) for part in keras.__version__.split(".")[:2]]
    return version < [int(part) for part in _saved_with_keras().split(".")[:2]]


@pytest.mark.skipif(_older_keras(), reason="Keras cannot read files written by a newer "
                    "Keras minor (its initializers gained arguments); not a keras-dlu limit")
def test_a_model_saved_on_tensorflow_loads_here():
    """keras_dlu>StableGRU and keras_dlu>SDProp in a file written on the TF backend."""
    expected = np.load(os.path.join(DATA, "stable_gru_sdprop_tensorflow.npz"))
    loaded = keras.models.load_model(TF_SAVED_MODEL)
    assert isinstance(loaded.layers[0], StableGRU) and isinstance(loaded.optimizer, SDProp)
    assert loaded.layers[0].spectral_bound == 1.5 and loaded.optimizer.gamma == 0.95
    np.testing.assert_allclose(loaded.predict(expected["x"], verbose=0), expected["y"],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded.layers[0]._spectral_projection.basis),
        expected["basis"])
