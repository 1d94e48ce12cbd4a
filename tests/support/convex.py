"""The convex reference problem of Proxtone: L1-regularized softmax regression on digits.

``fista`` is an independent solver (accelerated proximal gradient, Beck and Teboulle 2009)
in float64 NumPy; the tests and ``benchmarks/optimizers.py`` measure Proxtone's objective
gap against its optimum.
"""

import keras
import numpy as np

CLASSES = 10


def softmax_regression(optimizer):
    """The Keras model of the problem: 64 digit pixels -> 10 logits, no bias, zero start."""
    model = keras.Sequential([keras.Input((64,)),
                              keras.layers.Dense(CLASSES, use_bias=False,
                                                 kernel_initializer="zeros")])
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def objective(w, x, y, l1):
    """``mean cross-entropy(softmax(x @ w), y) + l1 * |w|_1`` in float64."""
    z = np.asarray(x, np.float64) @ np.asarray(w, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_sum = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(log_sum - z[np.arange(len(y)), y]) + l1 * np.abs(w).sum())


def fista(x, y, l1, iterations=3000):
    """The minimiser of ``objective`` by FISTA with the exact Lipschitz constant."""
    x = np.asarray(x, np.float64)
    n, features = x.shape
    onehot = np.eye(CLASSES)[y]
    lipschitz = 0.5 * np.linalg.eigvalsh(x.T @ x / n).max()
    w = np.zeros((features, CLASSES))
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
