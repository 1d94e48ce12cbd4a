// Exact integer GEMM on the CPU for the DLU matmul: C (int32, row-major [M, N]) =
// op(A) op(B) for uint8 A and int8 B stored with row strides lda / ldb.
//
// Backends, chosen once per process (GetGemmInfo() says which and why):
// * "onednn": oneDNN's matmul primitive (u8 x s8 -> s32), used when oneDNN reports an
//   effective ISA with integer dot products (AVX-512 VNNI, AVX2 VNNI or AMX-INT8), where
//   every product is summed exactly in int32. A primitive is created once per problem
//   (shape, transposes, strides) and cached; B goes into the primitive's own blocked
//   layout when the primitive prefers one.
// * "onednn_f32": oneDNN's float32 GEMM (sgemm) on the digits as floats, used when
//   oneDNN's ISA has no integer dot product (AVX2: its u8 x s8 kernels sum pairs in
//   saturating int16) or when KERAS_DLU_GEMM=f32. Exact: depth chunks of at most 1024
//   products of magnitude <= 2**14 keep every partial sum an integer below 2**24, and the
//   chunks add in int32. About float32 GEMM speed; the Python wrapper warns once.
// * "portable": an exact OpenMP loop nest, used when the library is built without oneDNN
//   or when KERAS_DLU_GEMM=portable; the Python wrapper warns once.
//
// A is unsigned because u8 x s8 is the native form of VNNI and AMX: the caller stores
// q + 128 and subtracts 128 * (column sums of op(B)), see dlu_matmul_cpu.cc.
// The caller guarantees that no partial sum overflows int32: K <= kMaxInt32Depth.
#ifndef KERAS_DLU_OPS_DLU_GEMM_H_
#define KERAS_DLU_OPS_DLU_GEMM_H_

#include <cstdint>
#include <string>

namespace keras_dlu {

// Largest inner dimension for which a u8 x s8 GEMM cannot overflow int32
// (2**16 * 255 * 128 < 2**31).
constexpr int64_t kMaxInt32Depth = int64_t{1} << 16;

// lda / ldb are the row strides of A and B as stored (A is [M, K], or [K, M] when
// transpose_a; B is [K, N], or [N, K] when transpose_b).
void GemmU8S8S32(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k,
                 const uint8_t* a, int64_t lda, const int8_t* b, int64_t ldb, int32_t* c);

// Whether GemmDigitsToFloat is available: the oneDNN integer primitive backend on a CPU with
// AMX-INT8 (see HasAmx in dlu_gemm.cc).
bool HasFloatOutputGemm();

// C (float32, row-major [M, N]) = 2**exponent op(A - 128) op(B), A's digits stored as q + 128
// as for GemmU8S8S32: oneDNN multiplies the signed digits (s8 x s8, a copy of A XORed with
// 0x80) and converts and scales the exact int32 sums inside the primitive, so the int32
// product never goes through memory. Exactly the rounding of the int32 route where every
// nonzero result is a normal float, so the caller checks FloatScaleIsExact(exponent, 31)
// (dlu_rows.h) and HasFloatOutputGemm() first. One primitive per problem and exponent.
void GemmDigitsToFloat(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k,
                       const uint8_t* a, int64_t lda, const int8_t* b, int64_t ldb,
                       int exponent, float* c);

struct GemmInfo {
  std::string backend;         // "onednn", "onednn_f32" or "portable"
  std::string detail;          // oneDNN's ISA and implementation, or why portable
  int64_t primitives_created;  // oneDNN primitives built (one per new problem)
  int64_t cache_hits;          // products that reused a cached primitive
  int64_t float_products;      // products GemmDigitsToFloat wrote
};

GemmInfo GetGemmInfo();

}  // namespace keras_dlu

#endif  // KERAS_DLU_OPS_DLU_GEMM_H_
