"""horovodrun worker: DistributedOptimizer against single-process training, many configs.

Every rank gets different data and different initial weights. For each optimizer and
planner configuration it trains with ``DistributedOptimizer`` + ``BroadcastGlobalVariables``
and, locally, the single-process reference (root's initial weights, the concatenated
batch); it reports both, plus a run without averaging (must differ across ranks), a
checkpoint round trip, a mismatched-shape model and metric averaging. One launch covers
them all (launches are expensive). ``--quick`` runs a subset (used at -np 3).
"""

import os
import sys
import time

from keras_dlu.utils import quiet_tensorflow

tf = quiet_tensorflow()
import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_dlu.distributed as dist  # noqa: E402
from keras_dlu.callbacks import BroadcastGlobalVariables, ForwardOverlap, MetricAverage  # noqa: E402
from keras_dlu.optimizers.sdprop import SDProp  # noqa: E402  (must take part: no fallback)
from tests.support.horovod import write_result  # noqa: E402

QUICK = "--quick" in sys.argv
BATCH, STEPS, FEATURES = 4, 3, 8

dist.init()
RANK, SIZE = dist.rank(), dist.size()
START = time.perf_counter()


def optimizers():
    return {"sgd": lambda: keras.optimizers.SGD(0.05, momentum=0.5),
            "adam": lambda: keras.optimizers.Adam(0.01), "sdprop": lambda: SDProp(0.01)}


CONFIGS = {  # together: several fusion thresholds, segment sizes, both large-tensor strategies,
    # the default plan, and several steps per traced call with ForwardOverlap ("spe"; 3 steps
    # per epoch at spe=2: one overlapped call, then Keras' own function for the last step)
    "default": {},
    "forward_overlap": {"spe": 2, "fusion_threshold_bytes": 200, "first_bucket_bytes": 64},
    # the capped last bucket (the first layer alone, the layers above fused before it), all
    # three steps of the epoch in one overlapped call
    "forward_overlap_last_bucket": {"spe": 3, "fusion_threshold_bytes": 10**4,
                                    "last_bucket_bytes": 600},
    # chained segments (both kernels are at least the fusion threshold: 4 and 2 segments,
    # each launched after the previous one arrived), three steps per overlapped call
    "forward_overlap_chained": {"spe": 3, "fusion_threshold_bytes": 200,
                                "first_bucket_bytes": 64, "chain_segment_bytes": 400},
    "fused_and_reduce_scatter": {"fusion_threshold_bytes": 200, "first_bucket_bytes": 64,
                                 "large_tensor_bytes": 256, "segment_bytes": 100,
                                 "large_tensor_strategy": "reduce_scatter"},
    "segmented_allreduce": {"large_tensor_bytes": 256, "segment_bytes": 60,
                            "large_tensor_strategy": "allreduce", "priority": "after_all"},
}
# Which optimizers train under each plan. The plan decides only which collectives carry the
# gradients; the wrapped optimizer gets the same one apply call per step under every plan. So
# every plan runs with one or two optimizers (each launch costs a trace), and every optimizer
# runs under at least one ForwardOverlap plan, where several steps share one graph and its own
# slots and iteration counter could be read out of order.
RUNS = {
    "default": ("sgd", "sdprop"),
    "forward_overlap": ("adam",),
    "forward_overlap_last_bucket": ("sgd", "sdprop"),
    "forward_overlap_chained": ("sgd", "adam"),
    "fused_and_reduce_scatter": ("adam",),
    "segmented_allreduce": ("sdprop",),
}
# --quick (3 ranks): where the rank count changes the work: reduce-scatter of a length that 3
# does not divide (padding), a chain under ForwardOverlap, and the default plan.
QUICK_RUNS = {"default": ("sgd",), "forward_overlap_chained": ("adam",),
              "fused_and_reduce_scatter": ("sdprop",)}


def build_model(seed, hidden=16):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(hidden, activation="tanh"),
                             keras.layers.Dense(24, activation="tanh"), keras.layers.Dense(1)])


def global_data(steps):
    """The first ``steps`` global batches of one fixed data set (same on every rank)."""
    rng = np.random.default_rng(7)
    coefficients = rng.normal(size=(FEATURES, 1))
    x = rng.normal(size=(4 * STEPS * SIZE * BATCH, FEATURES)).astype("float32")
    y = (x @ coefficients + 0.3 * np.sin(3 * x[:, :1])).astype("float32")
    return x[:steps * SIZE * BATCH], y[:steps * SIZE * BATCH]


def local_slice(array, steps, batch=BATCH):
    """This rank's share: at step s, samples [s*SIZE*batch + RANK*batch, ... + batch)."""
    parts = [array[s * SIZE * batch + RANK * batch: s * SIZE * batch + (RANK + 1) * batch]
             for s in range(steps)]
    return np.concatenate(parts)


def flat(model):
    return np.concatenate([w.reshape(-1) for w in model.get_weights()])


def distributed_fit(factory, config, rounds=1, callbacks=(), passes=1):
    """One epoch over ``rounds * STEPS`` local batches."""
    config = dict(config)
    spe = config.pop("spe", 1)
    model = build_model(100 + RANK)  # different initial weights on every rank
    model.compile(optimizer=dist.DistributedOptimizer(factory(), backward_passes_per_step=passes,
                                                      **config), loss="mse",
                  steps_per_execution=spe)
    x, y = global_data(STEPS * rounds)
    overlap = [ForwardOverlap()] if spe > 1 else []
    history = model.fit(local_slice(x, STEPS * rounds), local_slice(y, STEPS * rounds),
                        batch_size=BATCH, shuffle=False, verbose=0,
                        callbacks=[BroadcastGlobalVariables(0), *overlap, *callbacks])
    return model, history


def reference_fit(factory, rounds=1, passes=1):
    model = build_model(100)  # root's initial weights
    model.compile(optimizer=factory(), loss="mse")
    x, y = global_data(STEPS * rounds)
    model.fit(x, y, batch_size=BATCH * SIZE * passes, shuffle=False, verbose=0)
    return model


def max_diff(a, b):
    return float(np.max(np.abs(a - b)))


result = {"size": SIZE, "rank": RANK, "configs": {}, "seconds": {}}


def mark(section):
    """Seconds since ``init()`` at the end of ``section`` (the test prints where time goes)."""
    result["seconds"][section] = round(time.perf_counter() - START, 1)


# The launcher itself: every rank contributes rank + 1 and must receive the mean.
import horovod.tensorflow as hvd  # noqa: E402

result["launcher_mean"] = hvd.allreduce(tf.fill([3], float(RANK + 1)), op=hvd.Average,
                                        name="launcher_check").numpy().tolist()

# Rank 0 alone builds and fits an extra model first: Keras' auto-generated layer and
# optimizer names now differ between ranks, which must not matter to the collectives.
if RANK == 0:
    extra = build_model(5)
    extra.compile(optimizer="adam", loss="mse")
    extra.fit(np.zeros((4, FEATURES)), np.zeros((4, 1)), verbose=0)

result["initial_diff_from_root"] = max_diff(flat(build_model(100 + RANK)), flat(build_model(100)))

factories = optimizers()
result["optimizers"] = sorted(factories)
references = {}
for config_name, names in (QUICK_RUNS if QUICK else RUNS).items():
    for opt_name in names:
        if opt_name not in references:
            references[opt_name] = flat(reference_fit(factories[opt_name]))
        model, _ = distributed_fit(factories[opt_name], CONFIGS[config_name])
        weights = flat(model)
        _, buckets = model.optimizer.plan([tf.zeros(v.shape) for v in model.trainable_variables])
        result["configs"][f"{opt_name}/{config_name}"] = {
            "diff_to_reference": max_diff(weights, references[opt_name]),
            "weights": weights.tolist(), "buckets": [b.variable_indices for b in buckets],
            "kinds": [b.kind for b in buckets]}
mark("configs")

# Without averaging (plain optimizer, same broadcast): ranks must end differently.
plain = build_model(100 + RANK)
plain.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
x, y = global_data(STEPS)
plain.fit(local_slice(x, STEPS), local_slice(y, STEPS), batch_size=BATCH, shuffle=False,
          verbose=0, callbacks=[BroadcastGlobalVariables(0)])
result["unaveraged_weights"] = flat(plain).tolist()
mark("unaveraged")

# float16 on the wire (all-gathered and averaged in float32 at 2 ranks, a float16 allreduce at
# 3), fused buckets and segments: the reference within float16 rounding, ranks equal.
sgd_fp16 = lambda: keras.optimizers.SGD(0.05, momentum=0.5)  # noqa: E731
model, _ = distributed_fit(sgd_fp16, {"compression": "fp16", "fusion_threshold_bytes": 200,
                                      "first_bucket_bytes": 64, "large_tensor_bytes": 256,
                                      "segment_bytes": 100})
result["fp16_diff"] = max_diff(flat(model), flat(reference_fit(sgd_fp16)))
result["fp16_weights"] = flat(model).tolist()
mark("fp16")

if not QUICK:
    sgd = lambda: keras.optimizers.SGD(0.05)  # noqa: E731
    # Gradient accumulation: two local passes per averaged update.
    model, _ = distributed_fit(sgd, {}, rounds=2, passes=2)
    reference = reference_fit(sgd, rounds=2, passes=2)
    result["accumulation_diff"] = max_diff(flat(model), flat(reference))
    mark("accumulation")

    # Loss scaling inside: LossScaleOptimizer(SGD) wrapped.
    lso = lambda: keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.05))  # noqa: E731
    model, _ = distributed_fit(lso, {"large_tensor_bytes": 256, "segment_bytes": 100})
    result["loss_scale_diff"] = max_diff(flat(model), flat(reference_fit(lso)))
    mark("loss_scale")

    # Metric averaging: every rank logs the mean of the ranks' own losses.
    average = MetricAverage()
    model, history = distributed_fit(lambda: keras.optimizers.Adam(0.01), {},
                                     callbacks=[average])
    result["averaged_loss"] = history.history["loss"][0]
    result["local_loss"] = average.local_logs["loss"]
    mark("metric_average")

    # Checkpoint by rank 0, restored on all ranks, continues like an uninterrupted run.
    adam = lambda: keras.optimizers.Adam(0.01)  # noqa: E731
    uninterrupted, _ = distributed_fit(adam, {"fusion_threshold_bytes": 300}, rounds=2)
    first, _ = distributed_fit(adam, {"fusion_threshold_bytes": 300}, rounds=1)
    path = os.path.join(os.environ["KERAS_DLU_TEST_OUT"], "checkpoint.keras")
    if RANK == 0:
        first.save(path)
    hvd.allreduce(tf.constant(0.0), name="test.barrier_after_save")
    restored = keras.models.load_model(path)
    result["restored_optimizer"] = type(restored.optimizer).__name__
    x, y = global_data(2 * STEPS)
    restored.fit(local_slice(x, 2 * STEPS)[STEPS * BATCH:], local_slice(y, 2 * STEPS)[STEPS * BATCH:],
                 batch_size=BATCH, shuffle=False, verbose=0, callbacks=[BroadcastGlobalVariables(0)])
    result["checkpoint_diff"] = max_diff(flat(restored), flat(uninterrupted))
    result["checkpoint_reference_diff"] = max_diff(flat(restored), flat(reference_fit(adam, rounds=2)))
    mark("checkpoint")

    # Different model shapes per rank: a ValueError naming the variable, on every rank,
    # with one step per call and with several (ForwardOverlap's traced function).
    # The overlapped one with chained segments (plan: kernels of at least 200 bytes chained).
    for key, spe, plan in (("mismatch_error", 1, {}), ("mismatch_error_overlap", 2, {
            "fusion_threshold_bytes": 200, "chain_segment_bytes": 400})):
        mismatched = build_model(1, hidden=16 + RANK)
        mismatched.compile(optimizer=dist.DistributedOptimizer(keras.optimizers.SGD(), **plan),
                           loss="mse", steps_per_execution=spe)
        try:
            mismatched.fit(np.zeros((8, FEATURES)), np.zeros((8, 1)), batch_size=4, verbose=0,
                           callbacks=[ForwardOverlap()] if spe > 1 else [])
            result[key] = None
        except ValueError as error:
            result[key] = str(error)
    mark("mismatch")

write_result(RANK, result)
