// Host-side histogram accumulation over a contiguous array; used by the
// KerasDluExponentHistogram CPU kernel and by every op that fuses the analysis block.
#ifndef KERAS_DLU_OPS_EXPONENT_HISTOGRAM_H_
#define KERAS_DLU_OPS_EXPONENT_HISTOGRAM_H_

#include <cstdint>

#include "exponent_bin.h"

namespace keras_dlu {

// Adds the bins of x[0..n) to counts[0..64). Half and bfloat16 values widen to float
// exactly, so they bin like the float they equal.
template <typename T>
inline void AccumulateExponentHistogram(const T* x, int64_t n, int64_t* counts) {
  for (int64_t i = 0; i < n; ++i) {
    int bin;
    if constexpr (sizeof(T) == 8) {
      bin = ExponentBin(static_cast<double>(x[i]));
    } else {
      bin = ExponentBin(static_cast<float>(x[i]));
    }
    if (bin != kNoBin) ++counts[bin];
  }
}

}  // namespace keras_dlu

#endif  // KERAS_DLU_OPS_EXPONENT_HISTOGRAM_H_
