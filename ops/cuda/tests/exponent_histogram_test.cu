// Test driver for the plain CUDA exponent histogram: bins random, boundary and special
// values on the GPU and compares bin for bin with the CPU rule (ops/cc/kernels).
// Build and run: bash ops/cuda/tests/run.sh (needs a GPU).
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "cc/kernels/exponent_histogram.h"
#include "cuda/exponent_histogram.h"

namespace {

template <typename T>
bool Check(const char* label, const std::vector<T>& x) {
  int64_t want[64] = {0};
  keras_dlu::AccumulateExponentHistogram(x.data(), static_cast<int64_t>(x.size()), want);
  T* device_x = nullptr;
  int64_t* device_counts = nullptr;
  cudaMalloc(&device_x, std::max<size_t>(1, x.size()) * sizeof(T));
  cudaMalloc(&device_counts, 64 * sizeof(int64_t));
  cudaMemcpy(device_x, x.data(), x.size() * sizeof(T), cudaMemcpyHostToDevice);
  cudaError_t status = keras_dlu::cuda::ExponentHistogram(
      device_x, static_cast<int64_t>(x.size()), device_counts, nullptr);
  int64_t got[64];
  cudaMemcpy(got, device_counts, sizeof(got), cudaMemcpyDeviceToHost);
  cudaFree(device_x);
  cudaFree(device_counts);
  if (status != cudaSuccess) {
    std::printf("FAIL %s: %s\n", label, cudaGetErrorString(status));
    return false;
  }
  for (int i = 0; i < 64; ++i) {
    if (got[i] != want[i]) {
      std::printf("FAIL %s: bin %d gpu %lld cpu %lld\n", label, i,
                  static_cast<long long>(got[i]), static_cast<long long>(want[i]));
      return false;
    }
  }
  std::printf("ok   %s (%zu values)\n", label, x.size());
  return true;
}

template <typename T>
std::vector<T> Values(size_t n, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  std::uniform_int_distribution<int> exponent(-45, 45);
  std::vector<T> x(n);
  for (size_t i = 0; i < n; ++i) x[i] = static_cast<T>(std::ldexp(normal(rng), exponent(rng)));
  for (size_t i = 0; i < n; i += 97) x[i] = std::numeric_limits<T>::quiet_NaN();
  for (size_t i = 0; i < n; i += 89) x[i] = std::numeric_limits<T>::infinity();
  for (size_t i = 0; i < n; i += 83) x[i] = 0;
  for (size_t i = 0; i < n; i += 79) x[i] = std::numeric_limits<T>::denorm_min();
  for (int k = -40; k < 40 && static_cast<size_t>(2 * (k + 40) + 1) < n; ++k) {
    x[2 * (k + 40)] = std::ldexp(T(1), k);
    x[2 * (k + 40) + 1] = std::nextafter(std::ldexp(T(1), k), T(0));
  }
  return x;
}

}  // namespace

int main() {
  bool ok = true;
  ok &= Check("float empty", std::vector<float>());
  ok &= Check("float single", std::vector<float>{1.0f});
  ok &= Check("float 1e6 mixed", Values<float>(1000003, 1));
  ok &= Check("float 3e7 mixed", Values<float>(30000001, 2));
  ok &= Check("double 1e6 mixed", Values<double>(1000003, 3));
  std::printf(ok ? "all CUDA histogram checks passed\n" : "CUDA histogram checks FAILED\n");
  return ok ? 0 : 1;
}
