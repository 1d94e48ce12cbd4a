"""Dynamic fixed-point (Fujitsu DLU) benchmark; prints ONE JSON line.

--part throughput: ``keras_dlu.ops.dlu_matmul`` (int8 and int16; quantization of both
  operands and the three fused histograms included) as a speed ratio to ``tf.matmul``
  float32 on the same square matrices, measured side by side (round robin, warm-up,
  median of repeats) at 256, 1024 and 2048. Targets: int8 >= 3x at 1024 and 2048,
  int16 >= 1x.
--part accuracy: float32 vs 16-bit vs 8-bit training on MNIST and tfmot QAT as a peer
  (benchmarks/fixed_point_accuracy.py).

    python benchmarks/fixed_point.py                     # all parts
    python benchmarks/fixed_point.py --part throughput   # seconds
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


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


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
        for _ in range(repeats if n < 2048 else max(3, repeats // 2)):
            for key, fn in runs.items():
                times[key].append(_timed(fn))
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


def accuracy():
    """float32 vs DLU 16/8-bit vs tfmot QAT on MNIST (benchmarks/fixed_point_accuracy.py)."""
    import os
    import sys

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from fixed_point_accuracy import accuracy as run_accuracy

    return run_accuracy()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("throughput", "accuracy", "all"), default="all")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    result = {"benchmark": "fixed_point"}
    if args.part in ("throughput", "all"):
        result["throughput"] = throughput(repeats=args.repeats)
    if args.part in ("accuracy", "all"):
        result["accuracy"] = accuracy()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
