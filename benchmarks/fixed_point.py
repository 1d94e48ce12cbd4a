"""Dynamic fixed-point (Fujitsu DLU) benchmark; prints ONE JSON line.

--part throughput: ``keras_dlu.ops.dlu_matmul`` (int8 and int16; quantization of both
  operands and the three fused histograms included) as a speed ratio to ``tf.matmul``
  float32 on the same square matrices, measured side by side (round robin in rotating
  order, warm-up, median of repeats; small sizes timed in batches of calls) at 256, 1024
  and 2048. Targets: int8 >= 3x at 1024 and 2048,
  int16 >= 1x.
--part accuracy: float32 vs 16-bit vs 8-bit training on MNIST and tfmot QAT as a peer
  (benchmarks/_fixed_point_accuracy.py).

    python benchmarks/fixed_point.py                     # all parts
    python benchmarks/fixed_point.py --part throughput   # seconds
    python benchmarks/fixed_point.py --quick             # to check the script
"""

import argparse
import json
import statistics
import time

from keras_dlu.utils import quiet_tensorflow

tf = quiet_tensorflow()

import numpy as np  # noqa: E402

from keras_dlu.ops import dlu_matmul  # noqa: E402

SIZES = (256, 1024, 2048)
TARGETS = {"int8": 3.0, "int16": 1.0}
TARGET_SIZES = (1024, 2048)


def _timed(fn, calls):
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def throughput(sizes=SIZES, repeats=7):
    """Speed ratios ``time(tf.matmul f32) / time(dlu_matmul)`` per size and bit width."""
    rng = np.random.default_rng(0)
    ratios = {"int8": {}, "int16": {}}
    millis = {"tf_matmul_f32": {}, "int8": {}, "int16": {}}
    for n in sizes:
        a = tf.constant(rng.standard_normal((n, n)).astype(np.float32))
        b = tf.constant(rng.standard_normal((n, n)).astype(np.float32))
        runs = {
            "tf_matmul_f32": lambda: tf.matmul(a, b).numpy(),
            "int8": lambda: dlu_matmul(a, b, -5, -5, bits=8)[0].numpy(),
            "int16": lambda: dlu_matmul(a, b, -12, -12, bits=16)[0].numpy(),
        }
        for fn in runs.values():  # warm-up (JIT kernels, allocator)
            fn()
        times = {key: [] for key in runs}
        calls = max(1, (1 << 30) // n**3)  # batches of ~1 GMAC so small sizes time well
        keys = list(runs)
        for repeat in range(repeats if n < 2048 else max(3, repeats // 2)):
            # rotate the order: no variant always runs right after another's thread pool
            for key in keys[repeat % 3:] + keys[:repeat % 3]:
                times[key].append(_timed(runs[key], calls))
        median = {key: statistics.median(t) for key, t in times.items()}
        for key in runs:
            millis[key][str(n)] = round(median[key] * 1e3, 3)
        for bits in ("int8", "int16"):
            ratios[bits][str(n)] = round(median["tf_matmul_f32"] / median[bits], 2)
    met = {bits: all(ratios[bits].get(str(n), 0) >= TARGETS[bits] for n in TARGET_SIZES
                     if str(n) in ratios[bits]) for bits in TARGETS}
    return {"speedup_vs_tf_matmul_f32": ratios, "median_ms": millis,
            "targets": {f"{bits}_at_{'_'.join(map(str, TARGET_SIZES))}": f">= {t}x"
                        for bits, t in TARGETS.items()},
            "targets_met": met}


def accuracy(quick=False):
    """Float32 vs 16/8-bit training on MNIST (benchmarks/_fixed_point_accuracy.py)."""
    from _fixed_point_accuracy import accuracy as run  # this script's folder is on sys.path
    return run(seeds=(0,), epochs=1) if quick else run()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("throughput", "accuracy", "all"), default="all")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true",
                        help="fewer repeats and one accuracy seed/epoch, to check the script")
    args = parser.parse_args()
    result = {"benchmark": "fixed_point", "quick": args.quick}
    if args.part in ("throughput", "all"):
        result["throughput"] = throughput(repeats=3 if args.quick else args.repeats)
    if args.part in ("accuracy", "all"):
        result["accuracy"] = accuracy(quick=args.quick)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
