"""MemoryOptimizer tutorial: train on real MNIST with and without the callback.

Run: ``python tutorials/memory.py [--quick]``. The same model is trained twice from the
same seed, stock ``fit`` and ``fit(callbacks=[MemoryOptimizer()])``; the weights agree and
the peak memory of a training step (TensorFlow's allocator) is lower with the callback.
Reference: Shirahata et al., "Memory reduction method for deep neural network training",
IEEE MLSP 2016.
"""

import argparse
import time

from keras_dlu.utils import quiet_tensorflow

tf = quiet_tensorflow(allocator_stats=True)  # peaks read the allocator

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_dlu.callbacks import MemoryOptimizer  # noqa: E402
from keras_dlu.datasets import mnist_samples  # noqa: E402
from keras_dlu.memory import models  # noqa: E402
from keras_dlu.memory.measure import (optimized_train_function, step_peak_bytes,  # noqa: E402
                                      stock_train_function)


def _data(quick):
    (x, y), (x_test, y_test) = mnist_samples()
    x, x_test = np.asarray(x, "float32"), np.asarray(x_test, "float32")  # [n, 784] in [0, 1]
    if quick:
        x, y = x[:1000], y[:1000]
    return x, np.asarray(y), x_test, np.asarray(y_test)


def _model():
    keras.utils.set_random_seed(0)
    model = models.wide_mlp(features=784, width=1024, depth=2)
    model.compile(optimizer=keras.optimizers.SGD(0.02, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def quickstart_part(quick: bool) -> dict:
    """Trains with MemoryOptimizer; returns the quickstart row plus the stock peak."""
    x, y, x_test, y_test = _data(quick)
    epochs, batch_size = (1, 32) if quick else (5, 32)
    start = time.perf_counter()
    model = _model()
    callback = MemoryOptimizer(verbose=0)
    model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0, callbacks=[callback])
    seconds = time.perf_counter() - start
    if callback.fallback_reason is not None:
        raise RuntimeError(f"MemoryOptimizer fell back to stock: {callback.fallback_reason}")
    accuracy = float(model.evaluate(x_test, y_test, verbose=0)[1])
    probe = _model()
    stock_peak, _ = step_peak_bytes(stock_train_function(probe), x[:batch_size], y[:batch_size])
    peak, _ = step_peak_bytes(optimized_train_function(probe, batch_size),
                              x[:batch_size], y[:batch_size])
    return {"name": "MemoryOptimizer", "accuracy": accuracy, "seconds": seconds,
            "peak_mb": peak / 2**20, "stock_peak_mb": stock_peak / 2**20, "zeros": None}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 samples, 1 epoch")
    args = parser.parse_args()
    x, y, x_test, y_test = _data(args.quick)
    epochs = 1 if args.quick else 5
    stock = _model()
    stock.fit(x, y, batch_size=32, epochs=epochs, verbose=0, shuffle=False)
    tuned = _model()
    tuned.fit(x, y, batch_size=32, epochs=epochs, verbose=0, shuffle=False,
              callbacks=[MemoryOptimizer()])
    diff = max(float(np.abs(a - b).max()) for a, b in zip(stock.get_weights(), tuned.get_weights()))
    print(f"largest weight difference, stock vs MemoryOptimizer: {diff:.2e}")
    row = quickstart_part(args.quick)
    print(f"test accuracy {row['accuracy']:.4f}; step peak above resident: stock "
          f"{row['stock_peak_mb']:.2f} MiB, MemoryOptimizer {row['peak_mb']:.2f} MiB")


if __name__ == "__main__":
    main()
