// Vectorized row passes of the CPU DLU matmul: quantization to integers, exponent bins for
// the histograms, and scaling of the integer product. Each is exactly the scalar rule of
// dlu_quantize.h / exponent_bin.h; the fast paths are used only where they are provably
// identical (a float scale 2**-e with |e| <= 126, products that stay normal floats).
#ifndef KERAS_DLU_OPS_DLU_ROWS_H_
#define KERAS_DLU_OPS_DLU_ROWS_H_

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "dlu_quantize.h"
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

// A thread's histogram of bins (kHistogramBins discards), counted two elements per
// increment: cell a * kSide + b counts the pairs whose bins are (a, b), so a row costs half
// as many (latency-bound) memory increments. Fold() adds both margins into 64 counters.
class PairHistogram {
 public:
  static constexpr int kSide = kHistogramBins + 1;

  PairHistogram() : cells_(kSide * kSide, 0) {}

  // Adds x[0..n); returns whether any element is non-finite.
  bool AddRow(const float* x, int64_t n) {
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
    for (; i < n; ++i) {
      uint32_t bits;
      std::memcpy(&bits, x + i, sizeof(bits));
      ++singles_[BinOrDiscard(bits)];
      nonfinite |= ((bits >> 23) & 0xffu) == 0xffu;
    }
    if (pairs_ > (int64_t{1} << 31)) Flush();
    return nonfinite != 0;
  }

  // Adds the counts to histogram[0..64) (the discard bin is dropped).
  void Fold(int64_t* histogram) {
    Flush();
    for (int b = 0; b < kHistogramBins; ++b) histogram[b] += folded_[b];
  }

 private:
  void Flush() {
    for (int a = 0; a < kSide; ++a)
      for (int b = 0; b < kSide; ++b) {
        uint32_t& count = cells_[a * kSide + b];
        folded_[a] += count;
        folded_[b] += count;
        count = 0;
      }
    for (int b = 0; b < kSide; ++b) {
      folded_[b] += singles_[b];
      singles_[b] = 0;
    }
    pairs_ = 0;
  }

  std::vector<uint32_t> cells_;  // uint32: flushed before 2**31 pairs
  int64_t singles_[kSide] = {};
  int64_t folded_[kSide] = {};
  int64_t pairs_ = 0;
};

// q[i] = quantized x[i] with round-half-to-even (0 for non-finite x), for -100 <= e <= 126:
// x * 2**-e is then exact in float unless it is below 2**-26 (rounds to 0 either way, also
// under flush-to-zero), and an overflow to infinity saturates like the exact value.
inline void QuantizeRowNearestFloat(const float* x, int64_t n, int exponent, int bits,
                                    int32_t* q) {
  const float inv_scale = static_cast<float>(Pow2(-exponent));
  const float hi = static_cast<float>((1 << (bits - 1)) - 1);
  const float lo = -static_cast<float>(1 << (bits - 1));
  int64_t i = 0;
#if defined(__AVX2__)
  const __m256 vs = _mm256_set1_ps(inv_scale), vhi = _mm256_set1_ps(hi),
               vlo = _mm256_set1_ps(lo);
  const __m256i field_mask = _mm256_set1_epi32(0x7f800000);
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256i nonfinite = _mm256_cmpeq_epi32(
        _mm256_and_si256(_mm256_castps_si256(v), field_mask), field_mask);
    __m256 r = _mm256_round_ps(_mm256_mul_ps(v, vs),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    r = _mm256_min_ps(_mm256_max_ps(r, vlo), vhi);
    const __m256i qi = _mm256_andnot_si256(nonfinite, _mm256_cvtps_epi32(r));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i), qi);
  }
#endif
  const double inv_scale_d = Pow2(-exponent);
  for (; i < n; ++i)
    q[i] = IsFiniteValue(x[i]) ? QuantizeFinite(x[i], inv_scale_d, bits, false, 0, 0) : 0;
}

// Whether QuantizeRowNearestFloat is exact for this rounding and exponent.
inline bool FloatQuantizationIsExact(bool stochastic, int exponent) {
  return !stochastic && exponent >= -100 && exponent <= 126;
}

// The 8-bit digits of QuantizeRowNearestFloat (bits = 8) plus `shift` (mod 256), written
// straight to bytes: one pass, 32 elements per step, no int32 copy.
inline void QuantizeRowNearestInt8(const float* x, int64_t n, int exponent, int shift,
                                   int8_t* out) {
  int64_t i = 0;
#if defined(__AVX2__)
  const __m256 vs = _mm256_set1_ps(static_cast<float>(Pow2(-exponent)));
  const __m256 vhi = _mm256_set1_ps(127.0f), vlo = _mm256_set1_ps(-128.0f);
  const __m256i field_mask = _mm256_set1_epi32(0x7f800000);
  const __m256i lanes = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);  // undo the packs' order
  const __m256i vshift = _mm256_set1_epi8(static_cast<char>(shift));
  auto digits = [&](const float* at) {  // the rule of QuantizeRowNearestFloat on 8 floats
    const __m256 v = _mm256_loadu_ps(at);
    const __m256i nonfinite = _mm256_cmpeq_epi32(
        _mm256_and_si256(_mm256_castps_si256(v), field_mask), field_mask);
    __m256 r = _mm256_round_ps(_mm256_mul_ps(v, vs),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    r = _mm256_min_ps(_mm256_max_ps(r, vlo), vhi);
    return _mm256_andnot_si256(nonfinite, _mm256_cvtps_epi32(r));
  };
  for (; i + 32 <= n; i += 32) {
    const __m256i low = _mm256_packs_epi32(digits(x + i), digits(x + i + 8));
    const __m256i high = _mm256_packs_epi32(digits(x + i + 16), digits(x + i + 24));
    const __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(low, high), lanes);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm256_add_epi8(bytes, vshift));
  }
#endif
  int32_t q[32];
  for (; i < n; i += 32) {
    const int64_t count = std::min<int64_t>(32, n - i);
    QuantizeRowNearestFloat(x + i, count, exponent, 8, q);
    for (int64_t e = 0; e < count; ++e)
      out[i + e] = static_cast<int8_t>(static_cast<uint8_t>(q[e] + shift));
  }
}

// Generic quantization of a row (any exponent, either rounding); `first_index` is the flat
// index of x[0] in its tensor (the stochastic key).
inline void QuantizeRow(const float* x, int64_t n, int exponent, int bits, bool stochastic,
                        uint64_t seed, uint64_t first_index, int32_t* q) {
  if (FloatQuantizationIsExact(stochastic, exponent)) {
    QuantizeRowNearestFloat(x, n, exponent, bits, q);
    return;
  }
  const double inv_scale = Pow2(-exponent);
  for (int64_t i = 0; i < n; ++i)
    q[i] = IsFiniteValue(x[i])
               ? QuantizeFinite(x[i], inv_scale, bits, stochastic, seed, first_index + i)
               : 0;
}

// Whether every |c| * 2**e (c an integer below 2**max_bits) is 0 or a normal float, so
// that float(c) * 2**e in float equals the exactly rounded double computation.
inline bool FloatScaleIsExact(int exponent, int max_bits) {
  return exponent >= -126 && exponent + max_bits <= 127;
}

// out[j] = float(c[j] * 2**e), rounded once.
inline void ScaleRow(const int32_t* c, int64_t n, int exponent, bool float_exact, float* out) {
  if (float_exact) {
    const float scale = static_cast<float>(Pow2(exponent));
    for (int64_t j = 0; j < n; ++j) out[j] = static_cast<float>(c[j]) * scale;
  } else {
    const double scale = Pow2(exponent < -1000 ? -1000 : (exponent > 1000 ? 1000 : exponent));
    for (int64_t j = 0; j < n; ++j) out[j] = ScaleUpToFloat(c[j], exponent, scale);
  }
}

// out[j] = float(c[j] * 2**e), rounded once, flushed like RoundToFloatFlushed. When every
// |c[j]| < 2**51 (`small`) the int64 -> double conversion uses the 2**52 + 2**51 bias trick
// so that the loop vectorizes; it is exact in that range.
inline void ScaleRow(const int64_t* c, int64_t n, int exponent, bool small, float* out) {
  if (small && exponent >= -1000 && exponent <= 1000) {
    const double scale = Pow2(exponent);
    constexpr double kMagic = 6755399441055744.0;  // 2**52 + 2**51
    constexpr int64_t kMagicBits = 0x4338000000000000LL;
    constexpr double kMin = 1.1754943508222875e-38;
    for (int64_t j = 0; j < n; ++j) {
      const int64_t biased = c[j] + kMagicBits;
      double v;
      std::memcpy(&v, &biased, sizeof(v));
      v = (v - kMagic) * scale;
      const float f = static_cast<float>(v);
      out[j] = (v < kMin && v > -kMin) ? (v < 0 ? -0.0f : 0.0f) : f;
    }
    return;
  }
  const double scale = Pow2(exponent < -1000 ? -1000 : (exponent > 1000 ? 1000 : exponent));
  for (int64_t j = 0; j < n; ++j) out[j] = ScaleUpToFloat(c[j], exponent, scale);
}

}  // namespace keras_dlu

#endif  // KERAS_DLU_OPS_DLU_ROWS_H_
