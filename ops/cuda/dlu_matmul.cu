// CUDA kernels of the DLU matmul (Fujitsu DLU dynamic fixed point; Courbariaux et al.
// 2014): a quantization kernel per operand (integer digits, non-finite flags, exponent
// histogram in shared memory), then a tiled exact integer GEMM whose epilogue scales into
// float32, writes NaN for flagged rows/columns and bins the product. Same rules as the CPU
// kernel (dlu_quantize.h, exponent_bin.h), so results agree bit for bit.
#include "cuda/dlu_matmul.h"

#include <algorithm>

#include "cc/kernels/dlu_quantize.h"
#include "cc/kernels/exponent_bin.h"

namespace keras_dlu {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kTile = 16;
constexpr int64_t kMaxInt32Depth = (int64_t{1} << 17) - 1;

size_t Align(size_t bytes) { return (bytes + 255) / 256 * 256; }

__device__ void FlushHistogram(const unsigned int* local, int64_t* counts) {
  for (int i = threadIdx.x + threadIdx.y * blockDim.x; i < kHistogramBins;
       i += blockDim.x * blockDim.y)
    if (local[i])
      atomicAdd(reinterpret_cast<unsigned long long*>(&counts[i]),
                static_cast<unsigned long long>(local[i]));
}

// x stored [rows, cols]; op index = row when by_row, else column.
__global__ void QuantizeOperandKernel(const float* __restrict__ x, int64_t rows, int64_t cols,
                                      bool by_row, double inv_scale, int bits, bool stochastic,
                                      uint64_t seed, int32_t* __restrict__ q,
                                      unsigned int* __restrict__ bad,
                                      int64_t* __restrict__ histogram) {
  __shared__ unsigned int local[kHistogramBins];
  for (int i = threadIdx.x; i < kHistogramBins; i += blockDim.x) local[i] = 0;
  __syncthreads();
  const int64_t count = rows * cols;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride) {
    const float v = x[i];
    const int bin = ExponentBin(v);
    if (bin != kNoBin) atomicAdd(&local[bin], 1u);
    if (IsFiniteValue(v)) {
      q[i] = QuantizeFinite(v, inv_scale, bits, stochastic, seed, static_cast<uint64_t>(i));
    } else {
      q[i] = 0;
      bad[by_row ? i / cols : i % cols] = 1u;
    }
  }
  __syncthreads();
  FlushHistogram(local, histogram);
}

// One output per thread, kTile x kTile tiles of op(A) and op(B) staged in shared memory.
template <typename Acc>
__global__ void GemmKernel(const int32_t* __restrict__ qa, const int32_t* __restrict__ qb,
                           int64_t m, int64_t n, int64_t k, bool ta, bool tb,
                           const unsigned int* __restrict__ bad_a,
                           const unsigned int* __restrict__ bad_b, int exponent, double scale,
                           float* __restrict__ product, int64_t* __restrict__ histogram) {
  __shared__ int32_t tile_a[kTile][kTile + 1];
  __shared__ int32_t tile_b[kTile][kTile + 1];
  __shared__ unsigned int local[kHistogramBins];
  const int tx = threadIdx.x, ty = threadIdx.y;
  for (int i = tx + ty * kTile; i < kHistogramBins; i += kTile * kTile) local[i] = 0;
  const int64_t row = static_cast<int64_t>(blockIdx.y) * kTile + ty;
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kTile + tx;
  Acc acc = 0;
  for (int64_t k0 = 0; k0 < k; k0 += kTile) {
    const int64_t ka = k0 + tx, kb = k0 + ty;
    tile_a[ty][tx] = (row < m && ka < k) ? (ta ? qa[ka * m + row] : qa[row * k + ka]) : 0;
    tile_b[ty][tx] = (col < n && kb < k) ? (tb ? qb[col * k + kb] : qb[kb * n + col]) : 0;
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kTile; ++kk)
      acc += static_cast<Acc>(tile_a[ty][kk]) * static_cast<Acc>(tile_b[kk][tx]);
    __syncthreads();
  }
  if (row < m && col < n) {
    const float p = (bad_a[row] || bad_b[col])
                        ? __int_as_float(0x7fc00000)
                        : ScaleUpToFloat(static_cast<int64_t>(acc), exponent, scale);
    product[row * n + col] = p;
    const int bin = ExponentBin(p);
    if (bin != kNoBin) atomicAdd(&local[bin], 1u);
  }
  __syncthreads();
  FlushHistogram(local, histogram);
}

int Blocks(int64_t count) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>((count + kThreads - 1) / kThreads, 4096)));
}

struct Workspace {
  int32_t* qa;
  int32_t* qb;
  unsigned int* bad_a;
  unsigned int* bad_b;
};

Workspace Carve(const DluMatmulProblem& p, void* base) {
  char* at = static_cast<char*>(base);
  Workspace w;
  w.qa = reinterpret_cast<int32_t*>(at);
  at += Align(sizeof(int32_t) * p.m * p.k);
  w.qb = reinterpret_cast<int32_t*>(at);
  at += Align(sizeof(int32_t) * p.k * p.n);
  w.bad_a = reinterpret_cast<unsigned int*>(at);
  at += Align(sizeof(unsigned int) * p.m);
  w.bad_b = reinterpret_cast<unsigned int*>(at);
  return w;
}

template <typename T>
__global__ void QuantizeKernel(const T* __restrict__ x, T* __restrict__ y, int64_t n,
                               double inv_scale, double scale, int bits, bool stochastic,
                               uint64_t seed) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const T v = x[i];
    if (!IsFiniteValue(v)) {
      y[i] = v;
    } else {
      const int32_t q = QuantizeFinite(v, inv_scale, bits, stochastic, seed,
                                       static_cast<uint64_t>(i));
      const double d = static_cast<double>(q) * scale;
      y[i] = sizeof(T) == 4 ? static_cast<T>(RoundToFloatFlushed(d)) : static_cast<T>(d);
    }
  }
}

template <typename T>
cudaError_t LaunchQuantize(const T* x, T* y, int64_t n, int exponent, int bits,
                           bool stochastic, uint64_t seed, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  QuantizeKernel<T><<<Blocks(n), kThreads, 0, stream>>>(x, y, n, Pow2(-exponent),
                                                        Pow2(exponent), bits, stochastic, seed);
  return cudaGetLastError();
}

}  // namespace

size_t DluMatmulWorkspaceBytes(const DluMatmulProblem& p) {
  return Align(sizeof(int32_t) * p.m * p.k) + Align(sizeof(int32_t) * p.k * p.n) +
         Align(sizeof(unsigned int) * p.m) + Align(sizeof(unsigned int) * std::max<int64_t>(p.n, 1));
}

cudaError_t DluMatmul(const DluMatmulProblem& p, const float* a, const float* b,
                      float* product, int64_t* stats, void* workspace, cudaStream_t stream) {
  cudaError_t status = cudaMemsetAsync(stats, 0, 3 * kHistogramBins * sizeof(int64_t), stream);
  if (status != cudaSuccess) return status;
  const Workspace w = Carve(p, workspace);
  status = cudaMemsetAsync(w.bad_a, 0, sizeof(unsigned int) * p.m, stream);
  if (status == cudaSuccess)
    status = cudaMemsetAsync(w.bad_b, 0, sizeof(unsigned int) * p.n, stream);
  if (status != cudaSuccess) return status;
  const int64_t a_rows = p.transpose_a ? p.k : p.m, a_cols = p.transpose_a ? p.m : p.k;
  const int64_t b_rows = p.transpose_b ? p.n : p.k, b_cols = p.transpose_b ? p.k : p.n;
  if (p.m * p.k > 0)
    QuantizeOperandKernel<<<Blocks(p.m * p.k), kThreads, 0, stream>>>(
        a, a_rows, a_cols, !p.transpose_a, Pow2(-p.a_exponent), p.bits, p.stochastic, p.seed_a,
        w.qa, w.bad_a, stats);
  if (p.k * p.n > 0)
    QuantizeOperandKernel<<<Blocks(p.k * p.n), kThreads, 0, stream>>>(
        b, b_rows, b_cols, p.transpose_b, Pow2(-p.b_exponent), p.bits, p.stochastic, p.seed_b,
        w.qb, w.bad_b, stats + kHistogramBins);
  if (p.m * p.n > 0) {
    const int exponent = p.a_exponent + p.b_exponent;
    const double scale = Pow2(std::max(-1000, std::min(1000, exponent)));
    const dim3 threads(kTile, kTile);
    const dim3 blocks(static_cast<unsigned>((p.n + kTile - 1) / kTile),
                      static_cast<unsigned>((p.m + kTile - 1) / kTile));
    if (p.bits == 8 && p.k <= kMaxInt32Depth) {
      GemmKernel<int32_t><<<blocks, threads, 0, stream>>>(
          w.qa, w.qb, p.m, p.n, p.k, p.transpose_a, p.transpose_b, w.bad_a, w.bad_b, exponent,
          scale, product, stats + 2 * kHistogramBins);
    } else {
      GemmKernel<long long><<<blocks, threads, 0, stream>>>(
          w.qa, w.qb, p.m, p.n, p.k, p.transpose_a, p.transpose_b, w.bad_a, w.bad_b, exponent,
          scale, product, stats + 2 * kHistogramBins);
    }
  }
  return cudaGetLastError();
}

cudaError_t DluQuantize(const float* x, float* y, int64_t n, int exponent, int bits,
                        bool stochastic, uint64_t seed, cudaStream_t stream) {
  return LaunchQuantize(x, y, n, exponent, bits, stochastic, seed, stream);
}

cudaError_t DluQuantize(const double* x, double* y, int64_t n, int exponent, int bits,
                        bool stochastic, uint64_t seed, cudaStream_t stream) {
  return LaunchQuantize(x, y, n, exponent, bits, stochastic, seed, stream);
}

}  // namespace cuda
}  // namespace keras_dlu
