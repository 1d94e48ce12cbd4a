// The exact float32 route of the CPU integer GEMM (backend "onednn_f32", see dlu_gemm.h).
#include "dlu_gemm_f32_route.h"

#if KERAS_DLU_WITH_DNNL

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include <dnnl.hpp>

namespace keras_dlu {
namespace {

// Exact u8 x s8 -> s32 through oneDNN's float32 GEMM, for CPUs whose oneDNN ISA has no
// exact integer dot product (AVX2 without VNNI: there its u8 x s8 kernels sum pairs in
// saturating int16). A's digits become q = a - 128 and B's stay q, both as floats; over a
// depth chunk of at most kExactF32Depth the products' magnitudes sum to at most
// 1024 * 128 * 128 = 2**24, so every partial sum float32 forms, in any order, is an exact
// integer. Each chunk's result converts to int32 exactly and the chunks add in int32;
// 128 * (column sums of op(B)) turns sum q_a b back into sum a b. Modular (uint32) adds:
// the caller guarantees the final sums fit int32, not the intermediate ones.
constexpr int64_t kExactF32Depth = 1024;
// Elements of A converted per tile (a float tile stays in L2 with its output).
constexpr int64_t kExactF32TileElements = int64_t{1} << 18;

float* FloatBuffer(int slot, size_t count) {
  thread_local std::vector<float> buffers[3];
  if (buffers[slot].size() < count) buffers[slot].resize(count);
  return buffers[slot].data();
}

// op(B) rows [k0, k0 + kc) as floats: [kc, n] (plain B) or [n, kc] (transposed B).
void BChunkToFloat(bool tb, int64_t n, int64_t k0, int64_t kc, const int8_t* b, int64_t ldb,
                   float* out) {
  const int64_t outer = tb ? n : kc, inner = tb ? kc : n;
#pragma omp parallel for schedule(static) if (outer * inner > (1 << 16))
  for (int64_t r = 0; r < outer; ++r) {
    const int8_t* row = tb ? b + r * ldb + k0 : b + (k0 + r) * ldb;
    for (int64_t j = 0; j < inner; ++j) out[r * inner + j] = row[j];
  }
}

// Rows [i0, i0 + tm) of op(A) over depth [k0, k0 + kc) as floats a - 128: [tm, kc] (plain
// A) or [kc, tm] (transposed A, stored [K, M]).
void ATileToFloat(bool ta, int64_t i0, int64_t tm, int64_t k0, int64_t kc, const uint8_t* a,
                  int64_t lda, float* out) {
  const int64_t outer = ta ? kc : tm, inner = ta ? tm : kc;
#pragma omp parallel for schedule(static) if (outer * inner > (1 << 16))
  for (int64_t r = 0; r < outer; ++r) {
    const uint8_t* row = ta ? a + (k0 + r) * lda + i0 : a + (i0 + r) * lda + k0;
    for (int64_t i = 0; i < inner; ++i) out[r * inner + i] = static_cast<int32_t>(row[i]) - 128;
  }
}

// One depth chunk [k0, k0 + kc) of rows [i0, i0 + tm) of the product, added (first: set,
// with the shift) to `out` rows [tm, n]; fb holds op(B)'s chunk as floats.
void ExactF32Tile(bool ta, bool tb, int64_t i0, int64_t tm, int64_t n, int64_t k0, int64_t kc,
                  const uint8_t* a, int64_t lda, const float* fb, const uint32_t* shift,
                  bool first, float* fa, float* fc, uint32_t* out) {
  ATileToFloat(ta, i0, tm, k0, kc, a, lda, fa);
  dnnl::sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', tm, n, kc, 1.0f, fa, ta ? tm : kc, fb,
              tb ? kc : n, 0.0f, fc, n);
  for (int64_t i = 0; i < tm; ++i) {
    uint32_t* row = out + i * n;
    const float* f = fc + i * n;
    if (first) {
      for (int64_t j = 0; j < n; ++j)
        row[j] = static_cast<uint32_t>(static_cast<int32_t>(f[j])) + (shift ? shift[j] : 0u);
    } else {
      for (int64_t j = 0; j < n; ++j) row[j] += static_cast<uint32_t>(static_cast<int32_t>(f[j]));
    }
  }
}

}  // namespace

// The work is split three ways: a few large GEMMs run one after another on oneDNN's threads;
// many row tiles go one per thread; a deep, small product (a weight gradient over a large
// batch of patches) splits its depth chunks over the threads, each summing into its own
// copy of C. A GEMM inside a parallel region runs on its thread alone: waking oneDNN's
// threads per small GEMM cost milliseconds on busy cores (measured).
void ExactF32Gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const uint8_t* a,
                  int64_t lda, const int8_t* b, int64_t ldb, int32_t* c) {
  // 128 * column sums of op(B): the +128 of A's digits.
  std::vector<int64_t> sums(n, 0);
  for (int64_t r = 0; r < (tb ? n : k); ++r) {
    const int8_t* row = b + r * ldb;
    if (tb) {
      for (int64_t kk = 0; kk < k; ++kk) sums[r] += row[kk];
    } else {
      for (int64_t j = 0; j < n; ++j) sums[j] += row[j];
    }
  }
  std::vector<uint32_t> shift(n);
  for (int64_t j = 0; j < n; ++j) shift[j] = static_cast<uint32_t>(128 * sums[j]);
  const int64_t kc_max = std::min(k, kExactF32Depth);
  const int64_t chunks = (k + kc_max - 1) / kc_max;
  const int64_t tile = std::min(m, std::max<int64_t>(16, kExactF32TileElements / kc_max));
  const int64_t tiles = (m + tile - 1) / tile;
  const int threads = omp_get_max_threads();
  uint32_t* cu = reinterpret_cast<uint32_t*>(c);
  const bool by_chunks = tiles < threads && chunks >= threads && m * n <= (int64_t{1} << 20);
  if (threads == 1 || (tiles < threads && !by_chunks)) {  // few large GEMMs
    float* fb = FloatBuffer(0, kc_max * n);
    float* fa = FloatBuffer(1, tile * kc_max);
    float* fc = FloatBuffer(2, tile * n);
    for (int64_t k0 = 0; k0 < k; k0 += kc_max) {
      const int64_t kc = std::min(kc_max, k - k0);
      BChunkToFloat(tb, n, k0, kc, b, ldb, fb);
      for (int64_t i0 = 0; i0 < m; i0 += tile)
        ExactF32Tile(ta, tb, i0, std::min(tile, m - i0), n, k0, kc, a, lda, fb, shift.data(),
                     k0 == 0, fa, fc, cu + i0 * n);
    }
    return;
  }
  if (by_chunks) std::memset(c, 0, sizeof(int32_t) * m * n);
#pragma omp parallel
  {
    float* fb = FloatBuffer(0, kc_max * n);
    float* fa = FloatBuffer(1, tile * kc_max);
    float* fc = FloatBuffer(2, tile * n);
    if (!by_chunks) {  // row tiles, one thread each, over the whole depth
#pragma omp for schedule(static)
      for (int64_t t = 0; t < tiles; ++t) {
        const int64_t i0 = t * tile, tm = std::min(tile, m - i0);
        for (int64_t k0 = 0; k0 < k; k0 += kc_max) {
          const int64_t kc = std::min(kc_max, k - k0);
          BChunkToFloat(tb, n, k0, kc, b, ldb, fb);
          ExactF32Tile(ta, tb, i0, tm, n, k0, kc, a, lda, fb, shift.data(), k0 == 0, fa, fc,
                       cu + i0 * n);
        }
      }
    } else {  // depth chunks, each thread into its own C, added up at the end
      std::vector<uint32_t> own(m * n, 0);
      bool first = true;
#pragma omp for schedule(static)
      for (int64_t chunk = 0; chunk < chunks; ++chunk) {
        const int64_t k0 = chunk * kc_max, kc = std::min(kc_max, k - k0);
        BChunkToFloat(tb, n, k0, kc, b, ldb, fb);
        for (int64_t i0 = 0; i0 < m; i0 += tile)
          ExactF32Tile(ta, tb, i0, std::min(tile, m - i0), n, k0, kc, a, lda, fb, nullptr,
                       first, fa, fc, own.data() + i0 * n);
        first = false;
      }
#pragma omp critical
      for (int64_t idx = 0; idx < m * n; ++idx) cu[idx] += own[idx];
    }
  }
  if (by_chunks)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) cu[i * n + j] += shift[j];
}

}  // namespace keras_dlu

#endif  // KERAS_DLU_WITH_DNNL
