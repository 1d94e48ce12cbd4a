// Test driver for the plain CUDA DLU matmul and fake quantization: runs random, boundary,
// saturating and non-finite problems on the GPU and compares product, histograms and
// dequantized values bit for bit with a CPU computation of the same rules
// (ops/cc/kernels/dlu_quantize.h, exponent_histogram.h).
// Build and run: bash ops/cuda/tests/run.sh (needs a GPU).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "cc/kernels/dlu_quantize.h"
#include "cc/kernels/exponent_histogram.h"
#include "cuda/dlu_matmul.h"

namespace {

using keras_dlu::cuda::DluMatmulProblem;

// The CPU rule, written plainly: quantize every element, int64 sums, scale once.
void Reference(const DluMatmulProblem& p, const std::vector<float>& a,
               const std::vector<float>& b, std::vector<float>* product,
               std::vector<int64_t>* stats) {
  auto quantize = [&](const std::vector<float>& x, int e, uint64_t seed,
                      std::vector<int64_t>* q) {
    q->resize(x.size());
    for (size_t i = 0; i < x.size(); ++i)
      (*q)[i] = keras_dlu::IsFiniteValue(x[i])
                    ? keras_dlu::QuantizeFinite(x[i], keras_dlu::Pow2(-e), p.bits,
                                                p.stochastic, seed, i)
                    : 0;
  };
  std::vector<int64_t> qa, qb;
  quantize(a, p.a_exponent, p.seed_a, &qa);
  quantize(b, p.b_exponent, p.seed_b, &qb);
  auto at_a = [&](int64_t i, int64_t k) { return p.transpose_a ? k * p.m + i : i * p.k + k; };
  auto at_b = [&](int64_t k, int64_t j) { return p.transpose_b ? j * p.k + k : k * p.n + j; };
  const int e = p.a_exponent + p.b_exponent;
  product->assign(p.m * p.n, 0.0f);
  for (int64_t i = 0; i < p.m; ++i)
    for (int64_t j = 0; j < p.n; ++j) {
      int64_t sum = 0;
      bool bad = false;
      for (int64_t k = 0; k < p.k; ++k) {
        bad |= !keras_dlu::IsFiniteValue(a[at_a(i, k)]) ||
               !keras_dlu::IsFiniteValue(b[at_b(k, j)]);
        sum += qa[at_a(i, k)] * qb[at_b(k, j)];
      }
      (*product)[i * p.n + j] =
          bad ? std::numeric_limits<float>::quiet_NaN()
              : keras_dlu::ScaleUpToFloat(sum, e, keras_dlu::Pow2(std::max(-1000, std::min(1000, e))));
    }
  stats->assign(3 * 64, 0);
  keras_dlu::AccumulateExponentHistogram(a.data(), a.size(), stats->data());
  keras_dlu::AccumulateExponentHistogram(b.data(), b.size(), stats->data() + 64);
  keras_dlu::AccumulateExponentHistogram(product->data(), product->size(), stats->data() + 128);
}

bool SameFloats(const float* x, const float* y, size_t n, const char* label) {
  for (size_t i = 0; i < n; ++i) {
    if (std::isnan(x[i]) && std::isnan(y[i])) continue;
    if (std::memcmp(x + i, y + i, sizeof(float)) != 0) {
      std::printf("FAIL %s: element %zu gpu %.9g cpu %.9g\n", label, i, x[i], y[i]);
      return false;
    }
  }
  return true;
}

bool CheckMatmul(const char* label, const DluMatmulProblem& p, unsigned seed, bool specials) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> a(p.m * p.k), b(p.k * p.n);
  const float spread = p.bits == 8 ? 8.0f : 2000.0f;
  for (auto& v : a) v = normal(rng) * spread * std::ldexp(1.0f, p.a_exponent);
  for (auto& v : b) v = normal(rng) * spread * std::ldexp(1.0f, p.b_exponent);
  if (specials && !a.empty() && !b.empty()) {
    a[0] = std::numeric_limits<float>::quiet_NaN();
    b[b.size() / 2] = std::numeric_limits<float>::infinity();
    a[a.size() - 1] = 1e30f;  // saturates
    b[0] = std::ldexp(2.5f, p.b_exponent);  // a half: rounds to even
  }
  std::vector<float> want;
  std::vector<int64_t> want_stats;
  Reference(p, a, b, &want, &want_stats);
  float *da, *db, *dp;
  int64_t* ds;
  void* work;
  cudaMalloc(&da, std::max<size_t>(1, a.size()) * sizeof(float));
  cudaMalloc(&db, std::max<size_t>(1, b.size()) * sizeof(float));
  cudaMalloc(&dp, std::max<size_t>(1, want.size()) * sizeof(float));
  cudaMalloc(&ds, 3 * 64 * sizeof(int64_t));
  cudaMalloc(&work, keras_dlu::cuda::DluMatmulWorkspaceBytes(p));
  cudaMemcpy(da, a.data(), a.size() * sizeof(float), cudaMemcpyHostToDevice);
  cudaMemcpy(db, b.data(), b.size() * sizeof(float), cudaMemcpyHostToDevice);
  cudaError_t status = keras_dlu::cuda::DluMatmul(p, da, db, dp, ds, work, nullptr);
  std::vector<float> got(want.size());
  std::vector<int64_t> got_stats(3 * 64);
  cudaMemcpy(got.data(), dp, got.size() * sizeof(float), cudaMemcpyDeviceToHost);
  cudaMemcpy(got_stats.data(), ds, got_stats.size() * sizeof(int64_t), cudaMemcpyDeviceToHost);
  cudaFree(da); cudaFree(db); cudaFree(dp); cudaFree(ds); cudaFree(work);
  if (status != cudaSuccess || cudaDeviceSynchronize() != cudaSuccess) {
    std::printf("FAIL %s: %s\n", label, cudaGetErrorString(status));
    return false;
  }
  if (!SameFloats(got.data(), want.data(), want.size(), label)) return false;
  if (got_stats != want_stats) {
    std::printf("FAIL %s: histograms differ\n", label);
    return false;
  }
  std::printf("ok   %s\n", label);
  return true;
}

bool CheckQuantize(const char* label, int bits, int exponent, bool stochastic) {
  std::mt19937_64 rng(bits * 31 + exponent);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(100003);
  for (auto& v : x) v = normal(rng) * std::ldexp(1.0f, exponent + bits - 2);
  x[0] = std::numeric_limits<float>::quiet_NaN();
  x[1] = -std::numeric_limits<float>::infinity();
  x[2] = std::ldexp(0.5f, exponent);
  std::vector<float> want(x.size()), got(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    if (!keras_dlu::IsFiniteValue(x[i])) { want[i] = x[i]; continue; }
    const int32_t q = keras_dlu::QuantizeFinite(x[i], keras_dlu::Pow2(-exponent), bits,
                                                stochastic, 42, i);
    want[i] = keras_dlu::RoundToFloatFlushed(static_cast<double>(q) * keras_dlu::Pow2(exponent));
  }
  float *dx, *dy;
  cudaMalloc(&dx, x.size() * sizeof(float));
  cudaMalloc(&dy, x.size() * sizeof(float));
  cudaMemcpy(dx, x.data(), x.size() * sizeof(float), cudaMemcpyHostToDevice);
  cudaError_t status = keras_dlu::cuda::DluQuantize(dx, dy, x.size(), exponent, bits,
                                                    stochastic, 42, nullptr);
  cudaMemcpy(got.data(), dy, got.size() * sizeof(float), cudaMemcpyDeviceToHost);
  cudaFree(dx); cudaFree(dy);
  if (status != cudaSuccess) {
    std::printf("FAIL %s: %s\n", label, cudaGetErrorString(status));
    return false;
  }
  if (!SameFloats(got.data(), want.data(), want.size(), label)) return false;
  std::printf("ok   %s\n", label);
  return true;
}

DluMatmulProblem Problem(int64_t m, int64_t n, int64_t k, int bits, bool ta, bool tb,
                         bool stochastic) {
  DluMatmulProblem p;
  p.m = m; p.n = n; p.k = k;
  p.transpose_a = ta; p.transpose_b = tb;
  p.a_exponent = bits == 8 ? -5 : -12;
  p.b_exponent = bits == 8 ? -6 : -13;
  p.bits = bits;
  p.stochastic = stochastic;
  p.seed_a = 7; p.seed_b = 8;
  return p;
}

}  // namespace

int main() {
  bool ok = true;
  ok &= CheckMatmul("8-bit 1x1x1", Problem(1, 1, 1, 8, false, false, false), 1, false);
  ok &= CheckMatmul("8-bit empty M", Problem(0, 5, 3, 8, false, false, false), 2, false);
  ok &= CheckMatmul("8-bit K=0", Problem(4, 3, 0, 8, false, false, false), 3, false);
  ok &= CheckMatmul("8-bit 67x45x129 specials", Problem(67, 45, 129, 8, false, false, false), 4, true);
  ok &= CheckMatmul("8-bit transposed stochastic", Problem(33, 17, 70, 8, true, true, true), 5, true);
  ok &= CheckMatmul("16-bit 50x40x300 specials", Problem(50, 40, 300, 16, false, false, false), 6, true);
  ok &= CheckMatmul("16-bit transpose_b stochastic", Problem(20, 30, 99, 16, false, true, true), 7, true);
  ok &= CheckMatmul("8-bit deep K (int64)", Problem(2, 3, 140000, 8, false, false, false), 8, false);
  ok &= CheckQuantize("quantize 8-bit nearest", 8, -4, false);
  ok &= CheckQuantize("quantize 16-bit stochastic", 16, -10, true);
  std::printf(ok ? "all CUDA dlu_matmul checks passed\n" : "CUDA dlu_matmul checks FAILED\n");
  return ok ? 0 : 1;
}
