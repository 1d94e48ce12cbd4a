"""Benchmark: keras-dlu DistributedOptimizer vs Horovod's tape vs MWMS on an emulated link.

    .venv/bin/python benchmarks/distributed.py [--quick]

Two ranks (``horovodrun -np 2 --gloo``) run inside a private network namespace whose
loopback is limited to 1 Gbit/s, 10 Gbit/s, or not at all (:mod:`keras_dlu.distributed.netns`;
where namespaces are not permitted only the host loopback is measured and the JSON says
why). Models: a VGG-style CNN (32x32x3, six 3x3 convolutions, dense 512, 1.34 M parameters,
batch 32 per rank: compute and communication are comparable at 1 Gbit/s) and an MLP
784-1024-1024-10 (batch 64 per rank), real MNIST digits (the CNN's padded to 32x32x3).
Cases, interleaved in rotating order inside one launch, medians of the repeats, every one
reading the same cached ``tf.data`` batches:
``ours`` (our ``fit``, default plan), ``ours_overlap`` (``fit`` with
``steps_per_execution=4`` and ``ForwardOverlap``: the next steps' forward passes overlap
this step's averaging), ``ours_overlap_chained`` (the same with the dense kernel sent as
chained 1 MiB segments), ``ours_overlap_fp16`` (float16 on the wire), ``tape`` (Horovod's
``DistributedGradientTape`` in a ``tf.function`` loop, the strongest peer), ``tape_fp16``
(the same with Horovod's own fp16 compression), ``tape_fit`` (the tape in a ``fit``
train_step), ``local`` (the same ``fit`` without communication) and ``local_loop`` (the
tape's raw loop without communication: ``local / local_loop`` is what ``fit`` itself costs).
At 1 Gbit/s also: the tape loop over a small grid of ``HOROVOD_FUSION_THRESHOLD`` x
``HOROVOD_CYCLE_TIME`` (separate launches, the best is the peer), two
``MultiWorkerMirroredStrategy`` processes. At 1 and 10 Gbit/s one launch with
``HOROVOD_TIMELINE`` (plus ``ours_overlap_uncapped``, the plan without the capped last
bucket) whose trace gives per step the wire time, the time rank 0 waits for the other rank
(rank skew) and, at 1 Gbit/s, the plot ``reports/distributed_timeline.png``.
Hidden share = ``1 - (t_step - t_compute) / t_wire`` with ``t_wire`` the timeline's wire time
per step and ``t_compute`` the compute-only peer (``local`` for fit cases, ``local_loop`` for
the tape loops). Also ``simulate`` projections at 16 and 64 workers and its check against
the timeline launches. Prints ONE JSON line.
Reference: Fujitsu, Yamazaki et al. 2016; Horovod.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from keras_dlu.utils import quiet_tensorflow  # noqa: E402

tf = quiet_tensorflow()
import keras  # noqa: E402
import numpy as np  # noqa: E402

from _distributed_simulate import emulated_link_check, simulations  # noqa: E402
from _distributed_targets import COMPUTE_ONLY, hidden_shares, targets  # noqa: E402
from keras_dlu.distributed import netns  # noqa: E402

QUICK = "--quick" in sys.argv
STEPS = 8 if QUICK else 16      # timed steps per repeat (a multiple of SPE)
REPEATS = 3 if QUICK else 5
SPE = 4                         # steps_per_execution of the forward-overlap cases
BATCH = {"cnn": 32, "mlp": 64}  # per rank
TAPE_GRID = [(4 * 2**20, 1), (128 * 2**20, 5)]  # extra (fusion bytes, cycle ms) tried
HOROVOD_DEFAULTS = (128 * 2**20, 1)  # Horovod 0.28's own fusion threshold and cycle time
LAUNCH_TIMEOUT = 1200  # one launch took over 600 s at a load of 9-11 on the 2 cores
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def cnn():
    keras.utils.set_random_seed(0)
    layers = keras.layers

    def conv(filters):
        return layers.Conv2D(filters, 3, padding="same", activation="relu")

    return keras.Sequential([
        keras.Input((32, 32, 3)), conv(32), conv(32), layers.MaxPooling2D(), conv(64), conv(64),
        layers.MaxPooling2D(), conv(128), conv(128), layers.MaxPooling2D(), layers.Flatten(),
        layers.Dense(512, activation="relu"), layers.Dense(10)])


def mlp():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((784,)), keras.layers.Dense(1024, activation="relu"),
                             keras.layers.Dense(1024, activation="relu"), keras.layers.Dense(10)])


MODELS = {"cnn": cnn, "mlp": mlp}


def data(model_name, rows):
    from keras_dlu.datasets import mnist_samples

    (x, y), _ = mnist_samples()
    x = np.asarray(x, "float32").reshape(len(x), 28, 28)
    reps = -(-rows // len(x))
    x, y = np.tile(x, (reps, 1, 1))[:rows], np.tile(np.asarray(y), reps)[:rows]
    if model_name == "mlp":
        return x.reshape(rows, -1), y
    return np.repeat(np.pad(x, ((0, 0), (2, 2), (2, 2)))[..., None], 3, axis=-1), y


def median(values):
    return float(np.median(values))


def timed(run):
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


# ----------------------------------------------------------------- horovod worker
def tape_loop(hvd, name, dataset, compression=None):
    """Horovod's ``DistributedGradientTape`` in a traced custom loop (Keras 3 needs ``v.value``);
    ``hvd=None``: the same loop without communication (the compute-only raw loop)."""
    model, optimizer = MODELS[name](), keras.optimizers.SGD(0.01)

    @tf.function
    def step(xb, yb):
        with tf.GradientTape() as tape:
            loss = LOSS(yb, model(xb, training=True))
        if hvd is not None:
            tape = hvd.DistributedGradientTape(
                tape, compression=compression or hvd.Compression.none)
        grads = tape.gradient(loss, [v.value for v in model.trainable_variables])
        optimizer.apply(grads, model.trainable_variables)
        return loss

    def run():
        for xb, yb in dataset:
            loss = step(xb, yb)
        loss.numpy()

    return run


def tape_fit_model(hvd, name):
    """Horovod's tape in a Keras ``train_step`` override: it pays ``fit``'s loop as ours does."""

    class TapeModel(keras.Sequential):
        def train_step(self, batch):
            xb, yb = batch
            with tf.GradientTape() as tape:
                loss = LOSS(yb, self(xb, training=True))
            grads = hvd.DistributedGradientTape(tape).gradient(
                loss, [v.value for v in self.trainable_variables])
            self.optimizer.apply(grads, self.trainable_variables)
            return {"loss": loss}

    return TapeModel(MODELS[name]().layers)


def model_cases(hvd, name, mode):
    import keras_dlu.distributed as dist
    from keras_dlu.callbacks import BroadcastGlobalVariables, ForwardOverlap

    batch = BATCH[name]
    # every case, fit or loop, reads the same cached batches (fit on NumPy arrays would
    # rebuild its input pipeline at each call, a cost of the harness, not of the step)
    dataset = tf.data.Dataset.from_tensor_slices(data(name, STEPS * batch)).batch(batch).cache()

    def fitted(optimizer, spe=1, callbacks=(), model=None):
        (model := model or MODELS[name]()).compile(optimizer=optimizer, loss=LOSS,
                                                   steps_per_execution=spe)
        model.fit(dataset.take(spe), verbose=0,  # builds and traces
                  callbacks=[BroadcastGlobalVariables(0), *callbacks])
        return lambda: model.fit(dataset, verbose=0, callbacks=list(callbacks))

    def ours(spe=1, **kwargs):
        optimizer = dist.DistributedOptimizer(keras.optimizers.SGD(0.01), **kwargs)
        return fitted(optimizer, spe, [ForwardOverlap()] if spe > 1 else [])

    cases = {"tape": tape_loop(hvd, name, dataset)}
    if mode == "tape":
        return {f"{name}/tape": cases["tape"]}
    cases["ours"] = ours()
    cases["local"] = fitted(keras.optimizers.SGD(0.01))
    if name == "cnn":
        cases["local_loop"] = tape_loop(None, name, dataset)
        cases["ours_overlap"] = ours(SPE)
        # the dense kernel as chained 1 MiB segments instead of one collective
        cases["ours_overlap_chained"] = ours(SPE, chain_segment_bytes=2**20)
        if mode == "profile":  # the plan without the capped last bucket, under the timeline
            cases["ours_overlap_uncapped"] = ours(SPE, last_bucket_bytes=None)
        cases["ours_overlap_fp16"] = ours(SPE, compression="fp16")
        if mode == "main":
            cases["tape_fit"] = fitted(keras.optimizers.SGD(0.01),
                                       model=tape_fit_model(hvd, name))
            cases["tape_fp16"] = tape_loop(hvd, name, dataset, hvd.Compression.fp16)
    return {f"{name}/{case}": run for case, run in cases.items()}


def horovod_worker(mode, out):
    import horovod.tensorflow as hvd

    import keras_dlu.distributed as dist

    dist.init()
    cases = {}
    for name in (("cnn", "mlp") if mode == "main" else ("cnn",)):
        cases.update(model_cases(hvd, name, mode))
    for run in cases.values():  # warm-up
        run()
    names, times, marks = list(cases), {name: [] for name in cases}, {}
    for repeat in range(REPEATS):  # interleaved, order rotated so no case always follows another
        for name in names[repeat % len(names):] + names[:repeat % len(names)]:
            hvd.allreduce(tf.constant(0.0), name="bench.sync")
            begin = time.time()
            times[name].append(timed(cases[name]))
            marks[name] = (begin, time.time())  # the last repeat's window, for the timeline
    if hvd.rank() == 0:
        with open(out, "w") as f:
            json.dump({"seconds_per_step": {k: median(v) / STEPS for k, v in times.items()},
                       "spread": {k: [min(v) / STEPS, max(v) / STEPS] for k, v in times.items()},
                       "marks": marks}, f)


# ----------------------------------------------------------------- driver
def launch(tmp, rate, command, extra_env=None):
    """Runs ``command`` over the emulated link ``rate`` (``None``: the host loopback)."""
    env = dict(os.environ, PYTHONPATH=ROOT, **(extra_env or {}))
    if rate is None:
        result = subprocess.run(command, env=env, timeout=LAUNCH_TIMEOUT, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    else:
        result = netns.run(command, rate, timeout=LAUNCH_TIMEOUT, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{command[0]} failed at {rate}:\n{result.stdout[-3000:]}")


def horovod_launch(tmp, rate, mode, extra_env=None):
    out = os.path.join(tmp, f"{mode}-{rate}-{len(os.listdir(tmp))}.json")
    launch(tmp, rate, [os.path.join(os.path.dirname(sys.executable), "horovodrun"), "-np", "2",
                       "-H", "localhost:2", "--gloo", sys.executable, __file__, "--role", mode,
                       out, *(["--quick"] if QUICK else [])], extra_env)
    with open(out) as f:
        return json.load(f)


def mwms_launch(tmp, rate):
    out = os.path.join(tmp, f"mwms-{rate}.json")
    try:
        launch(tmp, rate, [sys.executable, os.path.join(os.path.dirname(__file__),
                                                        "_distributed_mwms.py"), "pair", out,
                           *(["--quick"] if QUICK else [])])
        with open(out) as f:
            return json.load(f)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
        return {"mwms_error": str(error)[-300:]}


def timeline_profile(tmp, rate, plot):
    """One launch with Horovod's timeline at ``rate``: per case the step, wire and waiting
    seconds per step and the collectives per step; with ``plot``, the plot of one step."""
    import _distributed_timeline as timeline

    from keras_dlu.utils import reports_dir

    trace = os.path.join(tmp, f"timeline-{rate}.json")
    result = horovod_launch(tmp, rate, "profile", {"HOROVOD_TIMELINE": trace})
    events, epoch = timeline.load(trace)
    profile = {"seconds_per_step": result["seconds_per_step"], "wire": {}, "waiting": {},
               "collectives": {}, "plot": None}
    panels = {}
    for case, window in result["marks"].items():
        ready, wire, negotiating = timeline.activities(events, epoch, window)
        profile["wire"][case] = timeline.union_seconds(wire) / STEPS
        # collectives Horovod ran per step, after its fusion
        profile["collectives"][case] = len(wire) / STEPS
        # rank 0 waiting for the other rank to enqueue (rank skew), the wire idle meanwhile
        profile["waiting"][case] = (timeline.union_seconds(wire + negotiating)
                                    - timeline.union_seconds(wire)) / STEPS
        if case.split("/")[1] in COMPUTE_ONLY:
            continue
        step_s = result["seconds_per_step"][case]
        # one step from the middle of the window (a whole step-function call of SPE steps)
        lo = (STEPS // 2) * step_s
        pick = [(s - lo, e - lo) for s, e in wire if lo <= s < lo + SPE * step_s]
        panels[case] = ([r - lo for r in ready if lo <= r < lo + SPE * step_s], pick, step_s)
    if plot:
        path = os.path.join(reports_dir(), "distributed_timeline.png")
        timeline.plot(panels, path, f"VGG-style CNN, 2 ranks, {rate} loopback: {SPE} steps "
                      "(Horovod timeline, rank 0)")
        profile["plot"] = os.path.relpath(path, ROOT) if path.startswith(ROOT) else path
    return profile


def rate_rows(line, rate, run, best_tape_s):
    """Throughput ratios (peer step time / our step time) for one link rate."""
    s = run["seconds_per_step"]
    label = rate or "host"
    row = {f"{m}_{case}_ms": s[f"{m}/{case}"] * 1e3 for m in ("cnn", "mlp")
           for case in ("ours", "ours_overlap", "tape", "local", "local_loop")
           if f"{m}/{case}" in s}
    for key in ("ours_overlap_fp16", "ours_overlap_chained", "tape_fit", "tape_fp16"):
        row[f"cnn_{key}_ms"] = s[f"cnn/{key}"] * 1e3
    row["cnn_overlap_vs_tape"] = s["cnn/tape"] / s["cnn/ours_overlap"]
    for m in ("cnn", "mlp"):
        row[f"{m}_ours_vs_tape"] = s[f"{m}/tape"] / s[f"{m}/ours"]
    row["cnn_overlap_vs_best_tape"] = best_tape_s / s["cnn/ours_overlap"]
    row["cnn_overlap_vs_tape_fit"] = s["cnn/tape_fit"] / s["cnn/ours_overlap"]
    row["cnn_overlap_fp16_vs_tape"] = s["cnn/tape"] / s["cnn/ours_overlap_fp16"]
    row["cnn_overlap_fp16_vs_best_tape"] = best_tape_s / s["cnn/ours_overlap_fp16"]
    row["cnn_overlap_fp16_vs_tape_fp16"] = s["cnn/tape_fp16"] / s["cnn/ours_overlap_fp16"]
    row["cnn_overlap_vs_no_overlap"] = s["cnn/ours"] / s["cnn/ours_overlap"]
    row["cnn_chained_vs_unchained"] = s["cnn/ours_overlap"] / s["cnn/ours_overlap_chained"]
    # what fit itself costs: the same training without communication, fit / raw loop
    row["cnn_fit_over_raw_loop_no_comm"] = s["cnn/local"] / s["cnn/local_loop"]
    row["cnn_overlap_over_local_fit"] = s["cnn/ours_overlap"] / s["cnn/local"]
    row["cnn_tape_over_local_loop"] = s["cnn/tape"] / s["cnn/local_loop"]
    row["cnn_spread_ms"] = {k.split("/")[1]: [round(v * 1e3, 1) for v in r]
                            for k, r in run["spread"].items() if k.startswith("cnn/")}
    line[label] = row


def main():
    reason = netns.unavailable_reason()
    rates = list(netns.RATES) if reason is None else [None]
    slow = rates[0]
    line = {"benchmark": "distributed", "np": 2, "batch_per_rank": BATCH, "steps": STEPS,
            "repeats": REPEATS, "steps_per_execution": SPE,
            "link": "private network namespace, loopback limited by tc tbf"
            if reason is None else f"host loopback only: {reason}"}
    with tempfile.TemporaryDirectory() as tmp:
        runs = {rate: horovod_launch(tmp, rate, "main") for rate in rates}
        grid = {f"{f >> 20}MiB/{c}ms": horovod_launch(tmp, slow, "tape", {
            "HOROVOD_FUSION_THRESHOLD": str(f), "HOROVOD_CYCLE_TIME": str(c)}
        )["seconds_per_step"]["cnn/tape"] for f, c in TAPE_GRID}
        mwms = mwms_launch(tmp, slow)
        profiles = {rate: timeline_profile(tmp, rate, plot=rate == slow)
                    for rate in rates if rate != "unlimited"}
    grid[f"{HOROVOD_DEFAULTS[0] >> 20}MiB/{HOROVOD_DEFAULTS[1]}ms"] = \
        runs[slow]["seconds_per_step"]["cnn/tape"]
    line["tape_grid_ms"] = {k: v * 1e3 for k, v in grid.items()}
    best_tape = min(grid.values())
    line["tape_grid_best"] = min(grid, key=grid.get)
    for rate, run in runs.items():
        tape_s = best_tape if rate == slow else run["seconds_per_step"]["cnn/tape"]
        rate_rows(line, rate, run, tape_s)
    line["cnn_mwms_ms"] = mwms["cnn/mwms"] * 1e3 if "cnn/mwms" in mwms else None
    if "mwms_error" in mwms:
        line["mwms_error"] = mwms["mwms_error"]
    # communication measured on the wire (timeline), hidden share against the same run's
    # compute-only step (profile launch: all its cases run with the timeline on)
    line["timeline_ms"] = {rate or "host": {case.split("/")[1]: {
        "step": pr["seconds_per_step"][case] * 1e3, "wire": pr["wire"][case] * 1e3,
        "waiting_for_other_rank": pr["waiting"][case] * 1e3,
        "collectives": pr["collectives"][case]} for case in pr["seconds_per_step"]}
        for rate, pr in profiles.items()}
    hidden = hidden_shares(line, profiles[slow])
    line["plots"] = [profiles[slow]["plot"]]
    simulations(line)
    emulated_link_check(line, cnn, {rate or "host": pr for rate, pr in profiles.items()},
                        BATCH["cnn"])
    line["targets"] = targets(line, runs, rates, best_tape, hidden)
    print(json.dumps(rounded(line)))


def rounded(value):
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


if __name__ == "__main__":
    if "--role" in sys.argv:
        role, out = sys.argv[sys.argv.index("--role") + 1], sys.argv[sys.argv.index("--role") + 2]
        horovod_worker(role, out)
    else:
        main()
