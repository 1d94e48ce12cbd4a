// Vectorized row passes of the CPU DLU matmul: quantization to integers and scaling of the
// integer product (the histograms are in dlu_histogram.h). Each is exactly the scalar rule of
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
