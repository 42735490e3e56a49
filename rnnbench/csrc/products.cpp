// The products of the C++ loops (rnnbench/csrc/irc_loop.cpp) and of the fused-cpp backend's hoisted
// and weight-gradient products (rnnbench/fused_cpp.py): one packed-panel GEMM.
//
// Why our own and not torch's BLAS: on the CPUs our CI and users run (AMD EPYC, AVX-512), the MKL
// that torch links reaches about half of the FMA peak (docs/kernels.md has the figures), while
// oneDNN, which torch's nn.LSTM uses, reaches about 80%; matching oneDNN's LSTM needs products at
// its speed. And inside the time loop a BLAS call per step cannot keep the weights where the next
// step wants them: here each thread packs its share of a weight matrix once per sequence and keeps
// it for every step (at B = 1 a thread's share of R stays in its own L2 cache).
//
// The shape is the classic one (Goto/BLIS): a register tile of MR rows × NR = NV vectors of
// columns, accumulated over k from a packed panel of B (k-major, NR wide, zero-padded) and rows of
// A read in place (the loops' h and δ rows) or packed (the general product). GCC's vector
// extensions write the tile once for float (16 lanes) and double (8 lanes); target_clones compiles
// it for AVX-512, AVX2 and plain x86-64, and the CPU picks at load time.
#include <torch/extension.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

namespace irc {

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define IRC_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define IRC_CLONES
#endif
#define IRC_INLINE inline __attribute__((always_inline))

static IRC_INLINE int thread_id() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}
static IRC_INLINE int team_size() {
#ifdef _OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}

// Packed panels start on a cache line: a vector load that straddles two lines costs two.
template <typename T> struct Aligned64 {
  using value_type = T;
  Aligned64() = default;
  template <class U> Aligned64(const Aligned64<U>&) {}
  T* allocate(size_t n) {
    void* p = nullptr;
    if (posix_memalign(&p, 64, std::max<size_t>(n, 1) * sizeof(T)) != 0) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) { free(p); }
  template <class U> bool operator==(const Aligned64<U>&) const { return true; }
  template <class U> bool operator!=(const Aligned64<U>&) const { return false; }
};
template <typename T> using avec = std::vector<T, Aligned64<T>>;

template <typename T> struct Vec;
template <> struct Vec<float> {
  typedef float type __attribute__((vector_size(64), aligned(4)));
  static constexpr int L = 16;
};
template <> struct Vec<double> {
  typedef double type __attribute__((vector_size(64), aligned(8)));
  static constexpr int L = 8;
};

constexpr int MR = 6;   // rows of a register tile: 6 × 4 vectors = 24 of the 32 AVX-512 registers
constexpr int NV = 4;   // vectors of columns in a tile
template <typename T> constexpr int64_t nr() { return NV * Vec<T>::L; }

// C (R rows × cols ≤ NR, row stride ldc) = [C +] A · Bp over kc: A's element (i, k) at
// a[i·ars + k·aks], Bp a packed panel (kc × NR, k-major).
template <typename T, int R>
static IRC_INLINE void tile(int64_t kc, const T* __restrict a, int64_t ars, int64_t aks,
                            const T* __restrict b, T* __restrict c, int64_t ldc, int64_t cols,
                            bool acc) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::L;
  V s[R][NV];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) s[i][j] = V{};
  for (int64_t k = 0; k < kc; ++k) {
    V bv[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) std::memcpy(&bv[j], b + k * NV * L + j * L, sizeof(V));
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const T x = a[i * ars + k * aks];
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) s[i][j] += bv[j] * x;
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) {
    T* ci = c + i * ldc;
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) {
      if ((j + 1) * L <= cols) {
        V v = s[i][j];
        if (acc) { V o; std::memcpy(&o, ci + j * L, sizeof(V)); v += o; }
        std::memcpy(ci + j * L, &v, sizeof(V));
      } else {
        for (int64_t l = 0; j * L + l < cols; ++l) ci[j * L + l] = acc ? ci[j * L + l] + s[i][j][l] : s[i][j][l];
      }
    }
  }
}

// rows × cols (any rows, cols ≤ NR), A's rows read in place (aks = 1), in as few tiles as MR
// allows, their heights within one of each other (32 rows: 5, 5, 5, 5, 6, 6, not 6 × 5 and a
// 2-row tile that would stream the whole panel again for 8 accumulators' work).
template <typename T>
IRC_CLONES void rows_times_panel(int64_t rows, int64_t kc, const T* a, int64_t lda, const T* b,
                                 T* c, int64_t ldc, int64_t cols, bool acc) {
  const int64_t tiles = (rows + MR - 1) / MR;
  int64_t i = 0;
  for (int64_t j = 0; j < tiles; ++j) {
    const int64_t h = (rows - i) / (tiles - j);   // the rest, shared evenly
    const T* ai = a + i * lda;
    T* ci = c + i * ldc;
    switch (h) {
      case 1: tile<T, 1>(kc, ai, lda, 1, b, ci, ldc, cols, acc); break;
      case 2: tile<T, 2>(kc, ai, lda, 1, b, ci, ldc, cols, acc); break;
      case 3: tile<T, 3>(kc, ai, lda, 1, b, ci, ldc, cols, acc); break;
      case 4: tile<T, 4>(kc, ai, lda, 1, b, ci, ldc, cols, acc); break;
      case 5: tile<T, 5>(kc, ai, lda, 1, b, ci, ldc, cols, acc); break;
      default: tile<T, MR>(kc, ai, lda, 1, b, ci, ldc, cols, acc); break;
    }
    i += h;
  }
}

// One row of A times columns of B stored as rows (B(k, n) at Bt[n·ld + k]), in place: dot
// products, eight rows of Bt at a time. For a product with a single row of A (a step at B = 1),
// where packing would copy and transpose every weight once per call to read it once per step.
template <typename T>
IRC_CLONES void row_times_rows(int64_t K, const T* __restrict a, const T* __restrict Bt, int64_t ld,
                               int64_t w, T* __restrict c, bool acc) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::L, RR = 8;
  int64_t n = 0;
  for (; n < w; n += RR) {
    const int r = (int)std::min<int64_t>(RR, w - n);
    V s[RR];
#pragma GCC unroll 8
    for (int j = 0; j < RR; ++j) s[j] = V{};
    int64_t k = 0;
    if (r == RR) {
      for (; k + L <= K; k += L) {
        V av;
        std::memcpy(&av, a + k, sizeof(V));
#pragma GCC unroll 8
        for (int j = 0; j < RR; ++j) {
          V bv;
          std::memcpy(&bv, Bt + (n + j) * ld + k, sizeof(V));
          s[j] += av * bv;
        }
      }
    }
    for (int j = 0; j < r; ++j) {
      T t = T(0);
      for (int l = 0; l < L; ++l) t += s[j][l];
      const T* row = Bt + (n + j) * ld;
      for (int64_t q = k; q < K; ++q) t += a[q] * row[q];
      c[n + j] = acc ? c[n + j] + t : t;
    }
  }
}

// A packed block (mc rows in panels of MR, each kc × MR k-major, zero rows past mc) times one
// packed B panel; only the valid rows and columns are stored.
template <typename T>
IRC_CLONES void block_times_panel(int64_t mc, int64_t kc, const T* ap, const T* b, T* c,
                                  int64_t ldc, int64_t cols, bool acc) {
  alignas(64) T edge[MR * nr<T>()];
  for (int64_t i = 0; i < mc; i += MR) {
    const T* a = ap + i * kc;
    if (i + MR <= mc) {
      tile<T, MR>(kc, a, 1, MR, b, c + i * ldc, ldc, cols, acc);
    } else {  // the last rows: a full tile into scratch, then the rows that exist
      tile<T, MR>(kc, a, 1, MR, b, edge, nr<T>(), nr<T>(), false);
      for (int64_t r = 0; r < mc - i; ++r)
        for (int64_t j = 0; j < cols; ++j)
          c[(i + r) * ldc + j] = acc ? c[(i + r) * ldc + j] + edge[r * nr<T>() + j] : edge[r * nr<T>() + j];
    }
  }
}

// Pack B's columns [0, w) over k in [0, kc) (element (k, n) at B[k·brs + n·bcs]) into panels of NR.
template <typename T>
static void pack_b(int64_t kc, int64_t w, const T* B, int64_t brs, int64_t bcs, T* out) {
  constexpr int64_t NR = nr<T>();
  for (int64_t j0 = 0; j0 < w; j0 += NR) {
    const int64_t n = std::min(NR, w - j0);
    T* o = out + j0 * kc;
    if (bcs == 1) {
      for (int64_t k = 0; k < kc; ++k) {
        std::memcpy(o + k * NR, B + k * brs + j0, n * sizeof(T));
        std::fill(o + k * NR + n, o + (k + 1) * NR, T(0));
      }
    } else {  // a transpose: in blocks of 16 k, so that both sides stay in L1
      for (int64_t k0 = 0; k0 < kc; k0 += 16) {
        const int64_t k1 = std::min(kc, k0 + 16);
        for (int64_t j = 0; j < NR; ++j) {
          if (j >= n) { for (int64_t k = k0; k < k1; ++k) o[k * NR + j] = T(0); continue; }
          const T* src = B + (j0 + j) * bcs;
          for (int64_t k = k0; k < k1; ++k) o[k * NR + j] = src[k * brs];
        }
      }
    }
  }
}

// Pack A's rows [0, mc) over k in [0, kc) (element (i, k) at A[i·ars + k·acs]) into panels of MR.
template <typename T>
static void pack_a(int64_t mc, int64_t kc, const T* A, int64_t ars, int64_t acs, T* out) {
  for (int64_t i0 = 0; i0 < mc; i0 += MR) {
    const int64_t h = std::min<int64_t>(MR, mc - i0);
    T* o = out + i0 * kc;
    if (ars == 1) {  // A transposed (a δᵀ or dWXᵀ view): a tile's rows are adjacent for each k
      if (h == MR)
        for (int64_t k = 0; k < kc; ++k) std::memcpy(o + k * MR, A + k * acs + i0, MR * sizeof(T));
      else
        for (int64_t k = 0; k < kc; ++k)
          for (int64_t i = 0; i < MR; ++i) o[k * MR + i] = i < h ? A[k * acs + i0 + i] : T(0);
      continue;
    }
    for (int64_t i = 0; i < MR; ++i) {
      if (i >= h) { for (int64_t k = 0; k < kc; ++k) o[k * MR + i] = T(0); continue; }
      const T* src = A + (i0 + i) * ars;
      for (int64_t k = 0; k < kc; ++k) o[k * MR + i] = src[k * acs];
    }
  }
}

// The blocking of the general product: a B block of KC × NC (a stream of NR-wide panels from L2)
// against A blocks of MC × KC (in L2, one MR tile in L1 per step of the inner loop). KC = 512
// halves the passes over C against 256; the two measured alike within this VM's swings.
constexpr int64_t KC = 512, MC = 96, NC = 1024;

// C[m0:m1, n0:n1] = [C +] A · B, one thread.
template <typename T>
static void gemm_part(int64_t m0, int64_t m1, int64_t n0, int64_t n1, int64_t k, const T* A,
                      int64_t ars, int64_t acs, const T* B, int64_t brs, int64_t bcs, bool acc,
                      T* C, int64_t ldc) {
  constexpr int64_t NR = nr<T>();
  // A is packed only when its rows are not contiguous in k
  avec<T> ap(acs == 1 ? 0 : MC * KC), bp(KC * ((std::min(NC, n1 - n0) + NR - 1) / NR) * NR);
  for (int64_t jc = n0; jc < n1; jc += NC) {
    const int64_t nc = std::min(NC, n1 - jc);
    for (int64_t pc = 0; pc < k; pc += KC) {
      const int64_t kc = std::min(KC, k - pc);
      pack_b(kc, nc, B + pc * brs + jc * bcs, brs, bcs, bp.data());
      const bool a_acc = acc || pc > 0;
      for (int64_t ic = m0; ic < m1; ic += MC) {
        const int64_t mc = std::min(MC, m1 - ic);
        if (acs == 1) {  // rows of A are contiguous in k: read them in place, as the loops do
          for (int64_t jr = 0; jr < nc; jr += NR)
            rows_times_panel(mc, kc, A + ic * ars + pc, ars, bp.data() + jr * kc,
                             C + ic * ldc + jc + jr, ldc, std::min(NR, nc - jr), a_acc);
          continue;
        }
        pack_a(mc, kc, A + ic * ars + pc * acs, ars, acs, ap.data());
        for (int64_t jr = 0; jr < nc; jr += NR)
          block_times_panel(mc, kc, ap.data(), bp.data() + jr * kc, C + ic * ldc + jc + jr, ldc,
                            std::min(NR, nc - jr), a_acc);
      }
    }
  }
}

// [lo, hi) of `size` for thread `tid` of `nt`, in multiples of `grain` (the last takes the rest).
static IRC_INLINE void share(int64_t size, int nt, int tid, int64_t grain, int64_t& lo, int64_t& hi) {
  const int64_t chunks = (size + grain - 1) / grain;
  const int64_t per = (chunks + nt - 1) / nt;
  lo = std::min(size, tid * per * grain);
  hi = std::min(size, lo + per * grain);
}

// C (m × n, row stride ldc) = [C +] A · B on up to `threads` threads, split along the longer side of
// C so that no two threads write one element and each sums its k in the same order (the result
// does not depend on the thread count).
template <typename T>
void gemm_threads(int64_t m, int64_t n, int64_t k, const T* A, int64_t ars, int64_t acs,
                  const T* B, int64_t brs, int64_t bcs, bool acc, T* C, int64_t ldc, int threads) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (!acc) for (int64_t i = 0; i < m; ++i) std::fill(C + i * ldc, C + i * ldc + n, T(0));
    return;
  }
  // below about a million multiply-adds a fork-join costs more than it saves
  if (m * n * k < (int64_t(1) << 20)) threads = 1;
  const bool by_rows = m >= n;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) if (threads > 1)
#endif
  {
    int64_t lo, hi;
    share(by_rows ? m : n, team_size(), thread_id(), by_rows ? MR : nr<T>(), lo, hi);
    if (lo < hi) {
      if (by_rows) gemm_part(lo, hi, 0, n, k, A, ars, acs, B, brs, bcs, acc, C, ldc);
      else gemm_part(0, m, lo, hi, k, A, ars, acs, B, brs, bcs, acc, C, ldc);
    }
  }
}

// Column ranges of one weight matrix, packed once for a whole sequence by the thread that uses
// them: columns [c0, c0 + w) of B (element (k, n) at B[k·brs + n·bcs]), which are also the columns
// of C that the product writes.
template <typename T>
struct Panels {
  // off: where the packed panels start in data; or src (with its row stride ld) when the columns
  // are read in place as rows of B (one_row products)
  struct Range { int64_t c0, w, off; const T* src; int64_t ld; };
  avec<T> data;
  std::vector<Range> ranges;
  int64_t K = 0;

  // one_row: the products will have a single row of A; B's columns that are contiguous in k
  // (brs = 1, a transposed weight) are then read in place instead of packed, from k = 512 up:
  // with shorter rows a dot product's final sum over lanes weighs more, and at k = 256 the
  // in-place form measured slower (docs/kernels.md)
  void add(const T* B, int64_t brs, int64_t bcs, int64_t K_, int64_t c0, int64_t w,
           bool one_row = false) {
    if (w <= 0) return;
    K = K_;
    if (one_row && brs == 1 && K >= 512) {
      ranges.push_back({c0, w, -1, B + c0 * bcs, bcs});
      return;
    }
    const int64_t off = (int64_t)data.size(), padded = (w + nr<T>() - 1) / nr<T>() * nr<T>();
    data.resize(off + padded * K);
    pack_b(K, w, B + c0 * bcs, brs, bcs, data.data() + off);
    ranges.push_back({c0, w, off, nullptr, 0});
  }
  // C[:, ranges] = [C +] A · B[:, ranges] for A's `rows` rows (row stride lda, K wide). Each panel
  // streams from L2 once per tile of rows; doing the tiles chunk by chunk of k, to reuse a chunk
  // from L1, measured slower (docs/kernels.md).
  void product(int64_t rows, const T* A, int64_t lda, T* C, int64_t ldc, bool acc) const {
    for (const Range& r : ranges) {
      if (r.src) {
        row_times_rows(K, A, r.src, r.ld, r.w, C + r.c0, acc);   // rows == 1 (add's one_row)
        continue;
      }
      for (int64_t j = 0; j < r.w; j += nr<T>())
        rows_times_panel(rows, K, A, lda, data.data() + r.off + j * K, C + r.c0 + j, ldc,
                         std::min(nr<T>(), r.w - j), acc);
    }
  }
};

// ---- the product as a torch op (the hoisted products and weight gradients of fused_cpp.py) ------
// C = [C +] A · B for 2-D A, B of any strides (a transposed view packs as well as a plain one);
// C contiguous rows.
void mm(const at::Tensor& A, const at::Tensor& B, const at::Tensor& C, bool accumulate,
        int64_t threads) {
  TORCH_CHECK(A.dim() == 2 && B.dim() == 2 && C.dim() == 2, "mm takes 2-D tensors");
  TORCH_CHECK(A.size(1) == B.size(0) && C.size(0) == A.size(0) && C.size(1) == B.size(1),
              "mm: sizes do not match");
  TORCH_CHECK(A.scalar_type() == B.scalar_type() && B.scalar_type() == C.scalar_type(),
              "mm: one dtype");
  TORCH_CHECK(A.device().is_cpu() && B.device().is_cpu() && C.device().is_cpu(), "mm: CPU tensors");
  TORCH_CHECK(C.size(1) <= 1 || C.stride(1) == 1, "mm: C's rows must be contiguous");
  const int nt = (int)std::max<int64_t>(1, threads);
  if (C.scalar_type() == at::kFloat)
    gemm_threads<float>(A.size(0), B.size(1), A.size(1), A.data_ptr<float>(), A.stride(0),
                        A.stride(1), B.data_ptr<float>(), B.stride(0), B.stride(1), accumulate,
                        C.data_ptr<float>(), C.stride(0), nt);
  else if (C.scalar_type() == at::kDouble)
    gemm_threads<double>(A.size(0), B.size(1), A.size(1), A.data_ptr<double>(), A.stride(0),
                         A.stride(1), B.data_ptr<double>(), B.stride(0), B.stride(1), accumulate,
                         C.data_ptr<double>(), C.stride(0), nt);
  else
    TORCH_CHECK(false, "mm runs float32 and float64, got ", C.scalar_type());
}

}  // namespace irc
