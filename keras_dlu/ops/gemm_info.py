"""Which integer GEMM ``dlu_matmul`` uses on the CPU, and a one-time warning when slow.

The CPU kernel multiplies through oneDNN's matmul primitive when oneDNN reports an ISA
with exact integer dot products (AVX-512 VNNI, AVX2 VNNI, AMX-INT8), creating one
primitive per problem shape and transposes and reusing it (see ``ops/cc/kernels/
dlu_gemm.h``). On a CPU without them (AVX2 only), oneDNN's float32 GEMM multiplies the
digits as floats in depth chunks of at most 1024, where every sum is an integer below
2**24 and so exact: the same results at about float32 GEMM speed (``"onednn_f32"``).
Without oneDNN in the build, or with ``KERAS_DLU_GEMM=portable``, an exact portable loop,
which is much slower (``KERAS_DLU_GEMM=f32`` forces the float32 route). Off the fast path
``dlu_matmul`` says so once with a ``RuntimeWarning``.
"""

import functools
import warnings

import tensorflow as tf

from keras_dlu.ops.loader import load_library


def gemm_info():
    """The CPU integer GEMM backend of ``dlu_matmul``.

    Returns:
        A dict: ``backend`` (``"onednn"``, ``"onednn_f32"`` or ``"portable"``),
        ``detail`` (oneDNN's ISA and its implementation of the last new problem, or why
        the fast path is not used; then which exponent-histogram counter the row passes
        use, ``"histograms avx512bw"`` or ``"histograms avx2"``),
        ``primitives_created`` (oneDNN primitives built so far, one per new problem),
        ``cache_hits`` (products that reused a cached primitive) and ``float_products``
        (8-bit products the primitive converted and scaled to float32 itself, no int32
        pass: every product whose results are all normal floats or zero).
    """
    with tf.init_scope():  # eager even when called while a tf.function is traced
        backend, detail, counters = load_library().keras_dlu_gemm_info()
        counters = counters.numpy()
        return {"backend": backend.numpy().decode(), "detail": detail.numpy().decode(),
                "primitives_created": int(counters[0]), "cache_hits": int(counters[1]),
                "float_products": int(counters[2])}


@functools.cache
def warn_if_portable():
    """Warns once per process when the CPU GEMM is not the integer primitive."""
    info = gemm_info()
    if info["backend"] == "onednn_f32":
        warnings.warn(
            f"keras_dlu.ops.dlu_matmul multiplies the integer digits with oneDNN's float32 "
            f"GEMM on the CPU ({info['detail']}): results are exact, at about float32 GEMM "
            f"speed; a CPU with AVX-512 VNNI, AVX2 VNNI or AMX runs the integer GEMM.",
            RuntimeWarning, stacklevel=3)
    elif info["backend"] != "onednn":
        warnings.warn(
            f"keras_dlu.ops.dlu_matmul uses the portable integer GEMM on the CPU "
            f"({info['detail']}): results are exact but slow. Install oneDNN "
            f"(`apt-get install libdnnl-dev`) and rebuild (`make build`) on a CPU with "
            f"AVX-512 VNNI, AVX2 VNNI or AMX for the fast path.", RuntimeWarning,
            stacklevel=3)
    return info
