"""Dynamic fixed-point training (Fujitsu DLU) with keras-dlu, in the ordinary Keras workflow.

A float32 model becomes an 8-bit (or 16-bit) fixed-point model with one call,
``keras_dlu.quantization.quantize_model``: its Dense/Conv2D layers then compute the forward
product and both backward products in integer arithmetic, each tensor with its own
exponent chosen from the statistics the ops collect. ``FixedPointMonitor`` writes those
statistics to TensorBoard and plots the exponent trajectories.

    python tutorials/fixed_point.py            # LeNet-style CNN, float32 vs 8-bit
    python tutorials/fixed_point.py --quick    # a few seconds, for the test suite
    .venv/bin/tensorboard --logdir reports/fixed_point_logs   # the TensorBoard view
"""

import argparse
import importlib.util
import os
import time

from keras_dlu.utils import quiet_tensorflow

quiet_tensorflow()

import keras  # noqa: E402

from keras_dlu.callbacks import FixedPointMonitor  # noqa: E402
from keras_dlu.datasets import mnist_samples  # noqa: E402
from keras_dlu.quantization import FixedPointPolicy, quantize_model  # noqa: E402
from keras_dlu.utils import mnist_lenet as lenet  # noqa: E402
from keras_dlu.utils import reports_dir  # noqa: E402

BENCHMARK = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         "benchmarks", "fixed_point.py")


def step_time_vs_peers(repeats=5, steps=3):
    """The 8-bit training step of the MLP 784-2048-2048-10 at batch 256 beside float32 and
    Keras ``mixed_bfloat16``, measured now and side by side by ``benchmarks/fixed_point.py``'s
    step timing (fewer repeats than its own run), as a label:
    ``"MLP-2048 step 0.62x float32, 1.34x mixed_bfloat16"``."""
    spec = importlib.util.spec_from_file_location("keras_dlu_fixed_point_benchmark", BENCHMARK)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    ratio = benchmark.step_times(kinds=("mlp",), repeats=repeats, steps=steps)["mlp"]["dlu8_over"]
    return (f"MLP-2048 step {ratio['float32']:.2f}x float32, "
            f"{ratio['mixed_bfloat16']:.2f}x mixed_bfloat16")


def train(model, data, epochs, callbacks=(), verbose=0):
    (x_train, y_train), (x_test, y_test) = data
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=64, epochs=epochs, verbose=verbose,
              callbacks=list(callbacks))
    seconds = time.perf_counter() - start
    return float(model.evaluate(x_test, y_test, verbose=0)[1]), seconds


def run(quick, bits=8, verbose=0):
    """Float32 and ``bits``-bit training of the same initial model; returns the rows."""
    data = mnist_samples(n_train=320 if quick else 4000, n_test=300 if quick else 1000,
                         flatten=False)
    epochs = 1 if quick else 5
    keras.utils.set_random_seed(0)
    model = lenet()
    fixed = quantize_model(model, bits=bits, policy=FixedPointPolicy(bits=bits))
    float_accuracy, float_seconds = train(model, data, epochs, verbose=verbose)
    log_dir = os.path.join(reports_dir(), "fixed_point_logs")
    monitor = FixedPointMonitor(log_dir, update_freq=2 if quick else 10)
    accuracy, seconds = train(fixed, data, epochs, [monitor], verbose=verbose)
    rows = [{"name": "float32", "accuracy": float_accuracy, "seconds": float_seconds,
             "peak_mb": None, "zeros": None},
            {"name": f"DLU {bits}-bit", "accuracy": accuracy, "seconds": seconds,
             "peak_mb": None, "zeros": None}]
    return rows, monitor, fixed


def quickstart_part(quick: bool) -> dict:
    """The 8-bit row for tutorials/quickstart.py."""
    rows, _, _ = run(quick)
    return rows[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data, one epoch")
    parser.add_argument("--bits", type=int, default=8, choices=(8, 16))
    args = parser.parse_args(argv)
    rows, monitor, model = run(args.quick, args.bits, verbose=0 if args.quick else 2)
    print(f"\n{'model':<16}{'test accuracy':>15}{'train time (s)':>16}")
    for row in rows:
        print(f"{row['name']:<16}{row['accuracy']:>15.2%}{row['seconds']:>16.1f}")
    print("\nexponents after training (value = q * 2**e):")
    for layer in model.layers:
        for tensor, state in getattr(layer, "fixed_point_states", {}).items():
            print(f"  {layer.name:<14}{tensor:<10} e = {int(state.exponent.numpy()):>4}")
    print(f"\nTensorBoard: tensorboard --logdir {monitor.log_dir}")
    print(f"exponent trajectories: {monitor.plot_path}")
    return rows


if __name__ == "__main__":
    main()
