"""The exponent histograms fused into dlu_matmul's row passes (ops/cc/kernels/dlu_histogram.h):
the AVX-512BW chunk counter and the AVX2 pair counter (forced with KERAS_DLU_NO_AVX512=1)
both equal the NumPy reference on values spanning every bin, subnormals, zeros, infinities
and NaNs, in rows longer than one 4,096-element chunk and with ragged tails."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.support.environment import cpu_flags
from tests.support.references import exponent_histogram_reference

pytestmark = pytest.mark.usefixtures("native_ops")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Prints the a and b histograms of dlu_matmul for the shapes below, as JSON.
_SCRIPT = """
import json, sys
import numpy as np
from keras_dlu.ops import dlu_matmul, gemm_info
sys.path.insert(0, {repo!r})
from tests.ops.test_row_histogram import wide_range
out = []
for m, k, n in {shapes!r}:
    a, b = wide_range((m, k), 1), wide_range((k, n), 2)
    out.append(dlu_matmul(a, b, 0, 0, bits=8)[1].numpy()[:2].tolist())
print(json.dumps({{"histograms": out, "detail": gemm_info()["detail"]}}))
"""
SHAPES = [(3, 9001, 5), (1, 4096, 1), (7, 33, 2), (2, 1, 3)]


def wide_range(shape, seed):
    """Floats of random sign with exponents from -160 to 130 (every bin, subnormals), some
    zeros, infinities and NaNs."""
    rng = np.random.default_rng(seed)
    x = np.ldexp(rng.uniform(1, 2, shape), rng.integers(-160, 130, shape)).astype(np.float32)
    x *= rng.choice([-1, 1], shape).astype(np.float32)
    special = rng.random(shape)
    x[special < 0.05] = 0.0
    x[(special > 0.05) & (special < 0.06)] = np.inf
    x[(special > 0.06) & (special < 0.07)] = np.nan
    return x


@pytest.mark.parametrize("force_avx2", [False, True], ids=["cpu_default", "avx2_pairs"])
def test_histograms_equal_the_reference(force_avx2):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("KERAS_DLU_NO_AVX512", None)
    if force_avx2:
        env["KERAS_DLU_NO_AVX512"] = "1"
    script = _SCRIPT.format(repo=REPO, shapes=SHAPES)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    avx512 = {"avx512f", "avx512bw"} <= cpu_flags()
    counter = "avx512bw" if avx512 and not force_avx2 else "avx2"
    assert result["detail"].endswith(f"histograms {counter}"), result["detail"]
    assert np.all(exponent_histogram_reference(wide_range(SHAPES[0][:2], 1)) > 0)
    for (m, k, n), (hist_a, hist_b) in zip(SHAPES, result["histograms"]):
        a, b = wide_range((m, k), 1), wide_range((k, n), 2)
        np.testing.assert_array_equal(hist_a, exponent_histogram_reference(a))
        np.testing.assert_array_equal(hist_b, exponent_histogram_reference(b))
