"""StableGRU benchmark: exploding-gradient study and step time; prints ONE JSON line.

1. Character-level language model on the Lee background corpus (ABC news prose, shipped
   in gensim's wheel): Embedding -> recurrent layer -> Dense, plain SGD, learning rates
   swept up to where plain GRU diverges. Variants: GRU, GRU with `clipnorm` (several
   thresholds) and StableGRU (bound 1.8, "power" projection). A run diverged when its loss
   became NaN or its final validation loss is above the initial one.
2. The adding problem (synthetic long-memory task, length 60), same sweep.
3. Step time of StableGRU ("power" and "exact") as a ratio to GRU's, 256 units, measured
   side by side (round robin, median of repeats).
A plot of the candidate block's spectral norm and the loss over training is saved under
reports/stable_gru_training.png.

    python benchmarks/stable_gru.py            # full run (a few minutes on 2 cores)
    python benchmarks/stable_gru.py --quick    # seconds, to check the script
"""

import argparse
import json
import math
import os
import time

from keras_dlu.utils import quiet_tensorflow

quiet_tensorflow()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_dlu.datasets import characters  # noqa: E402
from keras_dlu.layers import StableGRU  # noqa: E402

CLIPNORMS = (1.0, 5.0)
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def variants():
    rows = [("gru", keras.layers.GRU, {}, None)]
    rows += [(f"gru_clipnorm_{c:g}", keras.layers.GRU, {}, c) for c in CLIPNORMS]
    rows += [("stable_gru", StableGRU, {"projection": "power"}, None)]
    return rows


def char_model(layer_cls, layer_kwargs, vocab, units, length):
    return keras.Sequential([
        keras.Input((length,), dtype="int32"),
        keras.layers.Embedding(vocab, 32),
        layer_cls(units, return_sequences=True, **layer_kwargs),
        keras.layers.Dense(vocab),
    ])


def adding_model(layer_cls, layer_kwargs, units, length):
    return keras.Sequential([
        keras.Input((length, 2)),
        layer_cls(units, **layer_kwargs),
        keras.layers.Dense(1),
    ])


def adding_problem(n, length, seed):
    """Sum of the two marked values of a random sequence (Hochreiter & Schmidhuber)."""
    rng = np.random.default_rng(seed)
    values = rng.uniform(size=(n, length)).astype("float32")
    marks = np.zeros((n, length), "float32")
    first = rng.integers(0, length // 2, n)
    second = rng.integers(length // 2, length, n)
    marks[np.arange(n), first] = 1.0
    marks[np.arange(n), second] = 1.0
    return np.stack([values, marks], axis=-1), (values * marks).sum(axis=1, keepdims=True)


class _Trace(keras.callbacks.Callback):
    """Per-batch loss and the candidate block's spectral norm (every `every` batches)."""

    def __init__(self, layer, every):
        super().__init__()
        self.layer, self.every, self.loss, self.norm, self.nan = layer, every, [], [], False

    def on_train_batch_end(self, batch, logs=None):
        loss = float(logs["loss"])
        self.loss.append(loss)
        if not math.isfinite(loss):
            self.nan = True
            self.model.stop_training = True
        if len(self.loss) % self.every == 1:
            w = keras.ops.convert_to_numpy(self.layer.cell.recurrent_kernel)
            block = w[:, 2 * self.layer.units:]
            self.norm.append((len(self.loss), float(np.linalg.norm(block, 2))
                              if np.isfinite(block).all() else float("nan")))


def train_run(build, loss, train, val, lr, clipnorm, epochs, batch):
    keras.utils.set_random_seed(0)
    model = build()
    model.compile(keras.optimizers.SGD(lr, clipnorm=clipnorm), loss)
    initial = float(model.evaluate(*val, batch_size=256, verbose=0))
    trace = _Trace(model.layers[-2] if len(model.layers) > 2 else model.layers[0], every=5)
    val_losses = []
    for _ in range(epochs):
        model.fit(*train, batch_size=batch, epochs=1, verbose=0, callbacks=[trace], shuffle=True)
        if trace.nan:
            break
        val_losses.append(float(model.evaluate(*val, batch_size=256, verbose=0)))
    finite = [v for v in val_losses if math.isfinite(v)]
    diverged = trace.nan or not finite or not math.isfinite(val_losses[-1]) or val_losses[-1] > initial
    return {"initial": initial, "best_val": min(finite) if finite else float("nan"),
            "diverged": bool(diverged), "loss": trace.loss, "norm": trace.norm}


def sweep(task, build_for, loss, train, val, lrs, epochs, batch, to_metric):
    """Trains every variant at every learning rate; summarises divergence and best result."""
    summary, traces = {}, {}
    for name, layer_cls, kwargs, clip in variants():
        diverged, best = [], float("inf")
        for lr in lrs:
            start = time.perf_counter()
            run = train_run(lambda: build_for(layer_cls, kwargs), loss, train, val, lr, clip,
                            epochs, batch)
            diverged.append(run["diverged"])
            if not run["diverged"]:
                best = min(best, run["best_val"])
            traces[(name, lr)] = run
            print(f"  [{task}] {name:<18} lr={lr:<6g} initial={run['initial']:.3f} "
                  f"best_val={run['best_val']:.3f} diverged={run['diverged']} "
                  f"({time.perf_counter() - start:.0f}s)", flush=True)
        summary[name] = {"diverged": int(sum(diverged)), "runs": len(lrs),
                         "diverged_at_lr": [lr for lr, d in zip(lrs, diverged) if d],
                         "best_val": to_metric(best) if math.isfinite(best) else None}
    return summary, traces


def step_time_ratios(units, length, batch, repeats, steps):
    """Median seconds per training step of GRU, StableGRU power and exact, round robin."""
    (x, y), _, vocab = characters(length)
    x, y = x[:batch], y[:batch]
    models = {}
    for name, cls, kwargs in [("gru", keras.layers.GRU, {}),
                              ("power", StableGRU, {"projection": "power"}),
                              ("exact", StableGRU, {"projection": "exact"})]:
        keras.utils.set_random_seed(0)
        model = char_model(cls, kwargs, len(vocab), units, length)
        model.compile(keras.optimizers.SGD(0.1),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        for _ in range(3):
            model.train_on_batch(x, y)
        models[name] = model
    times = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            start = time.perf_counter()
            for _ in range(steps):
                model.train_on_batch(x, y)
            times[name].append((time.perf_counter() - start) / steps)
    median = {name: float(np.median(t)) for name, t in times.items()}
    return {"power_over_gru": median["power"] / median["gru"],
            "exact_over_gru": median["exact"] / median["gru"],
            "gru_step_ms": 1e3 * median["gru"], "power_step_ms": 1e3 * median["power"],
            "units": units, "batch": batch,
            "length": length, "power_fallback_steps": models["power"].layers[1].exact_fallback_steps,
            "power_steps": 3 + repeats * steps}


def sweep_targets(task, summary):
    """The two claims of a sweep: StableGRU never diverges where GRU does, and its best
    validation figure is no worse than the best gradient-clipped GRU's."""
    gru_div = set(summary["gru"]["diverged_at_lr"])
    stable = summary["stable_gru"]
    clipped = {k: v["best_val"] for k, v in summary.items()
               if k.startswith("gru_clip") and v["best_val"] is not None}
    best_clip = min(clipped, key=clipped.get) if clipped else None
    best = stable["best_val"]
    ratio = best / clipped[best_clip] if best is not None and best_clip else None
    # every StableGRU run diverged: missed; no clipped GRU run finished: nothing to compare
    met = False if best is None else (None if ratio is None else ratio <= 1.0)
    return [
        {"measure": f"{task}: runs diverged over the learning-rate sweep",
         "ours": stable["diverged"], "peer": "keras.layers.GRU",
         "peer_value": summary["gru"]["diverged"], "ratio": None,
         "target": "none where GRU diverges",
         "met": not (gru_div & set(stable["diverged_at_lr"]))},
        {"measure": f"{task}: best validation figure (lower is better)", "ours": best,
         "peer": f"GRU, {best_clip}" if best_clip else "GRU with clipnorm",
         "peer_value": clipped.get(best_clip), "ratio": ratio, "target": "<= 1.00x",
         "met": met},
    ]


def plot_path(path):
    """``path`` relative to the repository root (absolute when it lies outside)."""
    relative = os.path.relpath(os.path.abspath(path), REPO_ROOT)
    return os.path.abspath(path) if relative.startswith("..") else relative


def step_time_target(timing):
    return {"measure": f"step time, {timing['units']} units, batch {timing['batch']} x "
                       f"{timing['length']} characters (StableGRU power)",
            "ours": timing["power_step_ms"], "peer": "keras.layers.GRU (ms per step)",
            "peer_value": timing["gru_step_ms"], "ratio": timing["power_over_gru"],
            "target": "<= 1.05x", "met": timing["power_over_gru"] <= 1.05}


def plot(traces, lr, path_name):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from keras_dlu.utils import save_figure

    figure, (norm_axis, loss_axis) = plt.subplots(1, 2, figsize=(11, 3.8))
    for name in ("gru", f"gru_clipnorm_{CLIPNORMS[-1]:g}", "stable_gru"):
        run = traces[(name, lr)]
        steps, norms = zip(*run["norm"]) if run["norm"] else ((), ())
        norm_axis.plot(steps, norms, label=name)
        loss_axis.plot(np.arange(1, len(run["loss"]) + 1), run["loss"], label=name)
    norm_axis.axhline(1.8, color="gray", linestyle=":", label="bound 1.8")
    norm_axis.set(title=f"spectral norm of the candidate block (lr={lr:g})", xlabel="step",
                  yscale="log")
    loss_axis.set(title="training loss, running mean over the epoch (char LM)", xlabel="step",
                  yscale="log")
    norm_axis.legend()
    path = save_figure(figure, path_name)
    plt.close(figure)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings, to check the script")
    args = parser.parse_args(argv)
    quick = args.quick
    start = time.perf_counter()

    length = 50
    (x, y), (xv, yv), vocab = characters(length)
    if quick:
        x, y, xv, yv = x[:256], y[:256], xv[:128], yv[:128]
    char_lrs = (1.0, 8.0) if quick else (1.0, 3.0, 6.0)
    char_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    char_units = 32 if quick else 64
    char, char_traces = sweep(
        "char-lm", lambda cls, kw: char_model(cls, kw, len(vocab), char_units, length), char_loss,
        (x, y), (xv, yv), char_lrs, 1, 32, math.exp)

    add_len = 60
    n_train = 256 if quick else 2000
    add_train, add_val = adding_problem(n_train, add_len, 1), adding_problem(500, add_len, 2)
    add_lrs = (1.0, 8.0) if quick else (0.1, 0.3, 1.0)
    adding, _ = sweep(
        "adding", lambda cls, kw: adding_model(cls, kw, 16 if quick else 32, add_len), "mse",
        add_train, add_val, add_lrs, 1 if quick else 2, 32, lambda v: v)

    diverging = [lr for lr in char_lrs if lr in char["gru"]["diverged_at_lr"]]
    figure = plot(char_traces, diverging[0] if diverging else char_lrs[-1], "stable_gru_training")
    timing = (step_time_ratios(64, 20, 16, 3, 3) if quick
              else step_time_ratios(256, 50, 32, 7, 5))

    result = {
        "benchmark": "stable_gru", "quick": quick,
        "char_lm": {"corpus": "Lee background corpus (gensim 4.4.0 wheel)", "units": char_units,
                    "learning_rates": list(char_lrs), "metric": "best validation perplexity",
                    "variants": char},
        "adding_problem": {"length": add_len, "learning_rates": list(add_lrs),
                           "metric": "best validation MSE (predicting the mean: 0.167)",
                           "variants": adding},
        "step_time": timing,
        "targets": (sweep_targets("char LM", char) + sweep_targets("adding problem", adding)
                    + [step_time_target(timing)]),
        "plots": [plot_path(figure)],
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
