// CPU integer GEMM behind the DLU matmul (see dlu_gemm.h).
#include "dlu_gemm.h"

#include <cstring>
#include <memory>

#if KERAS_DLU_WITH_DNNL
#include <dnnl.h>
#endif

namespace keras_dlu {

#if KERAS_DLU_WITH_DNNL

void GemmS8S8S32(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k,
                 const int8_t* a, int64_t lda, const int8_t* b, int64_t ldb, int32_t* c) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    std::memset(c, 0, sizeof(int32_t) * m * n);
    return;
  }
  const int32_t zero = 0;
  dnnl_gemm_s8s8s32(transpose_a ? 'T' : 'N', transpose_b ? 'T' : 'N', 'F', m, n, k, 1.0f, a,
                    lda, 0, b, ldb, 0, 0.0f, c, n, &zero);
}

const char* GemmBackend() { return "onednn"; }

#else

void GemmS8S8S32(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k,
                 const int8_t* a, int64_t lda, const int8_t* b, int64_t ldb, int32_t* c) {
  if (m == 0 || n == 0) return;
  // op(B) in row-major [K, N] so that the inner loop runs over contiguous j.
  std::unique_ptr<int8_t[]> b_copy;
  const int8_t* bk = b;
  int64_t ldbk = ldb;
  if (transpose_b) {
    b_copy.reset(new int8_t[k * n]);
    for (int64_t j = 0; j < n; ++j)
      for (int64_t kk = 0; kk < k; ++kk) b_copy[kk * n + j] = b[j * ldb + kk];
    bk = b_copy.get();
    ldbk = n;
  }
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < m; ++i) {
    int32_t* row = c + i * n;
    for (int64_t j = 0; j < n; ++j) row[j] = 0;
    for (int64_t kk = 0; kk < k; ++kk) {
      const int32_t av = transpose_a ? a[kk * lda + i] : a[i * lda + kk];
      if (av == 0) continue;
      const int8_t* brow = bk + kk * ldbk;
      for (int64_t j = 0; j < n; ++j) row[j] += av * static_cast<int32_t>(brow[j]);
    }
  }
}

const char* GemmBackend() { return "portable"; }

#endif

}  // namespace keras_dlu
