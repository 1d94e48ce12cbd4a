"""StableGRU: stock `keras.layers.GRU` and a NumPy SVD projection are the references."""

import numpy as np
import pytest

import keras

from keras_dlu.layers import StableGRU
from keras_dlu.layers import stable_gru as stable_gru_module

BOUND = 1.8
# the documented bound of the "power" path: norm <= (1 + POWER_TOLERANCE) * bound
POWER_LIMIT = BOUND * (1 + stable_gru_module.POWER_TOLERANCE)


def numpy_clip(matrix, bound):
    """Reference projection: singular values above ``bound`` set to it (float64 SVD)."""
    u, s, vh = np.linalg.svd(np.asarray(matrix, np.float64))
    return (u * np.minimum(s, bound)) @ vh


def spectral_norm(matrix):
    return np.linalg.norm(np.asarray(matrix, np.float64), 2)


def blocks(layer):
    w = keras.ops.convert_to_numpy(layer.cell.recurrent_kernel)
    return w[:, : 2 * layer.units], w[:, 2 * layer.units:]


# --- bad input ------------------------------------------------------------------------

@pytest.mark.parametrize("bound", [0, 0.0, 2, 2.0, -1.0, 3.5, True, "1.8", None])
def test_spectral_bound_outside_open_interval_raises(bound):
    with pytest.raises(ValueError, match="spectral_bound"):
        StableGRU(4, spectral_bound=bound)


@pytest.mark.parametrize("projection", ["svd", "Exact", None, 1])
def test_unknown_projection_raises(projection):
    with pytest.raises(ValueError, match="projection"):
        StableGRU(4, projection=projection)


# --- same outputs as GRU inside the bound --------------------------------------------

CASES = [
    dict(),
    dict(return_sequences=True),
    dict(return_state=True, go_backwards=True),
    dict(return_sequences=True, activation="relu", use_bias=False),
    dict(stateful=True, return_sequences=True),
    dict(masking=True, return_sequences=True),
    dict(bidirectional=True),
]


def _build(layer_cls, case, reset_after, **extra):
    case = dict(case)
    masking = case.pop("masking", False)
    bidirectional = case.pop("bidirectional", False)
    inputs = keras.Input(batch_shape=(4, 7, 3))
    x = keras.layers.Masking(0.0)(inputs) if masking else inputs
    layer = layer_cls(6, reset_after=reset_after, **case, **extra)
    outputs = keras.layers.Bidirectional(layer)(x) if bidirectional else layer(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(c) or "default")
def test_outputs_equal_gru_with_the_same_weights(case, reset_after):
    x = np.random.default_rng(1).normal(size=(4, 7, 3)).astype("float32")
    x[1, 4:] = 0.0  # padding that the masking case skips
    gru = _build(keras.layers.GRU, case, reset_after)
    stable = _build(StableGRU, case, reset_after, spectral_bound=BOUND)
    weights = gru.get_weights()
    weights = [w + np.random.default_rng(2).normal(0, 0.1, w.shape).astype("float32")
               for w in weights]  # non-trivial biases too
    gru.set_weights(weights)
    stable.set_weights(weights)
    for expected, got in zip(keras.tree.flatten(gru(x)), keras.tree.flatten(stable(x))):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(got),
                                   keras.ops.convert_to_numpy(expected), rtol=1e-6, atol=1e-6)


def test_cudnn_path_is_attempted_exactly_as_for_gru(monkeypatch):
    """Forward is GRU's: same `backend.gru` (cuDNN) call, same jit support decision."""
    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs["recurrent_kernel"])
        raise NotImplementedError  # what the TF backend does without a GPU

    monkeypatch.setattr(keras.src.backend, "gru", spy)
    x = np.ones((2, 5, 3), "float32")
    stable, gru = StableGRU(4), keras.layers.GRU(4)
    stable(x), gru(x)
    assert len(calls) == 2 and calls[0] is stable.cell.recurrent_kernel
    assert stable.supports_jit == gru.supports_jit
    assert len(stable.weights) == len(gru.weights) == 3


# --- projection after every optimizer update ------------------------------------------

def _exploding_problem(units, seed, spread=1.25):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(16, 10, 4)).astype("float32")
    y = rng.normal(size=(16, units)).astype("float32") * 3.0
    # spectrum up to ~2 * spread: a few candidate singular values start above the bound
    init = keras.initializers.RandomNormal(stddev=spread / np.sqrt(units), seed=seed)
    return x, y, init


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("projection", ["exact", "power"])
def test_every_sgd_step_matches_the_numpy_projection(projection, reset_after):
    units, lr, steps = 32, 2.0, 12
    x, y, init = _exploding_problem(units, seed=3)
    layer = StableGRU(units, projection=projection, reset_after=reset_after,
                      recurrent_initializer=init)
    model = keras.Sequential([keras.Input((10, 4)), layer])
    optimizer = keras.optimizers.SGD(lr)
    optimizer.build(model.trainable_variables)
    import tensorflow as tf

    rk_index = [v.path for v in model.trainable_variables].index(layer.cell.recurrent_kernel.path)
    worst, largest_before = 0.0, 0.0
    for step in range(steps):
        with tf.GradientTape() as tape:
            loss = keras.ops.mean((model(x) - y) ** 2)
        grads = tape.gradient(loss, model.trainable_variables)
        before = keras.ops.convert_to_numpy(layer.cell.recurrent_kernel)
        unconstrained = before - lr * keras.ops.convert_to_numpy(grads[rk_index])
        optimizer.apply(grads, model.trainable_variables)
        gates, candidate = blocks(layer)
        largest_before = max(largest_before, spectral_norm(unconstrained[:, 2 * units:]))
        # update and reset gate blocks: plain SGD, not clipped
        np.testing.assert_allclose(gates, unconstrained[:, : 2 * units], rtol=1e-5, atol=1e-5)
        reference = numpy_clip(unconstrained[:, 2 * units:], BOUND)
        norm = spectral_norm(candidate)
        if projection == "exact":
            np.testing.assert_allclose(candidate, reference, atol=2e-4)
            assert norm <= BOUND * (1 + 1e-5), (step, norm)
        else:
            assert norm <= POWER_LIMIT, (step, norm)
            worst = max(worst, np.abs(candidate - reference).max())
    assert largest_before > 1.2 * BOUND  # the updates really pushed the block past the bound
    if projection == "power":
        assert worst < 0.05
        # the fast path did the work on most steps (the SVD is only a fallback)
        assert layer.exact_fallback_steps < steps / 2


def test_user_recurrent_constraint_is_applied_before_the_projection():
    units, lr = 8, 5.0
    x, y, init = _exploding_problem(units, seed=4, spread=2.0)
    layer = StableGRU(units, recurrent_constraint="non_neg", recurrent_initializer=init)
    model = keras.Sequential([keras.Input((10, 4)), layer])
    before = keras.ops.convert_to_numpy(layer.cell.recurrent_kernel)
    optimizer = keras.optimizers.SGD(lr)
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = keras.ops.mean((model(x) - y) ** 2)
    grads = tape.gradient(loss, [layer.cell.recurrent_kernel])
    optimizer.apply(grads, [layer.cell.recurrent_kernel])
    expected = np.maximum(before - lr * keras.ops.convert_to_numpy(grads[0]), 0.0)
    gates, candidate = blocks(layer)
    np.testing.assert_allclose(gates, expected[:, : 2 * units], atol=1e-5)
    np.testing.assert_allclose(candidate, numpy_clip(expected[:, 2 * units:], BOUND), atol=1e-4)
    assert spectral_norm(expected[:, 2 * units:]) > BOUND
    assert isinstance(layer.recurrent_constraint, keras.constraints.NonNeg)


@pytest.mark.slow
def test_fit_with_jit_compile_keeps_the_bound():
    """XLA-compiled fit of the power path (its cond, SVD fallback and warm-start update)."""
    units = 24
    x, y, init = _exploding_problem(units, seed=5, spread=1.6)
    layer = StableGRU(units, projection="power", recurrent_initializer=init)
    model = keras.Sequential([keras.Input((10, 4)), layer])
    model.compile(keras.optimizers.SGD(1.0), "mse", jit_compile=True)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert spectral_norm(blocks(layer)[1]) <= POWER_LIMIT


def test_bidirectional_fit_keeps_both_directions_bounded():
    units = 12
    x, y, init = _exploding_problem(units, seed=5, spread=1.6)
    model = keras.Sequential([
        keras.Input((10, 4)),
        keras.layers.Bidirectional(StableGRU(units, recurrent_initializer=init), merge_mode="sum"),
    ])
    model.compile(keras.optimizers.SGD(1.0), "mse")
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    for layer in (model.layers[0].forward_layer, model.layers[0].backward_layer):
        assert isinstance(layer, StableGRU)
        assert spectral_norm(blocks(layer)[1]) <= BOUND * (1 + 1e-5)


def test_mixed_precision_training_stays_bounded():
    keras.config.set_dtype_policy("mixed_float16")
    units = 16
    x, y, init = _exploding_problem(units, seed=6, spread=1.6)
    layer = StableGRU(units, recurrent_initializer=init)
    model = keras.Sequential([keras.Input((10, 4)), layer])
    model.compile(keras.optimizers.SGD(1.0), "mse")
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert layer.cell.recurrent_kernel.dtype == "float32"
    assert keras.backend.standardize_dtype(model(x).dtype) == "float16"
    assert spectral_norm(blocks(layer)[1]) <= BOUND * (1 + 1e-3)


def test_save_and_load_round_trip(tmp_path):
    x, y, init = _exploding_problem(8, seed=7, spread=1.6)
    layer = StableGRU(8, spectral_bound=1.5, projection="power", reset_after=False,
                      return_sequences=True, recurrent_constraint=keras.constraints.MaxNorm(3.0),
                      recurrent_initializer=init)
    model = keras.Sequential([keras.Input((10, 4)), layer])
    model.compile(keras.optimizers.SGD(0.5), "mse")
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(x)),
                                  keras.ops.convert_to_numpy(model(x)))
    restored = loaded.layers[0]
    assert isinstance(restored, StableGRU)
    config = restored.get_config()
    assert (config["spectral_bound"], config["projection"], config["reset_after"]) == (1.5, "power", False)
    assert isinstance(restored.recurrent_constraint, keras.constraints.MaxNorm)
    # the loaded layer still projects after each update
    loaded.fit(x, np.zeros((16, 10, 8), "float32") + 3.0, epochs=1, verbose=0)
    assert spectral_norm(blocks(restored)[1]) <= 1.5 * (1 + stable_gru_module.POWER_TOLERANCE)


def test_power_path_finds_the_top_singular_values_from_a_cold_start():
    """The fast routine alone, against NumPy's SVD, on a matrix with 5 values above 1.8."""
    rng = np.random.default_rng(8)
    u, _ = np.linalg.qr(rng.normal(size=(64, 64)))
    v, _ = np.linalg.qr(rng.normal(size=(64, 64)))
    s = np.concatenate([[3.0, 2.6, 2.2, 2.0, 1.9], np.linspace(1.5, 0.1, 59)])
    matrix = ((u * s) @ v.T).astype("float32")
    basis = keras.initializers.Orthogonal(seed=0)((64, 16))
    for _ in range(3):  # warm start: reuse the basis it returns
        projected, basis, trusted = stable_gru_module.clip_top_singular_values(
            matrix, basis, BOUND)
    got = np.linalg.svd(keras.ops.convert_to_numpy(projected), compute_uv=False)
    assert bool(trusted)
    np.testing.assert_allclose(got[:6], [1.8] * 5 + [1.5], rtol=1e-3)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(projected), numpy_clip(matrix, BOUND),
                               atol=1e-3)


def _sgd_steps(model, layer, x, y, lr, steps):
    """Plain SGD steps; yields the candidate block's spectral norm after each."""
    import tensorflow as tf

    optimizer = keras.optimizers.SGD(lr)
    optimizer.build(model.trainable_variables)
    for _ in range(steps):
        with tf.GradientTape() as tape:
            loss = keras.ops.mean((model(x) - y) ** 2)
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        yield spectral_norm(blocks(layer)[1])


@pytest.mark.parametrize("reset_after", [True, False])
def test_power_path_keeps_its_tolerance_when_many_values_exceed_the_bound(reset_after):
    """64 units, a spectrum up to ~3.2 and large steps: more directions leave the bound
    than a cold 16-dimensional subspace finds; the result must still respect the bound."""
    units = 64
    x, y, init = _exploding_problem(units, seed=1, spread=1.6)
    layer = StableGRU(units, projection="power", reset_after=reset_after,
                      recurrent_initializer=init)
    model = keras.Sequential([keras.Input((10, 4)), layer])
    norms = list(_sgd_steps(model, layer, x, y, lr=2.0, steps=12))
    assert max(norms) <= POWER_LIMIT, norms


def test_power_warm_start_basis_is_saved_and_restored(tmp_path):
    units = 24
    x, y, init = _exploding_problem(units, seed=5, spread=1.6)
    layer = StableGRU(units, projection="power", recurrent_initializer=init)
    model = keras.Sequential([keras.Input((10, 4)), layer])
    cold = keras.ops.convert_to_numpy(layer._spectral_projection.basis)  # private: the state
    list(_sgd_steps(model, layer, x, y, lr=1.0, steps=4))
    trained = keras.ops.convert_to_numpy(layer._spectral_projection.basis)
    assert np.abs(trained - cold).max() > 0.1  # training moved the basis
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    restored = loaded.layers[0]
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(restored._spectral_projection.basis), trained)
    assert restored.exact_fallback_steps == layer.exact_fallback_steps
    # the next step goes on from the saved basis exactly as the original model does
    list(_sgd_steps(model, layer, x, y, lr=1.0, steps=1))
    list(_sgd_steps(loaded, restored, x, y, lr=1.0, steps=1))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(restored._spectral_projection.basis),
        keras.ops.convert_to_numpy(layer._spectral_projection.basis), atol=1e-5)
    np.testing.assert_allclose(blocks(restored)[1], blocks(layer)[1], atol=1e-5)


def test_exact_projection_saves_no_basis(tmp_path):
    model = keras.Sequential([keras.Input((10, 4)), StableGRU(6)])
    path = str(tmp_path / "m.keras")
    model.save(path)
    restored = keras.models.load_model(path).layers[0]
    assert restored._spectral_projection.basis is None
    np.testing.assert_array_equal(restored.get_weights()[0], model.layers[0].get_weights()[0])
