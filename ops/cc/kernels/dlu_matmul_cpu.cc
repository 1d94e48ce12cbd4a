// CPU implementation of the DLU matmul (Fujitsu DLU dynamic fixed point; Courbariaux et
// al. 2014): one fused quantization + histogram pass per operand, an exact integer GEMM
// (dlu_gemm.h), one fused scaling + NaN marking + histogram pass over the product.
//
// 16-bit operands are split into 8-bit digits, q = 256 h + l + 128 with h, l in [-128, 127],
// so that the exact product comes from four int8 GEMMs combined in int64:
//   sum_k qa qb = 65536 HH + 256 (HL + LH) + LL + 128 (rowsum a' + colsum b') + 16384 K,
// where a' = qa - 128 = 256 ha + la (and likewise b').
#include "dlu_matmul_cpu.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "dlu_gemm.h"
#include "dlu_quantize.h"
#include "dlu_rows.h"
#include "exponent_bin.h"

namespace keras_dlu {
namespace {

// Every pass below splits its outer loop statically over OpenMP threads; each thread fills
// its own histogram (and sums), merged at the end, so results never depend on threading.
struct Operand {
  std::unique_ptr<int8_t[]> hi;  // 8-bit: the quantized values; 16-bit: h digits
  std::unique_ptr<int8_t[]> lo;  // 16-bit only: l digits
  std::vector<uint8_t> bad;      // per op-row of A / op-column of B: a non-finite input
  std::vector<int64_t> sums;     // 16-bit only: per op-row/column sum of q - 128
};

// Merges four interleaved 65-bin histograms (the last bin discards) into 64 counters.
void MergeHistograms(const int64_t (*local)[kHistogramBins + 1], int64_t* histogram) {
  for (int h = 0; h < 4; ++h)
    for (int i = 0; i < kHistogramBins; ++i) histogram[i] += local[h][i];
}

// x is stored [rows, cols]; `by_row` says whether the op index (row of op(A) or column of
// op(B)) is the stored row (else the stored column).
void QuantizeOperand(const float* x, int64_t rows, int64_t cols, bool by_row, int exponent,
                     int bits, bool stochastic, uint64_t seed, int threads, Operand* out,
                     int64_t* histogram) {
  const int64_t count = rows * cols;
  const int64_t op_size = by_row ? rows : cols;
  out->hi.reset(new int8_t[std::max<int64_t>(count, 1)]);
  if (bits == 16) {
    out->lo.reset(new int8_t[std::max<int64_t>(count, 1)]);
    out->sums.assign(op_size, 0);
  }
  out->bad.assign(op_size, 0);
  int8_t* hi = out->hi.get();
  int8_t* lo = out->lo.get();
  uint8_t* bad = out->bad.data();
  int64_t* sums = out->sums.data();
  std::memset(histogram, 0, sizeof(int64_t) * kHistogramBins);
#pragma omp parallel num_threads(threads)
  {
    int64_t local[4][kHistogramBins + 1] = {};
    std::vector<int32_t> q(cols), bins(cols);
    std::vector<int64_t> col_sums((bits == 16 && !by_row) ? cols : 0, 0);
    std::vector<uint8_t> col_bad(by_row ? 0 : cols, 0);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = x + r * cols;
      const bool any_bad = BinRow(xr, cols, bins.data(), local);
      QuantizeRow(xr, cols, exponent, bits, stochastic, seed, r * cols, q.data());
      if (any_bad) {
        if (by_row) {
          bad[r] = 1;
        } else {
          for (int64_t c = 0; c < cols; ++c)
            if (!IsFiniteValue(xr[c])) col_bad[c] = 1;
        }
      }
      int8_t* hr = hi + r * cols;
      if (bits == 8) {
        for (int64_t c = 0; c < cols; ++c) hr[c] = static_cast<int8_t>(q[c]);
        continue;
      }
      // q = 256 h + l + 128 with h = q >> 8 and l = (q & 255) - 128; sums of q - 128.
      int8_t* lr = lo + r * cols;
      for (int64_t c = 0; c < cols; ++c) {
        hr[c] = static_cast<int8_t>(q[c] >> 8);
        lr[c] = static_cast<int8_t>((q[c] & 0xff) - 128);
      }
      if (by_row) {
        int64_t row_sum = 0;
        for (int64_t c = 0; c < cols; ++c) row_sum += q[c] - 128;
        sums[r] = row_sum;
      } else {
        for (int64_t c = 0; c < cols; ++c) col_sums[c] += q[c] - 128;
      }
    }
#pragma omp critical
    {
      MergeHistograms(local, histogram);
      if (!by_row) {
        for (int64_t c = 0; c < cols; ++c) {
          bad[c] |= col_bad[c];
          if (bits == 16) sums[c] += col_sums[c];
        }
      }
    }
  }
}

// product[i, j] = c[i, j] * 2**exponent as float, NaN where a row/column is bad; fills the
// product histogram.
template <typename Acc>
void Finalize(int64_t m, int64_t n, int exponent, const Operand& a, const Operand& b,
              const Acc* c, int threads, float* product, int64_t* histogram) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const bool float_exact = FloatScaleIsExact(exponent, 31);
  std::vector<int64_t> bad_cols;
  for (int64_t j = 0; j < n; ++j)
    if (b.bad[j]) bad_cols.push_back(j);
  std::memset(histogram, 0, sizeof(int64_t) * kHistogramBins);
#pragma omp parallel num_threads(threads)
  {
    int64_t local[4][kHistogramBins + 1] = {};
    std::vector<int32_t> bins(n);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < m; ++i) {
      float* row = product + i * n;
      if (a.bad[i]) {
        std::fill(row, row + n, nan);
        continue;  // NaNs fall in no bin
      }
      ScaleRow(c + i * n, n, exponent, float_exact, row);
      for (const int64_t j : bad_cols) row[j] = nan;
      BinRow(row, n, bins.data(), local);
    }
#pragma omp critical
    MergeHistograms(local, histogram);
  }
}

}  // namespace

void DluMatmulCpu(const DluMatmulArgs& args) {
  const int64_t m = args.m, n = args.n, k = args.k;
  const int64_t a_rows = args.transpose_a ? k : m, a_cols = args.transpose_a ? m : k;
  const int64_t b_rows = args.transpose_b ? n : k, b_cols = args.transpose_b ? k : n;
  // Small products run on the calling thread: waking OpenMP workers (and oneDNN's, which
  // follow this thread's setting) costs more than they save there.
  static const int max_threads = omp_get_max_threads();
  const int threads = m * n * std::max<int64_t>(k, 1) < (int64_t{1} << 23) ? 1 : max_threads;
  omp_set_num_threads(threads);
  Operand qa, qb;
  QuantizeOperand(args.a, a_rows, a_cols, !args.transpose_a, args.a_exponent, args.bits,
                  args.stochastic, args.seed_a, threads, &qa, args.stats);
  QuantizeOperand(args.b, b_rows, b_cols, args.transpose_b, args.b_exponent, args.bits,
                  args.stochastic, args.seed_b, threads, &qb, args.stats + kHistogramBins);
  const int exponent = args.a_exponent + args.b_exponent;
  int64_t* product_histogram = args.stats + 2 * kHistogramBins;
  const int64_t mn = m * n;
  // Pointers to the [k0, k0 + kc) slice of op(A) and op(B) as stored.
  auto a_at = [&](const int8_t* base, int64_t k0) {
    return base + (args.transpose_a ? k0 * a_cols : k0);
  };
  auto b_at = [&](const int8_t* base, int64_t k0) {
    return base + (args.transpose_b ? k0 : k0 * b_cols);
  };
  auto gemm = [&](const int8_t* a, const int8_t* b, int64_t k0, int64_t kc, int32_t* c) {
    GemmS8S8S32(args.transpose_a, args.transpose_b, m, n, kc, a_at(a, k0), a_cols,
                b_at(b, k0), b_cols, c);
  };
  std::unique_ptr<int32_t[]> c32(new int32_t[std::max<int64_t>(mn, 1)]);
  if (args.bits == 8 && k <= kMaxInt32Depth) {
    gemm(qa.hi.get(), qb.hi.get(), 0, k, c32.get());
    Finalize(m, n, exponent, qa, qb, c32.get(), threads, args.product, product_histogram);
    return;
  }
  // Wide path: int64 accumulation over K chunks that cannot overflow int32.
  std::unique_ptr<int64_t[]> c64(new int64_t[std::max<int64_t>(mn, 1)]);
  std::fill(c64.get(), c64.get() + mn, int64_t{0});
  constexpr int64_t kChunk = int64_t{1} << 16;
  const int parts = args.bits == 8 ? 1 : 4;
  std::vector<std::unique_ptr<int32_t[]>> partial(parts);
  partial[0] = std::move(c32);
  for (int p = 1; p < parts; ++p) partial[p].reset(new int32_t[std::max<int64_t>(mn, 1)]);
  for (int64_t k0 = 0; k0 < k; k0 += kChunk) {
    const int64_t kc = std::min(kChunk, k - k0);
    if (args.bits == 8) {
      gemm(qa.hi.get(), qb.hi.get(), k0, kc, partial[0].get());
    } else {
      gemm(qa.hi.get(), qb.hi.get(), k0, kc, partial[0].get());
      gemm(qa.hi.get(), qb.lo.get(), k0, kc, partial[1].get());
      gemm(qa.lo.get(), qb.hi.get(), k0, kc, partial[2].get());
      gemm(qa.lo.get(), qb.lo.get(), k0, kc, partial[3].get());
    }
    int64_t* acc = c64.get();
    const int32_t* p0 = partial[0].get();
    const int32_t* p1 = parts > 1 ? partial[1].get() : nullptr;
    const int32_t* p2 = parts > 1 ? partial[2].get() : nullptr;
    const int32_t* p3 = parts > 1 ? partial[3].get() : nullptr;
#pragma omp parallel for schedule(static)
    for (int64_t idx = 0; idx < mn; ++idx) {
      if (parts == 1) {
        acc[idx] += p0[idx];
      } else {
        acc[idx] += 65536 * int64_t{p0[idx]} + 256 * (int64_t{p1[idx]} + p2[idx]) + p3[idx];
      }
    }
  }
  if (args.bits == 16) {
    const int64_t* ra = qa.sums.data();
    const int64_t* cb = qb.sums.data();
    const int64_t constant = 16384 * k;
    int64_t* acc = c64.get();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) acc[i * n + j] += 128 * (ra[i] + cb[j]) + constant;
  }
  Finalize(m, n, exponent, qa, qb, c64.get(), threads, args.product, product_histogram);
}

template <typename T>
void DluQuantizeCpu(const T* x, T* y, int64_t n, int exponent, int bits, bool stochastic,
                    uint64_t seed) {
  const double inv_scale = Pow2(-exponent);
  const double scale = Pow2(exponent);
#pragma omp parallel for schedule(static) if (n > (1 << 15))
  for (int64_t i = 0; i < n; ++i) {
    const T v = x[i];
    if (!IsFiniteValue(v)) {
      y[i] = v;
      continue;
    }
    const int32_t q = QuantizeFinite(v, inv_scale, bits, stochastic, seed, i);
    const double d = static_cast<double>(q) * scale;
    y[i] = sizeof(T) == 4 ? static_cast<T>(RoundToFloatFlushed(d)) : static_cast<T>(d);
  }
}

template void DluQuantizeCpu<float>(const float*, float*, int64_t, int, int, bool, uint64_t);
template void DluQuantizeCpu<double>(const double*, double*, int64_t, int, int, bool, uint64_t);

}  // namespace keras_dlu
