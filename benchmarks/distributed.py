"""Benchmark: keras-dlu DistributedOptimizer vs Horovod DistributedGradientTape vs MWMS.

    .venv/bin/python benchmarks/distributed.py [--quick]

Launches (all on this machine, loopback only) ``horovodrun -np 2`` running our
``model.fit`` with ``DistributedOptimizer`` and Horovod's own ``DistributedGradientTape``
custom loop side by side (alternating, warm, median of repeats), then two
``tf.distribute.MultiWorkerMirroredStrategy`` processes (TF_CONFIG on localhost ports), and
one single process for the scaling efficiency. Same model (MLP on real MNIST), same
global batch. The share of communication hidden behind computation is
``1 - (t_ours - t_local) / t_comm`` with t_local the same step without communication and
t_comm the step's collectives alone. Also ``simulate`` projections at 16 and 64 workers for
an AlexNet-like and a ResNet-like model (per-layer times measured here, alpha-beta
network). Prints ONE JSON line. Reference: Fujitsu, Yamazaki et al. 2016; Horovod.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from keras_dlu.utils import quiet_tensorflow  # noqa: E402

tf = quiet_tensorflow()
import keras  # noqa: E402
import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = "--quick" in sys.argv
BATCH = 64                      # per worker; global batch = 2 * BATCH
STEPS = 10 if QUICK else 30     # timed steps per repeat
REPEATS = 3 if QUICK else 5


def build_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((784,)), keras.layers.Dense(1024, activation="relu"),
                             keras.layers.Dense(1024, activation="relu"),
                             keras.layers.Dense(10)])


def data(rows):
    from keras_dlu.datasets import mnist_samples

    (x, y), _ = mnist_samples()
    x = np.asarray(x, "float32").reshape(len(x), -1)
    reps = -(-rows // len(x))
    return np.tile(x, (reps, 1))[:rows], np.tile(np.asarray(y), reps)[:rows]


LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def fit_seconds(model, x, y, batch):
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0)
    return time.perf_counter() - start


def median(values):
    return float(np.median(values))


# ----------------------------------------------------------------- horovod worker
def horovod_worker(out):
    import horovod.tensorflow as hvd

    import keras_dlu.distributed as dist
    from keras_dlu.callbacks import BroadcastGlobalVariables

    dist.init()
    x, y = data(STEPS * BATCH)
    ours = build_model()
    ours.compile(optimizer=dist.DistributedOptimizer(keras.optimizers.SGD(0.01)), loss=LOSS)
    ours.fit(x[:BATCH], y[:BATCH], batch_size=BATCH, verbose=0,
             callbacks=[BroadcastGlobalVariables(0)])
    local = build_model()
    local.compile(optimizer=keras.optimizers.SGD(0.01), loss=LOSS)

    tape_model = build_model()
    tape_opt = keras.optimizers.SGD(0.01)

    @tf.function
    def tape_step(xb, yb):
        with tf.GradientTape() as tape:
            loss = LOSS(yb, tape_model(xb, training=True))
        tape = hvd.DistributedGradientTape(tape)
        grads = tape.gradient(loss, [v.value for v in tape_model.trainable_variables])
        tape_opt.apply_gradients(zip(grads, tape_model.trainable_variables))
        return loss

    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH).cache()

    def tape_seconds():
        start = time.perf_counter()
        for xb, yb in dataset:
            loss = tape_step(xb, yb)
        loss.numpy()
        return time.perf_counter() - start

    grads = [tf.zeros_like(v) for v in ours.trainable_variables]
    comm = tf.function(lambda g: ours.optimizer.average_gradients(hvd, list(g)))

    def comm_seconds():
        start = time.perf_counter()
        for _ in range(STEPS):
            out_ = comm(grads)
        [o.numpy() for o in out_]
        return time.perf_counter() - start

    tape_seconds(), fit_seconds(local, x, y, BATCH), comm_seconds()  # warm-up
    times = {"ours": [], "tape": [], "local": [], "comm": []}
    for _ in range(REPEATS):
        hvd.allreduce(tf.constant(0.0), name="bench.sync")
        times["ours"].append(fit_seconds(ours, x, y, BATCH))
        hvd.allreduce(tf.constant(0.0), name="bench.sync")
        times["tape"].append(tape_seconds())
        times["local"].append(fit_seconds(local, x, y, BATCH))
        hvd.allreduce(tf.constant(0.0), name="bench.sync")
        times["comm"].append(comm_seconds())
    if hvd.rank() == 0:
        with open(out, "w") as f:
            json.dump({k: median(v) for k, v in times.items()}, f)


# ----------------------------------------------------------------- MWMS worker
def mwms_worker(out):
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    x, y = data(STEPS * BATCH * 2)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(2 * BATCH).with_options(options)
    with strategy.scope():
        model = build_model()
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss=LOSS)
    model.fit(dataset.take(2), verbose=0)
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        model.fit(dataset, verbose=0)
        times.append(time.perf_counter() - start)
    if json.loads(os.environ["TF_CONFIG"])["task"]["index"] == 0:
        with open(out, "w") as f:
            json.dump({"mwms": median(times)}, f)


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run_mwms(tmp):
    out = os.path.join(tmp, "mwms.json")
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    processes = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}),
            PYTHONPATH=ROOT)
        processes.append(subprocess.Popen(
            [sys.executable, __file__, "--role", "mwms", out, *(["--quick"] if QUICK else [])],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    logs = [p.communicate(timeout=600)[0] for p in processes]
    if not os.path.exists(out):
        return {"mwms_error": logs[0][-800:]}
    with open(out) as f:
        return json.load(f)


def run_horovod_pair(tmp):
    out = os.path.join(tmp, "hvd.json")
    command = [os.path.join(os.path.dirname(sys.executable), "horovodrun"), "-np", "2", "-H",
               "localhost:2", "--gloo", sys.executable, __file__, "--role", "horovod", out,
               *(["--quick"] if QUICK else [])]
    result = subprocess.run(command, env=dict(os.environ, PYTHONPATH=ROOT), timeout=900,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"horovodrun failed:\n{result.stdout[-3000:]}")
    with open(out) as f:
        return json.load(f)


def single_process_seconds():
    x, y = data(STEPS * BATCH)
    model = build_model()
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=LOSS)
    fit_seconds(model, x, y, BATCH)
    return median([fit_seconds(model, x, y, BATCH) for _ in range(REPEATS)])


SIM_COMPUTE_SCALE = 1 / 20  # assumption: a training device 20x faster than these 2 cores


def alexnet_like():
    """AlexNet's layer pattern (5 convolutions, 3 large dense layers) at 64x64 input."""
    layers = keras.layers
    model = keras.Sequential([
        keras.Input((64, 64, 3)), layers.Conv2D(64, 11, 4, "same", activation="relu"),
        layers.MaxPooling2D(2), layers.Conv2D(192, 5, padding="same", activation="relu"),
        layers.MaxPooling2D(2), layers.Conv2D(384, 3, padding="same", activation="relu"),
        layers.Conv2D(256, 3, padding="same", activation="relu"),
        layers.Conv2D(256, 3, padding="same", activation="relu"), layers.MaxPooling2D(2),
        layers.Flatten(), layers.Dense(4096, activation="relu"),
        layers.Dense(4096, activation="relu"), layers.Dense(1000)])
    return model, np.random.default_rng(0).normal(size=(16, 64, 64, 3)).astype("float32")


def resnet_like():
    """ResNet-18's convolution stack (3x3, 64..512 channels, stride-2 stages), no skips:
    the cost model needs only each layer's time and gradient size."""
    layers = keras.layers
    stack = [keras.Input((64, 64, 3)), layers.Conv2D(64, 7, 2, "same", activation="relu")]
    for channels in (64, 128, 256, 512):
        for block in range(4):
            stride = 2 if block == 0 and channels != 64 else 1
            stack.append(layers.Conv2D(channels, 3, stride, "same", activation="relu"))
    stack += [layers.GlobalAveragePooling2D(), layers.Dense(1000)]
    return keras.Sequential(stack), np.random.default_rng(0).normal(
        size=(16, 64, 64, 3)).astype("float32")


def main():
    from keras_dlu.distributed.simulate import profile_layers, simulate

    with tempfile.TemporaryDirectory() as tmp:
        hvd_times = run_horovod_pair(tmp)
        mwms = run_mwms(tmp)
    single = single_process_seconds()
    samples_global = 2 * STEPS * BATCH
    ours_tp = samples_global / hvd_times["ours"]
    tape_tp = samples_global / hvd_times["tape"]
    hidden = 1 - (hvd_times["ours"] - hvd_times["local"]) / hvd_times["comm"]
    line = {
        "benchmark": "distributed", "np": 2, "global_batch": 2 * BATCH, "steps": STEPS,
        "repeats": REPEATS,
        "ours_vs_horovod_tape_throughput": ours_tp / tape_tp,
        "ours_vs_mwms_throughput": (ours_tp / (samples_global / mwms["mwms"])
                                    if "mwms" in mwms else None),
        "scaling_efficiency_ours": ours_tp / (2 * STEPS * BATCH / single) / 2,
        "communication_hidden_share": max(0.0, min(1.0, hidden)),
        "communication_to_step_ratio": hvd_times["comm"] / hvd_times["ours"],
    }
    if "mwms_error" in mwms:
        line["mwms_error"] = mwms["mwms_error"][-300:]
    for name, (model, batch) in {"alexnet_like": alexnet_like(), "resnet_like": resnet_like()}.items():
        projected = simulate(profile_layers(model, batch, repeats=3), workers=(16, 64),
                             compute_scale=SIM_COMPUTE_SCALE)
        for workers, row in projected.items():
            line[f"sim_{name}_{workers}_gain_vs_no_overlap"] = row["gain_full_vs_no_overlap"]
            line[f"sim_{name}_{workers}_gain_bp_overlap_only"] = (
                row["no_overlap_s"] / row["backprop_overlap_s"] - 1)
    line["sim_compute_scale"] = SIM_COMPUTE_SCALE
    line["targets"] = {
        "tape_1.15x": line["ours_vs_horovod_tape_throughput"] >= 1.15,
        "mwms_1x": bool(line["ours_vs_mwms_throughput"] and line["ours_vs_mwms_throughput"] >= 1),
        "hidden_80pct": line["communication_hidden_share"] >= 0.8,
        "sim_16_46pct": min(line[f"sim_{n}_16_gain_vs_no_overlap"]
                            for n in ("alexnet_like", "resnet_like")) >= 0.46,
        "sim_64_71pct": min(line[f"sim_{n}_64_gain_vs_no_overlap"]
                            for n in ("alexnet_like", "resnet_like")) >= 0.71,
    }
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in line.items()}))


if __name__ == "__main__":
    if "--role" in sys.argv:
        role, out = sys.argv[sys.argv.index("--role") + 1], sys.argv[sys.argv.index("--role") + 2]
        horovod_worker(out) if role == "horovod" else mwms_worker(out)
    else:
        main()
