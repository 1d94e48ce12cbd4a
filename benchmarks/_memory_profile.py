"""Where MemoryOptimizer's step time goes: the profile behind its missed step-time target.

Run: ``python benchmarks/memory.py --profile`` (VGG-style, Adam, batch 8 and 32, and
AlexNet-style, SGD-momentum, batch 8). For each case, stock ``fit``'s train function and
the optimized one are traced with TensorFlow's profiler over the same steps of one process
(default threading) and the trace's op events are summed per step:

* ``wall_ms``: the train function's own event (one per step);
* ``op_ms``: the summed durations of the kernels it ran (TensorFlow's executor runs several
  at once, so this exceeds the wall time);
* ``concurrency``: ``op_ms / wall_ms``, the kernels running at once on average;
* ``ops``: kernels run per step;
* ``largest_increases``: the op types whose summed time grew the most, stock -> optimized,
  with their counts per step.

Prints one JSON line.
"""

import collections
import glob
import os
import shutil
import tempfile

import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

from keras_dlu.memory import models
from keras_dlu.memory.measure import optimized_train_function, stock_train_function

CASES = (("vgg_style", "adam", 8), ("vgg_style", "adam", 32),
         ("alexnet_style", "sgd_momentum", 8))
STEPS = 10
CONTAINERS = ("Process", "Run")  # events that hold other events, not kernels


def _per_step_op_times(trace_dir):
    """{op type: (ms per step, count per step)} from the trace's XPlane file."""
    (path,) = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    total, count = collections.Counter(), collections.Counter()
    for plane in space.planes:
        names = {i: m.name for i, m in plane.event_metadata.items()}
        for line in plane.lines:
            for event in line.events:
                name = names.get(event.metadata_id, "")
                if ":" in name:  # "<op name>:<op type>"
                    kind = name.rsplit(":", 1)[1].strip()
                    total[kind] += event.duration_ps / 1e9 / STEPS
                    count[kind] += 1 / STEPS
    return total, count


def _trace(function, iterator):
    trace_dir = tempfile.mkdtemp(prefix="memory-profile-")
    try:
        tf.profiler.experimental.start(trace_dir)
        for _ in range(STEPS):
            function(iterator)["loss"].numpy()
        tf.profiler.experimental.stop()
        return _per_step_op_times(trace_dir)
    finally:
        shutil.rmtree(trace_dir, ignore_errors=True)


def _summary(total, count):
    wall = sum(v for k, v in total.items() if k.startswith("__inference"))
    kernels = {k: v for k, v in total.items()
               if k not in CONTAINERS and not k.startswith("__inference")}
    op_ms = sum(kernels.values())
    return {"wall_ms": round(wall, 1), "op_ms": round(op_ms, 1),
            "concurrency": round(op_ms / wall, 2) if wall else None,
            "ops": round(sum(count[k] for k in kernels))}, kernels


def profile_case(model_name, optimizer_config, batch_size):
    model, iterator = models.compiled_with_batches(model_name, batch_size, {"image_size": 32},
                                                   optimizer_config)
    functions = {"stock": stock_train_function(model),
                 "optimized": optimized_train_function(model, batch_size)}
    for function in functions.values():  # trace and warm up
        for _ in range(3):
            function(iterator)["loss"].numpy()
    out, kernels, counts = {}, {}, {}
    for kind, function in functions.items():
        total, counts[kind] = _trace(function, iterator)
        out[kind], kernels[kind] = _summary(total, counts[kind])
    growth = sorted(set(kernels["stock"]) | set(kernels["optimized"]),
                    key=lambda k: kernels["stock"].get(k, 0) - kernels["optimized"].get(k, 0))
    out["largest_increases"] = {
        k: {kind: [round(kernels[kind].get(k, 0), 2), round(counts[kind].get(k, 0))]
            for kind in functions} for k in growth[:5]}
    out["time_ratio"] = round(out["optimized"]["wall_ms"] / out["stock"]["wall_ms"], 3)
    return out


def profile(optimizers):
    """The JSON-able profile of every case in ``CASES``."""
    return {f"{m}_{o}_b{b}": profile_case(m, optimizers[o], b) for m, o, b in CASES}
