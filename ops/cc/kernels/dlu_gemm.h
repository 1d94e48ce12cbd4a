// Exact integer GEMM on the CPU for the DLU matmul: C (int32, row-major [M, N]) =
// op(A) op(B) for int8 A and B stored row-major. Uses oneDNN's dnnl_gemm_s8s8s32
// (blocked, multithreaded, AVX-512 VNNI where present) when the library is built with
// oneDNN (KERAS_DLU_WITH_DNNL), otherwise a portable OpenMP loop nest.
//
// The caller guarantees that no partial sum overflows int32: K * 2**14 < 2**31.
#ifndef KERAS_DLU_OPS_DLU_GEMM_H_
#define KERAS_DLU_OPS_DLU_GEMM_H_

#include <cstdint>

namespace keras_dlu {

// Largest inner dimension for which an int8 x int8 GEMM cannot overflow int32.
constexpr int64_t kMaxInt32Depth = (int64_t{1} << 17) - 1;

// lda / ldb are the row strides of A and B as stored (A is [M, K], or [K, M] when
// transpose_a; B is [K, N], or [N, K] when transpose_b).
void GemmS8S8S32(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k,
                 const int8_t* a, int64_t lda, const int8_t* b, int64_t ldb, int32_t* c);

// Which backend GemmS8S8S32 uses: "onednn" or "portable".
const char* GemmBackend();

}  // namespace keras_dlu

#endif  // KERAS_DLU_OPS_DLU_GEMM_H_
