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

// Any block, element by element (partial blocks at the edges, transposed B): op(B)[kk][j]
// is b[kk * ldb + j], or b[j * ldb + kk] when transposed; zeros beyond K and N.
void PackBlockElements(const int8_t* b, bool transposed, int64_t ldb, int64_t k, int64_t n,
                       int64_t k0, int64_t n0, int8_t* out) {
  for (int64_t g = 0; g < kPackBlock / kGroup; ++g)
    for (int64_t j = 0; j < kPackBlock; ++j) {
      int8_t* to = out + (g * kPackBlock + j) * kGroup;
      const int64_t col = n0 + j;
      for (int64_t d = 0; d < kGroup; ++d) {
        const int64_t kk = k0 + kGroup * g + d;
        to[d] = (kk < k && col < n) ? (transposed ? b[col * ldb + kk] : b[kk * ldb + col]) : 0;
      }
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
      PackBlockElements(b, transposed, ldb, k, n, k0, n0, to);
    }
  }
}

}  // namespace keras_dlu
