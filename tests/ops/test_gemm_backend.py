"""The CPU integer GEMM behind dlu_matmul: oneDNN's matmul primitive where the CPU has
integer dot products, one cached primitive per problem, oneDNN's float32 GEMM on the digits
where it has not, and the portable fallback (used and announced once when forced), all
bit-exact with the integer reference."""

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from keras_dlu.ops import gemm_info
from keras_dlu.ops.loader import build_info
from tests.support.environment import cpu_flags
from tests.support.fixed_point import check_dlu_matmul

pytestmark = pytest.mark.usefixtures("native_ops")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _cpu_has_integer_dot_product():
    return bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})


def _operands(shape_a, shape_b, seed):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape_a).astype(np.float32),
            rng.standard_normal(shape_b).astype(np.float32))


def test_uses_the_onednn_primitive_where_the_cpu_allows():
    info = gemm_info()
    assert info["backend"] in ("onednn", "onednn_f32", "portable") and info["detail"]
    if (build_info() or {}).get("onednn") and not os.environ.get("KERAS_DLU_GEMM"):
        # no silent fallback: the integer primitive on a capable CPU, else float32 sgemm
        want = "onednn" if _cpu_has_integer_dot_product() else "onednn_f32"
        assert info["backend"] == want, info
        assert "isa" in info["detail"]


@pytest.mark.skipif("isa avx512_core_amx" not in gemm_info()["detail"],
                    reason="no AMX-INT8 on this CPU (oneDNN ISA: "
                           f"{gemm_info()['detail']}): no float-output primitive")
def test_8_bit_products_come_out_of_the_primitive_as_floats_where_exact():
    a, b = _operands((37, 50), (50, 29), 8)
    # exponent sums whose results are normal floats: converted and scaled by oneDNN
    for ea, eb, ta, tb in [(-5, -6, False, False), (-60, 40, True, False),
                           (3, -100, True, True)]:
        before = gemm_info()["float_products"]
        check_dlu_matmul(np.ascontiguousarray(a.T) if ta else a,
                         np.ascontiguousarray(b.T) if tb else b, ea, eb, 8,
                         transpose_a=ta, transpose_b=tb)
        assert gemm_info()["float_products"] == before + 1
    # full 64 x 64 blocks of the packed B (dlu_pack.cc) beside partial ones, every transpose
    big_a, big_b = _operands((70, 130), (130, 150), 11)
    for ta, tb in [(False, False), (True, False), (False, True), (True, True)]:
        check_dlu_matmul(np.ascontiguousarray(big_a.T) if ta else big_a,
                         np.ascontiguousarray(big_b.T) if tb else big_b, -5, -6, 8,
                         transpose_a=ta, transpose_b=tb)
    # results that may be subnormal or overflow, and 16 bits: the int32 pass, still exact
    a, b = _operands((23, 40), (40, 19), 9)  # problems no other test creates first
    for ea, eb, bits in [(-70, -70, 8), (60, 60, 8), (-12, -12, 16)]:
        before = gemm_info()["float_products"]
        check_dlu_matmul(a, b, ea, eb, bits)
        assert gemm_info()["float_products"] == before


_VNNI_ONLY = r"""
import json
import numpy as np
from keras_dlu.utils import quiet_tensorflow
quiet_tensorflow()
from keras_dlu.ops import gemm_info
from tests.support.environment import cpu_flags
from tests.support.fixed_point import check_dlu_matmul
rng = np.random.default_rng(0)
for ta in (False, True):
    a = rng.standard_normal((130, 70)).astype(np.float32)
    b = rng.standard_normal((130, 150)).astype(np.float32)
    check_dlu_matmul(a if ta else a.T.copy(), b, -5, -6, 8, transpose_a=ta)
print(json.dumps(gemm_info()))
"""


def test_vnni_kernels_keep_the_int32_route():
    """Without AMX (oneDNN limited to AVX-512 VNNI), a signed A would need oneDNN's slow
    compensating weight reorder: products stay on the u8 x s8 -> s32 route, still exact."""
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX512_CORE_VNNI", TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", _VNNI_ONLY], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    info = json.loads(done.stdout.strip().splitlines()[-1])
    assert info["float_products"] == 0 and "amx" not in info["detail"], info


@pytest.mark.skipif(gemm_info()["backend"] != "onednn",
                    reason="no integer matmul primitive on this CPU (backend "
                           f"{gemm_info()['backend']}): no primitive cache")
@pytest.mark.parametrize("bits", [8, 16])
def test_primitive_cache_per_shape_and_transposes(bits):
    e = -5 if bits == 8 else -12
    a, b = _operands((37, 50), (50, 29), bits)
    before = gemm_info()
    check_dlu_matmul(a, b, e, e, bits)
    first = gemm_info()
    created = first["primitives_created"] - before["primitives_created"]
    assert created >= 1  # new problem: new primitive(s) (16-bit: one per digit GEMM shape)
    for _ in range(3):  # same problem: reused, bit-exact
        check_dlu_matmul(a, b, e, e, bits)
    again = gemm_info()
    assert again["primitives_created"] == first["primitives_created"]
    assert again["cache_hits"] - first["cache_hits"] >= 3
    # a new shape and every transpose combination is a new problem, still exact
    bigger_a, bigger_b = _operands((41, 50), (50, 29), bits + 1)
    check_dlu_matmul(bigger_a, bigger_b, e, e, bits)
    assert gemm_info()["primitives_created"] == again["primitives_created"] + created
    count = gemm_info()["primitives_created"]
    for ta, tb in [(True, False), (False, True), (True, True)]:
        a_t = np.ascontiguousarray(a.T) if ta else a
        b_t = np.ascontiguousarray(b.T) if tb else b
        check_dlu_matmul(a_t, b_t, e, e, bits, transpose_a=ta, transpose_b=tb)
        assert gemm_info()["primitives_created"] > count
        count = gemm_info()["primitives_created"]
    # back to the first problem: cached, exact
    check_dlu_matmul(a, b, e, e, bits)
    assert gemm_info()["primitives_created"] == count


_FORCED_PORTABLE = r"""
import json, sys, warnings
import numpy as np
from keras_dlu.utils import quiet_tensorflow
quiet_tensorflow()
from keras_dlu.ops import dlu_matmul, gemm_info
rng = np.random.default_rng(0)
out = {}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for bits in (8, 16):
        for ta, tb in [(False, False), (True, True)]:
            a = rng.standard_normal((33, 70)).astype(np.float32)
            b = rng.standard_normal((70, 21)).astype(np.float32)
            p, s = dlu_matmul(a.T.copy() if ta else a, b.T.copy() if tb else b, -5, -6,
                              bits=bits, transpose_a=ta, transpose_b=tb)
            out[f"{bits}{ta}{tb}"] = [a.tolist(), b.tolist(), p.numpy().tolist(),
                                      s.numpy().tolist()]
out["warnings"] = [str(w.message) for w in caught if w.category is RuntimeWarning]
out["info"] = gemm_info()
json.dump(out, sys.stdout)
"""


def _forced(backend, script, timeout):
    """The JSON ``script`` prints in a fresh process with ``KERAS_DLU_GEMM=backend``."""
    env = dict(os.environ, KERAS_DLU_GEMM=backend, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_forced_portable_fallback_is_exact_and_warns_once():
    result = _forced("portable", _FORCED_PORTABLE, timeout=120)
    assert result["info"]["backend"] == "portable"
    assert "KERAS_DLU_GEMM=portable" in result["info"]["detail"]
    assert len(result["warnings"]) == 1 and "portable integer GEMM" in result["warnings"][0]
    for bits in (8, 16):
        for ta, tb in [(False, False), (True, True)]:
            a, b, product, stats = result[f"{bits}{ta}{tb}"]
            a, b = np.array(a, np.float32), np.array(b, np.float32)
            # the same problem in this process (oneDNN where available) and the reference
            here_p, here_s = check_dlu_matmul(a.T.copy() if ta else a,
                                              b.T.copy() if tb else b, -5, -6, bits,
                                              transpose_a=ta, transpose_b=tb)
            np.testing.assert_array_equal(np.array(product, np.float32), here_p)
            np.testing.assert_array_equal(np.array(stats, np.int64), here_s)


_FORCED_F32 = r"""
import json, sys, warnings
import numpy as np
from keras_dlu.utils import quiet_tensorflow
quiet_tensorflow()
from keras_dlu.ops import gemm_info
from tests.support.environment import cpu_flags
from tests.support.fixed_point import check_dlu_matmul
rng = np.random.default_rng(0)
# (m, k, n, transpose_a, transpose_b, bits): a few large GEMMs, many row tiles, a deep
# small product split over depth chunks (past the int32 depth too), transposes, 16 bits
CASES = [(37, 50, 29, False, False, 8), (40, 3000, 33, False, True, 8),
         (20000, 30, 6, False, False, 8), (5, 3000, 7, True, False, 8),
         (3, 70000, 4, True, False, 8), (300, 1500, 20, True, True, 16)]
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for m, k, n, ta, tb, bits in CASES:
        a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32) * 8
        b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32) * 8
        e = 0 if bits == 8 else -12
        check_dlu_matmul(a, b, e, e, bits, transpose_a=ta, transpose_b=tb)
    for k in (1024, 2048):  # every digit -128: each depth chunk sums exactly 2**24
        check_dlu_matmul(np.full((3, k), -1e3, np.float32), np.full((k, 2), -1e3, np.float32),
                         0, 0, 8)
out = {"warnings": [str(w.message) for w in caught if w.category is RuntimeWarning],
       "info": gemm_info()}
json.dump(out, sys.stdout)
"""


@pytest.mark.skipif(not (build_info() or {}).get("onednn"), reason="built without oneDNN")
def test_float32_route_is_exact_and_warns_once():
    """oneDNN's float32 GEMM on the digits (the route of CPUs without VNNI/AMX), forced:
    bit-exact with the integer reference in each of its three work splits, at the 2**24
    bound of a depth chunk, and announced once."""
    result = _forced("f32", _FORCED_F32, timeout=300)
    assert result["info"]["backend"] == "onednn_f32"
    assert "KERAS_DLU_GEMM=f32" in result["info"]["detail"]
    assert len(result["warnings"]) == 1 and "float32 GEMM" in result["warnings"][0]


def test_no_warning_on_the_fast_path():
    if gemm_info()["backend"] != "onednn":
        pytest.skip(f"this CPU has no integer matmul primitive (backend "
                    f"{gemm_info()['backend']}), so the warning is expected")
    from keras_dlu.ops.gemm_info import warn_if_portable

    warn_if_portable.cache_clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_portable()
