// CPU integer GEMM behind the DLU matmul (see dlu_gemm.h).
#include "dlu_gemm.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <unordered_map>
#include <vector>

#if KERAS_DLU_WITH_DNNL
#include <dnnl.hpp>
#endif

namespace keras_dlu {
namespace {

std::atomic<int64_t> primitives_created{0};
std::atomic<int64_t> cache_hits{0};

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

// One cached problem: the primitive, and the blocked layout of B when it wants one.
struct Primitive {
  dnnl::matmul matmul;
  dnnl::memory::desc b_plain, b_blocked;
  bool reorder_b = false;
  std::unique_ptr<dnnl::reorder> b_reorder;
  size_t scratchpad_bytes = 0;
};

using Key = std::tuple<bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t>;
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

struct Backend {
  bool onednn = false;
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
    } else if (!HasIntegerDotProduct(isa)) {
      b->detail = std::string("oneDNN's effective ISA ") + IsaName(isa) +
                  " has no integer dot product (VNNI/AMX)";
    } else {
      b->onednn = true;
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

std::shared_ptr<Primitive> CreatePrimitive(const Key& key) {
  const auto [ta, tb, m, n, k, lda, ldb] = key;
  auto p = std::make_shared<Primitive>();
  const auto a_md = MatrixDesc(m, k, DataType::u8, ta, lda);
  p->b_plain = MatrixDesc(k, n, DataType::s8, tb, ldb);
  const dnnl::memory::desc b_any(Dims{k, n}, DataType::s8, dnnl::memory::format_tag::any);
  const dnnl::memory::desc c_md(Dims{m, n}, DataType::s32, Dims{n, 1});
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);  // safe concurrent execution
  // B in the primitive's preferred layout, unless that layout is B's own.
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_any, c_md), attr, Engine());
  if (pd.weights_desc() != p->b_plain) {
    p->reorder_b = true;
    p->b_blocked = pd.weights_desc();
    p->b_reorder = std::make_unique<dnnl::reorder>(
        dnnl::reorder::primitive_desc(Engine(), p->b_plain, Engine(), p->b_blocked));
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

// Grow-only per-thread buffers for the blocked B and the scratchpad.
void* ThreadBuffer(int slot, size_t bytes) {
  thread_local std::vector<char> buffers[2];
  if (buffers[slot].size() < bytes) buffers[slot].resize(bytes);
  return buffers[slot].data();
}

void OnednnGemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const uint8_t* a,
                int64_t lda, const int8_t* b, int64_t ldb, int32_t* c) {
  const auto p = CachedPrimitive(Key{ta, tb, m, n, k, lda, ldb});
  thread_local std::unique_ptr<dnnl::stream> stream;
  if (!stream) stream = std::make_unique<dnnl::stream>(Engine());
  dnnl::engine& engine = Engine();
  dnnl::memory a_mem(MatrixDesc(m, k, DataType::u8, ta, lda), engine,
                     const_cast<uint8_t*>(a));
  dnnl::memory b_mem(p->b_plain, engine, const_cast<int8_t*>(b));
  dnnl::memory c_mem(dnnl::memory::desc(Dims{m, n}, DataType::s32, Dims{n, 1}), engine, c);
  dnnl::memory weights = b_mem;
  if (p->reorder_b) {
    weights = dnnl::memory(p->b_blocked, engine, ThreadBuffer(0, p->b_blocked.get_size()));
    p->b_reorder->execute(*stream, b_mem, weights);
  }
  std::unordered_map<int, dnnl::memory> args = {
      {DNNL_ARG_SRC, a_mem}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DST, c_mem}};
  if (p->scratchpad_bytes > 0) {
    dnnl::memory::desc pad(Dims{static_cast<int64_t>(p->scratchpad_bytes)}, DataType::u8,
                           Dims{1});
    args.emplace(DNNL_ARG_SCRATCHPAD,
                 dnnl::memory(pad, engine, ThreadBuffer(1, p->scratchpad_bytes)));
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
    OnednnGemm(transpose_a, transpose_b, m, n, k, a, lda, b, ldb, c);
    return;
  }
#endif
  PortableGemm(transpose_a, transpose_b, m, n, k, a, lda, b, ldb, c);
}

GemmInfo GetGemmInfo() {
  GemmInfo info;
#if KERAS_DLU_WITH_DNNL
  Backend& backend = GetBackend();
  info.backend = backend.onednn ? "onednn" : "portable";
  std::lock_guard<std::mutex> lock(backend.mutex);
  info.detail = backend.detail;
  if (!backend.last_impl.empty()) info.detail += ", impl " + backend.last_impl;
#else
  info.backend = "portable";
  info.detail = "built without oneDNN";
#endif
  info.primitives_created = primitives_created.load();
  info.cache_hits = cache_hits.load();
  return info;
}

}  // namespace keras_dlu
