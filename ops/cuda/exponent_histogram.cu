// CUDA kernel of the DLU analysis block: each block bins a grid-stride slice of x into a
// shared-memory histogram, then adds it to the global one with 64 atomics.
#include "cuda/exponent_histogram.h"

#include <algorithm>

#include "cc/kernels/exponent_bin.h"

namespace keras_dlu {
namespace cuda {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void ExponentHistogramKernel(const T* __restrict__ x, int64_t n,
                                        unsigned long long* __restrict__ counts) {
  __shared__ unsigned int local[kHistogramBins];
  for (int i = threadIdx.x; i < kHistogramBins; i += blockDim.x) local[i] = 0;
  __syncthreads();
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const int bin = ExponentBin(x[i]);
    if (bin != kNoBin) atomicAdd(&local[bin], 1u);
  }
  __syncthreads();
  for (int i = threadIdx.x; i < kHistogramBins; i += blockDim.x)
    if (local[i]) atomicAdd(&counts[i], static_cast<unsigned long long>(local[i]));
}

template <typename T>
cudaError_t Launch(const T* x, int64_t n, int64_t* counts, cudaStream_t stream) {
  cudaError_t status =
      cudaMemsetAsync(counts, 0, kHistogramBins * sizeof(int64_t), stream);
  if (status != cudaSuccess || n == 0) return status;
  // Up to 4096 blocks, but enough that no block bins more than 2**31 elements, so its
  // 32-bit shared counters cannot wrap.
  const int64_t wanted = (n + kThreads - 1) / kThreads;
  const int64_t min_blocks = (n + (int64_t{1} << 31) - 1) >> 31;  // shared counters fit
  const int blocks = static_cast<int>(std::max<int64_t>(
      min_blocks, std::min<int64_t>(wanted, 4096)));
  ExponentHistogramKernel<T><<<blocks, kThreads, 0, stream>>>(
      x, n, reinterpret_cast<unsigned long long*>(counts));
  return cudaGetLastError();
}

}  // namespace

cudaError_t ExponentHistogram(const float* x, int64_t n, int64_t* counts,
                              cudaStream_t stream) {
  return Launch(x, n, counts, stream);
}

cudaError_t ExponentHistogram(const double* x, int64_t n, int64_t* counts,
                              cudaStream_t stream) {
  return Launch(x, n, counts, stream);
}

}  // namespace cuda
}  // namespace keras_dlu
