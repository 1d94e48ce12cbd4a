"""Optimizers benchmark: SGD+momentum, Adam, RMSprop, AdamW, SDProp, Proxtone on the MNIST MLP.

Run: python benchmarks/optimizers.py [--quick]. Prints one JSON line: per optimizer the
epochs and wall-clock seconds to reach a fixed test accuracy, final accuracy, step time as
a ratio to Adam's (same run, warm epochs, median); Proxtone with l1 versus tfmot
prune_low_magnitude (tf_keras) at the same sparsity; and a "targets" dict.
"""

import argparse
import json
import sys
import time

from keras_dlu.utils import quiet_tensorflow

quiet_tensorflow()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_dlu.datasets import mnist_samples  # noqa: E402
from keras_dlu.optimizers import SDProp, Proxtone  # noqa: E402

HIDDEN = (256, 128, 64)
BATCH = 64


def mlp():
    return keras.Sequential([keras.Input((784,))]
                            + [keras.layers.Dense(u, activation="relu") for u in HIDDEN]
                            + [keras.layers.Dense(10, activation="softmax")])


def optimizers(l1):
    return {
        "sgd_momentum": lambda: keras.optimizers.SGD(0.05, momentum=0.9),
        "adam": lambda: keras.optimizers.Adam(1e-3),
        "rmsprop": lambda: keras.optimizers.RMSprop(1e-3),
        "adamw": lambda: keras.optimizers.AdamW(1e-3),
        "sdprop": lambda: SDProp(1e-3),
        "proxtone": lambda: Proxtone(),
        "proxtone_l1": lambda: Proxtone(l1=l1),  # l1 2e-3: 0.867 acc, 91% zeros (4,000 samples)
    }


class _Clock(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.epoch_seconds, self.accuracy = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_seconds.append(time.perf_counter() - self.start)
        self.accuracy.append(float(logs["val_accuracy"]))


def train(make, data, epochs, seed):
    (x, y), (xt, yt) = data
    keras.utils.set_random_seed(seed)
    model = mlp()
    model.compile(optimizer=make(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    clock = _Clock()
    model.fit(x, y, batch_size=BATCH, epochs=epochs, validation_data=(xt, yt), verbose=0,
              callbacks=[clock])
    weights = np.concatenate([w.ravel() for w in model.get_weights()])
    steps = int(np.ceil(len(x) / BATCH))
    return {"curve": clock.accuracy, "epoch_seconds": clock.epoch_seconds,
            "step_ms": 1e3 * float(np.median(clock.epoch_seconds[1:] or clock.epoch_seconds))
            / steps, "zeros": float(np.mean(weights == 0))}


def tfmot_pruned(data, epochs, sparsity, seed):
    import tensorflow_model_optimization as tfmot
    import tf_keras

    (x, y), (xt, yt) = data
    tf_keras.utils.set_random_seed(seed)
    model = tf_keras.Sequential([tf_keras.Input((784,))]
                                + [tf_keras.layers.Dense(u, activation="relu") for u in HIDDEN]
                                + [tf_keras.layers.Dense(10, activation="softmax")])
    steps = int(np.ceil(len(x) / BATCH)) * epochs
    schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, sparsity, 0, max(1, steps // 2),
                                                     frequency=max(1, steps // 20))
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
    pruned.compile(optimizer=tf_keras.optimizers.Adam(1e-3),
                   loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    pruned.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0,
               callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    stripped.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    weights = np.concatenate([w.ravel() for w in stripped.get_weights()])
    return {"accuracy": float(stripped.evaluate(xt, yt, verbose=0)[1]),
            "zeros": float(np.mean(weights == 0))}


def first_reach(run, target):
    for epoch, accuracy in enumerate(run["curve"]):
        if accuracy >= target:
            return epoch + 1, float(np.sum(run["epoch_seconds"][:epoch + 1]))
    return None, None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 seed, 3 epochs, 1,500 samples")
    parser.add_argument("--l1", type=float, default=2e-3, help="Proxtone's L1 coefficient")
    args = parser.parse_args(argv)
    seeds, epochs = ((0,), 3) if args.quick else ((0, 1, 2), 8)
    data = mnist_samples(1500, 500) if args.quick else mnist_samples(4000, 1000)
    target = 0.80 if args.quick else 0.90
    runs = {name: [train(make, data, epochs, seed) for seed in seeds]
            for name, make in optimizers(args.l1).items()}
    adam_step = np.median([r["step_ms"] for r in runs["adam"]])
    result = {"command": " ".join(["python", "benchmarks/optimizers.py"] + sys.argv[1:]),
              "samples": [len(data[0][0]), len(data[1][0])], "epochs": epochs,
              "seeds": len(seeds), "target_accuracy": target, "optimizers": {}}
    for name, rs in runs.items():
        reach = [first_reach(r, target) for r in rs]
        result["optimizers"][name] = {
            "final_accuracy": round(float(np.mean([r["curve"][-1] for r in rs])), 4),
            "epochs_to_target": [e for e, _ in reach],
            "seconds_to_target": [None if s is None else round(s, 2) for _, s in reach],
            "step_ratio_to_adam": round(float(np.median([r["step_ms"] for r in rs])
                                              / adam_step), 3),
            "zeros": round(float(np.mean([r["zeros"] for r in rs])), 4)}
    sparse = result["optimizers"]["proxtone_l1"]
    pruned = tfmot_pruned(data, epochs, max(0.01, min(0.99, sparse["zeros"])), seeds[0])
    result["tfmot_prune_low_magnitude"] = {k: round(v, 4) for k, v in pruned.items()}

    def seconds(name):
        vals = result["optimizers"][name]["seconds_to_target"]
        return None if None in vals else float(np.median(vals))

    t_px, t_adam = seconds("proxtone"), seconds("adam")
    result["proxtone_time_to_target_ratio"] = (None if None in (t_px, t_adam)
                                               else round(t_px / t_adam, 3))
    o = result["optimizers"]
    result["targets"] = {
        "sdprop_step_le_1.1x_adam": o["sdprop"]["step_ratio_to_adam"] <= 1.1,
        "proxtone_time_to_accuracy_le_0.5x_adam": bool(
            result["proxtone_time_to_target_ratio"] is not None
            and result["proxtone_time_to_target_ratio"] <= 0.5),
        "proxtone_step_le_2x_adam": o["proxtone"]["step_ratio_to_adam"] <= 2.0,
        "proxtone_ge_90pct_zeros_loses_le_1pt": bool(
            sparse["zeros"] >= 0.9
            and o["adam"]["final_accuracy"] - sparse["final_accuracy"] <= 0.01),
    }
    _plot(runs, result["command"])
    print(json.dumps(result), flush=True)
    return result


def _plot(runs, command):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from keras_dlu.utils import save_figure

    figure, axis = plt.subplots(figsize=(7, 4))
    for name, rs in runs.items():
        axis.plot(range(1, len(rs[0]["curve"]) + 1),
                  np.mean([r["curve"] for r in rs], axis=0), label=name)
    axis.set_xlabel("epoch")
    axis.set_ylabel("test accuracy")
    axis.set_title(command, fontsize=8)
    axis.legend(fontsize=7)
    save_figure(figure, "optimizers_convergence")
    plt.close(figure)


if __name__ == "__main__":
    main()
