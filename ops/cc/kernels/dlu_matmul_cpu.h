// The DLU matmul and fake quantization on the CPU as plain functions (no TensorFlow types),
// called by the TensorFlow kernels in dlu_matmul_op.cc and dlu_quantize_op.cc.
#ifndef KERAS_DLU_OPS_DLU_MATMUL_CPU_H_
#define KERAS_DLU_OPS_DLU_MATMUL_CPU_H_

#include <cstdint>

namespace keras_dlu {

struct DluMatmulArgs {
  const float* a;        // [M, K] row-major, or [K, M] when transpose_a
  const float* b;        // [K, N] row-major, or [N, K] when transpose_b
  int64_t m, n, k;
  bool transpose_a, transpose_b;
  int a_exponent, b_exponent;  // each in [-kMaxExponent, kMaxExponent]
  int bits;                    // 8 or 16
  bool stochastic;
  uint64_t seed_a, seed_b;
  float* product;  // [M, N]
  int64_t* stats;  // [3, 64]: histograms of a, b, product
  bool product_histogram = true;  // false: stats[2] is zeros, the product not re-read
  // KerasDluMatmulFused (8-bit): where the digits and flags of a and b are kept for the
  // backward (see KeptDigits in dlu_operand.h); nullptr: not kept.
  int8_t* a_digits = nullptr;
  int8_t* b_digits = nullptr;
  uint8_t* a_flags = nullptr;
  uint8_t* b_flags = nullptr;
  // KerasDluConv2dFused: A given as 8-bit digits (q + 128) with its flags and histogram
  // (QuantizedPatches in dlu_conv_op.cc); `a` is then not read. nullptr: quantize `a`.
  const uint8_t* a_given = nullptr;
  const uint8_t* a_given_flags = nullptr;
  const int64_t* a_given_histogram = nullptr;
};

// The fused 8-bit backward of y = x W (x [M, K], W [K, N], no transposes) from the digits
// its forward kept: G = dL/dy [M, N] is quantized once, then
// grad_a = 2**(eg + eb) Q(G) Wq^T and grad_b = 2**(ea + eg) xq^T Q(G), exactly as
// DluMatmulCpu would compute them from x, W and G.
struct DluMatmulBackwardArgs {
  const float* grad;        // [M, N]
  const uint8_t* a_digits;  // [M, K]: q + 128
  const uint8_t* a_flags;   // [M + K]
  const int8_t* b_digits;   // [K, N]: q
  const uint8_t* b_flags;   // [K + N]
  int64_t m, n, k;
  int a_exponent, b_exponent, grad_exponent;
  bool stochastic;
  uint64_t seed_grad;
  float* grad_a;   // [M, K]; nullptr: not computed (its histogram row is zeros)
  float* grad_b;   // [K, N]
  int64_t* stats;  // [3, 64]: histograms of G, grad_a, grad_b
  bool product_histograms = true;  // false: the grad_a and grad_b rows are zeros
};

// Quantizes, multiplies exactly in wide integers, scales once into float32, marks the
// rows/columns touched by non-finite inputs as NaN and fills the three histograms.
void DluMatmulCpu(const DluMatmulArgs& args);

void DluMatmulBackwardCpu(const DluMatmulBackwardArgs& args);

// y = dequantized x (see dlu_quantize.h); NaN and infinities pass through.
template <typename T>
void DluQuantizeCpu(const T* x, T* y, int64_t n, int exponent, int bits, bool stochastic,
                    uint64_t seed);

}  // namespace keras_dlu

#endif  // KERAS_DLU_OPS_DLU_MATMUL_CPU_H_
