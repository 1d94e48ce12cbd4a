// Operands of the CPU DLU matmul (see dlu_operand.h).
#include "dlu_operand.h"

#include <omp.h>

#include <algorithm>
#include <cstring>

#include "dlu_histogram.h"
#include "dlu_rows.h"
#include "exponent_bin.h"

namespace keras_dlu {
namespace {

constexpr size_t kMaxCachedBytes = size_t{1} << 25;

// Elements per group of rows in the row passes (fits in L1 with its int32 copy).
constexpr int64_t kGroupElements = 4096;

// A thread's sums of digits (each minus `shift`) per op index: per stored row straight into
// `sums[r]` (by_row), else per column into its own accumulators, added to `sums` by
// FoldColumns. Sums of 8-bit digits (|digit - shift| <= 128) run in int32, whose adds
// vectorize four times wider than int64 (2**20 digits' column sums, one core: 0.08 ms vs
// 0.20 ms), wherever no sum can overflow; wider digits sum in int64.
class DigitSums {
 public:
  DigitSums(int64_t rows, int64_t cols, bool by_row, bool eight_bit)
      : by_row_(by_row), narrow_(eight_bit && rows < kNarrowLimit && cols < kNarrowLimit) {
    if (by_row) return;
    if (narrow_) {
      narrow_cols_.assign(cols, 0);
    } else {
      wide_cols_.assign(cols, 0);
    }
  }

  // Rows [r0, r1) of q, stored [.., cols] from row r0.
  template <typename Digit>
  void Add(const Digit* q, int64_t r0, int64_t r1, int64_t cols, int32_t shift, int64_t* sums) {
    if (narrow_) {
      AddAs<int32_t>(q, r0, r1, cols, shift, sums, narrow_cols_.data());
    } else {
      AddAs<int64_t>(q, r0, r1, cols, shift, sums, wide_cols_.data());
    }
  }

  void FoldColumns(int64_t* sums) const {
    for (size_t c = 0; c < narrow_cols_.size(); ++c) sums[c] += narrow_cols_[c];
    for (size_t c = 0; c < wide_cols_.size(); ++c) sums[c] += wide_cols_[c];
  }

 private:
  static constexpr int64_t kNarrowLimit = int64_t{1} << 23;  // 2**23 * 128 < 2**31

  template <typename Acc, typename Digit>
  void AddAs(const Digit* q, int64_t r0, int64_t r1, int64_t cols, int32_t shift,
             int64_t* sums, Acc* col_sums) const {
    for (int64_t r = r0; r < r1; ++r) {
      const Digit* row = q + (r - r0) * cols;
      if (by_row_) {
        Acc row_sum = 0;
        for (int64_t c = 0; c < cols; ++c) row_sum += static_cast<Acc>(row[c]) - shift;
        sums[r] = row_sum;
      } else {
        for (int64_t c = 0; c < cols; ++c) col_sums[c] += static_cast<Acc>(row[c]) - shift;
      }
    }
  }

  bool by_row_, narrow_;
  std::vector<int32_t> narrow_cols_;
  std::vector<int64_t> wide_cols_;
};

}  // namespace

Buffer ScratchBuffer(int slot, size_t bytes) {
  thread_local ThreadBuffer cache[kScratchSlots];
  Buffer buffer;
  bytes = std::max<size_t>(bytes, 64);
  if (bytes > kMaxCachedBytes) {
    buffer.owned = AllocateAligned(bytes);
    buffer.ptr = buffer.owned.get();
    return buffer;
  }
  buffer.ptr = cache[slot].Get(bytes);
  return buffer;
}

// Every pass below splits its outer loop statically over OpenMP threads; each thread fills
// its own histogram (and sums), merged at the end, so results never depend on threading.
void QuantizeOperand(const float* x, int64_t rows, int64_t cols, bool by_row, bool is_a,
                     bool transposed, int64_t depth, int exponent, int bits, bool stochastic,
                     uint64_t seed, int threads, Operand* out, int64_t* histogram,
                     KeptDigits kept, bool b_sums) {
  const int64_t count = rows * cols;
  const int64_t op_size = by_row ? rows : cols;
  int8_t* base = kept.digits;
  if (base == nullptr) {
    out->data = ScratchBuffer(is_a ? 0 : 1, bits == 8 ? count : 2 * count);
    base = out->data.ptr;
  }
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
  const bool want_sums = bits == 16 || (!is_a && b_sums);
  const int32_t sum_shift = bits == 16 ? 128 : 0;
  const int32_t digit_shift = is_a ? 128 : 0;  // A's digits are stored unsigned
  out->sums.assign(want_sums ? op_size : 0, 0);
  out->hi = hi;
  out->ld = stride;
  out->bad.assign(op_size, 0);
  if (kept.flags != nullptr) std::memset(kept.flags, 0, rows + cols);
  uint8_t* row_flags = kept.flags;
  const bool col_flags = !by_row || kept.flags != nullptr;
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
    RowHistogram local;
    std::vector<int32_t> q_buffer(bytes_direct ? 0 : group * cols);
    DigitSums digit_sums(want_sums ? rows : 0, want_sums ? cols : 0, by_row || !want_sums,
                         bits == 8);
    std::vector<uint8_t> col_bad(col_flags ? cols : 0, 0);
#pragma omp for schedule(static)
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t r0 = g * group, r1 = std::min(rows, r0 + group);
      const float* xg = x + r0 * cols;
      const int64_t elements = (r1 - r0) * cols;
      if (local.AddRow(xg, elements)) {  // some element is not finite
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t c = 0; c < cols; ++c) {
            if (IsFiniteValue(x[r * cols + c])) continue;
            if (by_row) bad[r] = 1;
            if (row_flags != nullptr) row_flags[r] = 1;
            if (col_flags) col_bad[c] = 1;
          }
      }
      if (bytes_direct) {  // 8-bit digits straight to bytes; B's sums from them
        int8_t* out_g = hi + r0 * cols;
        QuantizeRowNearestInt8(xg, elements, exponent, digit_shift, out_g);
        if (want_sums) digit_sums.Add(out_g, r0, r1, cols, 0, sums);
        continue;
      }
      QuantizeRow(xg, elements, exponent, bits, stochastic, seed, r0 * cols, q_buffer.data());
      if (bits == 8) {  // stored like x: one flat run
        int8_t* out_g = hi + r0 * cols;
        for (int64_t e = 0; e < elements; ++e)
          out_g[e] = static_cast<int8_t>(static_cast<uint8_t>(q_buffer[e] + digit_shift));
      } else {
        for (int64_t r = r0; r < r1; ++r) {
          const int32_t* q = q_buffer.data() + (r - r0) * cols;
          int8_t* hr = hi + r * stride;
          int8_t* lr = lo + r * stride;
          for (int64_t c = 0; c < cols; ++c) {
            hr[c] = static_cast<int8_t>(static_cast<uint8_t>((q[c] >> 8) + digit_shift));
            lr[c] = static_cast<int8_t>(
                static_cast<uint8_t>((q[c] & 0xff) - 128 + digit_shift));
          }
        }
      }
      if (want_sums)
        digit_sums.Add(q_buffer.data(), r0, r1, cols, sum_shift, sums);
    }
#pragma omp critical
    {
      local.Fold(histogram);
      for (int64_t c = 0; c < static_cast<int64_t>(col_bad.size()); ++c) {
        if (!by_row) bad[c] |= col_bad[c];
        if (row_flags != nullptr) row_flags[rows + c] |= col_bad[c];
      }
      digit_sums.FoldColumns(sums);
    }
  }
}

void KeptOperand(const int8_t* digits, const uint8_t* flags, int64_t rows, int64_t cols,
                 bool by_row, bool is_a, int threads, Operand* out, bool b_sums) {
  out->hi = digits;
  out->ld = cols;
  const uint8_t* op_flags = by_row ? flags : flags + rows;
  out->bad.assign(op_flags, op_flags + (by_row ? rows : cols));
  const bool want_sums = !is_a && b_sums;  // 8-bit A needs no sums
  out->sums.assign(want_sums ? (by_row ? rows : cols) : 0, 0);
  if (!want_sums) return;
  int64_t* sums = out->sums.data();
  const int64_t group = std::max<int64_t>(1, kGroupElements / std::max<int64_t>(cols, 1));
  const int64_t groups = (rows + group - 1) / group;
#pragma omp parallel num_threads(threads)
  {
    DigitSums digit_sums(rows, cols, by_row, true);
#pragma omp for schedule(static)
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t r0 = g * group, r1 = std::min(rows, r0 + group);
      digit_sums.Add(digits + r0 * cols, r0, r1, cols, 0, sums);
    }
#pragma omp critical
    digit_sums.FoldColumns(sums);
  }
}

void AsOperandA(const Operand& b, int64_t count, int slot, std::vector<uint8_t> bad,
                Operand* out) {
  out->data = ScratchBuffer(slot, count);
  const uint8_t* from = reinterpret_cast<const uint8_t*>(b.hi);
  uint8_t* to = reinterpret_cast<uint8_t*>(out->data.ptr);
  constexpr int64_t kPiece = int64_t{1} << 16;
  const int64_t pieces = (count + kPiece - 1) / kPiece;
#pragma omp parallel for schedule(static) if (count > (1 << 18))
  for (int64_t p = 0; p < pieces; ++p)  // q + 128 (mod 256)
    XorBytes(from + p * kPiece, std::min(kPiece, count - p * kPiece), 0x80, to + p * kPiece);
  out->hi = out->data.ptr;
  out->ld = b.ld;
  out->bad = std::move(bad);
}

}  // namespace keras_dlu
