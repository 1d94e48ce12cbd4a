// The operands of the CPU DLU matmul in GEMM layout: quantized from float (one fused
// quantization + histogram pass), or viewed from 8-bit digits a forward pass kept for the
// backward (KerasDluMatmulFused), so that the backward does not quantize them again.
//
// The GEMM multiplies unsigned A digits by signed B digits (u8 x s8, see dlu_gemm.h): A's
// digits are stored shifted by 128 (offset binary), B's as they are. 16-bit operands are
// split into two 8-bit digit planes (see dlu_matmul_cpu.cc).
#ifndef KERAS_DLU_OPS_DLU_OPERAND_H_
#define KERAS_DLU_OPS_DLU_OPERAND_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "dlu_buffer.h"

namespace keras_dlu {

// Per-thread reusable, cache-line aligned buffers (grow-only, each slot up to
// kMaxCachedBytes; see ThreadBuffer in dlu_buffer.h). Larger requests are owned by the
// Buffer and freed with it. Slots: 0 A, 1 B, 2-6 the product's
// partial sums, 7 the backward's second copy of the incoming gradient.
constexpr int kScratchSlots = 8;

struct Buffer {
  AlignedBytes owned;
  int8_t* ptr = nullptr;
  template <typename T>
  T* as() const { return reinterpret_cast<T*>(ptr); }
};

Buffer ScratchBuffer(int slot, size_t bytes);

// Digit planes of an operand in GEMM layout (ld = row stride as stored):
//   8-bit: hi = q (A: q + 128).  16-bit: hi = h, lo = l, both = [h | l] for A, [l ; h] for B
//   (depth 2K), A's digits + 128.
struct Operand {
  Buffer data;
  const int8_t* hi = nullptr;
  const int8_t* lo = nullptr;
  const int8_t* both = nullptr;
  int64_t ld = 0;            // row stride of hi/lo/both as stored
  std::vector<uint8_t> bad;  // per op-row of A / op-column of B: a non-finite input
  std::vector<int64_t> sums; // per op-row/column sum of q - 128 (16-bit) or of B's q (8-bit)
};

// Where an 8-bit operand's digits and non-finite flags go besides the Operand (both
// optional): `digits` [rows * cols] as the GEMM stores them (A: q + 128, B: q), `flags`
// [rows + cols] in stored coordinates, the rows' flags then the columns'.
struct KeptDigits {
  int8_t* digits = nullptr;
  uint8_t* flags = nullptr;
};

// x is stored [rows, cols]; `by_row` says whether the op index (row of op(A) or column of
// op(B)) is the stored row. `is_a` picks the digit-plane layout (see Operand), `depth` is
// the op's inner dimension. Fills `histogram` [64] with the exponent histogram of x.
// `b_sums`: false when an 8-bit B's digit sums are not needed (GemmDigitsToFloat).
void QuantizeOperand(const float* x, int64_t rows, int64_t cols, bool by_row, bool is_a,
                     bool transposed, int64_t depth, int exponent, int bits, bool stochastic,
                     uint64_t seed, int threads, Operand* out, int64_t* histogram,
                     KeptDigits kept = {}, bool b_sums = true);

// An 8-bit Operand over kept digits [rows, cols] (A: q + 128, B: q) and their flags
// [rows + cols] (see KeptDigits); `by_row` and `b_sums` as in QuantizeOperand. B's sums are
// computed from the digits.
void KeptOperand(const int8_t* digits, const uint8_t* flags, int64_t rows, int64_t cols,
                 bool by_row, bool is_a, int threads, Operand* out, bool b_sums = true);

// The A operand (q + 128, same layout) of an 8-bit B operand's `count` digits, written to
// `slot`'s scratch buffer; `bad` are its flags per op-row of A.
void AsOperandA(const Operand& b, int64_t count, int slot, std::vector<uint8_t> bad,
                Operand* out);

}  // namespace keras_dlu

#endif  // KERAS_DLU_OPS_DLU_OPERAND_H_
