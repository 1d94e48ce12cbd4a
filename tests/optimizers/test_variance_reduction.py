"""Proxtone's variance-reduced gradient and same-batch pair formulas against NumPy."""

import numpy as np

from keras_dlu.optimizers import _variance_reduction as vr


def _lists(rng, count, shapes=((3, 2), (4,))):
    return [[rng.normal(size=s).astype(np.float32) for s in shapes] for _ in range(count)]


def test_direction_is_svrg_with_the_running_mean_of_the_snapshot_gradients():
    rng = np.random.default_rng(0)
    hs = _lists(rng, 4)  # g_B(w_snap) of four batches
    sums, count = [np.zeros_like(t) for t in hs[0]], 0.0
    for h in hs:
        sums, count = vr.accumulate(sums, h, count, 1.0)
    g = _lists(rng, 1)[0]
    v = vr.direction(g, hs[-1], sums, count)
    for i, part in enumerate(v):
        mean = np.mean([h[i] for h in hs], axis=0)
        np.testing.assert_allclose(np.asarray(part), g[i] - hs[-1][i] + mean, rtol=1e-5,
                                   atol=1e-6)
    assert float(count) == 4.0


def test_a_skipped_step_adds_nothing_and_the_first_step_is_the_batch_gradient():
    rng = np.random.default_rng(1)
    h, g = _lists(rng, 2)
    zeros = [np.zeros_like(t) for t in h]
    sums, count = vr.accumulate(zeros, h, 0.0, 0.0)
    assert float(count) == 0.0
    for total in sums:
        np.testing.assert_array_equal(np.asarray(total), 0.0)
    sums, count = vr.accumulate(zeros, h, 0.0, 1.0)
    for part, expected in zip(vr.direction(g, h, sums, count), g):
        np.testing.assert_allclose(np.asarray(part), expected, rtol=1e-6, atol=1e-6)


def test_curvature_pair_is_the_same_batch_difference():
    rng = np.random.default_rng(2)
    x, w, g, h = _lists(rng, 4)
    s, y = vr.curvature_pair(x, g, w, h)
    for i in range(2):
        np.testing.assert_allclose(np.asarray(s[i]), x[i] - w[i], rtol=1e-6)
        np.testing.assert_allclose(np.asarray(y[i]), g[i] - h[i], rtol=1e-6)
