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
};

// Quantizes, multiplies exactly in wide integers, scales once into float32, marks the
// rows/columns touched by non-finite inputs as NaN and fills the three histograms.
void DluMatmulCpu(const DluMatmulArgs& args);

// y = dequantized x (see dlu_quantize.h); NaN and infinities pass through.
template <typename T>
void DluQuantizeCpu(const T* x, T* y, int64_t n, int exponent, int bits, bool stochastic,
                    uint64_t seed);

}  // namespace keras_dlu

#endif  // KERAS_DLU_OPS_DLU_MATMUL_CPU_H_
