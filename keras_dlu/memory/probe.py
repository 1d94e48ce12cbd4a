"""Stock vs optimized step peaks measured in a fresh process.

The peak of one training step depends on the order in which TensorFlow's executor runs
independent ops and on what the allocator already holds, so each measurement runs in a
new Python process. ``threads=None`` keeps TensorFlow's default threading (what users
run); ``threads=1`` sets one inter-op thread before TensorFlow initialises (intra-op
parallelism inside each kernel is kept), which fixes the executor's schedule. ``kinds``
chooses what the process trains: one kind alone (a process per kind: its allocator sees
only that step, as in a user's ``fit``) or both, interleaved (stock, optimized, stock,
...) on the same model and batch, so the step-time ratio of the medians sees the same
machine noise on both sides.

Run as ``python -m keras_dlu.memory.probe '<json spec>'``; it prints one JSON line.
"""

import json
import os
import subprocess
import sys

from keras_dlu.utils.quiet import ALLOCATOR_STATS_ENV

KINDS = ("stock", "optimized")


def isolated_peaks(model, batch_size, model_kwargs=None, optimizer=None, repeats=5,
                   fuse_update=True, timeout=600, threads=None, kinds=KINDS):
    """Measures stock and optimized training steps of a ``keras_dlu.memory.models`` model.

    Args:
        model: a name in ``keras_dlu.memory.models.BUILDERS``.
        batch_size: the batch size of the measured steps.
        model_kwargs: keyword arguments of the builder (default none).
        optimizer: a Keras optimizer config, e.g. ``{"class_name": "SGD", "config":
            {"learning_rate": 0.01, "momentum": 0.9}}`` (default plain SGD 0.01).
        repeats: measured steps of each kind, after one warm-up step each.
        fuse_update: passed to ``optimized_train_function``.
        timeout: seconds before the subprocess is abandoned.
        threads: None (default: TensorFlow's default threading) or a positive int of
            inter-op threads.
        kinds: a non-empty subset of ``("stock", "optimized")``, the steps trained (in
            this order, interleaved).

    Returns:
        A dict with lists ``<kind>_peaks`` (bytes above resident) and ``<kind>_seconds``
        for each kind, one entry per repeat, and ``<kind>_fallback`` (None when the
        rewritten step ran; only for "optimized").
    """
    kinds = tuple(kinds)
    if not kinds or any(k not in KINDS for k in kinds) or len(set(kinds)) != len(kinds):
        raise ValueError(f"kinds must be a non-empty subset of {KINDS}; received {kinds!r}.")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise ValueError(f"threads must be None or a positive int; received {threads!r}.")
    spec = dict(model=model, batch_size=int(batch_size), model_kwargs=model_kwargs or {},
                optimizer=optimizer or {"class_name": "SGD",
                                        "config": {"learning_rate": 0.01}},
                repeats=int(repeats), fuse_update=bool(fuse_update), threads=threads,
                kinds=list(kinds))
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    env.setdefault(*ALLOCATOR_STATS_ENV)  # read before the child imports TensorFlow
    done = subprocess.run([sys.executable, "-m", "keras_dlu.memory.probe", json.dumps(spec)],
                          capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode:
        raise RuntimeError(f"memory probe failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _main(spec):
    from keras_dlu.utils import quiet_tensorflow

    tf = quiet_tensorflow()
    if spec["threads"]:
        tf.config.threading.set_inter_op_parallelism_threads(spec["threads"])
    import time

    from keras_dlu.memory import models, unsupported_reason
    from keras_dlu.memory.allocator import device, peak_above_current, require_stats
    from keras_dlu.memory.measure import optimized_train_function, stock_train_function

    size = spec["batch_size"]
    model, iterator = models.compiled_with_batches(spec["model"], size, spec["model_kwargs"],
                                                   spec["optimizer"])
    make = {"stock": lambda: stock_train_function(model),
            "optimized": lambda: optimized_train_function(model, size, spec["fuse_update"])}
    functions = {kind: make[kind]() for kind in spec["kinds"]}
    result = {f"{k}_{m}": [] for k in functions for m in ("peaks", "seconds")}
    if "optimized" in functions:
        result["optimized_fallback"] = unsupported_reason(model)
    require_stats(device())
    for function in functions.values():  # trace and warm up
        function(iterator)["loss"].numpy()

    def timed_step(function):
        start = time.perf_counter()
        function(iterator)["loss"].numpy()
        return time.perf_counter() - start

    for _ in range(spec["repeats"]):
        for kind, function in functions.items():
            peak, seconds = peak_above_current(lambda: timed_step(function))
            result[f"{kind}_seconds"].append(seconds)
            result[f"{kind}_peaks"].append(peak)
    print(json.dumps(result))


if __name__ == "__main__":
    _main(json.loads(sys.argv[1]))
