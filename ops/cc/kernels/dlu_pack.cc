// Packing of B into oneDNN's BA16a64b4a layout (see dlu_pack.h).
#include "dlu_pack.h"

#include <emmintrin.h>

#include <algorithm>
#include <cstring>

namespace keras_dlu {
namespace {

constexpr int64_t kGroup = 4;                        // depth elements side by side
constexpr int64_t kBlockBytes = kPackBlock * kPackBlock;

int64_t Padded(int64_t size) { return (size + kPackBlock - 1) / kPackBlock * kPackBlock; }

// A full block of a row-major B: rows k0.., columns n0..; four rows at a time, 16 columns
// per step: two rounds of byte and 16-bit interleaves turn the four rows' 16 digits into
// 16 groups of 4.
void PackFullBlockRows(const int8_t* b, int64_t ldb, int64_t k0, int64_t n0, int8_t* out) {
  for (int64_t g = 0; g < kPackBlock / kGroup; ++g) {
    const int8_t* row = b + (k0 + kGroup * g) * ldb + n0;
    int8_t* to = out + g * kPackBlock * kGroup;
    for (int64_t c = 0; c < kPackBlock; c += 16) {
      const __m128i r0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + c));
      const __m128i r1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + ldb + c));
      const __m128i r2 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * ldb + c));
      const __m128i r3 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 3 * ldb + c));
      const __m128i t0 = _mm_unpacklo_epi8(r0, r1), t1 = _mm_unpackhi_epi8(r0, r1);
      const __m128i t2 = _mm_unpacklo_epi8(r2, r3), t3 = _mm_unpackhi_epi8(r2, r3);
      __m128i* at = reinterpret_cast<__m128i*>(to + kGroup * c);
      _mm_storeu_si128(at, _mm_unpacklo_epi16(t0, t2));
      _mm_storeu_si128(at + 1, _mm_unpackhi_epi16(t0, t2));
      _mm_storeu_si128(at + 2, _mm_unpacklo_epi16(t1, t3));
      _mm_storeu_si128(at + 3, _mm_unpackhi_epi16(t1, t3));
    }
  }
}

// A full block of a transposed B (stored [N, K]): each column's 4 consecutive depth digits
// are contiguous in the stored row, one 32-bit copy per group.
void PackFullBlockColumns(const int8_t* b, int64_t ldb, int64_t k0, int64_t n0, int8_t* out) {
  for (int64_t j = 0; j < kPackBlock; ++j) {
    const int8_t* from = b + (n0 + j) * ldb + k0;
    for (int64_t g = 0; g < kPackBlock / kGroup; ++g)
      std::memcpy(out + (g * kPackBlock + j) * kGroup, from + kGroup * g, kGroup);
  }
}

// A block at the edge of B: its valid part copied into a zero-padded 64 x 64 tile (stored
// like B), which then packs as a full block.
void PackEdgeBlock(const int8_t* b, bool transposed, int64_t ldb, int64_t k, int64_t n,
                   int64_t k0, int64_t n0, int8_t* out) {
  alignas(64) int8_t tile[kBlockBytes] = {};
  const int64_t rows = std::min(kPackBlock, (transposed ? n - n0 : k - k0));
  const int64_t cols = std::min(kPackBlock, (transposed ? k - k0 : n - n0));
  const int8_t* from = transposed ? b + n0 * ldb + k0 : b + k0 * ldb + n0;
  for (int64_t r = 0; r < rows; ++r) std::memcpy(tile + r * kPackBlock, from + r * ldb, cols);
  if (transposed) {
    PackFullBlockColumns(tile, kPackBlock, 0, 0, out);
  } else {
    PackFullBlockRows(tile, kPackBlock, 0, 0, out);
  }
}

}  // namespace

void PackBlockedB(const int8_t* b, bool transposed, int64_t ldb, int64_t k, int64_t n,
                  int8_t* out) {
  const int64_t k_blocks = Padded(k) / kPackBlock, n_blocks = Padded(n) / kPackBlock;
#pragma omp parallel for schedule(static) if (k * n > (int64_t{1} << 18))
  for (int64_t block = 0; block < k_blocks * n_blocks; ++block) {
    const int64_t nb = block / k_blocks, kb = block % k_blocks;
    const int64_t k0 = kb * kPackBlock, n0 = nb * kPackBlock;
    int8_t* to = out + block * kBlockBytes;
    const bool full = k0 + kPackBlock <= k && n0 + kPackBlock <= n;
    if (full && !transposed) {
      PackFullBlockRows(b, ldb, k0, n0, to);
    } else if (full) {
      PackFullBlockColumns(b, ldb, k0, n0, to);
    } else {
      PackEdgeBlock(b, transposed, ldb, k, n, k0, n0, to);
    }
  }
}

}  // namespace keras_dlu
