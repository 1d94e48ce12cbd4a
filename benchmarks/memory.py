"""MemoryOptimizer benchmark: peak memory and step time, stock vs optimized, side by side.

For VGG-style, AlexNet-style, ResNet-style CNNs and a wide MLP (SGD with momentum 0.9) at
batch 8, 32 and 128: the peak bytes of one training step above resident (TensorFlow's
allocator) of stock ``fit``'s train function and of the restructured one, and their step
times. Each (model, batch) is measured in a fresh process with one inter-op thread
(``keras_dlu.memory.probe``: a fixed executor schedule, so the peak is the same step after
step), stock and optimized steps interleaved on the same model and batch; ratios are of
the medians. The budget is stock's peak at batch 32; for stock and optimized alike the
largest batch of the ladder 8, 16, ..., 512 whose median peak fits it is found by the same
procedure, and the ratio of the two is reported. Prints ONE JSON line of ratios; writes a
bar chart of peak memory per model to ``reports/memory_peak.png``.
Run: ``python benchmarks/memory.py [--quick]``. Reference: Shirahata et al., MLSP 2016.
"""

import argparse
import json
import statistics

from keras_dlu.utils import quiet_tensorflow, save_figure

tf = quiet_tensorflow()

import numpy as np  # noqa: E402

from keras_dlu.memory import models  # noqa: E402
from keras_dlu.memory.probe import isolated_peaks  # noqa: E402

SHAPES = {
    "vgg_style": dict(image_size=32),
    "alexnet_style": dict(image_size=32),
    "resnet_style": dict(image_size=32),
    "wide_mlp": dict(),
}
OPTIMIZER = {"class_name": "SGD", "config": {"learning_rate": 0.01, "momentum": 0.9}}
LADDER = [8, 16, 32, 64, 128, 256, 512]


def measure(name, size, repeats):
    """Median stock and optimized peaks (bytes) and the median step-time ratio."""
    r = isolated_peaks(name, size, SHAPES[name], OPTIMIZER, repeats)
    med = statistics.median
    return (med(r["stock_peaks"]), med(r["optimized_peaks"]),
            med(r["optimized_seconds"]) / med(r["stock_seconds"]))


def largest_under(name, budget, peaks, limit):
    """Largest ladder batch whose peak fits ``budget``, for stock and optimized alike."""
    fits = {"stock": 0, "optimized": 0}
    for size in [s for s in LADDER if s <= limit]:
        if (name, size) not in peaks:
            peaks[(name, size)] = measure(name, size, 1)[:2]
        for kind, peak in zip(("stock", "optimized"), peaks[(name, size)]):
            if peak <= budget:
                fits[kind] = size
        if min(peaks[(name, size)]) > budget:
            break
    return fits


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 8 and 32, 3 repeats")
    args = parser.parse_args()
    sizes = [8, 32] if args.quick else [8, 32, 128]
    repeats = 3 if args.quick else 5
    result, peaks = {}, {}
    for name in models.BUILDERS:
        for size in sizes:
            sp, op, time_ratio = measure(name, size, repeats)
            peaks[(name, size)] = (sp, op)
            result[f"{name}_b{size}_peak_ratio"] = round(op / sp, 3)
            result[f"{name}_b{size}_time_ratio"] = round(time_ratio, 3)
        fits = largest_under(name, peaks[(name, 32)][0], peaks, 128 if args.quick else 512)
        result[f"{name}_largest_batch_stock_optimized"] = [fits["stock"], fits["optimized"]]
        result[f"{name}_batch_ratio_at_budget"] = round(
            fits["optimized"] / max(fits["stock"], 1), 2)
    reductions = {n: 1 - result[f"{n}_b8_peak_ratio"] for n in ("vgg_style", "alexnet_style")}
    result["targets"] = {
        "peak_reduction_ge_40pct_vgg_alexnet_b8": all(r >= 0.4 for r in reductions.values()),
        "median_time_ratio_le_1.05": statistics.median(
            v for k, v in result.items() if k.endswith("time_ratio")) <= 1.05,
        "batch_ratio_ge_1.8_vgg_alexnet": all(
            result[f"{n}_batch_ratio_at_budget"] >= 1.8 for n in ("vgg_style", "alexnet_style")),
    }
    _chart(peaks, sizes)
    print(json.dumps(result))


def _chart(peaks, sizes):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(models.BUILDERS)
    figure, axes = plt.subplots(1, len(sizes), figsize=(4.5 * len(sizes), 4))
    for ax, size in zip(np.atleast_1d(axes), sizes):
        xs = np.arange(len(names))
        ax.bar(xs - 0.2, [peaks[(n, size)][0] / 2**20 for n in names], 0.4, label="stock fit")
        ax.bar(xs + 0.2, [peaks[(n, size)][1] / 2**20 for n in names], 0.4,
               label="MemoryOptimizer")
        ax.set_xticks(xs, [n.replace("_style", "") for n in names])
        ax.set_title(f"batch {size}")
        ax.set_ylabel("step peak above resident (MiB)")
    np.atleast_1d(axes)[0].legend()
    figure.suptitle("Peak memory of one training step (TensorFlow allocator, SGD+momentum)")
    save_figure(figure, "memory_peak")


if __name__ == "__main__":
    main()
