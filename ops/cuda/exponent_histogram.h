// Plain CUDA entry points of the DLU analysis block (no TensorFlow headers): the
// TensorFlow GPU kernel is a thin adapter around these, and ops/cuda/tests drives them
// directly against the CPU rule.
#ifndef KERAS_DLU_OPS_CUDA_EXPONENT_HISTOGRAM_H_
#define KERAS_DLU_OPS_CUDA_EXPONENT_HISTOGRAM_H_

#include <cstdint>

#include <cuda_runtime.h>

namespace keras_dlu {
namespace cuda {

// Writes the 64-bin exponent histogram of x[0..n) into counts (device memory, 64 int64),
// enqueued on stream. Returns the launch status.
cudaError_t ExponentHistogram(const float* x, int64_t n, int64_t* counts,
                              cudaStream_t stream);
cudaError_t ExponentHistogram(const double* x, int64_t n, int64_t* counts,
                              cudaStream_t stream);

}  // namespace cuda
}  // namespace keras_dlu

#endif  // KERAS_DLU_OPS_CUDA_EXPONENT_HISTOGRAM_H_
