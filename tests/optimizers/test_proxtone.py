"""Proxtone: the subspace solve against explicit BFGS, L1 softmax regression against FISTA."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_dlu.datasets import digits
from keras_dlu.optimizers import Proxtone
from keras_dlu.optimizers._subspace import subspace_direction


def explicit_bfgs(pairs, sigma, n):
    """B from sigma*I by the BFGS recursion, pair by pair in chronological order."""
    b = sigma * np.eye(n)
    for s, y in pairs:
        bs = b @ s
        b = b - np.outer(bs, bs) / (s @ bs) + np.outer(y, y) / (y @ s)
    return b


@pytest.mark.parametrize("filled", [0, 2, 5])
def test_subspace_solve_equals_explicit_newton_step_on_a_quadratic(filled):
    rng = np.random.default_rng(filled)
    n, m = 12, 5
    a = rng.normal(size=(n, n))
    hessian = a @ a.T + 0.5 * np.eye(n)
    s_list = [rng.normal(size=n) for _ in range(filled)]
    pairs = [(s, hessian @ s) for s in s_list]
    slots = rng.permutation(m)[:filled] if filled else []  # ring-buffer slots, any order
    s_mem, y_mem, stamps = np.zeros((m, n)), np.zeros((m, n)), -np.ones(m)
    for age, ((s, y), slot) in enumerate(zip(pairs, slots)):
        s_mem[slot], y_mem[slot], stamps[slot] = s, y, age
    v = np.concatenate([s_mem, y_mem])
    p = rng.normal(size=n)
    sigma = 1.7
    a_s, a_y, a_p = subspace_direction(v @ v.T, s_mem @ p, y_mem @ p, p @ p, stamps, sigma, 1e-12)
    d = np.asarray(a_s) @ s_mem + np.asarray(a_y) @ y_mem + float(a_p) * p
    expected = -np.linalg.solve(explicit_bfgs(pairs, sigma, n), p)
    np.testing.assert_allclose(d, expected, rtol=1e-6, atol=1e-8)


def objective(w, x, y, l1):
    z = x @ w
    z = z - z.max(axis=1, keepdims=True)
    log_sum = np.log(np.exp(z).sum(axis=1))
    return np.mean(log_sum - z[np.arange(len(y)), y]) + l1 * np.abs(w).sum()


def fista(x, y, l1, iterations=1000):
    """Independent solver: accelerated proximal gradient (Beck and Teboulle) in float64."""
    x = x.astype(np.float64)
    n, features = x.shape
    onehot = np.eye(10)[y]
    lipschitz = 0.5 * np.linalg.eigvalsh(x.T @ x / n).max()
    w = np.zeros((features, 10))
    v, t = w.copy(), 1.0
    for _ in range(iterations):
        z = x @ v
        prob = np.exp(z - z.max(axis=1, keepdims=True))
        prob /= prob.sum(axis=1, keepdims=True)
        u = v - x.T @ (prob - onehot) / n / lipschitz
        w_next = np.sign(u) * np.maximum(np.abs(u) - l1 / lipschitz, 0.0)
        t_next = (1 + np.sqrt(1 + 4 * t * t)) / 2
        v = w_next + (t - 1) / t_next * (w_next - w)
        w, t = w_next, t_next
    return w


L1 = 1e-2


@pytest.fixture(scope="module")
def digits_optimum():
    x, y = digits()
    w = fista(x, y, L1)
    return x, y, objective(w, x.astype(np.float64), y, L1), np.mean(w == 0)


def _softmax_regression(optimizer):
    model = keras.Sequential([keras.Input((64,)),
                              keras.layers.Dense(10, use_bias=False, kernel_initializer="zeros")])
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


@pytest.mark.slow
def test_full_batch_reaches_the_l1_optimum(digits_optimum):
    x, y, best, best_zeros = digits_optimum
    model = _softmax_regression(Proxtone(l1=L1))
    data = tf.data.Dataset.from_tensors((x, y)).repeat(120)
    model.fit(data, epochs=1, verbose=0, shuffle=False)
    w = model.get_weights()[0]
    assert objective(w, x.astype(np.float64), y, L1) <= 1.01 * best
    assert np.mean(w == 0) > 0.5 and best_zeros > 0.5


@pytest.mark.slow
def test_mini_batches_with_proxtone_plus_reach_the_l1_optimum(digits_optimum):
    x, y, best, _ = digits_optimum
    steps = 30 * int(np.ceil(len(x) / 256))
    schedule = keras.optimizers.schedules.CosineDecay(1.0, steps)
    model = _softmax_regression(Proxtone(schedule, l1=L1, first_order_after=steps // 2))
    model.fit(x, y, batch_size=256, epochs=30, verbose=0)
    w = model.get_weights()[0]
    assert objective(w, x.astype(np.float64), y, L1) <= 1.01 * best
    assert np.mean(w == 0) > 0.5


def test_without_curvature_pairs_it_is_proximal_sgd():
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(6, 3)).astype(np.float32)
    g = rng.normal(size=(6, 3)).astype(np.float32)
    variable = keras.Variable(w0)
    Proxtone(0.5, l1=0.3, initial_curvature=4.0).apply([tf.constant(g)], [variable])
    t = 0.5 / 4.0
    u = w0 - t * g
    np.testing.assert_allclose(variable.numpy(),
                               np.sign(u) * np.maximum(np.abs(u) - t * 0.3, 0), rtol=1e-6)


def test_non_finite_gradients_never_enter_the_memory():
    variable = keras.Variable(np.ones((4,), np.float32))
    optimizer = Proxtone(0.1, memory=3)
    optimizer.apply([tf.constant([1.0, 2.0, 3.0, 4.0])], [variable])
    before = [v.numpy().copy() for v in optimizer.variables]
    value = variable.numpy().copy()
    optimizer.apply([tf.constant([1.0, np.nan, 3.0, 4.0])], [variable])
    np.testing.assert_array_equal(variable.numpy(), value)
    for old, new in zip(before[1:], optimizer.variables[1:]):  # all but the iteration count
        np.testing.assert_array_equal(old, new.numpy())


@pytest.mark.parametrize("options", [{"l1": 1e-3}, {"l1": 1e-3, "first_order_after": 9}])
def test_save_and_load_resume_identically(tmp_path, options):
    x, y = digits()
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(10)])
    model.compile(optimizer=Proxtone(memory=4, **options),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[:512], y[:512], batch_size=64, epochs=1, verbose=0, shuffle=False)
    assert float(model.optimizer._pairs_seen.numpy()) >= 1
    model.save(tmp_path / "m.keras")
    restored = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(restored.optimizer, Proxtone)
    assert restored.optimizer.get_config() == model.optimizer.get_config()
    for a, b in zip(model.optimizer.variables, restored.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    model.fit(x[:512], y[:512], batch_size=64, epochs=2, verbose=0, shuffle=False)
    restored.fit(x[:512], y[:512], batch_size=64, epochs=2, verbose=0, shuffle=False)
    for a, b in zip(model.get_weights(), restored.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_steps_stay_inside_the_trust_region_from_the_first_step():
    """A nearly flat quadratic (curvature 1e-3) asks for steps ~1e4 times the first one:
    each step may at most double and never exceed max_radius times the first step."""
    rng = np.random.default_rng(0)
    target = rng.normal(size=(20,)).astype(np.float32) * 1e3
    variable = keras.Variable(np.zeros((20,), np.float32))
    optimizer = Proxtone(radius_growth=2.0, max_radius=10.0)
    lengths = []
    for _ in range(12):
        before = variable.numpy().copy()
        optimizer.apply([tf.constant(1e-3 * (before - target))], [variable])
        lengths.append(float(np.linalg.norm(variable.numpy() - before)))
    ratios = np.array(lengths) / lengths[0]
    assert np.all(ratios[1:] <= 2.0 ** np.arange(1, 12) * (1 + 1e-4))
    assert ratios.max() <= 10.0 * (1 + 1e-4)
    assert ratios.max() >= 9.0  # the radius did grow to its cap (the test can fail both ways)


def test_declares_that_it_needs_every_gradient_at_once():
    assert Proxtone.requires_all_gradients is True
    assert getattr(keras.optimizers.Adam, "requires_all_gradients", False) is False


@pytest.mark.parametrize("kwargs, name", [
    ({"learning_rate": 0.0}, "learning_rate"), ({"l1": -1e-5}, "l1"), ({"memory": 0}, "memory"),
    ({"memory": 2.5}, "memory"), ({"damping": 0.0}, "damping"),
    ({"initial_curvature": -1.0}, "initial_curvature"),
    ({"first_order_after": -1}, "first_order_after"), ({"min_pair_cosine": 1.0}, "min_pair_cosine"),
    ({"radius_growth": 0.5}, "radius_growth"), ({"max_radius": float("nan")}, "max_radius"),
])
def test_bad_hyperparameters_raise_in_constructor(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        Proxtone(**kwargs)


@pytest.mark.parametrize("poison", [np.nan, np.inf])
def test_a_failed_small_solve_falls_back_to_the_proximal_sgd_step(poison):
    """A degenerate (non-finite or overflowing) memory must give -p/sigma, never a crash."""
    m = 3
    gram = np.full((2 * m, 2 * m), poison)
    dots = np.full((m,), poison)
    a_s, a_y, a_p = subspace_direction(gram, dots, dots, 4.0, np.arange(m, dtype=float),
                                       2.0, 0.5)
    np.testing.assert_array_equal(np.asarray(a_s), 0.0)
    np.testing.assert_array_equal(np.asarray(a_y), 0.0)
    assert float(a_p) == pytest.approx(-0.5)


def test_repeated_pairs_give_a_finite_step_without_raising():
    """A singular BFGS middle matrix (the same pair stored twice) must not raise."""
    m, n = 3, 5
    s_mem = np.zeros((m, n))
    s_mem[:2] = [1.0, 2.0, 0.0, 0.0, 1.0]
    y_mem = 2.0 * s_mem
    v = np.concatenate([s_mem, y_mem])
    p = np.arange(1.0, n + 1)
    a_s, a_y, a_p = subspace_direction(v @ v.T, s_mem @ p, y_mem @ p, p @ p,
                                       np.array([0.0, 1.0, -1.0]), 2.0, 1e-3)
    assert np.all(np.isfinite(np.concatenate([a_s, a_y, [a_p]])))


def test_a_poisoned_memory_never_writes_non_finite_weights():
    x, y = digits()
    model = _softmax_regression(Proxtone(memory=3))
    model.fit(x[:256], y[:256], batch_size=64, epochs=1, verbose=0, shuffle=False)
    optimizer = model.optimizer
    optimizer._gram.assign(np.full((6, 6), np.inf, np.float32))
    before = model.get_weights()[0]
    model.fit(x[:128], y[:128], batch_size=64, epochs=1, verbose=0, shuffle=False)
    after = model.get_weights()[0]
    assert np.all(np.isfinite(after)) and not np.array_equal(before, after)


@pytest.mark.slow
def test_defaults_train_the_mnist_mlp_without_tuning():
    """Regression: with damping 0.01 this diverged (NaN) within ~10 steps."""
    from keras_dlu.datasets import mnist_samples

    (x, y), (x_test, y_test) = mnist_samples(1000, 500)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((784,))]
                             + [keras.layers.Dense(u, activation="relu") for u in (256, 128, 64)]
                             + [keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=Proxtone(), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, y, batch_size=64, epochs=2, verbose=0).history
    loss = history["loss"]
    assert np.all(np.isfinite(loss)) and loss[-1] < loss[0]
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())
    assert model.evaluate(x_test, y_test, verbose=0)[1] > 0.6  # chance is 0.1
