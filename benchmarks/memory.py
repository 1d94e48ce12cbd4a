"""MemoryOptimizer benchmark: peak memory and step time, stock vs optimized, side by side.

For the VGG-style and AlexNet-style CNNs (32x32 images), with SGD (momentum 0.9) and Adam,
at batch 8, 16 and 32: the peak bytes of one training step above resident (TensorFlow's
allocator) of stock ``fit``'s train function and of MemoryOptimizer's, under TensorFlow's
default threading. Each kind runs in its own fresh processes (``keras_dlu.memory.probe``,
a few steps each): a case's figure is the median over the
processes' medians, with the spread (lowest and highest process). Beside it: the ratio
with one inter-op thread (one process, both kinds interleaved: a fixed executor schedule)
and the step-time ratio (one default-threading process, both kinds interleaved on the same
model and batch, so both see the same machine noise). The budget is stock's median peak at
batch 32; the largest batch of the ladder 32, 64, 128, ... whose optimized median peak fits
it is found the same way (one process per batch), and its ratio to 32 reported. Three
processes per kind and case (``--quick``: one, and no one-thread figures). Prints ONE JSON
line (with the "targets" list; each finished case also goes to stderr as it ends); writes a
bar chart to ``reports/memory_peak.png``.
Run: ``python benchmarks/memory.py [--quick] [--model M] [--optimizer O]``.
``--profile``: only the step-time profile of ``benchmarks/_memory_profile.py``.
Reference: Shirahata et al., MLSP 2016.
"""

import argparse
import json
import statistics
import sys

from keras_dlu.utils import quiet_tensorflow, save_figure

tf = quiet_tensorflow(allocator_stats=True)  # peaks read the allocator

import numpy as np  # noqa: E402

from keras_dlu.memory.probe import isolated_peaks  # noqa: E402

MODELS = {"vgg_style": dict(image_size=32), "alexnet_style": dict(image_size=32)}
OPTIMIZERS = {
    "sgd_momentum": {"class_name": "SGD", "config": {"learning_rate": 0.01, "momentum": 0.9}},
    "adam": {"class_name": "Adam", "config": {"learning_rate": 0.001}},
}
PEAK_TARGETS = {8: 0.5, 16: 0.5, 32: 0.6}  # issue 13: optimized / stock at most
BUDGET_BATCH = 32
LADDER = [64, 128, 256]
MIB = 2**20


def fresh_peaks(model, optimizer, size, kind, processes, repeats):
    """Per-process median peaks (MiB) of ``kind`` in ``processes`` fresh processes."""
    out = []
    for _ in range(processes):
        run = isolated_peaks(model, size, MODELS[model], OPTIMIZERS[optimizer], repeats,
                             kinds=(kind,))
        if kind == "optimized" and run["optimized_fallback"] is not None:
            raise RuntimeError(f"the rewritten step fell back: {run['optimized_fallback']}")
        out.append(statistics.median(run[f"{kind}_peaks"]) / MIB)
    return out


def spread(values):
    """[median, lowest, highest], rounded."""
    return [round(statistics.median(values), 2), round(min(values), 2), round(max(values), 2)]


def case(model, optimizer, size, processes, repeats, steps, one_thread=True):
    """Default-threading peaks (fresh processes per kind), one-thread ratio, time ratio."""
    stock = fresh_peaks(model, optimizer, size, "stock", processes, repeats)
    optimized = fresh_peaks(model, optimizer, size, "optimized", processes, repeats)
    one = isolated_peaks(model, size, MODELS[model], OPTIMIZERS[optimizer], repeats,
                         threads=1) if one_thread else None
    timed = isolated_peaks(model, size, MODELS[model], OPTIMIZERS[optimizer], steps)
    med = statistics.median
    return {
        "stock_mib": spread(stock), "optimized_mib": spread(optimized),
        "peak_ratio": round(med(optimized) / med(stock), 3),
        "peak_ratio_one_thread": round(med(one["optimized_peaks"]) / med(one["stock_peaks"]),
                                       3) if one else None,
        "time_ratio": round(med(timed["optimized_seconds"]) / med(timed["stock_seconds"]), 3),
    }


def largest_batch(model, optimizer, budget_mib, repeats):
    """Largest ladder batch whose optimized peak (median of one fresh process) fits."""
    fits = BUDGET_BATCH
    for size in LADDER:
        if statistics.median(fresh_peaks(model, optimizer, size, "optimized", 1,
                                         repeats)) > budget_mib:
            break
        fits = size
    return fits


def targets(result, chosen, cases):
    """The "targets" list: one row per target of issue 13 (met null when not measured)."""
    rows = []
    for model in chosen[0]:
        for optimizer in chosen[1]:
            for size in PEAK_TARGETS:
                key = f"{model}_{optimizer}_b{size}"
                entry = result.get(key)
                rows.append({
                    "measure": f"step peak above resident, {model} {optimizer} batch {size}, "
                               "default threading, fresh processes (MiB)",
                    "ours": entry["optimized_mib"][0] if entry else None,
                    "peer": "stock fit",
                    "peer_value": entry["stock_mib"][0] if entry else None,
                    "ratio": entry["peak_ratio"] if entry else None,
                    "target": f"<= {PEAK_TARGETS[size]}x",
                    "met": entry["peak_ratio"] <= PEAK_TARGETS[size] if entry else None,
                })
            batch = result.get(f"{model}_{optimizer}_largest_batch_stock_optimized")
            rows.append({
                "measure": f"largest batch under stock's batch-{BUDGET_BATCH} peak, {model} "
                           f"{optimizer}",
                "ours": batch[1] if batch else None, "peer": "stock fit",
                "peer_value": batch[0] if batch else None,
                "ratio": batch[1] / batch[0] if batch else None, "target": ">= 2x",
                "met": batch[1] / batch[0] >= 2 if batch else None,
            })
    times = [result[k]["time_ratio"] for k in cases]
    rows.append({"measure": "step time / stock, median over the cases", "ours": None,
                 "peer": "stock fit", "peer_value": None,
                 "ratio": round(statistics.median(times), 3), "target": "<= 1.05x",
                 "met": statistics.median(times) <= 1.05})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="one process per kind and case, no one-thread figures")
    parser.add_argument("--model", choices=list(MODELS), action="append",
                        help="measure only this model (repeatable; default: all)")
    parser.add_argument("--optimizer", choices=list(OPTIMIZERS), action="append",
                        help="measure only this optimizer (repeatable; default: all)")
    parser.add_argument("--profile", action="store_true",
                        help="only profile where the optimized step's time goes")
    args = parser.parse_args()
    if args.profile:
        from _memory_profile import profile

        print(json.dumps(dict(command="python benchmarks/memory.py --profile",
                              **profile(OPTIMIZERS))))
        return
    chosen = ([m for m in MODELS if m in (args.model or MODELS)],
              [o for o in OPTIMIZERS if o in (args.optimizer or OPTIMIZERS)])
    sizes = [8, 16, 32]
    processes, repeats, steps = (1, 3, 5) if args.quick else (3, 3, 10)
    result, cases = {"threading": "default", "processes_per_kind": processes}, []
    # Progress on stderr: a long run that is stopped still leaves its finished cases.
    progress = sys.stderr
    for model in chosen[0]:
        for optimizer in chosen[1]:
            for size in sizes:
                key = f"{model}_{optimizer}_b{size}"
                result[key] = case(model, optimizer, size, processes, repeats, steps,
                                   one_thread=not args.quick)
                print(json.dumps({key: result[key]}), file=progress, flush=True)
                cases.append(key)
            budget = result[f"{model}_{optimizer}_b{BUDGET_BATCH}"]["stock_mib"][0]
            fits = largest_batch(model, optimizer, budget, repeats)
            key = f"{model}_{optimizer}_largest_batch_stock_optimized"
            result[key] = [BUDGET_BATCH, fits]
            print(json.dumps({key: result[key]}), file=progress, flush=True)
    result["targets"] = targets(result, chosen, cases)
    result["plots"] = [_chart(result, sizes, chosen)]
    print(json.dumps(result))


def _chart(result, sizes, chosen):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [(m, o) for m in chosen[0] for o in chosen[1]]
    figure, axes = plt.subplots(1, len(sizes), figsize=(4.8 * len(sizes), 4))
    for ax, size in zip(np.atleast_1d(axes), sizes):
        xs = np.arange(len(names))
        for offset, kind, label in ((-0.2, "stock_mib", "stock fit"),
                                    (0.2, "optimized_mib", "MemoryOptimizer")):
            values = np.array([result[f"{m}_{o}_b{size}"][kind] for m, o in names])
            ax.bar(xs + offset, values[:, 0], 0.4, label=label,
                   yerr=[values[:, 0] - values[:, 1], values[:, 2] - values[:, 0]])
        ax.set_xticks(xs, [f"{m.replace('_style', '')}\n{o}" for m, o in names])
        ax.set_title(f"batch {size}")
        ax.set_ylabel("step peak above resident (MiB)")
    np.atleast_1d(axes)[0].legend()
    figure.suptitle("Peak memory of one training step, default threading "
                    "(TensorFlow allocator, median of fresh processes, bars: spread)")
    return save_figure(figure, "memory_peak")


if __name__ == "__main__":
    main()
