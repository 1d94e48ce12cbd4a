"""Stock vs optimized step peaks measured in a fresh, single-scheduled process.

The peak of one training step depends on the order in which TensorFlow's executor runs
independent ops: with several inter-op threads, stock ``fit``'s peak on a small VGG-style
model moves between steps (6-12 MiB for an 8 MiB median), and other work in the same
process (earlier tests' tensors, a warm allocator) shifts it further. ``isolated_peaks``
therefore measures in a new Python process that sets one inter-op thread before
TensorFlow initialises (intra-op parallelism inside each kernel is kept), so the schedule,
and with it the allocator's peak, is the same every step. Stock and optimized steps run
on the same model and batch and are interleaved (stock, optimized, stock, ...), so the
step-time ratio of the medians sees the same machine noise on both sides.

Run as ``python -m keras_dlu.memory.probe '<json spec>'``; it prints one JSON line.
"""

import json
import os
import subprocess
import sys


def isolated_peaks(model, batch_size, model_kwargs=None, optimizer=None, repeats=5,
                   fuse_update=True, timeout=600):
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

    Returns:
        A dict with lists ``stock_peaks``, ``optimized_peaks`` (bytes above resident)
        and ``stock_seconds``, ``optimized_seconds``, one entry per repeat.
    """
    spec = dict(model=model, batch_size=int(batch_size), model_kwargs=model_kwargs or {},
                optimizer=optimizer or {"class_name": "SGD",
                                        "config": {"learning_rate": 0.01}},
                repeats=int(repeats), fuse_update=bool(fuse_update))
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    done = subprocess.run([sys.executable, "-m", "keras_dlu.memory.probe", json.dumps(spec)],
                          capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode:
        raise RuntimeError(f"memory probe failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _main(spec):
    from keras_dlu.utils import quiet_tensorflow

    tf = quiet_tensorflow()
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import time

    import keras
    import numpy as np

    from keras_dlu.memory import models
    from keras_dlu.memory.measure import optimized_train_function, stock_train_function

    keras.utils.set_random_seed(0)
    model = models.BUILDERS[spec["model"]](**spec["model_kwargs"])
    model.compile(optimizer=keras.optimizers.deserialize(spec["optimizer"]),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.optimizer.build(model.trainable_variables)
    size = spec["batch_size"]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(size,) + tuple(model.inputs[0].shape[1:])).astype("float32")
    y = rng.integers(0, 10, size=(size,))
    iterator = iter(tf.data.Dataset.from_tensors((x, y)).repeat())
    functions = {
        "stock": stock_train_function(model),
        "optimized": optimized_train_function(model, size, spec["fuse_update"]),
    }
    result = {f"{k}_{m}": [] for k in functions for m in ("peaks", "seconds")}
    device = "GPU:0" if tf.config.list_logical_devices("GPU") else "CPU:0"
    for function in functions.values():  # trace and warm up
        function(iterator)["loss"].numpy()
    for _ in range(spec["repeats"]):
        for kind, function in functions.items():
            tf.config.experimental.reset_memory_stats(device)
            before = tf.config.experimental.get_memory_info(device)["current"]
            start = time.perf_counter()
            function(iterator)["loss"].numpy()
            result[f"{kind}_seconds"].append(time.perf_counter() - start)
            result[f"{kind}_peaks"].append(
                tf.config.experimental.get_memory_info(device)["peak"] - before)
    print(json.dumps(result))


if __name__ == "__main__":
    _main(json.loads(sys.argv[1]))
