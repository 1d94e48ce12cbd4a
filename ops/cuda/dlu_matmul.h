// Plain CUDA entry points of the DLU matmul and fake quantization (no TensorFlow headers):
// the TensorFlow GPU kernels are thin adapters around these, and ops/cuda/tests drives them
// directly against the CPU rule (ops/cc/kernels/dlu_quantize.h), bit for bit.
#ifndef KERAS_DLU_OPS_CUDA_DLU_MATMUL_H_
#define KERAS_DLU_OPS_CUDA_DLU_MATMUL_H_

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

namespace keras_dlu {
namespace cuda {

struct DluMatmulProblem {
  int64_t m, n, k;
  bool transpose_a, transpose_b;
  int a_exponent, b_exponent;  // each in [-512, 512]
  int bits;                    // 8 or 16
  bool stochastic;
  uint64_t seed_a, seed_b;
};

// Bytes of device workspace that DluMatmul needs for this problem.
size_t DluMatmulWorkspaceBytes(const DluMatmulProblem& problem);

// a, b, product, stats ([3, 64] int64) and workspace are device pointers; enqueued on stream.
cudaError_t DluMatmul(const DluMatmulProblem& problem, const float* a, const float* b,
                      float* product, int64_t* stats, void* workspace, cudaStream_t stream);

// y = dequantized x (NaN and infinities pass through); device pointers.
cudaError_t DluQuantize(const float* x, float* y, int64_t n, int exponent, int bits,
                        bool stochastic, uint64_t seed, cudaStream_t stream);
cudaError_t DluQuantize(const double* x, double* y, int64_t n, int exponent, int bits,
                        bool stochastic, uint64_t seed, cudaStream_t stream);

}  // namespace cuda
}  // namespace keras_dlu

#endif  // KERAS_DLU_OPS_CUDA_DLU_MATMUL_H_
