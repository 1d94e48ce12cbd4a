"""What bounds Proxtone's steps: the diagnosis behind its missed convex targets.

Run: python benchmarks/optimizers.py --diagnose. Prints one JSON line:

* ``trace``: ``Proxtone(l1=1e-3)`` with its defaults on the digits problem of the benchmark
  (batch 128, 30 epochs, seed 0): after each epoch the gap to the FISTA optimum, the noise
  step scale ``c``, ``sigma`` (``s'y/s's`` of the newest pair), the largest stored pair
  curvature ``y'y/s'y``, the step bound ``L = max(initial_curvature, that)`` and the pairs
  accepted so far.
* ``sweep``: ``initial_curvature`` x ``noise_scale`` around the defaults: the convex gap
  after 30 epochs at both l1 values, and the test accuracy of the quick MNIST MLP
  (1,500/500 samples, 4 epochs, seed 0) with ``Proxtone()`` and ``Proxtone(l1=2e-3)``,
  beside Adam's (chance is 0.10: a diverged run).

Every run uses block-averaged pairs (``variance_reduction=False``): this is the diagnosis of
that mode, which Proxtone falls back to where its train-step hook cannot be installed.
"""

import keras
import numpy as np

from keras_dlu.datasets import digits, mnist_samples
from keras_dlu.optimizers import Proxtone
from tests.support.convex import fista, objective, softmax_regression

SWEEP = ({"initial_curvature": 10.0, "noise_scale": 0.3},  # the defaults
         {"initial_curvature": 3.0, "noise_scale": 0.3},
         {"initial_curvature": 1.0, "noise_scale": 0.3},
         {"initial_curvature": 10.0, "noise_scale": 0.0})
TRACE_L1 = 1e-3
BLOCK_PAIRS = {"variance_reduction": False}  # the mode diagnosed here


def _state(optimizer):
    stamps = optimizer._stamps.numpy()
    curvatures = optimizer._pair_curvatures.numpy()[stamps >= 0]
    largest = float(curvatures.max()) if curvatures.size else 0.0
    return {"c": float(optimizer._step_scale.numpy()),
            "sigma": float(optimizer._curvature.numpy()), "largest_pair_curvature": largest,
            "bound_L": max(optimizer.initial_curvature, largest),
            "pairs": int(optimizer._pairs_seen.numpy())}


def convex_gaps(settings, x, y, l1, best, batch, epochs, trace=False):
    keras.utils.set_random_seed(0)
    model = softmax_regression(Proxtone(l1=l1, **BLOCK_PAIRS, **settings))
    rows = []
    for _ in range(epochs):
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
        row = {"gap": objective(model.get_weights()[0], x, y, l1) / best - 1}
        rows.append(dict(row, **_state(model.optimizer)) if trace else row)
    return rows


def mlp_accuracy(make, data, run):
    return run(make, data, 4, 0)["accuracy"][-1]


def diagnose(batch, l1_values, mlp_l1, mlp_run):
    """``mlp_run(make, data, epochs, seed)`` is the benchmark's MLP run."""
    x, y = digits()
    optima = {l1: fista(x, y, l1) for l1 in l1_values}
    best = {l1: objective(optima[l1], x, y, l1) for l1 in l1_values}
    trace = convex_gaps({}, x, y, TRACE_L1, best[TRACE_L1], batch, 30, trace=True)
    data = mnist_samples(1500, 500)
    sweep = []
    for settings in SWEEP:
        row = dict(settings)
        for l1 in l1_values:
            row[f"convex_gap_l1_{l1:g}"] = convex_gaps(settings, x, y, l1, best[l1], batch,
                                                       30)[-1]["gap"]
        row["mlp_accuracy"] = mlp_accuracy(lambda: Proxtone(**BLOCK_PAIRS, **settings), data,
                                             mlp_run)
        row[f"mlp_accuracy_l1_{mlp_l1:g}"] = mlp_accuracy(
            lambda: Proxtone(l1=mlp_l1, **BLOCK_PAIRS, **settings), data, mlp_run)
        sweep.append(row)
    adam = mlp_accuracy(lambda: keras.optimizers.Adam(1e-3), data, mlp_run)
    return {"trace_l1": TRACE_L1, "trace": [trace[i] for i in (0, 2, 5, 10, 20, 29)],
            "trace_epochs": [1, 3, 6, 11, 21, 30], "sweep": sweep, "mlp_adam_accuracy": adam,
            "mlp_chance": 0.1, "zeros_fista": {str(l1): float(np.mean(optima[l1] == 0))
                                               for l1 in l1_values}}
