// CPU implementation of the DLU matmul (Fujitsu DLU dynamic fixed point; Courbariaux et
// al. 2014): one fused quantization + histogram pass per operand, an exact integer GEMM
// (dlu_gemm.h), one fused scaling + NaN marking + histogram pass over the product.
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
#include <memory>
#include <vector>

#include "dlu_gemm.h"
#include "dlu_quantize.h"
#include "dlu_rows.h"
#include "exponent_bin.h"

namespace keras_dlu {
namespace {

// Per-thread reusable buffers (grow-only, each up to kMaxCachedBytes): repeated products
// of the same size do not pay the page faults of fresh allocations. A slot's memory stays
// valid until the next request of that slot on the same thread; larger requests are owned
// by the caller's Buffer and freed with it.
constexpr size_t kMaxCachedBytes = size_t{1} << 25;

// Elements per group of rows in the row passes (fits in L1 with its int32 copy).
constexpr int64_t kGroupElements = 4096;

struct Buffer {
  std::unique_ptr<int8_t[]> owned;
  int8_t* ptr = nullptr;
  template <typename T>
  T* as() const { return reinterpret_cast<T*>(ptr); }
};

Buffer ScratchBuffer(int slot, size_t bytes) {
  thread_local std::unique_ptr<int8_t[]> cache[8];
  thread_local size_t capacity[8] = {};
  Buffer buffer;
  bytes = std::max<size_t>(bytes, 64);
  if (bytes > kMaxCachedBytes) {
    buffer.owned.reset(new int8_t[bytes]);
    buffer.ptr = buffer.owned.get();
    return buffer;
  }
  if (capacity[slot] < bytes) {
    cache[slot].reset(new int8_t[bytes]);
    capacity[slot] = bytes;
  }
  buffer.ptr = cache[slot].get();
  return buffer;
}

// Every pass below splits its outer loop statically over OpenMP threads; each thread fills
// its own histogram (and sums), merged at the end, so results never depend on threading.
//
// Digit planes of an operand in GEMM layout (ld = row stride as stored):
//   8-bit: hi = q (A: q + 128).  16-bit: hi = h, lo = l, both = [h | l] for A, [l ; h] for B
//   (depth 2K), A's digits + 128.
struct Operand {
  Buffer data;
  const int8_t* hi = nullptr;
  const int8_t* lo = nullptr;
  const int8_t* both = nullptr;
  int64_t ld = 0;            // row stride of hi/lo/both as stored
  std::vector<uint8_t> bad;  // per op-row of A / op-column of B: a non-finite input
  std::vector<int64_t> sums; // per op-row/column sum of q - 128 (16-bit) or of B's q (8-bit)
};

// x is stored [rows, cols]; `by_row` says whether the op index (row of op(A) or column of
// op(B)) is the stored row. `is_a` picks the digit-plane layout (see Operand).
void QuantizeOperand(const float* x, int64_t rows, int64_t cols, bool by_row, bool is_a,
                     bool transposed, int64_t depth, int exponent, int bits, bool stochastic,
                     uint64_t seed, int threads, Operand* out, int64_t* histogram) {
  const int64_t count = rows * cols;
  const int64_t op_size = by_row ? rows : cols;
  out->data = ScratchBuffer(is_a ? 0 : 1, bits == 8 ? count : 2 * count);
  int8_t* base = out->data.ptr;
  int8_t *hi = base, *lo = nullptr;
  int64_t stride = cols;  // row stride of both planes in stored coordinates
  if (bits == 16) {
    // A: [M, 2K] rows (h | l) or, transposed, [2K, M] (h rows then l rows).
    // B: [2K, N] (l rows then h rows) or, transposed, [N, 2K] rows (l | h).
    const bool side_by_side = is_a ? !transposed : transposed;
    const bool h_first = is_a;
    const int64_t second = side_by_side ? depth : count;  // offset of the second plane
    stride = side_by_side ? 2 * cols : cols;
    hi = h_first ? base : base + second;
    lo = h_first ? base + second : base;
    out->lo = lo;
    out->both = base;
  }
  const bool want_sums = bits == 16 || !is_a;
  const int32_t sum_shift = bits == 16 ? 128 : 0;
  const int32_t digit_shift = is_a ? 128 : 0;  // A's digits are stored unsigned
  out->sums.assign(want_sums ? op_size : 0, 0);
  out->hi = hi;
  out->ld = stride;
  out->bad.assign(op_size, 0);
  const bool bytes_direct = bits == 8 && FloatQuantizationIsExact(stochastic, exponent);
  uint8_t* bad = out->bad.data();
  int64_t* sums = out->sums.data();
  std::memset(histogram, 0, sizeof(int64_t) * kHistogramBins);
  // Rows go in groups of about kGroupElements elements: narrow matrices (convolution
  // patches, few output channels) would otherwise pay each pass's per-call cost per row.
  const int64_t group = std::max<int64_t>(1, kGroupElements / std::max<int64_t>(cols, 1));
  const int64_t groups = (rows + group - 1) / group;
#pragma omp parallel num_threads(threads)
  {
    PairHistogram local;
    std::vector<int32_t> q_buffer(bytes_direct ? 0 : group * cols);
    std::vector<int64_t> col_sums((want_sums && !by_row) ? cols : 0, 0);
    std::vector<uint8_t> col_bad(by_row ? 0 : cols, 0);
#pragma omp for schedule(static)
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t r0 = g * group, r1 = std::min(rows, r0 + group);
      const float* xg = x + r0 * cols;
      const int64_t elements = (r1 - r0) * cols;
      const bool any_bad = local.AddRow(xg, elements);
      if (any_bad) {
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t c = 0; c < cols; ++c)
            if (!IsFiniteValue(x[r * cols + c])) (by_row ? bad[r] : col_bad[c]) = 1;
      }
      if (bytes_direct) {  // 8-bit digits straight to bytes; B's sums from them
        int8_t* out_g = hi + r0 * cols;
        QuantizeRowNearestInt8(xg, elements, exponent, digit_shift, out_g);
        if (!want_sums) continue;
        for (int64_t r = r0; r < r1; ++r) {
          const int8_t* q = out_g + (r - r0) * cols;
          if (by_row) {
            int64_t row_sum = 0;
            for (int64_t c = 0; c < cols; ++c) row_sum += q[c];
            sums[r] = row_sum;
          } else {
            for (int64_t c = 0; c < cols; ++c) col_sums[c] += q[c];
          }
        }
        continue;
      }
      QuantizeRow(xg, elements, exponent, bits, stochastic, seed, r0 * cols, q_buffer.data());
      if (bits == 8) {  // stored like x: one flat run
        int8_t* out_g = hi + r0 * cols;
        for (int64_t e = 0; e < elements; ++e)
          out_g[e] = static_cast<int8_t>(static_cast<uint8_t>(q_buffer[e] + digit_shift));
      }
      for (int64_t r = r0; r < r1; ++r) {
        const int32_t* q = q_buffer.data() + (r - r0) * cols;
        if (bits == 16) {
          int8_t* hr = hi + r * stride;
          int8_t* lr = lo + r * stride;
          for (int64_t c = 0; c < cols; ++c) {
            hr[c] = static_cast<int8_t>(static_cast<uint8_t>((q[c] >> 8) + digit_shift));
            lr[c] = static_cast<int8_t>(
                static_cast<uint8_t>((q[c] & 0xff) - 128 + digit_shift));
          }
        }
        if (!want_sums) continue;
        if (by_row) {
          int64_t row_sum = 0;
          for (int64_t c = 0; c < cols; ++c) row_sum += q[c] - sum_shift;
          sums[r] = row_sum;
        } else {
          for (int64_t c = 0; c < cols; ++c) col_sums[c] += q[c] - sum_shift;
        }
      }
    }
#pragma omp critical
    {
      local.Fold(histogram);
      if (!by_row) {
        for (int64_t c = 0; c < cols; ++c) {
          bad[c] |= col_bad[c];
          if (want_sums) sums[c] += col_sums[c];
        }
      }
    }
  }
}

// Rows [i0, i1) of the product: row_value(i, int32_or_int64* row) writes row i's exact
// integers into `row`; they are scaled by 2**exponent, NaN where a row/column is bad, and
// added to the product histogram.
template <typename Acc, typename RowValue>
void FinalizeRows(int64_t i0, int64_t i1, int64_t n, int exponent, const Operand& a,
                  const std::vector<int64_t>& bad_cols, RowValue row_value, bool small,
                  int threads, float* product, int64_t* histogram) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // int32 values: a float scale is exact when no result leaves float's normal range;
  // int64 values: `small` when the depth keeps every |value| below 2**51.
  const bool float_exact = sizeof(Acc) == 4 ? FloatScaleIsExact(exponent, 31) : small;
  const int64_t group = std::max<int64_t>(1, kGroupElements / std::max<int64_t>(n, 1));
  const int64_t groups = (i1 - i0 + group - 1) / group;
#pragma omp parallel num_threads(threads)
  {
    PairHistogram local;
    std::vector<Acc> values(group * n);
#pragma omp for schedule(static)
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t r0 = i0 + g * group, r1 = std::min(i1, r0 + group);
      for (int64_t i = r0; i < r1; ++i) row_value(i, values.data() + (i - r0) * n);
      float* out = product + r0 * n;
      ScaleRow(values.data(), (r1 - r0) * n, exponent, float_exact, out);
      for (int64_t i = r0; i < r1; ++i) {
        float* row = product + i * n;
        if (a.bad[i]) {
          std::fill(row, row + n, nan);
        } else {
          for (const int64_t j : bad_cols) row[j] = nan;
        }
      }
      local.AddRow(out, (r1 - r0) * n);  // NaNs fall in no bin
    }
#pragma omp critical
    local.Fold(histogram);
  }
}

}  // namespace

void DluMatmulCpu(const DluMatmulArgs& args) {
  const int64_t m = args.m, n = args.n, k = args.k;
  const bool ta = args.transpose_a, tb = args.transpose_b;
  const int bits = args.bits;
  // Small products run on the calling thread: waking OpenMP workers (and oneDNN's, which
  // follow this thread's setting) costs more than they save there. The work counts the
  // multiply-adds and the passes over the operands and the product (an element pass costs
  // about as much as 64 int8 multiply-adds): narrow products such as a convolution's
  // patches [N*OH*OW, kh*kw*C] x [kh*kw*C, filters] are bound by the passes.
  static const int max_threads = omp_get_max_threads();
  const int64_t work = m * n * std::max<int64_t>(k, 1) + 64 * (m * k + k * n + m * n);
  const int threads = work < (int64_t{1} << 25) ? 1 : max_threads;
  omp_set_num_threads(threads);
  Operand qa, qb;
  QuantizeOperand(args.a, ta ? k : m, ta ? m : k, !ta, true, ta, k, args.a_exponent, bits,
                  args.stochastic, args.seed_a, threads, &qa, args.stats);
  QuantizeOperand(args.b, tb ? n : k, tb ? k : n, tb, false, tb, k, args.b_exponent, bits,
                  args.stochastic, args.seed_b, threads, &qb, args.stats + kHistogramBins);
  const int exponent = args.a_exponent + args.b_exponent;
  int64_t* histogram = args.stats + 2 * kHistogramBins;
  std::memset(histogram, 0, sizeof(int64_t) * kHistogramBins);
  if (m == 0 || n == 0) return;
  std::vector<int64_t> bad_cols;
  for (int64_t j = 0; j < n; ++j)
    if (qb.bad[j]) bad_cols.push_back(j);

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
          true, threads, args.product, histogram);
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
          small, threads, args.product, histogram);
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
        small, threads, args.product, histogram);
  }
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
