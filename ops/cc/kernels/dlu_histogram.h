// The DLU analysis block's exponent histogram on the CPU, fused into the row passes of the
// DLU matmul: each thread fills a RowHistogram and folds it into the op's [64] counts, so
// results never depend on threading. Both paths count exactly the rule of exponent_bin.h.
//
// * AVX-512BW (chosen at run time, see UseAvx512Histogram): the exponent fields of a chunk
//   of up to kChunk floats are written as bytes, then each bin between the chunk's smallest
//   and largest counts its bytes with one compare and one masked add per 64 elements.
//   Measured on an AMX Xeon, 2**20 normal floats on one core: 0.42 ms with the pair counter
//   below, 0.27 ms this way, 0.18 ms of it reading the floats; a chunk spanning all 64 bins
//   costs about as much as the pair counter.
// * Otherwise (AVX2, or KERAS_DLU_NO_AVX512=1): bins of two elements per memory increment
//   (cell a * kSide + b counts the pairs whose bins are (a, b)), so a row costs half as
//   many latency-bound increments.
#ifndef KERAS_DLU_OPS_DLU_HISTOGRAM_H_
#define KERAS_DLU_OPS_DLU_HISTOGRAM_H_

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "exponent_bin.h"

namespace keras_dlu {

// Histogram bin of a float by its bits, kHistogramBins (a discard bin) for zeros,
// infinities and NaNs: the rule of ExponentBin, written branch-free so loops vectorize.
inline int32_t BinOrDiscard(uint32_t bits) {
  const int32_t field = static_cast<int32_t>((bits >> 23) & 0xffu);
  const bool mantissa = (bits & 0x7fffffu) != 0;
  int32_t bin = field - 127 + kHistogramOffset;
  bin = bin < 0 ? 0 : (bin > kHistogramBins - 1 ? kHistogramBins - 1 : bin);
  bin = field == 0 ? (mantissa ? 0 : kHistogramBins) : bin;
  return field == 0xff ? kHistogramBins : bin;
}

// Whether this CPU counts with AVX-512BW; KERAS_DLU_NO_AVX512=1 forces the AVX2 path (the
// tests run both). Read once per process.
inline bool UseAvx512Histogram() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool use = __builtin_cpu_supports("avx512f") &&
                          __builtin_cpu_supports("avx512bw") &&
                          std::getenv("KERAS_DLU_NO_AVX512") == nullptr;
  return use;
#else
  return false;
#endif
}

class RowHistogram {
 public:
  static constexpr int kSide = kHistogramBins + 1;

  RowHistogram() : avx512_(UseAvx512Histogram()) {
    if (!avx512_) cells_.assign(kSide * kSide, 0);
  }

  // Adds x[0..n); returns whether any element is non-finite.
  bool AddRow(const float* x, int64_t n) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (avx512_) return AddRowAvx512(x, n);
#endif
    return AddRowPairs(x, n);
  }

  // Adds the counts to histogram[0..64) (the discard bin is dropped).
  void Fold(int64_t* histogram) {
    Flush();
    for (int b = 0; b < kHistogramBins; ++b) histogram[b] += folded_[b];
  }

 private:
  static constexpr int64_t kChunk = 4096;  // 64 vectors of 64 byte bins: no byte overflows

  // Scalar tail: one element at a time; returns whether x is non-finite.
  bool AddOne(float x) {
    uint32_t bits;
    std::memcpy(&bits, &x, sizeof(bits));
    ++folded_[BinOrDiscard(bits)];
    return ((bits >> 23) & 0xffu) == 0xffu;
  }

#if defined(__x86_64__) && defined(__GNUC__)
  // Each finite non-zero float's exponent field (0..254) as a byte, 255 for the others; bin b
  // is field b + 95 for 0 < b < 63, fields up to 95 for bin 0 and from 158 for bin 63.
  static constexpr int kFieldOfBinZero = 127 - kHistogramOffset;                // 95
  static constexpr int kFieldOfLastBin = kFieldOfBinZero + kHistogramBins - 1;  // 158

  __attribute__((target("avx512f,avx512bw"))) bool AddRowAvx512(const float* x, int64_t n) {
    alignas(64) uint8_t fields[kChunk];
    const __m512i magnitude = _mm512_set1_epi32(0x7fffffff);
    const __m512i largest_finite = _mm512_set1_epi32(0x7f7fffff), one = _mm512_set1_epi32(1);
    const __m512i discard = _mm512_set1_epi8(static_cast<char>(0xff));
    __m512i largest = _mm512_setzero_si512();
    bool nonfinite = false;
    for (int64_t start = 0; start < n; start += kChunk) {
      const int64_t len = std::min(kChunk, n - start), full = len & ~int64_t{15};
      const int64_t vectors = (full + 63) / 64;
      const float* at = x + start;
      for (int64_t v = 0; v < vectors; ++v) _mm512_store_si512(fields + 64 * v, discard);
      for (int64_t i = 0; i < full; i += 16) {
        const __m512i bits = _mm512_and_si512(_mm512_loadu_si512(at + i), magnitude);
        largest = _mm512_max_epu32(largest, bits);  // above largest_finite: inf or NaN
        // bits - 1 <= largest finite - 1 (unsigned): neither zero nor inf nor NaN
        const __mmask16 valid = _mm512_cmple_epu32_mask(_mm512_sub_epi32(bits, one),
                                                        _mm512_sub_epi32(largest_finite, one));
        _mm512_mask_cvtepi32_storeu_epi8(fields + i, valid, _mm512_srli_epi32(bits, 23));
      }
      for (int64_t i = full; i < len; ++i) nonfinite |= AddOne(at[i]);
      __m512i low = discard, high = _mm512_setzero_si512();  // of field + 1 (255 wraps to 0)
      for (int64_t v = 0; v < vectors; ++v) {
        const __m512i f = _mm512_load_si512(fields + 64 * v);
        low = _mm512_min_epu8(low, f);
        high = _mm512_max_epu8(high, _mm512_add_epi8(f, _mm512_set1_epi8(1)));
      }
      const int lo = BinOfField(ReduceBytes(low, true)), hi_plus = ReduceBytes(high, false);
      if (hi_plus == 0) continue;  // nothing to count
      const int hi = BinOfField(hi_plus - 1);
      for (int b = lo; b <= hi;) {
        if (b == 0 || b == kHistogramBins - 1) {
          CountEdgeBin(fields, vectors, b);
          ++b;
          continue;
        }
        const int last = std::min({hi, b + 3, kHistogramBins - 2});
        CountBins(fields, vectors, b, last);
        b = last + 1;
      }
    }
    const bool any_top =
        _mm512_cmpgt_epu32_mask(largest, _mm512_set1_epi32(0x7f7fffff)) != 0;
    return nonfinite || any_top;
  }

  static int BinOfField(int field) {
    return std::min(std::max(field - kFieldOfBinZero, 0), kHistogramBins - 1);
  }

  // The smallest (or largest) of 64 bytes.
  __attribute__((target("avx512f,avx512bw"))) static int ReduceBytes(__m512i v, bool smallest) {
    alignas(64) uint8_t bytes[64];
    _mm512_store_si512(bytes, v);
    return smallest ? *std::min_element(bytes, bytes + 64) : *std::max_element(bytes, bytes + 64);
  }

  // Adds the counts of interior bins b0..b1 (at most 4) in fields[0 .. 64 * vectors) to
  // folded_: four independent compare-and-count chains per load.
  __attribute__((target("avx512f,avx512bw"))) void CountBins(const uint8_t* fields,
                                                             int64_t vectors, int b0, int b1) {
    const __m512i one = _mm512_set1_epi8(1), zero = _mm512_setzero_si512();
    __m512i target[4], count[4];
    for (int t = 0; t < 4; ++t) {
      target[t] = _mm512_set1_epi8(static_cast<char>(std::min(b0 + t, b1) + kFieldOfBinZero));
      count[t] = zero;
    }
    for (int64_t v = 0; v < vectors; ++v) {
      const __m512i f = _mm512_load_si512(fields + 64 * v);
      for (int t = 0; t < 4; ++t)
        count[t] = _mm512_mask_add_epi8(count[t], _mm512_cmpeq_epi8_mask(f, target[t]),
                                        count[t], one);
    }
    for (int b = b0; b <= b1; ++b)
      folded_[b] += _mm512_reduce_add_epi64(_mm512_sad_epu8(count[b - b0], zero));
  }

  // Adds the count of bin 0 (fields 0..95) or bin 63 (fields 158..254).
  __attribute__((target("avx512f,avx512bw"))) void CountEdgeBin(const uint8_t* fields,
                                                                int64_t vectors, int bin) {
    const __m512i one = _mm512_set1_epi8(1), zero = _mm512_setzero_si512();
    const int first = bin == 0 ? 0 : kFieldOfLastBin, last = bin == 0 ? kFieldOfBinZero : 254;
    const __m512i base = _mm512_set1_epi8(static_cast<char>(first));
    const __m512i width = _mm512_set1_epi8(static_cast<char>(last - first));
    __m512i count = zero;
    for (int64_t v = 0; v < vectors; ++v) {
      const __m512i f = _mm512_sub_epi8(_mm512_load_si512(fields + 64 * v), base);
      count = _mm512_mask_add_epi8(count, _mm512_cmple_epu8_mask(f, width), count, one);
    }
    folded_[bin] += _mm512_reduce_add_epi64(_mm512_sad_epu8(count, zero));
  }
#endif

  bool AddRowPairs(const float* x, int64_t n) {
    uint32_t nonfinite = 0;
    int64_t i = 0;
#if defined(__AVX2__)
    const __m256i exponent_mask = _mm256_set1_epi32(0xff), top = _mm256_set1_epi32(0xff);
    const __m256i magnitude_mask = _mm256_set1_epi32(0x7fffffff), zero = _mm256_setzero_si256();
    const __m256i offset = _mm256_set1_epi32(127 - kHistogramOffset);
    const __m256i last = _mm256_set1_epi32(kHistogramBins - 1);
    const __m256i discard = _mm256_set1_epi32(kHistogramBins);
    __m256i any_top = zero;
    // The rule of BinOrDiscard on 8 floats.
    auto bins = [&](const float* at) {
      const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(at));
      const __m256i field = _mm256_and_si256(_mm256_srli_epi32(bits, 23), exponent_mask);
      const __m256i is_top = _mm256_cmpeq_epi32(field, top);
      any_top = _mm256_or_si256(any_top, is_top);
      const __m256i is_zero =
          _mm256_cmpeq_epi32(_mm256_and_si256(bits, magnitude_mask), zero);
      const __m256i bin = _mm256_min_epi32(
          _mm256_max_epi32(_mm256_sub_epi32(field, offset), zero), last);
      return _mm256_blendv_epi8(bin, discard, _mm256_or_si256(is_top, is_zero));
    };
    alignas(32) int32_t cell[8];
    const __m256i side = _mm256_set1_epi32(kSide);
    for (; i + 16 <= n; i += 16) {
      const __m256i index = _mm256_add_epi32(_mm256_mullo_epi32(bins(x + i), side),
                                             bins(x + i + 8));
      _mm256_store_si256(reinterpret_cast<__m256i*>(cell), index);
      for (int t = 0; t < 8; ++t) ++cells_[cell[t]];
    }
    nonfinite = !_mm256_testz_si256(any_top, any_top);
    pairs_ += i / 2;
#endif
    for (; i < n; ++i) nonfinite |= AddOne(x[i]);
    if (pairs_ > (int64_t{1} << 31)) Flush();
    return nonfinite != 0;
  }

  void Flush() {
    if (pairs_ == 0) return;
    for (int a = 0; a < kSide; ++a)
      for (int b = 0; b < kSide; ++b) {
        uint32_t& count = cells_[a * kSide + b];
        folded_[a] += count;
        folded_[b] += count;
        count = 0;
      }
    pairs_ = 0;
  }

  bool avx512_;
  std::vector<uint32_t> cells_;  // pair counts (AVX2 path); uint32: flushed before 2**31 pairs
  int64_t folded_[kSide] = {};   // counts per bin; [kHistogramBins] is the discard bin
  int64_t pairs_ = 0;
};

}  // namespace keras_dlu

#endif  // KERAS_DLU_OPS_DLU_HISTOGRAM_H_
