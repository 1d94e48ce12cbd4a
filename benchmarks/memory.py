"""MemoryOptimizer benchmark: peak memory and step time, stock vs optimized, side by side.

For VGG-style, AlexNet-style, ResNet-style CNNs and a wide MLP at batch 8, 32 and 128,
the peak bytes of one training step above resident (TensorFlow's allocator) and the step
time of stock ``fit``'s train function and of the restructured one (medians of repeats,
after a warm-up), and the largest batch (from a doubling ladder) whose stock/optimized
peak fits a budget equal to the stock peak at batch 32. Prints ONE JSON line of ratios;
writes a bar chart of peak memory per model to ``reports/memory_peak.png``.
Run: ``python benchmarks/memory.py [--quick]``. Reference: Shirahata et al., MLSP 2016.
"""

import argparse
import json
import statistics

from keras_dlu.utils import quiet_tensorflow, save_figure

tf = quiet_tensorflow()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_dlu.memory import models  # noqa: E402
from keras_dlu.memory.measure import (optimized_train_function, step_peak_bytes,  # noqa: E402
                                      stock_train_function)

SHAPES = {
    "vgg_style": dict(image_size=32),
    "alexnet_style": dict(image_size=32),
    "resnet_style": dict(image_size=32),
    "wide_mlp": dict(),
}


def build(name):
    keras.utils.set_random_seed(0)
    model = models.BUILDERS[name](**SHAPES[name])
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.optimizer.build(model.trainable_variables)
    return model


def batch(model, size):
    rng = np.random.default_rng(0)
    shape = (size,) + tuple(model.inputs[0].shape[1:])
    return rng.normal(size=shape).astype("float32"), rng.integers(0, 10, size=(size,))


def measure(name, size, repeats):
    model = build(name)
    x, y = batch(model, size)
    stock = step_peak_bytes(stock_train_function(model), x, y, repeats)
    optimized = step_peak_bytes(optimized_train_function(model, size), x, y, repeats)
    return stock, optimized


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 8 and 32, 3 repeats")
    args = parser.parse_args()
    sizes = [8, 32] if args.quick else [8, 32, 128]
    repeats = 3 if args.quick else 5
    result, peaks = {}, {}
    for name in models.BUILDERS:
        for size in sizes:
            (sp, st), (op, ot) = measure(name, size, repeats)
            peaks[(name, size)] = (sp, op)
            result[f"{name}_b{size}_peak_ratio"] = round(op / sp, 3)
            result[f"{name}_b{size}_time_ratio"] = round(ot / st, 3)
        budget = peaks[(name, 32)][0]
        fits = {"stock": 0, "optimized": 0}
        for size in [32, 64, 128, 256]:
            sp, op = peaks.get((name, size)) or [m[0] for m in measure(name, size, 1)]
            fits["stock"] = size if sp <= budget else fits["stock"]
            fits["optimized"] = size if op <= budget else fits["optimized"]
            if op > budget:
                break
        result[f"{name}_batch_ratio_at_budget"] = round(fits["optimized"] / max(fits["stock"], 1), 2)
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
