// Dynamic fixed-point quantization rule (Fujitsu DLU; Courbariaux et al. 2014), shared by
// the CPU kernels, the CUDA kernels and their test drivers so that every path quantizes
// bit for bit alike.
//
//   q = clip(round(x * 2**-e), -2**(bits-1), 2**(bits-1) - 1)
//
// `round` is either round-half-to-even or stochastic rounding: floor(s) + 1 with
// probability frac(s), the uniform number drawn from a counter-based generator keyed by
// (seed, element index), so that the same seed always gives the same result, on any device
// and with any number of threads. The scaling is done in double, where x * 2**-e is exact for
// every float and double x of interest and every |e| <= kMaxExponent.
#ifndef KERAS_DLU_OPS_DLU_QUANTIZE_H_
#define KERAS_DLU_OPS_DLU_QUANTIZE_H_

#include <cmath>
#include <cstdint>

#include "exponent_bin.h"

namespace keras_dlu {

// Exponents (decimal point positions) are accepted in [-kMaxExponent, kMaxExponent].
constexpr int kMaxExponent = 512;

// splitmix64's finalizer: a bijective 64-bit mix with full avalanche.
KERAS_DLU_HOST_DEVICE uint64_t MixBits(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// A uniform double in [0, 1) on the grid of 2**-53, a pure function of (seed, index).
KERAS_DLU_HOST_DEVICE double CounterUniform(uint64_t seed, uint64_t index) {
  const uint64_t bits = MixBits(MixBits(seed ^ 0x6a09e667f3bcc909ull) +
                                index * 0x9e3779b97f4a7c15ull);
  return static_cast<double>(bits >> 11) * (1.0 / 9007199254740992.0);
}

// 2**e as a double (normal for |e| <= 1022).
KERAS_DLU_HOST_DEVICE double Pow2(int exponent) { return ldexp(1.0, exponent); }

// The quantized integer of a finite x, given inv_scale = Pow2(-e) with |e| <= kMaxExponent
// (so x * inv_scale is exact). `stochastic` selects stochastic rounding keyed by
// (seed, index); otherwise round half to even (rint in the default rounding mode).
KERAS_DLU_HOST_DEVICE int32_t QuantizeFinite(double x, double inv_scale, int bits,
                                             bool stochastic, uint64_t seed, uint64_t index) {
  const double s = x * inv_scale;
  const double hi = static_cast<double>((1 << (bits - 1)) - 1);
  const double lo = -static_cast<double>(1 << (bits - 1));
  double r;
  if (stochastic) {
    const double f = floor(s);
    r = f + ((CounterUniform(seed, index) < s - f) ? 1.0 : 0.0);
  } else {
    r = rint(s);
  }
  r = r < lo ? lo : (r > hi ? hi : r);
  return static_cast<int32_t>(r);
}

KERAS_DLU_HOST_DEVICE bool IsFiniteValue(double x) { return x - x == 0.0; }

// A double rounded once to float, flushed to a signed zero when its magnitude is below
// 2**-126 (float's smallest normal): the same on every device and whatever the thread's
// flush-to-zero mode (TensorFlow's CPU threads flush denormals).
KERAS_DLU_HOST_DEVICE float RoundToFloatFlushed(double v) {
  return (v < 1.1754943508222875e-38 && v > -1.1754943508222875e-38)
             ? (v < 0 ? -0.0f : 0.0f)
             : static_cast<float>(v);
}

// q * 2**e rounded once to float (the dequantized value or the scaled integer product),
// flushed like RoundToFloatFlushed; q must be below 2**53 in magnitude (always true here).
// scale = Pow2(e) when |e| <= 1000, where the double product is exactly ldexp(q, e);
// otherwise ldexp is used.
KERAS_DLU_HOST_DEVICE float ScaleUpToFloat(int64_t q, int exponent, double scale) {
  const double v = static_cast<double>(q);
  return RoundToFloatFlushed((exponent <= 1000 && exponent >= -1000) ? v * scale
                                                                      : ldexp(v, exponent));
}

}  // namespace keras_dlu

#endif  // KERAS_DLU_OPS_DLU_QUANTIZE_H_
