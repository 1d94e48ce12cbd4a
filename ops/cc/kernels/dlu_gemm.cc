// CPU integer GEMM behind the DLU matmul (see dlu_gemm.h).
#include "dlu_gemm.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "dlu_buffer.h"
#include "dlu_gemm_f32_route.h"
#include "dlu_histogram.h"
#include "dlu_pack.h"

#if KERAS_DLU_WITH_DNNL
#include <dnnl.hpp>
#endif

namespace keras_dlu {
namespace {

std::atomic<int64_t> primitives_created{0};
std::atomic<int64_t> cache_hits{0};
std::atomic<int64_t> float_products{0};

void PortableGemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k,
                  const uint8_t* a, int64_t lda, const int8_t* b, int64_t ldb, int32_t* c) {
  // op(B) in row-major [K, N] so that the inner loop runs over contiguous j.
  std::unique_ptr<int8_t[]> b_copy;
  const int8_t* bk = b;
  int64_t ldbk = ldb;
  if (transpose_b) {
    b_copy.reset(new int8_t[k * n]);
    for (int64_t j = 0; j < n; ++j)
      for (int64_t kk = 0; kk < k; ++kk) b_copy[kk * n + j] = b[j * ldb + kk];
    bk = b_copy.get();
    ldbk = n;
  }
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < m; ++i) {
    int32_t* row = c + i * n;
    for (int64_t j = 0; j < n; ++j) row[j] = 0;
    for (int64_t kk = 0; kk < k; ++kk) {
      const int32_t av = transpose_a ? a[kk * lda + i] : a[i * lda + kk];
      if (av == 0) continue;
      const int8_t* brow = bk + kk * ldbk;
      for (int64_t j = 0; j < n; ++j) row[j] += av * static_cast<int32_t>(brow[j]);
    }
  }
}

#if KERAS_DLU_WITH_DNNL

using Dims = dnnl::memory::dims;
using DataType = dnnl::memory::data_type;

// The Key's scale exponent of an int32-output problem (u8 x s8 -> s32).
constexpr int kInt32Output = INT_MIN;

// One cached problem: the primitive, and the blocked layout of B when it wants one.
struct Primitive {
  dnnl::matmul matmul;
  dnnl::memory::desc b_plain, b_blocked;
  bool reorder_b = false;
  bool pack_b = false;  // the layout PackBlockedB writes (dlu_pack.h), else oneDNN's reorder
  std::unique_ptr<dnnl::reorder> b_reorder;
  size_t scratchpad_bytes = 0;
  // A transposed ([K, M] as stored) is copied to row-major [M, K] first where only the
  // copy runs on AMX: oneDNN 2.6's brgemm kernels take no transposed A and its fallback for one, gemm:jit,
  // is VNNI-only (measured on AMX: 2048x256x2048 38 ms vs 5.8 ms for the plain A).
  bool copy_a = false;
};

// (transpose_a, transpose_b, m, n, k, lda, ldb, scale exponent or kInt32Output)
using Key = std::tuple<bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int>;
constexpr size_t kMaxCachedPrimitives = 256;

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

const char* IsaName(dnnl::cpu_isa isa) {
  switch (isa) {
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx2_vnni: return "avx2_vnni";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx2: return "avx2";
    default: return "other";
  }
}

// Whether the ISA oneDNN will use has exact integer dot products (VNNI or AMX).
bool HasIntegerDotProduct(dnnl::cpu_isa isa) {
  const auto has = [isa](dnnl::cpu_isa feature) {
    return (static_cast<unsigned>(isa) & static_cast<unsigned>(feature)) ==
           static_cast<unsigned>(feature);
  };
  return has(dnnl::cpu_isa::avx512_core_vnni) || has(dnnl::cpu_isa::avx2_vnni);
}

// Whether oneDNN's ISA includes AMX-INT8, whose kernels multiply s8 x s8 natively. VNNI
// kernels take a signed A only with a compensation term built into the weights' reorder,
// which oneDNN 2.6 runs in a reference reorder: 8.3 ms per 2048x2048 weight (measured with
// ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI), so there the int32 route stays.
bool HasAmx(dnnl::cpu_isa isa) {
  const auto amx = static_cast<unsigned>(dnnl::cpu_isa::avx512_core_amx);
  return (static_cast<unsigned>(isa) & amx) == amx;
}

struct Backend {
  bool onednn = false;     // the u8 x s8 matmul primitive
  bool float_output = false;  // GemmDigitsToFloat: s8 x s8 -> f32 on AMX
  bool exact_f32 = false;  // oneDNN's sgemm on the digits (ExactF32Gemm)
  std::string detail;
  std::mutex mutex;
  std::map<Key, std::shared_ptr<Primitive>> cache;
  std::string last_impl;
};

Backend& GetBackend() {
  static Backend* backend = [] {
    auto* b = new Backend;
    const char* forced = std::getenv("KERAS_DLU_GEMM");
    const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
    if (forced != nullptr && std::strcmp(forced, "portable") == 0) {
      b->detail = "KERAS_DLU_GEMM=portable";
    } else if (forced != nullptr && std::strcmp(forced, "f32") == 0) {
      b->exact_f32 = true;
      b->detail = std::string("KERAS_DLU_GEMM=f32, isa ") + IsaName(isa);
    } else if (!HasIntegerDotProduct(isa)) {
      b->exact_f32 = true;
      b->detail = std::string("isa ") + IsaName(isa) +
                  " (no integer dot product, VNNI/AMX): float32 GEMM on the digits";
    } else {
      b->onednn = true;
      b->float_output = HasAmx(isa);
      b->detail = std::string("isa ") + IsaName(isa);
    }
    return b;
  }();
  return *backend;
}

dnnl::memory::desc MatrixDesc(int64_t rows, int64_t cols, DataType type, bool transposed,
                              int64_t ld) {
  return dnnl::memory::desc(Dims{rows, cols}, type,
                            transposed ? Dims{1, ld} : Dims{ld, 1});
}

// The primitive descriptor of op(A) [M, K] (stored with row stride lda) times B in the
// primitive's preferred layout: u8 x s8 -> s32, or (a scale exponent) s8 x s8 -> f32 scaled
// by 2**exponent inside the primitive. The scale is a constant of the primitive: oneDNN 2.6
// runs a run-time scale on gemm:jit, not on its AMX kernels (measured: 1.8 vs 0.65 ms at
// 1024^3).
dnnl::matmul::primitive_desc MatmulDesc(bool ta, int64_t m, int64_t n, int64_t k, int64_t lda,
                                        int scale_exponent) {
  const bool to_float = scale_exponent != kInt32Output;
  const auto a_md = MatrixDesc(m, k, to_float ? DataType::s8 : DataType::u8, ta, lda);
  const dnnl::memory::desc b_any(Dims{k, n}, DataType::s8, dnnl::memory::format_tag::any);
  const dnnl::memory::desc c_md(Dims{m, n}, to_float ? DataType::f32 : DataType::s32,
                                Dims{n, 1});
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);  // safe concurrent execution
  if (to_float) attr.set_output_scales(0, {std::ldexp(1.0f, scale_exponent)});
  return dnnl::matmul::primitive_desc(dnnl::matmul::desc(a_md, b_any, c_md), attr, Engine());
}

// Whether oneDNN runs the problem on AMX (impl "brg:avx512_core_amx..."). Only that pays
// for the copy: a VNNI brgemm on the copied A measured slower than gemm:jit on the
// transposed one (LeNet's first-conv weight gradient, 25x65536x6: 1.5-3.1 ms vs 0.86 ms).
bool RunsOnAmx(const dnnl::matmul::primitive_desc& pd) {
  return std::string(pd.impl_info_str()).find("amx") != std::string::npos;
}

std::shared_ptr<Primitive> CreatePrimitive(const Key& key) {
  const auto [ta, tb, m, n, k, lda, ldb, scale_exponent] = key;
  auto p = std::make_shared<Primitive>();
  p->b_plain = MatrixDesc(k, n, DataType::s8, tb, ldb);
  // A float product always copies A (its signed digits), row-major.
  p->copy_a = scale_exponent != kInt32Output;
  dnnl::matmul::primitive_desc pd =
      MatmulDesc(ta && !p->copy_a, m, n, k, p->copy_a ? k : lda, scale_exponent);
  if (ta && !p->copy_a && !RunsOnAmx(pd)) {  // does a row-major A get an AMX kernel?
    dnnl::matmul::primitive_desc plain = MatmulDesc(false, m, n, k, k, scale_exponent);
    if (RunsOnAmx(plain)) {
      pd = plain;
      p->copy_a = true;
    }
  }
  // B in the primitive's preferred layout, unless that layout is B's own.
  if (pd.weights_desc() != p->b_plain) {
    p->reorder_b = true;
    p->b_blocked = pd.weights_desc();
    p->pack_b = p->b_blocked == dnnl::memory::desc(Dims{k, n}, DataType::s8,
                                                   dnnl::memory::format_tag::BA16a64b4a);
    if (!p->pack_b) {
      p->b_reorder = std::make_unique<dnnl::reorder>(
          dnnl::reorder::primitive_desc(Engine(), p->b_plain, Engine(), p->b_blocked));
    }
  } else {
    p->b_blocked = p->b_plain;
  }
  p->scratchpad_bytes = pd.scratchpad_desc().get_size();
  p->matmul = dnnl::matmul(pd);
  Backend& backend = GetBackend();
  std::lock_guard<std::mutex> lock(backend.mutex);
  backend.last_impl = pd.impl_info_str();
  return p;
}

std::shared_ptr<Primitive> CachedPrimitive(const Key& key) {
  Backend& backend = GetBackend();
  {
    std::lock_guard<std::mutex> lock(backend.mutex);
    auto it = backend.cache.find(key);
    if (it != backend.cache.end()) {
      ++cache_hits;
      return it->second;
    }
  }
  auto primitive = CreatePrimitive(key);  // outside the lock: creation takes milliseconds
  ++primitives_created;
  std::lock_guard<std::mutex> lock(backend.mutex);
  if (backend.cache.size() >= kMaxCachedPrimitives) backend.cache.clear();
  backend.cache.emplace(key, primitive);
  return primitive;
}

// out[i * ldo + kk] = a[kk * lda + i] ^ flip for i < rows, kk < cols: one tile of a byte
// transpose, a function of its own for the reason given at XorBytes (dlu_buffer.h).
__attribute__((noinline)) void TransposeTile(const uint8_t* __restrict a, int64_t lda,
                                             int64_t rows, int64_t cols, uint8_t flip,
                                             int64_t ldo, uint8_t* __restrict out) {
  // Output rows outer: each is written contiguously. (Writing down output columns with a
  // stride of K bytes thrashed L1 where K is a multiple of 1024: 6 ms for 3.8 MB.)
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t kk = 0; kk < cols; ++kk) out[i * ldo + kk] = a[kk * lda + i] ^ flip;
}

// op(A) [M, K] as row-major bytes in `out`, each XORed with `flip` (0x80 turns the digits
// q + 128 into q); a transposed A ([K, M] with row stride lda) goes in 64 x 64 tiles so
// that reads and writes both stay within a few cache lines.
void CopyRowMajor(const uint8_t* a, bool transposed, int64_t lda, int64_t m, int64_t k,
                  uint8_t flip, uint8_t* out) {
  if (!transposed) {
#pragma omp parallel for schedule(static) if (m * k > (int64_t{1} << 18))
    for (int64_t i = 0; i < m; ++i) XorBytes(a + i * lda, k, flip, out + i * k);
    return;
  }
  constexpr int64_t kTile = 64;
  const int64_t tiles_m = (m + kTile - 1) / kTile, tiles_k = (k + kTile - 1) / kTile;
#pragma omp parallel for schedule(static) if (m * k > (int64_t{1} << 18))
  for (int64_t t = 0; t < tiles_m * tiles_k; ++t) {
    const int64_t i0 = (t / tiles_k) * kTile, k0 = (t % tiles_k) * kTile;
    TransposeTile(a + k0 * lda + i0, lda, std::min(kTile, m - i0), std::min(kTile, k - k0),
                  flip, k, out + i0 * k + k0);
  }
}

// Grow-only per-thread aligned buffers: 0 the blocked B, 1 the scratchpad, 2 a copied A.
void* GemmBuffer(int slot, size_t bytes) {
  thread_local ThreadBuffer buffers[3];
  return buffers[slot].Get(bytes);
}

// C = op(A) op(B) through the cached primitive of `key` (C int32, or float32 scaled).
void OnednnGemm(const Key& key, const uint8_t* a, const int8_t* b, void* c) {
  auto [ta, tb, m, n, k, lda, ldb, scale_exponent] = key;
  const auto p = CachedPrimitive(key);
  const bool to_float = scale_exponent != kInt32Output;
  thread_local std::unique_ptr<dnnl::stream> stream;
  if (!stream) stream = std::make_unique<dnnl::stream>(Engine());
  dnnl::engine& engine = Engine();
  if (p->copy_a) {
    uint8_t* copy = static_cast<uint8_t*>(GemmBuffer(2, m * k));
    CopyRowMajor(a, ta, lda, m, k, to_float ? 0x80 : 0, copy);
    a = copy;
    ta = false;
    lda = k;
  }
  dnnl::memory a_mem(MatrixDesc(m, k, to_float ? DataType::s8 : DataType::u8, ta, lda),
                     engine, const_cast<uint8_t*>(a));
  dnnl::memory b_mem(p->b_plain, engine, const_cast<int8_t*>(b));
  dnnl::memory c_mem(
      dnnl::memory::desc(Dims{m, n}, to_float ? DataType::f32 : DataType::s32, Dims{n, 1}),
      engine, c);
  dnnl::memory weights = b_mem;
  if (p->reorder_b) {
    void* blocked = GemmBuffer(0, p->b_blocked.get_size());
    weights = dnnl::memory(p->b_blocked, engine, blocked);
    if (p->pack_b) {
      PackBlockedB(b, tb, ldb, k, n, static_cast<int8_t*>(blocked));
    } else {
      p->b_reorder->execute(*stream, b_mem, weights);
    }
  }
  std::unordered_map<int, dnnl::memory> args = {
      {DNNL_ARG_SRC, a_mem}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DST, c_mem}};
  if (p->scratchpad_bytes > 0) {
    dnnl::memory::desc pad(Dims{static_cast<int64_t>(p->scratchpad_bytes)}, DataType::u8,
                           Dims{1});
    args.emplace(DNNL_ARG_SCRATCHPAD,
                 dnnl::memory(pad, engine, GemmBuffer(1, p->scratchpad_bytes)));
  }
  p->matmul.execute(*stream, args);
  stream->wait();
}

#endif  // KERAS_DLU_WITH_DNNL

}  // namespace

void GemmU8S8S32(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k,
                 const uint8_t* a, int64_t lda, const int8_t* b, int64_t ldb, int32_t* c) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    std::memset(c, 0, sizeof(int32_t) * m * n);
    return;
  }
#if KERAS_DLU_WITH_DNNL
  if (GetBackend().onednn) {
    OnednnGemm(Key{transpose_a, transpose_b, m, n, k, lda, ldb, kInt32Output}, a, b, c);
    return;
  }
  if (GetBackend().exact_f32) {
    ExactF32Gemm(transpose_a, transpose_b, m, n, k, a, lda, b, ldb, c);
    return;
  }
#endif
  PortableGemm(transpose_a, transpose_b, m, n, k, a, lda, b, ldb, c);
}

bool HasFloatOutputGemm() {
#if KERAS_DLU_WITH_DNNL
  return GetBackend().float_output;
#else
  return false;
#endif
}

void GemmDigitsToFloat(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k,
                       const uint8_t* a, int64_t lda, const int8_t* b, int64_t ldb,
                       int exponent, float* c) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    std::fill(c, c + m * n, 0.0f);
    return;
  }
#if KERAS_DLU_WITH_DNNL
  OnednnGemm(Key{transpose_a, transpose_b, m, n, k, lda, ldb, exponent}, a, b, c);
  ++float_products;
#endif
}

GemmInfo GetGemmInfo() {
  GemmInfo info;
#if KERAS_DLU_WITH_DNNL
  Backend& backend = GetBackend();
  info.backend = backend.onednn ? "onednn" : (backend.exact_f32 ? "onednn_f32" : "portable");
  std::lock_guard<std::mutex> lock(backend.mutex);
  info.detail = backend.detail;
  if (!backend.last_impl.empty()) info.detail += ", impl " + backend.last_impl;
#else
  info.backend = "portable";
  info.detail = "built without oneDNN";
#endif
  info.detail += UseAvx512Histogram() ? "; histograms avx512bw" : "; histograms avx2";
  info.primitives_created = primitives_created.load();
  info.cache_hits = cache_hits.load();
  info.float_products = float_products.load();
  return info;
}

}  // namespace keras_dlu
