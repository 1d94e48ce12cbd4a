"""Proxtone's measured curvature bound: power iteration on gradient differences, against NumPy."""

import keras
import numpy as np
import tensorflow as tf

from keras_dlu.optimizers import Proxtone
from keras_dlu.optimizers._sharpness import POWER_ITERATIONS, power_iteration


def numpy_power_iteration(hessian, start, iterations):
    """``(H^k u / |H^k u|, |H u_k|)`` with exact products, float64."""
    u = start / np.linalg.norm(start)
    for _ in range(iterations):
        hu = hessian @ u
        estimate = np.linalg.norm(hu)
        u = hu / estimate
    return u, estimate


def _quadratic(seed, n=7):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    eigenvalues = np.concatenate([[5.0, -3.0], rng.uniform(0.0, 2.0, n - 2)])  # indefinite
    return rng, (q * eigenvalues) @ q.T, rng.normal(size=n)


def test_power_iteration_equals_numpy_on_a_quadratic():
    rng, hessian, b = _quadratic(0)
    split = 3  # the weights as two tensors, as a model holds them

    def gradient_at(values):
        w = tf.concat(values, 0)
        g = tf.linalg.matvec(tf.constant(hessian, tf.float32), w) - tf.constant(b, tf.float32)
        return [g[:split], g[split:]]

    point = rng.normal(size=7).astype(np.float32)
    start = rng.normal(size=7).astype(np.float32)
    parts = lambda v: [tf.constant(v[:split]), tf.constant(v[split:])]  # noqa: E731
    for iterations in (1, 4):
        unit, estimate = power_iteration(gradient_at, parts(point),
                                         gradient_at(parts(point)), parts(start), iterations)
        expected_unit, expected = numpy_power_iteration(hessian, start, iterations)
        np.testing.assert_allclose(np.concatenate([u.numpy() for u in unit]), expected_unit,
                                   rtol=2e-3, atol=2e-3)
        np.testing.assert_allclose(float(estimate), expected, rtol=2e-3)
    assert float(estimate) <= 5.0 * (1 + 1e-3)  # never above the largest |eigenvalue|


def test_fit_measures_the_hessian_at_the_snapshot_before_moving():
    """Least squares, one batch: H = 2 X'X / n exactly. The first call's stock step does
    not move (no bound yet); the second measures L by power iteration from the initial
    direction (RandomNormal(seed=0)) and L equals the NumPy iteration on H."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(64, 6)).astype(np.float32) * np.linspace(0.5, 2.0, 6, dtype=np.float32)
    y = x @ rng.normal(size=(6, 1)).astype(np.float32)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(1, use_bias=False)])
    optimizer = Proxtone(snapshot_interval=100)
    model.compile(optimizer=optimizer, loss="mse")
    start = model.get_weights()[0].copy()
    data = tf.data.Dataset.from_tensors((x, y))
    model.fit(data, epochs=1, verbose=0)
    np.testing.assert_array_equal(model.get_weights()[0], start)  # the stock first step
    assert float(optimizer._curvature_bound.numpy()) == 0.0
    direction = keras.initializers.RandomNormal(seed=0)((6, 1)).numpy().ravel()
    model.fit(data, epochs=1, verbose=0)
    hessian = 2.0 * x.T.astype(np.float64) @ x / len(x)
    expected_unit, expected = numpy_power_iteration(hessian, direction, POWER_ITERATIONS)
    np.testing.assert_allclose(float(optimizer._curvature_bound.numpy()), expected, rtol=1e-3)
    np.testing.assert_allclose(float(optimizer._sharpest.numpy()), expected, rtol=1e-3)
    np.testing.assert_allclose(optimizer._probes[0].numpy().ravel(), expected_unit, rtol=1e-3,
                               atol=1e-3)
    assert expected <= np.linalg.eigvalsh(hessian).max() * (1 + 1e-9)
    assert not np.array_equal(model.get_weights()[0], start)  # measured, then moved
