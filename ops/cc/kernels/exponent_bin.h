// The DLU analysis block's binning rule, shared by the CPU kernels, the CUDA kernels and
// their test drivers so that every path bins bit for bit alike.
//
// A finite non-zero value x falls in bin floor(log2|x|) + 32, clamped to [0, 63]; zeros,
// infinities and NaNs fall in no bin (kNoBin). The rule reads the IEEE exponent field
// directly: for a normal number it is floor(log2|x|) + bias, and every subnormal lies below
// 2**-32 in float and double alike, so it clamps to bin 0.
#ifndef KERAS_DLU_OPS_EXPONENT_BIN_H_
#define KERAS_DLU_OPS_EXPONENT_BIN_H_

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define KERAS_DLU_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define KERAS_DLU_HOST_DEVICE inline
#endif

namespace keras_dlu {

constexpr int kHistogramBins = 64;
constexpr int kHistogramOffset = 32;
constexpr int kNoBin = -1;

KERAS_DLU_HOST_DEVICE int ClampBin(int exponent) {
  const int bin = exponent + kHistogramOffset;
  return bin < 0 ? 0 : (bin >= kHistogramBins ? kHistogramBins - 1 : bin);
}

KERAS_DLU_HOST_DEVICE int ExponentBin(float x) {
  uint32_t bits;
  memcpy(&bits, &x, sizeof(bits));
  const int field = static_cast<int>((bits >> 23) & 0xffu);
  if (field == 0xff) return kNoBin;                             // inf, NaN
  if (field == 0) return (bits & 0x7fffffu) ? 0 : kNoBin;       // subnormal, zero
  return ClampBin(field - 127);
}

KERAS_DLU_HOST_DEVICE int ExponentBin(double x) {
  uint64_t bits;
  memcpy(&bits, &x, sizeof(bits));
  const int field = static_cast<int>((bits >> 52) & 0x7ffu);
  if (field == 0x7ff) return kNoBin;
  if (field == 0) return (bits & 0xfffffffffffffull) ? 0 : kNoBin;
  return ClampBin(field - 1023);
}

}  // namespace keras_dlu

#endif  // KERAS_DLU_OPS_EXPONENT_BIN_H_
