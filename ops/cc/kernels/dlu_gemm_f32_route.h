// The exact float32 route of the CPU integer GEMM, for CPUs whose oneDNN ISA has no exact
// integer dot product (AVX2 without VNNI) or with KERAS_DLU_GEMM=f32: backend "onednn_f32"
// of dlu_gemm.h, same contract as GemmU8S8S32.
#ifndef KERAS_DLU_OPS_DLU_GEMM_F32_ROUTE_H_
#define KERAS_DLU_OPS_DLU_GEMM_F32_ROUTE_H_

#include <cstdint>

namespace keras_dlu {

#if KERAS_DLU_WITH_DNNL
void ExactF32Gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const uint8_t* a,
                  int64_t lda, const int8_t* b, int64_t ldb, int32_t* c);
#endif

}  // namespace keras_dlu

#endif  // KERAS_DLU_OPS_DLU_GEMM_F32_ROUTE_H_
