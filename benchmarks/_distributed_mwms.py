"""The ``MultiWorkerMirroredStrategy`` peer of benchmarks/distributed.py.

    python benchmarks/_distributed_mwms.py pair OUT [--quick]

``pair`` starts two worker processes (TF_CONFIG on free ports of the loopback it runs on,
the emulated link when benchmarks/distributed.py launches it in a namespace); worker 0
writes the median seconds per step of the VGG-style CNN to OUT.
"""

import json
import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import distributed as bench  # noqa: E402
from distributed import BATCH, QUICK, REPEATS, ROOT, STEPS, cnn, data, median, timed  # noqa: E402

tf, keras = bench.tf, bench.keras


def mwms_worker(out):
    """Custom ``strategy.run`` loop (Keras 3 ``fit`` rejects MWMS's PerReplica batches); one
    replica per process on its own rows; ``apply_gradients`` all-reduces (sums)."""
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    index, batch = json.loads(os.environ["TF_CONFIG"])["task"]["index"], BATCH["cnn"]
    x, y = data("cnn", 2 * STEPS * batch)
    x, y = x[index::2], y[index::2]
    with strategy.scope():
        model = cnn()
        optimizer = keras.optimizers.SGD(0.01)
        optimizer.build(model.trainable_variables)
    per_example = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)

    def replica_step(xb, yb):
        with tf.GradientTape() as tape:
            loss = tf.nn.compute_average_loss(per_example(yb, model(xb, training=True)),
                                              global_batch_size=2 * batch)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    @tf.function
    def step(xb, yb):
        return strategy.reduce("SUM", strategy.run(replica_step, args=(xb, yb)), axis=None)

    batches = [(tf.constant(x[i:i + batch]), tf.constant(y[i:i + batch]))
               for i in range(0, STEPS * batch, batch)]

    def run():
        for xb, yb in batches:
            loss = step(xb, yb)
        loss.numpy()

    run()  # warm-up (traces, builds the collectives)
    times = [timed(run) for _ in range(REPEATS)]
    if index == 0:
        with open(out, "w") as f:
            json.dump({"cnn/mwms": median(times) / STEPS}, f)


def mwms_pair(out):
    """Starts the two MWMS workers (TF_CONFIG on free ports of this namespace's loopback)."""
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    workers = [f"127.0.0.1:{p}" for p in ports]
    processes = [subprocess.Popen(
        [sys.executable, __file__, "worker", out, *(["--quick"] if QUICK else [])],
        env=dict(os.environ, PYTHONPATH=ROOT, TF_CONFIG=json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})))
        for index in range(2)]
    sys.exit(max(process.wait() for process in processes))


if __name__ == "__main__":
    (mwms_pair if sys.argv[1] == "pair" else mwms_worker)(sys.argv[2])
