// Packing of the integer GEMM's B operand into the blocked layout oneDNN's brgemm matmul
// kernels (AMX and AVX-512 VNNI) read, BA16a64b4a: B [K, N] in 64 x 64 blocks, the blocks of
// a column band of 64 consecutive (block-column-major), inside a block 16 groups of 4
// consecutive rows, each group storing its 64 columns' 4 digits side by side (the VNNI dot
// product's 4 depth elements); K and N are padded to multiples of 64 with zeros.
//
// oneDNN's own reorder to that layout (jit:uni) took 1.0 ms for a 2048 x 2048 int8 matrix on
// 2 cores of an AMX Xeon, twice per training step of the MLP benchmark (W forward, W^T
// backward); PackBlockedB writes it with 128-bit byte interleaves.
#ifndef KERAS_DLU_OPS_DLU_PACK_H_
#define KERAS_DLU_OPS_DLU_PACK_H_

#include <cstdint>

namespace keras_dlu {

constexpr int64_t kPackBlock = 64;

// Writes op(B) [K, N] (B stored [K, N], or [N, K] when `transposed`, with row stride ldb) in
// the layout above to `out` (K and N rounded up to multiples of kPackBlock, times each
// other, bytes), on the calling thread's OpenMP threads.
void PackBlockedB(const int8_t* b, bool transposed, int64_t ldb, int64_t k, int64_t n,
                  int8_t* out);

}  // namespace keras_dlu

#endif  // KERAS_DLU_OPS_DLU_PACK_H_
