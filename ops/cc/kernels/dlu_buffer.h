// Cache-line aligned byte buffers for the CPU DLU kernels. AMX tile loads and stores that
// straddle cache lines run at about half speed: oneDNN's u8 x s8 matmul at 1024^3 took
// 1.55 ms with its blocked weights 16 bytes off a 64-byte boundary (where malloc puts them)
// and 0.85 ms aligned, on 2 cores of an AMX-INT8 Xeon.
#ifndef KERAS_DLU_OPS_DLU_BUFFER_H_
#define KERAS_DLU_OPS_DLU_BUFFER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>

namespace keras_dlu {

constexpr size_t kCacheLineBytes = 64;

struct AlignedDelete {
  void operator()(int8_t* p) const { ::operator delete[](p, std::align_val_t(kCacheLineBytes)); }
};

using AlignedBytes = std::unique_ptr<int8_t[], AlignedDelete>;

inline AlignedBytes AllocateAligned(size_t bytes) {
  return AlignedBytes(
      static_cast<int8_t*>(::operator new[](bytes, std::align_val_t(kCacheLineBytes))));
}

// A grow-only aligned buffer of at least `bytes`, owned by the calling thread: repeated
// requests of the same size do not pay the page faults of fresh allocations. The memory
// stays valid until the thread's next request of the same buffer.
class ThreadBuffer {
 public:
  int8_t* Get(size_t bytes) {
    if (capacity_ < bytes) {
      data_ = AllocateAligned(bytes);
      capacity_ = bytes;
    }
    return data_.get();
  }

 private:
  AlignedBytes data_;
  size_t capacity_ = 0;
};

// to[i] = from[i] ^ flip. A function of its own: byte stores inside an OpenMP region may
// alias the region's shared loop bounds, which kept the compiler from vectorizing them.
__attribute__((noinline)) inline void XorBytes(const uint8_t* __restrict from, int64_t count,
                                               uint8_t flip, uint8_t* __restrict to) {
  for (int64_t i = 0; i < count; ++i) to[i] = from[i] ^ flip;
}

}  // namespace keras_dlu

#endif  // KERAS_DLU_OPS_DLU_BUFFER_H_
