// CPU implementation of the DLU matmul (Fujitsu DLU dynamic fixed point; Courbariaux et
// al. 2014): one fused quantization + histogram pass per operand (dlu_operand.h), an exact
// integer GEMM (dlu_gemm.h), one fused scaling + NaN marking + histogram pass over the
// product. The fused backward (DluMatmulBackwardCpu) quantizes only the incoming gradient
// and multiplies it with the 8-bit digits its forward pass kept.
//
// The GEMM multiplies unsigned A digits by signed B digits (u8 x s8, the native form of
// VNNI and AMX, see dlu_gemm.h); A's digits are stored shifted by 128 and the shift is
// taken out exactly with B's column sums:
//   8-bit:  sum_k qa qb = sum_k (qa + 128) qb - 128 colsum qb.
// 16-bit operands are split into 8-bit digits, q = 256 h + l + 128 with h = q >> 8 and
// l = (q & 255) - 128, both in [-128, 127]; A stores h + 128 and l + 128. With
// a' = qa - 128 = 256 ha + la, b' = qb - 128 = 256 hb + lb and the u8 x s8 products
// HH = sum (ha+128) hb, X = sum (ha+128) lb + (la+128) hb, LL = sum (la+128) lb:
//   sum_k qa qb = 65536 HH + 256 X + LL + 128 rowsum a' - 32768 colsum b' + 16384 K.
// The digit planes are stored so that [H | L] of A and [L ; H] of B are one operand of
// depth 2K: X is a single GEMM. The product is computed in blocks of rows, so the int32
// partial products stay small.
#include "dlu_matmul_cpu.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "dlu_gemm.h"
#include "dlu_operand.h"
#include "dlu_quantize.h"
#include "dlu_histogram.h"
#include "dlu_rows.h"
#include "exponent_bin.h"

namespace keras_dlu {
namespace {

// Elements per group of rows in the product pass.
constexpr int64_t kGroupElements = 4096;

// Sets rows [r0, r1) of the product to NaN where a row of op(A) or column of op(B) is bad.
void MarkBadRows(int64_t r0, int64_t r1, int64_t n, const Operand& a,
                 const std::vector<int64_t>& bad_cols, float* product) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int64_t i = r0; i < r1; ++i) {
    float* row = product + i * n;
    if (a.bad[i]) {
      std::fill(row, row + n, nan);
    } else {
      for (const int64_t j : bad_cols) row[j] = nan;
    }
  }
}

// Rows [0, m) of a product the GEMM wrote as scaled floats: NaN marks and the histogram
// (none for a null `histogram`).
void MarkAndCountRows(int64_t m, int64_t n, const Operand& a,
                      const std::vector<int64_t>& bad_cols, int threads, float* product,
                      int64_t* histogram) {
  const int64_t group = std::max<int64_t>(1, kGroupElements / std::max<int64_t>(n, 1));
  const int64_t groups = (m + group - 1) / group;
#pragma omp parallel num_threads(threads)
  {
    RowHistogram local;
#pragma omp for schedule(static)
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t r0 = g * group, r1 = std::min(m, r0 + group);
      MarkBadRows(r0, r1, n, a, bad_cols, product);
      if (histogram != nullptr) local.AddRow(product + r0 * n, (r1 - r0) * n);  // no NaNs
    }
#pragma omp critical
    if (histogram != nullptr) local.Fold(histogram);
  }
}

// Rows [i0, i1) of the product: row_value(i, int32_or_int64* row) writes row i's exact
// integers into `row`; they are scaled by 2**exponent, NaN where a row/column is bad, and
// added to the product histogram (none for a null `histogram`).
template <typename Acc, typename RowValue>
void FinalizeRows(int64_t i0, int64_t i1, int64_t n, int exponent, const Operand& a,
                  const std::vector<int64_t>& bad_cols, RowValue row_value, bool small,
                  int threads, float* product, int64_t* histogram) {
  // int32 values: a float scale is exact when no result leaves float's normal range;
  // int64 values: `small` when the depth keeps every |value| below 2**51.
  const bool float_exact = sizeof(Acc) == 4 ? FloatScaleIsExact(exponent, 31) : small;
  const int64_t group = std::max<int64_t>(1, kGroupElements / std::max<int64_t>(n, 1));
  const int64_t groups = (i1 - i0 + group - 1) / group;
#pragma omp parallel num_threads(threads)
  {
    RowHistogram local;
    std::vector<Acc> values(group * n);
#pragma omp for schedule(static)
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t r0 = i0 + g * group, r1 = std::min(i1, r0 + group);
      for (int64_t i = r0; i < r1; ++i) row_value(i, values.data() + (i - r0) * n);
      float* out = product + r0 * n;
      ScaleRow(values.data(), (r1 - r0) * n, exponent, float_exact, out);
      MarkBadRows(r0, r1, n, a, bad_cols, product);
      if (histogram != nullptr) local.AddRow(out, (r1 - r0) * n);  // NaNs fall in no bin
    }
#pragma omp critical
    if (histogram != nullptr) local.Fold(histogram);
  }
}

// Small products run on the calling thread: waking OpenMP workers (and oneDNN's, which
// follow this thread's setting) costs more than they save there. The work counts the
// multiply-adds and the passes over the operands and the product (an element pass costs
// about as much as 64 int8 multiply-adds): narrow products such as a convolution's
// patches [N*OH*OW, kh*kw*C] x [kh*kw*C, filters] are bound by the passes.
int ThreadsFor(int64_t m, int64_t n, int64_t k) {
  static const int max_threads = omp_get_max_threads();
  const int64_t work = m * n * std::max<int64_t>(k, 1) + 64 * (m * k + k * n + m * n);
  const int threads = work < (int64_t{1} << 25) ? 1 : max_threads;
  omp_set_num_threads(threads);
  return threads;
}

// Whether the GEMM writes an 8-bit product as scaled floats itself (GemmDigitsToFloat):
// then B needs no digit sums and there is no int32 product pass.
bool FloatOutput(int bits, int64_t k, int exponent) {
  return bits == 8 && k <= kMaxInt32Depth && FloatScaleIsExact(exponent, 31) &&
         HasFloatOutputGemm();
}

// product [M, N] = 2**exponent * op(A) op(B) of the operands' exact integers, NaN on the
// bad rows of op(A) and columns of op(B); `histogram` [64] gets the product's histogram
// (zeros when `count` is false).
void MultiplyOperands(const Operand& qa, const Operand& qb, int64_t m, int64_t n, int64_t k,
                      bool ta, bool tb, int exponent, int bits, int threads, float* product,
                      int64_t* histogram, bool count) {
  std::memset(histogram, 0, sizeof(int64_t) * kHistogramBins);
  if (m == 0 || n == 0) return;
  int64_t* counted = count ? histogram : nullptr;  // the row passes' histogram, if any
  std::vector<int64_t> bad_cols;
  for (int64_t j = 0; j < n; ++j)
    if (qb.bad[j]) bad_cols.push_back(j);
  if (FloatOutput(bits, k, exponent)) {
    GemmDigitsToFloat(ta, tb, m, n, k, reinterpret_cast<const uint8_t*>(qa.hi), qa.ld, qb.hi,
                      qb.ld, exponent, product);
    MarkAndCountRows(m, n, qa, bad_cols, threads, product, counted);
    return;
  }

  // GEMM of rows [i0, i0 + rows) over depth [k0, k0 + kc) of the given planes.
  auto gemm = [&](const int8_t* a, const int8_t* b, int64_t i0, int64_t rows, int64_t k0,
                  int64_t kc, int32_t* c) {
    const int8_t* a_at = a + (ta ? i0 + k0 * qa.ld : i0 * qa.ld + k0);
    const int8_t* b_at = b + (tb ? k0 : k0 * qb.ld);
    GemmU8S8S32(ta, tb, rows, n, kc, reinterpret_cast<const uint8_t*>(a_at), qa.ld, b_at,
                qb.ld, c);
  };
  // Few large row blocks: every block costs OpenMP barriers, which are slow on busy cores.
  const int64_t block_elements = bits == 8 ? int64_t{1} << 22 : int64_t{1} << 21;
  const int64_t block = std::min<int64_t>(m, std::max<int64_t>(64, block_elements / n));
  const bool one_pass = bits == 8 ? k <= kMaxInt32Depth : 2 * k <= kMaxInt32Depth;
  const int parts = bits == 8 ? 1 : (one_pass ? 3 : 4);
  std::vector<Buffer> buffers(parts);
  std::vector<int32_t*> partial(parts);
  for (int p = 0; p < parts; ++p) {
    buffers[p] = ScratchBuffer(2 + p, sizeof(int32_t) * block * n);
    partial[p] = buffers[p].as<int32_t>();
  }
  Buffer wide = one_pass ? Buffer() : ScratchBuffer(6, sizeof(int64_t) * block * n);
  const int64_t* ra = qa.sums.data();
  // Per column: the correction of A's +128 digit shift (and, 16-bit, of the q - 128 terms).
  std::vector<int64_t> col_add(n);
  std::vector<int32_t> col_add32(bits == 8 ? n : 0);
  for (int64_t j = 0; j < n; ++j) {
    col_add[j] = (bits == 8 ? -128 : -32768) * qb.sums[j];
    if (bits == 8) col_add32[j] = static_cast<int32_t>(col_add[j]);  // |.| <= 2**30
  }
  const int64_t constant = bits == 16 ? 16384 * k : 0;
  // |sum| <= k * 2**30 (16-bit) or k * 2**14 (8-bit), plus the corrections' 2**24 k.
  const bool small = k < (int64_t{1} << 19);
  for (int64_t i0 = 0; i0 < m; i0 += block) {
    const int64_t rows = std::min(block, m - i0);
    int32_t* p0 = partial[0];
    if (bits == 8 && one_pass) {
      gemm(qa.hi, qb.hi, i0, rows, 0, k, p0);
      FinalizeRows<int32_t>(
          i0, i0 + rows, n, exponent, qa, bad_cols,
          [&](int64_t i, int32_t* out) {
            const int32_t* row = p0 + (i - i0) * n;
            for (int64_t j = 0; j < n; ++j) out[j] = row[j] + col_add32[j];
          },
          true, threads, product, counted);
      continue;
    }
    if (one_pass) {  // 16-bit: HH, X (depth 2K), LL
      int32_t* p1 = partial[1];
      int32_t* p2 = partial[2];
      gemm(qa.hi, qb.hi, i0, rows, 0, k, p0);
      gemm(qa.both, qb.both, i0, rows, 0, 2 * k, p1);
      gemm(qa.lo, qb.lo, i0, rows, 0, k, p2);
      FinalizeRows<int64_t>(
          i0, i0 + rows, n, exponent, qa, bad_cols,
          [&](int64_t i, int64_t* out) {
            const int64_t at = (i - i0) * n, row_add = 128 * ra[i] + constant;
            for (int64_t j = 0; j < n; ++j)
              out[j] = 65536 * int64_t{p0[at + j]} + 256 * int64_t{p1[at + j]} + p2[at + j] +
                       row_add + col_add[j];
          },
          small, threads, product, counted);
      continue;
    }
    // Deep K: int64 accumulation over chunks that cannot overflow int32.
    int64_t* acc = wide.as<int64_t>();
    std::fill(acc, acc + rows * n, int64_t{0});
    constexpr int64_t kChunk = kMaxInt32Depth;
    for (int64_t k0 = 0; k0 < k; k0 += kChunk) {
      const int64_t kc = std::min(kChunk, k - k0);
      gemm(qa.hi, qb.hi, i0, rows, k0, kc, p0);
      if (bits == 16) {
        gemm(qa.hi, qb.lo, i0, rows, k0, kc, partial[1]);
        gemm(qa.lo, qb.hi, i0, rows, k0, kc, partial[2]);
        gemm(qa.lo, qb.lo, i0, rows, k0, kc, partial[3]);
      }
      const int32_t* p1 = bits == 16 ? partial[1] : nullptr;
      const int32_t* p2 = bits == 16 ? partial[2] : nullptr;
      const int32_t* p3 = bits == 16 ? partial[3] : nullptr;
#pragma omp parallel for schedule(static) num_threads(threads)
      for (int64_t idx = 0; idx < rows * n; ++idx)
        acc[idx] += bits == 8 ? int64_t{p0[idx]}
                              : 65536 * int64_t{p0[idx]} +
                                    256 * (int64_t{p1[idx]} + p2[idx]) + p3[idx];
    }
    FinalizeRows<int64_t>(
        i0, i0 + rows, n, exponent, qa, bad_cols,
        [&](int64_t i, int64_t* out) {
          const int64_t at = (i - i0) * n;
          const int64_t row_add = bits == 16 ? 128 * ra[i] + constant : 0;
          for (int64_t j = 0; j < n; ++j) out[j] = acc[at + j] + row_add + col_add[j];
        },
        small, threads, product, counted);
  }
}

}  // namespace

void DluMatmulCpu(const DluMatmulArgs& args) {
  const int64_t m = args.m, n = args.n, k = args.k;
  const bool ta = args.transpose_a, tb = args.transpose_b;
  const int threads = ThreadsFor(m, n, k);
  Operand qa, qb;
  if (args.a_given != nullptr) {  // 8-bit, no transpose: the digits are the operand
    KeptOperand(reinterpret_cast<const int8_t*>(args.a_given), args.a_given_flags, m, k, true,
                true, threads, &qa);
    std::memcpy(args.stats, args.a_given_histogram, sizeof(int64_t) * kHistogramBins);
  } else {
    QuantizeOperand(args.a, ta ? k : m, ta ? m : k, !ta, true, ta, k, args.a_exponent,
                    args.bits, args.stochastic, args.seed_a, threads, &qa, args.stats,
                    {args.a_digits, args.a_flags});
  }
  QuantizeOperand(args.b, tb ? n : k, tb ? k : n, tb, false, tb, k, args.b_exponent, args.bits,
                  args.stochastic, args.seed_b, threads, &qb, args.stats + kHistogramBins,
                  {args.b_digits, args.b_flags},
                  !FloatOutput(args.bits, k, args.a_exponent + args.b_exponent));
  MultiplyOperands(qa, qb, m, n, k, ta, tb, args.a_exponent + args.b_exponent, args.bits,
                   threads, args.product, args.stats + 2 * kHistogramBins,
                   args.product_histogram);
}

void DluMatmulBackwardCpu(const DluMatmulBackwardArgs& args) {
  const int64_t m = args.m, n = args.n, k = args.k;
  const int threads = ThreadsFor(m, n, k);
  // G [M, N] once, as B of dB = x^T G (column sums over M); then its A copy for dA = G W^T.
  Operand g_b, g_a, x_a, w_b;
  std::vector<uint8_t> g_flags(m + n);
  const int db_exponent = args.a_exponent + args.grad_exponent;
  const int da_exponent = args.grad_exponent + args.b_exponent;
  QuantizeOperand(args.grad, m, n, false, false, false, m, args.grad_exponent, 8,
                  args.stochastic, args.seed_grad, threads, &g_b, args.stats,
                  {nullptr, g_flags.data()}, !FloatOutput(8, m, db_exponent));
  if (args.grad_a != nullptr) {
    AsOperandA(g_b, m * n, 7, std::vector<uint8_t>(g_flags.begin(), g_flags.begin() + m),
               &g_a);
    KeptOperand(args.b_digits, args.b_flags, k, n, true, false, threads, &w_b,  // W^T
                !FloatOutput(8, n, da_exponent));
    MultiplyOperands(g_a, w_b, m, k, n, false, true, da_exponent, 8, threads, args.grad_a,
                     args.stats + kHistogramBins, args.product_histograms);
  } else {
    std::memset(args.stats + kHistogramBins, 0, sizeof(int64_t) * kHistogramBins);
  }
  KeptOperand(reinterpret_cast<const int8_t*>(args.a_digits), args.a_flags, m, k, false, true,
              threads, &x_a);  // op(A) = x^T
  MultiplyOperands(x_a, g_b, k, n, m, true, false, db_exponent, 8, threads, args.grad_b,
                   args.stats + 2 * kHistogramBins, args.product_histograms);
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
