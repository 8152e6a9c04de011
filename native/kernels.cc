// Native (x86-64 AVX2 + FMA) build of the LSTM engine's kernels. What each function computes,
// its arguments and their shapes are the contract written once in KernelExports
// (src/engine/kernels.ts), which the WebAssembly kernels (assembly/kernels.ts) keep too, so that
// src/engine/lstm-core.ts runs unchanged on either; the comments here say how this build does it.
// src/engine/native.ts finds and loads the addon; src/engine/kernels.ts wraps its instances.
//
// A "kernel instance" owns one zeroed, page-aligned memory block that plays the part of the wasm
// module's linear memory: JS sees it as an ArrayBuffer, every kernel takes byte offsets into it,
// and grow(pages) replaces it with a larger copy in 64 KiB pages (detaching the old buffer, like
// WebAssembly.Memory.grow). Every access a kernel makes is bounds-checked against the block
// before it runs (a RangeError where wasm would trap); the rows chosen by token ids in
// gatherRows/scatterRows and the targets in crossEntropy are checked as they are read.
//
// No global mutable state: each worker thread loads the addon (context-aware via
// NAPI_MODULE_INIT) and creates its own instance. An instance runs on its caller's thread, except
// that setThreads(2) gives it a helper thread for the large products (see "A second thread").
// The AVX2/FMA code is compiled for that target only (the pragma below); module init checks the
// CPU and reports `supported: false` otherwise.
// create(pages, 'bf16') makes an instance whose four products (gemmNN, gemmTN, packB,
// gemmNNPacked) take BF16 operands with FP32 accumulation (AVX512-BF16, compiled for that target
// only; module init reports `bf16: false` where the CPU or OS lacks it); see "AVX512-BF16 products".

#include <node_api.h>

#include <immintrin.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#if defined(_WIN32)
#include <malloc.h>
#else
#include <sys/mman.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace {

constexpr uint64_t PAGE = 65536;
constexpr uint32_t MAX_PAGES = 65536;  // the wasm32 limit: 4 GiB

// One memory block. Owned jointly by its ArrayBuffer (released by the buffer's finalizer) and
// by the instance while it is the instance's current block. Mapped straight from the OS: zeroed,
// page-aligned, committed lazily like a wasm memory, and returned to the OS when freed. Its size
// is reported to V8 (napi_adjust_external_memory) so that garbage collection runs when dropped
// instances hold a lot of it.
struct Block {
  uint8_t* data;
  uint64_t bytes;   // what the ArrayBuffer shows
  uint64_t mapped;  // what was mapped (at least one page)
  std::atomic<int> refs;
};

uint8_t* mapZeroed(uint64_t n) {
#if defined(_WIN32)
  void* p = _aligned_malloc(n, 64);
  if (p) std::memset(p, 0, n);
  return static_cast<uint8_t*>(p);
#else
  void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : static_cast<uint8_t*>(p);
#endif
}

void unmap(uint8_t* p, uint64_t n) {
#if defined(_WIN32)
  (void)n;
  _aligned_free(p);
#else
  munmap(p, n);
#endif
}

void releaseBlock(napi_env env, Block* b) {
  if (b->refs.fetch_sub(1) == 1) {
    int64_t total;
    napi_adjust_external_memory(env, -static_cast<int64_t>(b->mapped), &total);
    unmap(b->data, b->mapped);
    delete b;
  }
}

Block* newBlock(napi_env env, uint64_t bytes) {
  const uint64_t mapped = std::max(bytes, PAGE);
  uint8_t* p = mapZeroed(mapped);
  if (!p) return nullptr;
  int64_t total;
  napi_adjust_external_memory(env, static_cast<int64_t>(mapped), &total);
  return new Block{p, bytes, mapped, {1}};
}

// Scratch space for packed panels, grown on demand.
struct Scratch {
  float* data = nullptr;
  size_t floats = 0;
  float* get(size_t n) {
    if (n > floats) {
      std::free(data);
      data = static_cast<float*>(std::aligned_alloc(64, (n * 4 + 63) & ~size_t{63}));
      floats = data ? n : 0;
    }
    return data;
  }
  ~Scratch() { std::free(data); }
};

// Per-call scratch of a 'bf16' instance's products: A's words and B's panels of one K panel.
struct BfScratch {
  Scratch a, b;
};

// ---- A second thread ---------------------------------------------------------------------------
// setThreads(2) gives an instance a helper thread; gemmNNPacked then cuts a large product's
// columns into chunks that the caller and the helper take in turn from a shared counter, so a
// helper that is slow to wake (or descheduled: the machine is shared) only means the caller
// computes more chunks itself, never that it waits. Each element of C is computed by the same
// instructions in the same k order whichever thread computes it and wherever the chunks fall, so
// the result is bit-identical to one thread's. Generation uses it (a step is a few products of
// ~10⁵-10⁶ multiply-adds, too short for a worker thread's message round trip); training does not,
// since its shards already run one worker thread per core.
//
// After a job the helper stays awake for SPIN_US, yielding the core to anything else runnable,
// so that the products of one step and the steps of one scheduler tick reach it at once; then it
// sleeps on a condition variable until the next job.
constexpr auto SPIN_US = std::chrono::microseconds(50);

class Helper {
 public:
  using Job = void (*)(void*);
  Helper() : thread_([this] { loop(); }) {}
  ~Helper() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  // Offer job(arg) to the helper; the caller then works on the same job itself, and calls
  // finish() before `arg` goes away.
  void post(Job job, void* arg) {
    job_ = job;
    arg_ = arg;
    state_.store(POSTED);  // seq_cst: ordered before the load below (see loop())
    if (sleeping_.load()) {
      std::lock_guard<std::mutex> lock(mu_);
      cv_.notify_one();
    }
  }
  // Withdraw the offer if the helper has not taken it; else wait until it is done with it.
  void finish() {
    int expected = POSTED;
    if (!state_.compare_exchange_strong(expected, IDLE)) {
      while (state_.load(std::memory_order_acquire) != DONE) _mm_pause();
      state_.store(IDLE, std::memory_order_relaxed);
    }
  }

 private:
  enum : int { IDLE, POSTED, TAKEN, DONE };
  void loop() {
    auto until = std::chrono::steady_clock::now() + SPIN_US;
    for (;;) {
      if (state_.load(std::memory_order_acquire) != POSTED) {
        if (std::chrono::steady_clock::now() < until) {
          std::this_thread::yield();
          continue;
        }
        std::unique_lock<std::mutex> lock(mu_);
        sleeping_.store(true);  // seq_cst, before the predicate's load: post() sees it or we see the job
        cv_.wait(lock, [&] { return stop_ || state_.load() == POSTED; });
        sleeping_.store(false);
        if (stop_) return;
      }
      int expected = POSTED;
      if (state_.compare_exchange_strong(expected, TAKEN)) {
        job_(arg_);
        state_.store(DONE, std::memory_order_release);
      }
      until = std::chrono::steady_clock::now() + SPIN_US;
    }
  }
  Job job_ = nullptr;
  void* arg_ = nullptr;
  std::atomic<int> state_{IDLE};
  std::atomic<bool> sleeping_{false};
  bool stop_ = false;  // under mu_
  std::mutex mu_;
  std::condition_variable cv_;
  std::thread thread_;  // last: starts once the members above exist
};

// A kernel instance. Kept alive by its function objects (one reference each, dropped by their
// finalizers); holds one reference on its current block. `bf16`: the products take the BF16
// path (chosen at create(), never changed).
struct Instance {
  Block* mem = nullptr;
  Scratch scratch;
  bool bf16 = false;
  BfScratch bfScratch;
  int fnRefs = 0;
  bool pinned = false;  // a function without a finalizer exists: never free
  Helper* helper = nullptr;  // setThreads(2)
  BfScratch helperBfScratch;  // the helper's part of a 'bf16' product
  ~Instance() { delete helper; }
};

// Out-of-bounds marker returned by the kernels.
enum Status { OK = 0, OOB = 1 };

// Is [off, off + bytes) inside the block? (64-bit arithmetic: no wrap-around.)
inline bool inside(const Block* m, uint64_t off, uint64_t bytes) { return off <= m->bytes && bytes <= m->bytes - off; }

// Extent in bytes of a strided 2-D float region: rows × cols with row stride ld (floats).
inline uint64_t extent(int64_t rows, int64_t cols, int64_t ld) {
  return (static_cast<uint64_t>(rows - 1) * static_cast<uint64_t>(ld) + static_cast<uint64_t>(cols)) * 4;
}

inline int64_t ceil4(int64_t n) { return (n + 3) & ~int64_t{3}; }

// =============================================================================================
// AVX2 + FMA kernels
// =============================================================================================

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif

// Mask with the first `lanes` (0..8) lanes set.
inline __m256i laneMask(int lanes) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(lanes), idx);
}

// Load/store `lanes` floats (1..8): the full-width form when lanes == 8.
inline __m256 loadN(const float* p, int lanes, __m256i mask) {
  return lanes == 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mask);
}
inline void storeN(float* p, __m256 v, int lanes, __m256i mask) {
  if (lanes == 8)
    _mm256_storeu_ps(p, v);
  else
    _mm256_maskstore_ps(p, mask, v);
}

// ---------------------------------------------------------------------------------------------
// Matrix products (gemmNN, gemmTN, gemmNNPacked: KernelExports).
// Register block: MR rows × NV·8 columns of C in MR·NV ymm accumulators; each k step loads NV
// 8-float slices of B and broadcasts MR elements of A. Long K is cut into KC panels (as in the
// wasm kernel) so that A's panel stays in L2 while the column blocks of C pass over it.
// ---------------------------------------------------------------------------------------------

// Measured on Zen 3 (peak ~100 GFLOP/s at 3.2 GHz): 6×16 and 4×24 blocks both reach ~95% of
// peak with operands in L1; 8×8, 3×32 and 2×32 are slower. KC from 128 to 512 makes no difference
// beyond noise.
constexpr int KC = 256;
constexpr int MR_MAX = 6;  // 6 × 16: 12 accumulators + 2 B slices + 1 broadcast = 15 of 16 ymm
constexpr int NV_MAX = 2;
constexpr int NR = NV_MAX * 8;

// Where B's 8-float slices are: slice v of row k at b + k*ldb + v*vs (row-major B: vs = 8; panels
// packed by packB: ldb = 8, vs = 8·K).
struct BLayout {
  const float* b;
  int64_t ldb;
  int64_t vs;
};

// MASKED: the last of the NV slices holds only `lanes` columns (the right edge of C).
template <int MR, int NV, bool TRANS, bool MASKED>
inline void microKernel(const float* __restrict a, int64_t lda, BLayout bl, float* c, int64_t ldc, int K, int lanes) {
  const __m256i mask = laneMask(MASKED ? lanes : 8);
  __m256 acc[MR][NV];
#pragma GCC unroll 8
  for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++)
      acc[r][v] = (MASKED && v == NV - 1) ? _mm256_maskload_ps(c + r * ldc + 8 * v, mask)
                                          : _mm256_loadu_ps(c + r * ldc + 8 * v);
  const float* pa = a;
  const float* pb = bl.b;
  const int64_t rowStep = TRANS ? 1 : lda;  // between A's rows (i)
  const int64_t kStep = TRANS ? lda : 1;    // between A's k steps
  for (int k = 0; k < K; k++) {
    __m256 bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++)
      bv[v] = (MASKED && v == NV - 1) ? _mm256_maskload_ps(pb + v * bl.vs, mask) : _mm256_loadu_ps(pb + v * bl.vs);
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
      const __m256 s = _mm256_broadcast_ss(pa + r * rowStep);
#pragma GCC unroll 4
      for (int v = 0; v < NV; v++) acc[r][v] = _mm256_fmadd_ps(s, bv[v], acc[r][v]);
    }
    pa += kStep;
    pb += bl.ldb;
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) {
      if (MASKED && v == NV - 1)
        _mm256_maskstore_ps(c + r * ldc + 8 * v, mask, acc[r][v]);
      else
        _mm256_storeu_ps(c + r * ldc + 8 * v, acc[r][v]);
    }
}

// The last rows of a column block (fewer than MR_MAX): one micro-kernel of R rows.
template <int R, int NV, bool TRANS, bool MASKED>
inline void tailRows(int rows, const float* a, int64_t lda, BLayout bl, float* c, int64_t ldc, int K, int lanes) {
  if constexpr (R > 0) {
    if (rows == R)
      microKernel<R, NV, TRANS, MASKED>(a, lda, bl, c, ldc, K, lanes);
    else
      tailRows<R - 1, NV, TRANS, MASKED>(rows, a, lda, bl, c, ldc, K, lanes);
  }
}

// Where A's row blocks are: block q (rows q·MR_MAX…) at a + q·blockStride; within it, row r and
// step k at r·rowStep + k·kStep as the micro-kernel computes them from lda and TRANS. Plain A:
// blockStride = MR_MAX·lda (NN) or MR_MAX (TN). A packed by packAT: TRANS, lda = MR_MAX and
// blockStride = MR_MAX·K.
struct ALayout {
  const float* a;
  int64_t lda;
  int64_t blockStride;
};

// All rows of one column block of NV slices.
template <int NV, bool TRANS, bool MASKED>
void columnBlock(ALayout al, BLayout bl, float* c, int64_t ldc, int M, int K, int lanes) {
  const float* a = al.a;
  int i = 0;
  for (; i + MR_MAX <= M; i += MR_MAX, a += al.blockStride)
    microKernel<MR_MAX, NV, TRANS, MASKED>(a, al.lda, bl, c + i * ldc, ldc, K, lanes);
  if (i < M) tailRows<MR_MAX - 1, NV, TRANS, MASKED>(M - i, a, al.lda, bl, c + i * ldc, ldc, K, lanes);
}

// A column block of nv (1..NV_MAX) slices, the last one holding `lanes` (1..8) columns.
template <bool TRANS>
void anyColumnBlock(int nv, int lanes, ALayout al, BLayout bl, float* c, int64_t ldc, int M, int K) {
  if (lanes != 8) {
    switch (nv) {
      case 1: columnBlock<1, TRANS, true>(al, bl, c, ldc, M, K, lanes); break;
      case 2: columnBlock<2, TRANS, true>(al, bl, c, ldc, M, K, lanes); break;
      case 3: if constexpr (NV_MAX >= 3) columnBlock<3, TRANS, true>(al, bl, c, ldc, M, K, lanes); break;
    }
  } else {
    switch (nv) {
      case 1: columnBlock<1, TRANS, false>(al, bl, c, ldc, M, K, 8); break;
      case 2: columnBlock<2, TRANS, false>(al, bl, c, ldc, M, K, 8); break;
      case 3: if constexpr (NV_MAX >= 3) columnBlock<3, TRANS, false>(al, bl, c, ldc, M, K, 8); break;
    }
  }
}

// One K panel (K ≤ KC) of a product with row-major B.
template <bool TRANS>
void gemmPanel(ALayout al, const float* b, int64_t ldb, float* c, int64_t ldc, int M, int N, int K) {
  int j = 0;
  if (M > MR_MAX) {
    // Copy B's column slice [K×NR] into a contiguous block first: B's rows are usually a
    // power-of-two apart (e.g. 2 KiB), so the strided slice would fall into a couple of L1 sets
    // and be fetched from L2 again by every row block.
    alignas(64) float packed[KC * NR];
    for (; j + NR <= N; j += NR) {
      const float* src = b + j;
      for (int k = 0; k < K; k++, src += ldb)
#pragma GCC unroll 4
        for (int v = 0; v < NV_MAX; v++) _mm256_store_ps(packed + k * NR + 8 * v, _mm256_loadu_ps(src + 8 * v));
      columnBlock<NV_MAX, TRANS, false>(al, {packed, NR, 8}, c + j, ldc, M, K, 8);
    }
  }
  for (; j + NR <= N; j += NR) columnBlock<NV_MAX, TRANS, false>(al, {b + j, ldb, 8}, c + j, ldc, M, K, 8);
  const int rest = N - j;
  if (rest > 0) {
    const int nv = (rest + 7) / 8;
    anyColumnBlock<TRANS>(nv, rest - 8 * (nv - 1), al, {b + j, ldb, 8}, c + j, ldc, M, K);
  }
}

// Pack a K panel of a transposed A (stored [K×M], row stride lda) into row blocks
// [ceil(M/MR_MAX)][K][MR_MAX]: each micro-kernel then reads its A as one contiguous stream
// instead of K lines a power-of-two apart. Rows past M are zero.
void packAT(const float* a, int64_t lda, float* dst, int M, int K) {
  for (int i0 = 0; i0 < M; i0 += MR_MAX) {
    const int rows = std::min(MR_MAX, M - i0);
    const float* src = a + i0;
    for (int k = 0; k < K; k++, src += lda, dst += MR_MAX) {
      int r = 0;
      for (; r < rows; r++) dst[r] = src[r];
      for (; r < MR_MAX; r++) dst[r] = 0;
    }
  }
}

template <bool TRANS>
void gemm(const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc, int M, int N, int K,
          Scratch* scratch) {
  const int64_t blocks = (M + MR_MAX - 1) / MR_MAX;
  // a transposed A is worth packing when several column blocks will read it
  float* ap = TRANS && M > MR_MAX && N > NR ? scratch->get(static_cast<size_t>(blocks) * MR_MAX * KC) : nullptr;
  for (int k0 = 0; k0 < K; k0 += KC) {
    const int kLen = std::min(KC, K - k0);
    const float* bk = b + k0 * ldb;
    if (ap) {
      packAT(a + k0 * lda, lda, ap, M, kLen);
      gemmPanel<true>({ap, MR_MAX, static_cast<int64_t>(MR_MAX) * kLen}, bk, ldb, c, ldc, M, N, kLen);
    } else if (TRANS) {
      gemmPanel<true>({a + k0 * lda, lda, MR_MAX}, bk, ldb, c, ldc, M, N, kLen);
    } else {
      gemmPanel<false>({a + k0, lda, MR_MAX * lda}, bk, ldb, c, ldc, M, N, kLen);
    }
  }
}

void packB(const float* b, int64_t ldb, float* dst, int K, int N) {
  const int N8 = N & ~7;
  float* out = dst;
  for (int j = 0; j < N8; j += 8) {
    const float* pb = b + j;
    for (int k = 0; k < K; k++, out += 8, pb += ldb) _mm256_storeu_ps(out, _mm256_loadu_ps(pb));
  }
}

void gemmNNPacked(const float* a, int64_t lda, const float* bp, const float* b, int64_t ldb, float* c, int64_t ldc,
                  int M, int N, int K) {
  const int panels = N / 8;
  const int N8 = panels * 8;
  const int64_t panelStride = static_cast<int64_t>(K) * 8;
  for (int k0 = 0; k0 < K; k0 += KC) {
    const int kLen = std::min(KC, K - k0);
    const ALayout al{a + k0, lda, MR_MAX * lda};
    int p = 0;
    for (; p + NV_MAX <= panels; p += NV_MAX)
      columnBlock<NV_MAX, false, false>(al, {bp + p * panelStride + k0 * 8, 8, panelStride}, c + p * 8, ldc, M, kLen, 8);
    if (p < panels)
      anyColumnBlock<false>(panels - p, 8, al, {bp + p * panelStride + k0 * 8, 8, panelStride}, c + p * 8, ldc, M, kLen);
    if (N8 < N) columnBlock<1, false, true>(al, {b + k0 * ldb + N8, ldb, 8}, c + N8, ldc, M, kLen, N - N8);
  }
}

// ---------------------------------------------------------------------------------------------
// Vectorised exp, sigmoid, tanh: the wasm kernels' algorithms (Cephes range reduction and
// polynomials), eight lanes at a time.
// ---------------------------------------------------------------------------------------------

inline __m256 exp8(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
  const __m256 n =
      _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  // r = x - n·ln2, with ln2 split in two for precision
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fmadd_ps(n, _mm256_set1_ps(2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
  // scale by 2^n through the exponent bits
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

inline __m256 sigmoid8(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 negx = _mm256_xor_ps(x, _mm256_set1_ps(-0.0f));
  return _mm256_div_ps(one, _mm256_add_ps(one, exp8(negx)));
}

// tanh: a polynomial near zero (where 1 - 2/(e^2x + 1) would cancel), the exp form elsewhere.
inline __m256 tanh8(__m256 x) {
  const __m256 signBit = _mm256_set1_ps(-0.0f);
  const __m256 ax = _mm256_andnot_ps(signBit, x);
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 big =
      _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(exp8(_mm256_add_ps(ax, ax)), one)));
  const __m256 sgn = _mm256_or_ps(big, _mm256_and_ps(x, signBit));
  const __m256 z = _mm256_mul_ps(x, x);
  __m256 p = _mm256_set1_ps(-5.70498872745e-3f);
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(2.06390887954e-2f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-5.37397155531e-2f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.33314422036e-1f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-3.33332819422e-1f));
  const __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), x, x);
  return _mm256_blendv_ps(sgn, small, _mm256_cmp_ps(ax, _mm256_set1_ps(0.625f), _CMP_LT_OQ));
}

// The wasm kernels process elements in groups of 4 (n rounded up to a multiple of 4); so do
// these: 8 at a time, the last group of 4..8 (or 4) with a mask.
template <typename F>
inline void forEach8(int64_t n, F&& f) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) f(i, 8, laneMask(8));
  if (i < n) {
    const int lanes = static_cast<int>(ceil4(n - i));
    f(i, lanes, laneMask(lanes));
  }
}

void sigmoidArray(float* x, float* y, int n) {
  forEach8(n, [&](int64_t i, int lanes, __m256i m) { storeN(y + i, sigmoid8(loadN(x + i, lanes, m)), lanes, m); });
}

void tanhArray(float* x, float* y, int n) {
  forEach8(n, [&](int64_t i, int lanes, __m256i m) { storeN(y + i, tanh8(loadN(x + i, lanes, m)), lanes, m); });
}

void mulArrays(const float* a, const float* b, float* y, int n) {
  forEach8(n, [&](int64_t i, int lanes, __m256i m) {
    storeN(y + i, _mm256_mul_ps(loadN(a + i, lanes, m), loadN(b + i, lanes, m)), lanes, m);
  });
}

// ---------------------------------------------------------------------------------------------
// LSTM gates (gate layout: KernelExports).
// ---------------------------------------------------------------------------------------------

// Returns OOB if a token's row lies outside memory.
Status gatherRows(Block* m, float* z, uint32_t wx, float* bias, const int32_t* tok, int64_t tokStride, int B, int G) {
  const uint64_t rowBytes = static_cast<uint64_t>(ceil4(G)) * 4;
  for (int b = 0; b < B; b++) {
    const uint64_t off = wx + static_cast<uint64_t>(static_cast<uint32_t>(tok[b * tokStride])) * G * 4;
    if (!inside(m, off, rowBytes)) return OOB;
    const float* src = reinterpret_cast<const float*>(m->data + off);
    float* dst = z + static_cast<int64_t>(b) * G;
    forEach8(G, [&](int64_t j, int lanes, __m256i mk) {
      storeN(dst + j, _mm256_add_ps(loadN(src + j, lanes, mk), loadN(bias + j, lanes, mk)), lanes, mk);
    });
  }
  return OK;
}

void gatesForward(float* z, const float* cPrev, float* c, float* tc, float* h, int B, int H) {
  for (int b = 0; b < B; b++) {
    float* zr = z + static_cast<int64_t>(b) * 4 * H;
    const int64_t hr = static_cast<int64_t>(b) * H;
    forEach8(H, [&](int64_t j, int lanes, __m256i mk) {
      const __m256 ig = sigmoid8(loadN(zr + j, lanes, mk));
      const __m256 fg = sigmoid8(loadN(zr + H + j, lanes, mk));
      const __m256 cg = tanh8(loadN(zr + 2 * H + j, lanes, mk));
      const __m256 og = sigmoid8(loadN(zr + 3 * H + j, lanes, mk));
      storeN(zr + j, ig, lanes, mk);
      storeN(zr + H + j, fg, lanes, mk);
      storeN(zr + 2 * H + j, cg, lanes, mk);
      storeN(zr + 3 * H + j, og, lanes, mk);
      const __m256 cv = _mm256_add_ps(_mm256_mul_ps(fg, loadN(cPrev + hr + j, lanes, mk)), _mm256_mul_ps(ig, cg));
      const __m256 tv = tanh8(cv);
      storeN(c + hr + j, cv, lanes, mk);
      storeN(tc + hr + j, tv, lanes, mk);
      storeN(h + hr + j, _mm256_mul_ps(og, tv), lanes, mk);
    });
  }
}

// The same operations, in the same order, as the wasm kernel: no FMA contraction.
void gatesBackward(const float* act, const float* cPrev, const float* tc, const float* dh, float* dc, float* dz, int B,
                   int H) {
  const __m256 one = _mm256_set1_ps(1.0f);
  for (int b = 0; b < B; b++) {
    const float* ar = act + static_cast<int64_t>(b) * 4 * H;
    float* dr = dz + static_cast<int64_t>(b) * 4 * H;
    const int64_t hr = static_cast<int64_t>(b) * H;
    forEach8(H, [&](int64_t j, int lanes, __m256i mk) {
      const __m256 ig = loadN(ar + j, lanes, mk);
      const __m256 fg = loadN(ar + H + j, lanes, mk);
      const __m256 cg = loadN(ar + 2 * H + j, lanes, mk);
      const __m256 og = loadN(ar + 3 * H + j, lanes, mk);
      const __m256 t = loadN(tc + hr + j, lanes, mk);
      const __m256 g = loadN(dh + hr + j, lanes, mk);
      // dc_t += dh ⊙ o ⊙ (1 - tanh²c)
      const __m256 dct = _mm256_add_ps(loadN(dc + hr + j, lanes, mk),
                                       _mm256_mul_ps(_mm256_mul_ps(g, og), _mm256_sub_ps(one, _mm256_mul_ps(t, t))));
      const __m256 dO = _mm256_mul_ps(g, t);
      const __m256 dI = _mm256_mul_ps(dct, cg);
      const __m256 dG = _mm256_mul_ps(dct, ig);
      const __m256 dF = _mm256_mul_ps(dct, loadN(cPrev + hr + j, lanes, mk));
      storeN(dr + j, _mm256_mul_ps(dI, _mm256_mul_ps(ig, _mm256_sub_ps(one, ig))), lanes, mk);
      storeN(dr + H + j, _mm256_mul_ps(dF, _mm256_mul_ps(fg, _mm256_sub_ps(one, fg))), lanes, mk);
      storeN(dr + 2 * H + j, _mm256_mul_ps(dG, _mm256_sub_ps(one, _mm256_mul_ps(cg, cg))), lanes, mk);
      storeN(dr + 3 * H + j, _mm256_mul_ps(dO, _mm256_mul_ps(og, _mm256_sub_ps(one, og))), lanes, mk);
      storeN(dc + hr + j, _mm256_mul_ps(dct, fg), lanes, mk);
    });
  }
}

// Returns OOB if a token's row lies outside memory.
Status scatterRows(Block* m, uint32_t dwx, float* db, const float* dz, const int32_t* tok, int64_t tokStride, int B,
                   int G) {
  const uint64_t rowBytes = static_cast<uint64_t>(ceil4(G)) * 4;
  for (int b = 0; b < B; b++) {
    const uint64_t off = dwx + static_cast<uint64_t>(static_cast<uint32_t>(tok[b * tokStride])) * G * 4;
    if (!inside(m, off, rowBytes)) return OOB;
    float* dst = reinterpret_cast<float*>(m->data + off);
    const float* src = dz + static_cast<int64_t>(b) * G;
    forEach8(G, [&](int64_t j, int lanes, __m256i mk) {
      const __m256 v = loadN(src + j, lanes, mk);
      storeN(dst + j, _mm256_add_ps(loadN(dst + j, lanes, mk), v), lanes, mk);
      storeN(db + j, _mm256_add_ps(loadN(db + j, lanes, mk), v), lanes, mk);
    });
  }
  return OK;
}

void colSum(const float* d, float* db, int B, int N) {
  for (int b = 0; b < B; b++) {
    const float* row = d + static_cast<int64_t>(b) * N;
    int v = 0;
    for (; v + 8 <= N; v += 8) _mm256_storeu_ps(db + v, _mm256_add_ps(_mm256_loadu_ps(db + v), _mm256_loadu_ps(row + v)));
    for (; v < N; v++) db[v] += row[v];
  }
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

// =============================================================================================
// AVX512-BF16 products (instances created with precision 'bf16')
// =============================================================================================
//
// gemmNN, gemmTN, packB and gemmNNPacked of a 'bf16' instance round A and B to bfloat16
// (round-to-nearest-even, `vcvtne2ps2bf16`; the same inputs always give the same bits) and
// accumulate in FP32 with `vdpbf16ps`: lane j of an accumulator gets a[2k]·b[2k][j] +
// a[2k+1]·b[2k+1][j] for one k pair, so both operands are stored as pairs along K, two bf16 in
// one 32-bit word (the even k in the low half; an odd K's last pair has a zero high half).
//   B: column panels of 16, [panels][ceil(K/2)][16] words, one 64-byte row per k pair. packB
//      packs the first N & ~15 columns (ceil(K/2)·(N & ~15) words fit in the K·(N & ~7) floats
//      KernelExports reserves); gemmNNPacked takes the rest of the columns from b, converted per
//      call like a row-major B of gemmNN/gemmTN.
//   A: converted per call and per K panel into words: NN as [M][ceil(kLen/2)], TN as
//      [ceil(kLen/2)][M rounded up to 16] (the transposed A's pairs are two rows of its [K×M]).
//      Conversion is ~1/N of the multiply-adds (1/512 for the recurrent product at M = 64).
// Everything else of a 'bf16' instance (gates, softmax, the element-wise kernels) is the FP32
// code, gatesForward in sixteen lanes (bit-identical to the eight-lane one: see its comment).
//
// Every product of training takes this path: each one measured faster than FP32, so none is kept
// in FP32. One thread, the products alone, interleaved in one process (this 2-core Zen 5 under
// other load; GFLOP/s FP32 → BF16, M×N×K): reference model h·Wh 64×512×128 127 → 474 (3.7×),
// dz·Whᵀ 64×128×512 3.5×, dWh = hᵀ·dz 128×512×3840 3.1×, logits 64×57×128 3.0×, dWd 128×57×64
// 3.6×, dout 64×128×57 2.7×; 2 × LSTM(256) in sequence mode: layer products 3.5-3.6×, dW 2.9×,
// logits 3840×57×256 2.5×, dWd 256×57×3840 3.0×, dout 3840×256×57 3.2×. A's conversion is not
// the cost it might be at M = 64 (1/N of the work); even at 4 rows BF16 wins (h·Wh 3.5×, logits
// 4×57×128 1.5×, one row 2.8×): B's panels are half FP32's bytes.

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma"))), \
                             apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma")
#endif

namespace bf {

inline uint32_t* words(Scratch& s, size_t n) { return reinterpret_cast<uint32_t*>(s.get(n)); }

// Register block MR × NP·16: 24 zmm accumulators + 4 B panels' rows of the 32 registers (A's
// broadcasts fold into vdpbf16ps). Measured here (Zen 5, loaded machine, GFLOP/s at the
// reference shapes: h·Wh 64×512×128, dz·Whᵀ 64×128×512): 6×4 ≈ 420-440, 8×2 ≈ 410-430, 12×2
// ≈ 410-420, 8×3 ≈ 380-390, 16×1 ≈ 270; 6×4 was also best or level on the 2×256 model's shapes.
constexpr int MR = 6;    // rows of C per micro-kernel
constexpr int NP = 4;    // 16-column panels per micro-kernel
constexpr int KC = 256;  // k per panel (KC/2 pairs): a block of A and NP panels of B stay in L1

inline __mmask16 lanes16(int n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1); }

// Words j = (bf16(lo[j]), bf16(hi[j])): two rows' 16 columns as 16 k pairs.
inline __m512i pairs(__m512 lo, __m512 hi) {
  // cvtne2ps(hi, lo) gives words [lo0..lo15, hi0..hi15]; interleave them
  const __m512i idx = _mm512_setr_epi32(0x00100000, 0x00110001, 0x00120002, 0x00130003, 0x00140004, 0x00150005,
                                        0x00160006, 0x00170007, 0x00180008, 0x00190009, 0x001A000A, 0x001B000B,
                                        0x001C000C, 0x001D000D, 0x001E000E, 0x001F000F);
  return _mm512_permutexvar_epi16(idx, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
}

// Columns [0, N) of B (row-major [K×N], row stride ldb) as panels of 16 at dst, panel p at
// dst + p·stride (stride ≥ ceil(K/2)·16 words); the last panel's missing columns are zero.
void packPanels(const float* b, int64_t ldb, uint32_t* dst, int64_t stride, int K, int N) {
  const int K2 = (K + 1) / 2;
  for (int j = 0, p = 0; j < N; j += 16, p++) {
    const __mmask16 m = lanes16(N - j);
    uint32_t* out = dst + p * stride;
    const float* src = b + j;
    for (int kp = 0; kp < K2; kp++, out += 16, src += 2 * ldb) {
      const __m512 lo = _mm512_maskz_loadu_ps(m, src);
      const __m512 hi = 2 * kp + 1 < K ? _mm512_maskz_loadu_ps(m, src + ldb) : _mm512_setzero_ps();
      _mm512_storeu_si512(out, pairs(lo, hi));
    }
  }
}

// A row-major [M×K] (lda) as words [M][K2], K2 = ceil(K/2).
void convertA_NN(const float* a, int64_t lda, uint32_t* dst, int M, int K) {
  const int K2 = (K + 1) / 2;
  for (int i = 0; i < M; i++, a += lda, dst += K2) {
    int k = 0;
    for (; k + 32 <= K; k += 32)
      _mm512_storeu_si512(dst + k / 2, (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(a + k + 16), _mm512_loadu_ps(a + k)));
    if (k < K) {
      const int rest = K - k;  // 1..31 floats: ceil(rest/2) words
      const __m512 lo = _mm512_maskz_loadu_ps(lanes16(rest), a + k);
      const __m512 hi = rest > 16 ? _mm512_maskz_loadu_ps(lanes16(rest - 16), a + k + 16) : _mm512_setzero_ps();
      _mm512_mask_storeu_epi32(dst + k / 2, lanes16((rest + 1) / 2), (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
    }
  }
}

// A stored transposed [K×M] (lda) as words [K2][ld], ld = M rounded up to 16 (a plain copy of
// 16 pairs at a time; an earlier layout in MR-row blocks needed a scalar scatter and made the
// 2×256 model's dWd = hᵀ·dlogits (256×57×3840) no faster than FP32).
void convertA_TN(const float* a, int64_t lda, uint32_t* dst, int64_t ld, int M, int K) {
  const int K2 = (K + 1) / 2;
  for (int i0 = 0; i0 < M; i0 += 16) {
    const __mmask16 m = lanes16(M - i0);
    for (int kp = 0; kp < K2; kp++) {
      const float* src = a + 2 * kp * lda + i0;
      const __m512 lo = _mm512_maskz_loadu_ps(m, src);
      const __m512 hi = 2 * kp + 1 < K ? _mm512_maskz_loadu_ps(m, src + lda) : _mm512_setzero_ps();
      _mm512_storeu_si512(dst + kp * ld + i0, pairs(lo, hi));
    }
  }
}

// C[R×(NPn·16)] += A·B over K2 pairs; A's row r, pair kp at a[r·rowStep + kp·kStep]; B's panel p,
// pair kp at b[p·stride + kp·16]. MASKED: the last panel writes only the lanes in `last`.
template <int R, int NPn, bool MASKED>
inline void micro(const uint32_t* __restrict a, int64_t rowStep, int64_t kStep, const uint32_t* __restrict b,
                  int64_t stride, float* c, int64_t ldc, int K2, __mmask16 last) {
  __m512 acc[R][NPn];
#pragma GCC unroll 16
  for (int r = 0; r < R; r++)
#pragma GCC unroll 4
    for (int p = 0; p < NPn; p++)
      acc[r][p] = (MASKED && p == NPn - 1) ? _mm512_maskz_loadu_ps(last, c + r * ldc + 16 * p)
                                           : _mm512_loadu_ps(c + r * ldc + 16 * p);
  for (int kp = 0; kp < K2; kp++) {
    __m512bh bv[NPn];
#pragma GCC unroll 4
    for (int p = 0; p < NPn; p++) bv[p] = (__m512bh)_mm512_loadu_si512(b + p * stride + kp * 16);
#pragma GCC unroll 16
    for (int r = 0; r < R; r++) {
      const __m512bh s = (__m512bh)_mm512_set1_epi32(static_cast<int>(a[r * rowStep + kp * kStep]));
#pragma GCC unroll 4
      for (int p = 0; p < NPn; p++) acc[r][p] = _mm512_dpbf16_ps(acc[r][p], s, bv[p]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; r++)
#pragma GCC unroll 4
    for (int p = 0; p < NPn; p++) {
      if (MASKED && p == NPn - 1)
        _mm512_mask_storeu_ps(c + r * ldc + 16 * p, last, acc[r][p]);
      else
        _mm512_storeu_ps(c + r * ldc + 16 * p, acc[r][p]);
    }
}

// Where a converted A panel's rows are (see convertA_NN / convertA_TN).
struct ALay {
  const uint32_t* a;
  int64_t rowStep, kStep, blockStride;
};

template <int R, int NPn, bool MASKED>
inline void tail(int rows, ALay al, const uint32_t* b, int64_t stride, float* c, int64_t ldc, int K2, __mmask16 last) {
  if constexpr (R > 0) {
    if (rows == R)
      micro<R, NPn, MASKED>(al.a, al.rowStep, al.kStep, b, stride, c, ldc, K2, last);
    else
      tail<R - 1, NPn, MASKED>(rows, al, b, stride, c, ldc, K2, last);
  }
}

template <int NPn, bool MASKED>
void rowsOf(ALay al, const uint32_t* b, int64_t stride, float* c, int64_t ldc, int M, int K2, __mmask16 last) {
  int i = 0;
  const uint32_t* a = al.a;
  for (; i + MR <= M; i += MR, a += al.blockStride)
    micro<MR, NPn, MASKED>(a, al.rowStep, al.kStep, b, stride, c + i * ldc, ldc, K2, last);
  if (i < M) tail<MR - 1, NPn, MASKED>(M - i, {a, al.rowStep, al.kStep, al.blockStride}, b, stride, c + i * ldc, ldc, K2, last);
}

// Columns [0, N) of C from panels at b (panel p at b + p·stride): groups of NP panels, the last
// group of fewer, the very last panel masked when N is not a multiple of 16.
void columns(ALay al, const uint32_t* b, int64_t stride, float* c, int64_t ldc, int M, int N, int K2) {
  const int panels = (N + 15) / 16;
  const bool ragged = (N & 15) != 0;
  const __mmask16 last = lanes16(N - (panels - 1) * 16);
  for (int p = 0; p < panels; p += NP) {
    const int np = std::min(NP, panels - p);
    const bool masked = ragged && p + np == panels;
    const uint32_t* bp = b + p * stride;
    float* cp = c + p * 16;
    switch (np * 2 + (masked ? 1 : 0)) {
      case 2: rowsOf<1, false>(al, bp, stride, cp, ldc, M, K2, last); break;
      case 3: rowsOf<1, true>(al, bp, stride, cp, ldc, M, K2, last); break;
      case 4: if constexpr (NP >= 2) rowsOf<2, false>(al, bp, stride, cp, ldc, M, K2, last); break;
      case 5: if constexpr (NP >= 2) rowsOf<2, true>(al, bp, stride, cp, ldc, M, K2, last); break;
      case 6: if constexpr (NP >= 3) rowsOf<3, false>(al, bp, stride, cp, ldc, M, K2, last); break;
      case 7: if constexpr (NP >= 3) rowsOf<3, true>(al, bp, stride, cp, ldc, M, K2, last); break;
      case 8: if constexpr (NP >= 4) rowsOf<4, false>(al, bp, stride, cp, ldc, M, K2, last); break;
      case 9: if constexpr (NP >= 4) rowsOf<4, true>(al, bp, stride, cp, ldc, M, K2, last); break;
    }
  }
}

// C[M×N] += A·B (TRANS: A stored [K×M]). Columns [0, nPre) come from prepacked panels (packB:
// panel p, pair kp at pre[p·preStride + kp·16], nPre a multiple of 16); the rest from row-major b.
template <bool TRANS>
void gemm(const float* a, int64_t lda, const uint32_t* pre, int64_t preStride, int nPre, const float* b, int64_t ldb,
          float* c, int64_t ldc, int M, int N, int K, BfScratch* buf) {
  const int64_t ld = (M + 15) & ~15;  // TN: A's words per pair of k
  uint32_t* ap = words(buf->a, static_cast<size_t>(ld) * (KC / 2));
  const int rest = N - nPre;
  uint32_t* bp = rest > 0 ? words(buf->b, static_cast<size_t>((rest + 15) / 16) * 16 * (KC / 2)) : nullptr;
  for (int k0 = 0; k0 < K; k0 += KC) {
    const int kLen = std::min(KC, K - k0);
    const int K2 = (kLen + 1) / 2;
    ALay al;
    if (TRANS) {
      convertA_TN(a + k0 * lda, lda, ap, ld, M, kLen);
      al = {ap, 1, ld, MR};
    } else {
      convertA_NN(a + k0, lda, ap, M, kLen);
      al = {ap, K2, 1, static_cast<int64_t>(K2) * MR};
    }
    if (nPre > 0) columns(al, pre + (k0 / 2) * 16, preStride, c, ldc, M, nPre, K2);
    if (rest > 0) {
      const int64_t stride = static_cast<int64_t>(K2) * 16;
      packPanels(b + k0 * ldb + nPre, ldb, bp, stride, kLen, rest);
      columns(al, bp, stride, c + nPre, ldc, M, rest, K2);
    }
  }
}

// packB of a 'bf16' instance: the first N & ~15 columns of B [K×N] as panels of ceil(K/2) pairs.
void packB(const float* b, int64_t ldb, uint32_t* dst, int K, int N) {
  const int N16 = N & ~15;
  if (N16 > 0) packPanels(b, ldb, dst, static_cast<int64_t>((K + 1) / 2) * 16, K, N16);
}

void gemmNNPacked(const float* a, int64_t lda, const uint32_t* bp, const float* b, int64_t ldb, float* c,
                  int64_t ldc, int M, int N, int K, BfScratch* buf) {
  gemm<false>(a, lda, bp, static_cast<int64_t>((K + 1) / 2) * 16, N & ~15, b, ldb, c, ldc, M, N, K, buf);
}

// ---- gatesForward, 16 lanes -------------------------------------------------------------------
// A 'bf16' instance's gatesForward: the FP32 gatesForward above, operation for operation (exp8,
// sigmoid8, tanh8: the same constants, FMAs and division), sixteen lanes at a time, so its output
// is bit-identical to an FP32 instance's (test/bf16.test.ts checks every element). Only the
// products change with the precision; this is speed: hot in cache, a 64×128 step took 12-15 µs
// against 23-29 µs with eight lanes, about 1 ms of a 12 ms reference shard. (gatesBackward, with
// no exp or division, is bound by memory traffic: 4.5 µs hot against 28 µs in training.) The bit
// operations go through the integer domain: AVX512F has no float xor/and/or (that is AVX512DQ).

inline __m512 xor16(__m512 a, __m512 b) {
  return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(a), _mm512_castps_si512(b)));
}

inline __m512 exp16(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.3f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
  const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvttps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
}

inline __m512 sigmoid16(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.0f);
  return _mm512_div_ps(one, _mm512_add_ps(one, exp16(xor16(x, _mm512_set1_ps(-0.0f)))));
}

inline __m512 tanh16(__m512 x) {
  const __m512i signBit = _mm512_set1_epi32(static_cast<int>(0x80000000u));
  const __m512i xi = _mm512_castps_si512(x);
  const __m512 ax = _mm512_castsi512_ps(_mm512_andnot_si512(signBit, xi));
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512 big =
      _mm512_sub_ps(one, _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(exp16(_mm512_add_ps(ax, ax)), one)));
  const __m512 sgn =
      _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(big), _mm512_and_si512(xi, signBit)));
  const __m512 z = _mm512_mul_ps(x, x);
  __m512 p = _mm512_set1_ps(-5.70498872745e-3f);
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(2.06390887954e-2f));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-5.37397155531e-2f));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(1.33314422036e-1f));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-3.33332819422e-1f));
  const __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(p, z), x, x);
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(ax, _mm512_set1_ps(0.625f), _CMP_LT_OQ), sgn, small);
}

// H a multiple of 4 (KernelExports): the last group of 4..12 lanes is masked.
void gatesForward(float* z, const float* cPrev, float* c, float* tc, float* h, int B, int H) {
  for (int b = 0; b < B; b++) {
    float* zr = z + static_cast<int64_t>(b) * 4 * H;
    const int64_t hr = static_cast<int64_t>(b) * H;
    for (int j = 0; j < H; j += 16) {
      const __mmask16 mk = lanes16(H - j);
      const __m512 ig = sigmoid16(_mm512_maskz_loadu_ps(mk, zr + j));
      const __m512 fg = sigmoid16(_mm512_maskz_loadu_ps(mk, zr + H + j));
      const __m512 cg = tanh16(_mm512_maskz_loadu_ps(mk, zr + 2 * H + j));
      const __m512 og = sigmoid16(_mm512_maskz_loadu_ps(mk, zr + 3 * H + j));
      _mm512_mask_storeu_ps(zr + j, mk, ig);
      _mm512_mask_storeu_ps(zr + H + j, mk, fg);
      _mm512_mask_storeu_ps(zr + 2 * H + j, mk, cg);
      _mm512_mask_storeu_ps(zr + 3 * H + j, mk, og);
      const __m512 cv =
          _mm512_add_ps(_mm512_mul_ps(fg, _mm512_maskz_loadu_ps(mk, cPrev + hr + j)), _mm512_mul_ps(ig, cg));
      const __m512 tv = tanh16(cv);
      _mm512_mask_storeu_ps(c + hr + j, mk, cv);
      _mm512_mask_storeu_ps(tc + hr + j, mk, tv);
      _mm512_mask_storeu_ps(h + hr + j, mk, _mm512_mul_ps(og, tv));
    }
  }
}

}  // namespace bf

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

// ---------------------------------------------------------------------------------------------
// Scalar kernels (the same code as the wasm ones)
// ---------------------------------------------------------------------------------------------

// 16×16 tiles for the caches.
void transpose(const float* src, float* dst, int rows, int cols) {
  constexpr int TILE = 16;
  for (int r0 = 0; r0 < rows; r0 += TILE) {
    const int r1 = std::min(rows, r0 + TILE);
    for (int c0 = 0; c0 < cols; c0 += TILE) {
      const int c1 = std::min(cols, c0 + TILE);
      for (int r = r0; r < r1; r++)
        for (int c = c0; c < c1; c++) dst[static_cast<int64_t>(c) * rows + r] = src[static_cast<int64_t>(r) * cols + c];
    }
  }
}

void softmaxRows(float* logits, const float* bd, int B, int V) {
  for (int b = 0; b < B; b++) {
    float* row = logits + static_cast<int64_t>(b) * V;
    float mx = -INFINITY;
    for (int v = 0; v < V; v++) {
      const float x = row[v] + bd[v];
      row[v] = x;
      if (x > mx) mx = x;
    }
    double sum = 0;
    for (int v = 0; v < V; v++) {
      const float e = std::exp(row[v] - mx);
      row[v] = e;
      sum += static_cast<double>(e);
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int v = 0; v < V; v++) row[v] = row[v] * inv;
  }
}

// Returns OOB through *status when a target lies outside memory.
double crossEntropy(Block* m, uint32_t probs, const int32_t* y, float* dlogits, int B, int V, float scale,
                    Status* status) {
  double loss = 0;
  const float lo = 1e-7f;
  const float hi = static_cast<float>(1 - 1e-7);
  for (int b = 0; b < B; b++) {
    const uint64_t rowOff = probs + static_cast<uint64_t>(b) * V * 4;
    const float* row = reinterpret_cast<const float*>(m->data + rowOff);
    float* drow = dlogits + static_cast<int64_t>(b) * V;
    const int32_t t = y[b];
    const uint64_t tOff = rowOff + static_cast<uint64_t>(static_cast<uint32_t>(t)) * 4;
    if (!inside(m, tOff, 4)) {
      *status = OOB;
      return 0;
    }
    float p = *reinterpret_cast<const float*>(m->data + tOff);
    p = p < lo ? lo : p > hi ? hi : p;
    loss -= std::log(static_cast<double>(p));
    for (int v = 0; v < V; v++) {
      float g = row[v];
      if (v == t) g -= 1;
      drow[v] = g * scale;
    }
  }
  *status = OK;
  return loss;
}

// =============================================================================================
// N-API glue
// =============================================================================================

constexpr size_t MAX_ARGS = 10;

napi_value throwRange(napi_env env, const char* msg) {
  napi_throw_range_error(env, nullptr, msg);
  return nullptr;
}

napi_value oob(napi_env env) { return throwRange(env, "memory access out of bounds"); }

// The call's arguments as uint32 byte addresses / int32 counts / double; false (with a pending
// TypeError) when one is not a number.
struct Args {
  napi_env env;
  Instance* inst;
  napi_value argv[MAX_ARGS];
  size_t argc;

  bool init(napi_env e, napi_callback_info info) {
    env = e;
    argc = MAX_ARGS;
    void* data = nullptr;
    if (napi_get_cb_info(env, info, &argc, argv, nullptr, &data) != napi_ok) return false;
    inst = static_cast<Instance*>(data);
    return true;
  }
  bool u32(size_t i, uint32_t* out) {
    if (napi_get_value_uint32(env, argv[i], out) == napi_ok) return true;
    napi_throw_type_error(env, nullptr, "kernel arguments must be numbers");
    return false;
  }
  bool i32(size_t i, int32_t* out) {
    if (napi_get_value_int32(env, argv[i], out) == napi_ok) return true;
    napi_throw_type_error(env, nullptr, "kernel arguments must be numbers");
    return false;
  }
  bool f64(size_t i, double* out) {
    if (napi_get_value_double(env, argv[i], out) == napi_ok) return true;
    napi_throw_type_error(env, nullptr, "kernel arguments must be numbers");
    return false;
  }
  Block* mem() const { return inst->mem; }
  template <typename T>
  T* ptr(uint32_t off) const {
    return reinterpret_cast<T*>(inst->mem->data + off);
  }
};

template <bool TRANS>
napi_value GemmFn(napi_env env, napi_callback_info info) {
  Args a;
  uint32_t pa, pb, pc;
  int32_t lda, ldb, ldc, M, N, K;
  if (!a.init(env, info) || !a.u32(0, &pa) || !a.i32(1, &lda) || !a.u32(2, &pb) || !a.i32(3, &ldb) || !a.u32(4, &pc) ||
      !a.i32(5, &ldc) || !a.i32(6, &M) || !a.i32(7, &N) || !a.i32(8, &K))
    return nullptr;
  if (M <= 0 || N <= 0 || K <= 0) return nullptr;
  if (lda < 0 || ldb < 0 || ldc < 0) return oob(env);
  const Block* m = a.mem();
  const uint64_t aBytes = TRANS ? extent(K, M, lda) : extent(M, K, lda);
  if (!inside(m, pa, aBytes) || !inside(m, pb, extent(K, N, ldb)) || !inside(m, pc, extent(M, N, ldc))) return oob(env);
  if (a.inst->bf16)
    bf::gemm<TRANS>(a.ptr<float>(pa), lda, nullptr, 0, 0, a.ptr<float>(pb), ldb, a.ptr<float>(pc), ldc, M, N, K,
                    &a.inst->bfScratch);
  else
    gemm<TRANS>(a.ptr<float>(pa), lda, a.ptr<float>(pb), ldb, a.ptr<float>(pc), ldc, M, N, K, &a.inst->scratch);
  return nullptr;
}

napi_value PackBFn(napi_env env, napi_callback_info info) {
  Args a;
  uint32_t b, dst;
  int32_t ldb, K, N;
  if (!a.init(env, info) || !a.u32(0, &b) || !a.i32(1, &ldb) || !a.u32(2, &dst) || !a.i32(3, &K) || !a.i32(4, &N))
    return nullptr;
  const int32_t N8 = N & ~7;
  if (K <= 0 || N8 <= 0) return nullptr;
  if (ldb < 0) return oob(env);
  if (!inside(a.mem(), b, extent(K, N8, ldb)) || !inside(a.mem(), dst, static_cast<uint64_t>(K) * N8 * 4)) return oob(env);
  // a 'bf16' instance writes ceil(K/2)·(N & ~15) words: inside the K·N8 floats checked above
  if (a.inst->bf16)
    bf::packB(a.ptr<float>(b), ldb, a.ptr<uint32_t>(dst), K, N);
  else
    packB(a.ptr<float>(b), ldb, a.ptr<float>(dst), K, N);
  return nullptr;
}

// A gemmNNPacked call, or one thread's columns of it.
struct PackedProduct {
  const float* a;
  int64_t lda;
  const void* bp;
  const float* b;
  int64_t ldb;
  float* c;
  int64_t ldc;
  int M, N, K;
  bool bf16;
  BfScratch* buf;

  void run() const {
    if (bf16)
      bf::gemmNNPacked(a, lda, static_cast<const uint32_t*>(bp), b, ldb, c, ldc, M, N, K, buf);
    else
      gemmNNPacked(a, lda, static_cast<const float*>(bp), b, ldb, c, ldc, M, N, K);
  }
  // Columns [col, N): col a multiple of the packing's panel width (8 floats, 16 bf16 pairs) and
  // inside the packed columns, so that the packed panels, b's columns past them and C all shift.
  PackedProduct from(int col, BfScratch* scratch) const {
    PackedProduct p = *this;
    if (bf16)
      p.bp = static_cast<const uint32_t*>(bp) + static_cast<int64_t>(col / 16) * ((K + 1) / 2) * 16;
    else
      p.bp = static_cast<const float*>(bp) + static_cast<int64_t>(col / 8) * K * 8;
    p.b = b + col;
    p.c = c + col;
    p.N = N - col;
    p.buf = scratch;
    return p;
  }
};

// Products shared with the helper: those whose B has at least this many weights (1 MiB of FP32,
// past one core's L2 on the machines measured here), where each thread streaming half of B pays
// even for one row. Measured with bench/load-test.ts (steps in its process, then whole servers
// under load): 2 × LSTM(256), whose products all have 256 × 1024 weights, one stream and a batch
// of 64 both ~1.4-1.5× faster on two threads and the servers ~1.3-1.5×; the reference shape's
// 128 × 512 products, split at 2^16 multiply-adds, gained ~1.3× in a batch alone but served ~8%
// fewer characters at 64 clients (the helper competes with the rest of the server and the load
// test's clients for the two cores), so they stay on one thread. Chunks are whole register
// blocks of columns (16 FP32, 64 BF16), about N/8 each.
constexpr int64_t SPLIT_MIN_WEIGHTS = int64_t{1} << 18;
constexpr int CHUNKS = 8;

struct SharedProduct {
  PackedProduct p;
  int width;  // columns per chunk
  int chunks;
  std::atomic<int> next{0};
  BfScratch* scratch[2];

  // Take chunks until none is left (`who`: 0 the caller, 1 the helper, for its scratch).
  void work(int who) {
    for (int i; (i = next.fetch_add(1, std::memory_order_relaxed)) < chunks;) {
      const int col = i * width;
      PackedProduct q = p.from(col, scratch[who]);
      q.N = std::min(width, p.N - col);
      q.run();
    }
  }
};

void runPackedOn(Instance* inst, const PackedProduct& p) {
  const int block = p.bf16 ? 64 : 16;
  const int width = (p.N / CHUNKS + block - 1) / block * block;
  if (!inst->helper || width == 0 || width >= p.N || static_cast<int64_t>(p.N) * p.K < SPLIT_MIN_WEIGHTS)
    return p.run();
  SharedProduct job{p, width, (p.N + width - 1) / width, {}, {&inst->bfScratch, &inst->helperBfScratch}};
  inst->helper->post([](void* j) { static_cast<SharedProduct*>(j)->work(1); }, &job);
  job.work(0);
  inst->helper->finish();
}

napi_value GemmNNPackedFn(napi_env env, napi_callback_info info) {
  Args a;
  uint32_t pa, pbp, pb, pc;
  int32_t lda, ldb, ldc, M, N, K;
  if (!a.init(env, info) || !a.u32(0, &pa) || !a.i32(1, &lda) || !a.u32(2, &pbp) || !a.u32(3, &pb) || !a.i32(4, &ldb) ||
      !a.u32(5, &pc) || !a.i32(6, &ldc) || !a.i32(7, &M) || !a.i32(8, &N) || !a.i32(9, &K))
    return nullptr;
  if (M <= 0 || N <= 0 || K <= 0) return nullptr;
  if (lda < 0 || ldb < 0 || ldc < 0) return oob(env);
  const Block* m = a.mem();
  const int32_t N8 = N & ~7;
  // the columns read from b: past the packed panels (N & ~15 of them on a 'bf16' instance)
  const int32_t fromB = a.inst->bf16 ? N & ~15 : N8;
  if (!inside(m, pa, extent(M, K, lda)) || !inside(m, pc, extent(M, N, ldc)) ||
      !inside(m, pbp, static_cast<uint64_t>(K) * N8 * 4) ||
      (fromB < N && !inside(m, pb + static_cast<uint64_t>(fromB) * 4, extent(K, N - fromB, ldb))))
    return oob(env);
  runPackedOn(a.inst, {a.ptr<float>(pa), lda, a.ptr<void>(pbp), a.ptr<float>(pb), ldb, a.ptr<float>(pc), ldc, M, N, K,
                       a.inst->bf16, &a.inst->bfScratch});
  return nullptr;
}

// setThreads(n): 1 (the default) or 2 (a helper thread for gemmNNPacked; see "A second thread").
napi_value SetThreadsFn(napi_env env, napi_callback_info info) {
  Args a;
  int32_t n;
  if (!a.init(env, info) || !a.i32(0, &n)) return nullptr;
  if (n != 1 && n != 2) return throwRange(env, "threads must be 1 or 2");
  if (n == 2 && !a.inst->helper) a.inst->helper = new Helper();
  if (n == 1) {
    delete a.inst->helper;
    a.inst->helper = nullptr;
  }
  return nullptr;
}

napi_value TransposeFn(napi_env env, napi_callback_info info) {
  Args a;
  uint32_t src, dst;
  int32_t rows, cols;
  if (!a.init(env, info) || !a.u32(0, &src) || !a.u32(1, &dst) || !a.i32(2, &rows) || !a.i32(3, &cols)) return nullptr;
  if (rows <= 0 || cols <= 0) return nullptr;
  const uint64_t bytes = static_cast<uint64_t>(rows) * static_cast<uint64_t>(cols) * 4;
  if (!inside(a.mem(), src, bytes) || !inside(a.mem(), dst, bytes)) return oob(env);
  transpose(a.ptr<float>(src), a.ptr<float>(dst), rows, cols);
  return nullptr;
}

template <void (*F)(float*, float*, int)>
napi_value UnaryFn(napi_env env, napi_callback_info info) {
  Args a;
  uint32_t x, y;
  int32_t n;
  if (!a.init(env, info) || !a.u32(0, &x) || !a.u32(1, &y) || !a.i32(2, &n)) return nullptr;
  if (n <= 0) return nullptr;
  const uint64_t bytes = static_cast<uint64_t>(ceil4(n)) * 4;
  if (!inside(a.mem(), x, bytes) || !inside(a.mem(), y, bytes)) return oob(env);
  F(a.ptr<float>(x), a.ptr<float>(y), n);
  return nullptr;
}

napi_value MulArraysFn(napi_env env, napi_callback_info info) {
  Args a;
  uint32_t x, w, y;
  int32_t n;
  if (!a.init(env, info) || !a.u32(0, &x) || !a.u32(1, &w) || !a.u32(2, &y) || !a.i32(3, &n)) return nullptr;
  if (n <= 0) return nullptr;
  const uint64_t bytes = static_cast<uint64_t>(ceil4(n)) * 4;
  if (!inside(a.mem(), x, bytes) || !inside(a.mem(), w, bytes) || !inside(a.mem(), y, bytes)) return oob(env);
  mulArrays(a.ptr<float>(x), a.ptr<float>(w), a.ptr<float>(y), n);
  return nullptr;
}

// tok[b*tokStride] for b < B: the token array's extent.
bool tokensInside(const Block* m, uint32_t tok, int32_t tokStride, int32_t B) {
  if (tokStride < 0) return false;
  return inside(m, tok, (static_cast<uint64_t>(B - 1) * static_cast<uint64_t>(tokStride) + 1) * 4);
}

napi_value GatherRowsFn(napi_env env, napi_callback_info info) {
  Args a;
  uint32_t z, wx, bias, tok;
  int32_t tokStride, B, G;
  if (!a.init(env, info) || !a.u32(0, &z) || !a.u32(1, &wx) || !a.u32(2, &bias) || !a.u32(3, &tok) ||
      !a.i32(4, &tokStride) || !a.i32(5, &B) || !a.i32(6, &G))
    return nullptr;
  if (B <= 0 || G <= 0) return nullptr;
  Block* m = a.mem();
  const uint64_t row = static_cast<uint64_t>(ceil4(G)) * 4;
  if (!inside(m, z, static_cast<uint64_t>(B - 1) * G * 4 + row) || !inside(m, bias, row) || !tokensInside(m, tok, tokStride, B))
    return oob(env);
  if (gatherRows(m, a.ptr<float>(z), wx, a.ptr<float>(bias), a.ptr<int32_t>(tok), tokStride, B, G) != OK) return oob(env);
  return nullptr;
}

napi_value GatesForwardFn(napi_env env, napi_callback_info info) {
  Args a;
  uint32_t z, cPrev, c, tc, h;
  int32_t B, H;
  if (!a.init(env, info) || !a.u32(0, &z) || !a.u32(1, &cPrev) || !a.u32(2, &c) || !a.u32(3, &tc) || !a.u32(4, &h) ||
      !a.i32(5, &B) || !a.i32(6, &H))
    return nullptr;
  if (B <= 0 || H <= 0) return nullptr;
  const Block* m = a.mem();
  const uint64_t state = static_cast<uint64_t>(B - 1) * H * 4 + static_cast<uint64_t>(ceil4(H)) * 4;
  const uint64_t gates = static_cast<uint64_t>(B - 1) * 4 * H * 4 + 3ull * H * 4 + static_cast<uint64_t>(ceil4(H)) * 4;
  if (!inside(m, z, gates) || !inside(m, cPrev, state) || !inside(m, c, state) || !inside(m, tc, state) ||
      !inside(m, h, state))
    return oob(env);
  if (a.inst->bf16)
    bf::gatesForward(a.ptr<float>(z), a.ptr<float>(cPrev), a.ptr<float>(c), a.ptr<float>(tc), a.ptr<float>(h), B, H);
  else
    gatesForward(a.ptr<float>(z), a.ptr<float>(cPrev), a.ptr<float>(c), a.ptr<float>(tc), a.ptr<float>(h), B, H);
  return nullptr;
}

napi_value GatesBackwardFn(napi_env env, napi_callback_info info) {
  Args a;
  uint32_t act, cPrev, tc, dh, dc, dz;
  int32_t B, H;
  if (!a.init(env, info) || !a.u32(0, &act) || !a.u32(1, &cPrev) || !a.u32(2, &tc) || !a.u32(3, &dh) || !a.u32(4, &dc) ||
      !a.u32(5, &dz) || !a.i32(6, &B) || !a.i32(7, &H))
    return nullptr;
  if (B <= 0 || H <= 0) return nullptr;
  const Block* m = a.mem();
  const uint64_t state = static_cast<uint64_t>(B - 1) * H * 4 + static_cast<uint64_t>(ceil4(H)) * 4;
  const uint64_t gates = static_cast<uint64_t>(B - 1) * 4 * H * 4 + 3ull * H * 4 + static_cast<uint64_t>(ceil4(H)) * 4;
  if (!inside(m, act, gates) || !inside(m, dz, gates) || !inside(m, cPrev, state) || !inside(m, tc, state) ||
      !inside(m, dh, state) || !inside(m, dc, state))
    return oob(env);
  gatesBackward(a.ptr<float>(act), a.ptr<float>(cPrev), a.ptr<float>(tc), a.ptr<float>(dh), a.ptr<float>(dc),
                a.ptr<float>(dz), B, H);
  return nullptr;
}

napi_value ScatterRowsFn(napi_env env, napi_callback_info info) {
  Args a;
  uint32_t dwx, db, dz, tok;
  int32_t tokStride, B, G;
  if (!a.init(env, info) || !a.u32(0, &dwx) || !a.u32(1, &db) || !a.u32(2, &dz) || !a.u32(3, &tok) ||
      !a.i32(4, &tokStride) || !a.i32(5, &B) || !a.i32(6, &G))
    return nullptr;
  if (B <= 0 || G <= 0) return nullptr;
  Block* m = a.mem();
  const uint64_t row = static_cast<uint64_t>(ceil4(G)) * 4;
  if (!inside(m, dz, static_cast<uint64_t>(B - 1) * G * 4 + row) || !inside(m, db, row) || !tokensInside(m, tok, tokStride, B))
    return oob(env);
  if (scatterRows(m, dwx, a.ptr<float>(db), a.ptr<float>(dz), a.ptr<int32_t>(tok), tokStride, B, G) != OK) return oob(env);
  return nullptr;
}

napi_value SoftmaxRowsFn(napi_env env, napi_callback_info info) {
  Args a;
  uint32_t logits, bd;
  int32_t B, V;
  if (!a.init(env, info) || !a.u32(0, &logits) || !a.u32(1, &bd) || !a.i32(2, &B) || !a.i32(3, &V)) return nullptr;
  if (B <= 0 || V <= 0) return nullptr;
  if (!inside(a.mem(), logits, static_cast<uint64_t>(B) * V * 4) || !inside(a.mem(), bd, static_cast<uint64_t>(V) * 4))
    return oob(env);
  softmaxRows(a.ptr<float>(logits), a.ptr<float>(bd), B, V);
  return nullptr;
}

napi_value CrossEntropyFn(napi_env env, napi_callback_info info) {
  Args a;
  uint32_t probs, y, dlogits;
  int32_t B, V;
  double scale;
  if (!a.init(env, info) || !a.u32(0, &probs) || !a.u32(1, &y) || !a.u32(2, &dlogits) || !a.i32(3, &B) ||
      !a.i32(4, &V) || !a.f64(5, &scale))
    return nullptr;
  double loss = 0;
  if (B > 0) {
    Block* m = a.mem();
    const uint64_t bytes = static_cast<uint64_t>(B) * static_cast<uint64_t>(V < 0 ? 0 : V) * 4;
    if (!inside(m, probs, bytes) || !inside(m, dlogits, bytes) || !inside(m, y, static_cast<uint64_t>(B) * 4))
      return oob(env);
    Status st;
    loss = crossEntropy(m, probs, a.ptr<int32_t>(y), a.ptr<float>(dlogits), B, V, static_cast<float>(scale), &st);
    if (st != OK) return oob(env);
  }
  napi_value result;
  napi_create_double(env, loss, &result);
  return result;
}

napi_value ColSumFn(napi_env env, napi_callback_info info) {
  Args a;
  uint32_t d, db;
  int32_t B, N;
  if (!a.init(env, info) || !a.u32(0, &d) || !a.u32(1, &db) || !a.i32(2, &B) || !a.i32(3, &N)) return nullptr;
  if (B <= 0 || N <= 0) return nullptr;
  if (!inside(a.mem(), d, static_cast<uint64_t>(B) * N * 4) || !inside(a.mem(), db, static_cast<uint64_t>(N) * 4))
    return oob(env);
  colSum(a.ptr<float>(d), a.ptr<float>(db), B, N);
  return nullptr;
}

// ---- memory ---------------------------------------------------------------------------------

void finalizeBlock(napi_env env, void*, void* hint) { releaseBlock(env, static_cast<Block*>(hint)); }

// An ArrayBuffer over the block (takes one reference, released by the buffer's finalizer).
napi_value bufferFor(napi_env env, Block* b) {
  b->refs.fetch_add(1);
  napi_value ab;
  if (napi_create_external_arraybuffer(env, b->data, b->bytes, finalizeBlock, b, &ab) != napi_ok) {
    releaseBlock(env, b);
    return nullptr;
  }
  return ab;
}

// grow(pages, oldBuffer) → the new ArrayBuffer: a copy of the memory with `pages` more 64 KiB
// pages, zeroed. oldBuffer (the current buffer) is detached, as WebAssembly.Memory.grow does.
napi_value GrowFn(napi_env env, napi_callback_info info) {
  Args a;
  uint32_t pages;
  if (!a.init(env, info) || !a.u32(0, &pages)) return nullptr;
  Block* old = a.inst->mem;
  const uint64_t oldPages = old->bytes / PAGE;
  if (oldPages + pages > MAX_PAGES) return throwRange(env, "WebAssembly.Memory.grow(): Maximum memory size exceeded");
  Block* b = newBlock(env, (oldPages + pages) * PAGE);
  if (!b) return throwRange(env, "WebAssembly.Memory.grow(): Unable to grow instance memory");
  std::memcpy(b->data, old->data, old->bytes);
  napi_value ab = bufferFor(env, b);
  if (!ab) {
    releaseBlock(env, b);
    return throwRange(env, "WebAssembly.Memory.grow(): Unable to grow instance memory");
  }
  a.inst->mem = b;
  if (a.argc > 1) {
    void* data = nullptr;
    bool isAb = false;
    if (napi_is_arraybuffer(env, a.argv[1], &isAb) == napi_ok && isAb &&
        napi_get_arraybuffer_info(env, a.argv[1], &data, nullptr) == napi_ok && data == old->data)
      napi_detach_arraybuffer(env, a.argv[1]);
  }
  releaseBlock(env, old);  // the instance's reference; the old buffer's goes with the buffer
  return ab;
}

// ---- instances ------------------------------------------------------------------------------

void finalizeFunction(napi_env env, void* data, void*) {
  Instance* inst = static_cast<Instance*>(data);
  if (--inst->fnRefs == 0 && !inst->pinned) {
    releaseBlock(env, inst->mem);
    delete inst;
  }
}

struct FnSpec {
  const char* name;
  napi_callback cb;
};

const FnSpec FUNCTIONS[] = {
    {"gemmNN", GemmFn<false>},
    {"gemmTN", GemmFn<true>},
    {"packB", PackBFn},
    {"gemmNNPacked", GemmNNPackedFn},
    {"setThreads", SetThreadsFn},
    {"transpose", TransposeFn},
    {"sigmoidArray", UnaryFn<sigmoidArray>},
    {"tanhArray", UnaryFn<tanhArray>},
    {"mulArrays", MulArraysFn},
    {"gatherRows", GatherRowsFn},
    {"gatesForward", GatesForwardFn},
    {"gatesBackward", GatesBackwardFn},
    {"scatterRows", ScatterRowsFn},
    {"softmaxRows", SoftmaxRowsFn},
    {"crossEntropy", CrossEntropyFn},
    {"colSum", ColSumFn},
    {"grow", GrowFn},
};

bool bf16Supported();

// create(pages, precision = 'fp32') → { buffer, grow(pages, oldBuffer), gemmNN, …, colSum };
// precision 'bf16' (only where the module reports bf16: true) gives the AVX512-BF16 products.
napi_value CreateFn(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok) return nullptr;
  uint32_t pages = 1;
  if (argc >= 1 && napi_get_value_uint32(env, argv[0], &pages) != napi_ok) {
    napi_throw_type_error(env, nullptr, "pages must be a number");
    return nullptr;
  }
  bool bf16 = false;
  if (argc >= 2) {
    napi_valuetype type;
    napi_typeof(env, argv[1], &type);
    if (type != napi_undefined) {
      char name[8] = {0};
      size_t len = 0;
      if (type != napi_string || napi_get_value_string_utf8(env, argv[1], name, sizeof name, &len) != napi_ok ||
          (std::strcmp(name, "fp32") != 0 && std::strcmp(name, "bf16") != 0)) {
        napi_throw_type_error(env, nullptr, "precision must be 'fp32' or 'bf16'");
        return nullptr;
      }
      bf16 = std::strcmp(name, "bf16") == 0;
    }
  }
  if (bf16 && !bf16Supported()) {
    napi_throw_error(env, nullptr, "this CPU (or its OS) lacks AVX512-BF16");
    return nullptr;
  }
  if (pages > MAX_PAGES) return throwRange(env, "too many pages");
  Block* b = newBlock(env, static_cast<uint64_t>(pages) * PAGE);
  if (!b) return throwRange(env, "cannot allocate kernel memory");
  Instance* inst = new Instance{};
  inst->mem = b;
  inst->bf16 = bf16;

  napi_value obj, ab;
  if (napi_create_object(env, &obj) != napi_ok || !(ab = bufferFor(env, b)) ||
      napi_set_named_property(env, obj, "buffer", ab) != napi_ok) {
    releaseBlock(env, b);
    delete inst;
    return nullptr;
  }
  for (const FnSpec& f : FUNCTIONS) {
    napi_value fn;
    if (napi_create_function(env, f.name, NAPI_AUTO_LENGTH, f.cb, inst, &fn) != napi_ok) break;
    if (napi_add_finalizer(env, fn, inst, finalizeFunction, nullptr, nullptr) == napi_ok)
      inst->fnRefs++;
    else
      inst->pinned = true;  // never finalized: this instance leaks, but stays valid
    napi_set_named_property(env, obj, f.name, fn);
  }
  if (inst->fnRefs == 0 && !inst->pinned) {
    releaseBlock(env, b);
    delete inst;
    napi_throw_error(env, nullptr, "cannot create kernel functions");
    return nullptr;
  }
  return obj;
}

bool cpuSupported() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

// AVX512-BF16 with the AVX-512 it builds on (F, BW, VL), and an OS that saves the opmask and zmm
// registers (XCR0 bits 1, 2, 5, 6, 7): the CPU's flags alone do not say the OS enabled them.
bool bf16Supported() {
#if defined(__x86_64__) || defined(__i386__)
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return false;  // OSXSAVE
  unsigned lo, hi;
  __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  if ((lo & 0xE6) != 0xE6) return false;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  const unsigned maxLeaf7 = a;
  if (!(b & (1u << 16)) || !(b & (1u << 30)) || !(b & (1u << 31)) || maxLeaf7 < 1) return false;  // F, BW, VL
  __get_cpuid_count(7, 1, &a, &b, &c, &d);
  return (a & (1u << 5)) != 0;  // AVX512_BF16
#else
  return false;
#endif
}

}  // namespace

NAPI_MODULE_INIT() {
  const bool supported = cpuSupported();
  napi_value flag;
  napi_get_boolean(env, supported, &flag);
  napi_set_named_property(env, exports, "supported", flag);
  napi_value bf16;
  napi_get_boolean(env, supported && bf16Supported(), &bf16);
  napi_set_named_property(env, exports, "bf16", bf16);
  if (supported) {
    napi_value create;
    napi_create_function(env, "create", NAPI_AUTO_LENGTH, CreateFn, nullptr, &create);
    napi_set_named_property(env, exports, "create", create);
  } else {
    napi_value reason;
    napi_create_string_utf8(env, "this CPU lacks AVX2 or FMA", NAPI_AUTO_LENGTH, &reason);
    napi_set_named_property(env, exports, "reason", reason);
  }
  return exports;
}
