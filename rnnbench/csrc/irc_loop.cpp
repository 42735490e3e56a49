// The time loops of the fused IRC/IHC recurrence (rnnbench/fused_cpp.py), forward and the
// hand-written backward, without returning to Python between steps.
//
// Generic in the family: rnnbench/fused_cpp.py appends one struct per family, generated from the
// family's CPP_UPDATE snippet (rnnbench/cells/<family>.py), and the dispatch by family name
// (IRC_FAMILIES below). Generic in the recurrence: folded IRC (one product per step, R) or a
// two-product "mix" (unfolded IRC, IHC), as in rnnbench/fused.py.
//
// Products go to the BLAS that torch itself links (sgemm_/dgemm_, found at load time), straight
// into preallocated buffers with their leading dimensions; without one, to at::mm_out. The
// elementwise work of a step (σ of the gates, the family's update or its derivative) is one pass,
// compiled for several instruction sets (target_clones: the CPU picks at load time, so the build
// stays portable without -march=native). The passes run on one thread: a step's pass is a few
// microseconds even at B = 32, M = 512, less than one more fork-join of the thread pool would cost
// on a busy machine; the products use torch's threads through its BLAS.
#include <torch/extension.h>
#include <dlfcn.h>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>
#include <algorithm>

namespace irc {

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define IRC_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define IRC_CLONES
#endif
#define IRC_INLINE inline __attribute__((always_inline))

// ---- transcendental functions the compiler can vectorise ------------------------------------------
// libm's expf is a call per element; this one (Cody-Waite reduction, Cephes' polynomial, within two
// ulp) is plain arithmetic, so a loop over it vectorises. double keeps libm: tests only.
static IRC_INLINE float exp_(float x) {
  float y = x < -87.0f ? -87.0f : x;
  y = y > 88.0f ? 88.0f : y;
  const float t = y * 1.44269504088896341f + 12582912.0f;   // round(y / ln 2) in the low bits
  const float n = t - 12582912.0f;
  int32_t bits;
  std::memcpy(&bits, &t, 4);
  const int32_t i = bits - 0x4B400000;
  const float r = (y - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t e = (i + 127) << 23;
  float s;
  std::memcpy(&s, &e, 4);
  const float v = p * s;
  return x != x ? x : v;   // a NaN stays a NaN (RNNBENCH_POISON relies on it)
}
static IRC_INLINE double exp_(double x) { return std::exp(x); }
template <typename T> static IRC_INLINE T sigm(T x) { return T(1) / (T(1) + exp_(-x)); }
static IRC_INLINE float tanh_(float x) { return 1.0f - 2.0f / (exp_(2.0f * x) + 1.0f); }
static IRC_INLINE double tanh_(double x) { return std::tanh(x); }

// ---- products ----------------------------------------------------------------------------------
// Row-major C (m×n) = beta·C + A (m×k) · op(B); op(B) = Bᵀ with B stored (n×k) when trans_b, else B
// stored (k×n). Column-major BLAS sees the transposes: Cᵀ = op(B)ᵀ Aᵀ.
using sgemm_t = void (*)(const char*, const char*, const int*, const int*, const int*, const float*,
                         const float*, const int*, const float*, const int*, const float*, float*,
                         const int*);
using dgemm_t = void (*)(const char*, const char*, const int*, const int*, const int*, const double*,
                         const double*, const int*, const double*, const int*, const double*,
                         double*, const int*);
static sgemm_t sgemm_p = nullptr;
static dgemm_t dgemm_p = nullptr;

static void find_blas() {
  // the library that holds at::mm (libtorch_cpu) exports its BLAS on most builds; look it up by
  // address so that its file name does not matter, and do without it when it is absent
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&at::_ops::mm::call), &info) == 0 || info.dli_fname == nullptr) return;
  void* lib = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
  if (lib == nullptr) return;
  sgemm_p = reinterpret_cast<sgemm_t>(dlsym(lib, "sgemm_"));
  dgemm_p = reinterpret_cast<dgemm_t>(dlsym(lib, "dgemm_"));
}

template <typename T>
static void gemm_aten(bool trans_b, int64_t m, int64_t n, int64_t k, const T* A, int64_t lda,
                      const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  auto opt = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  auto a = at::from_blob(const_cast<T*>(A), {m, k}, {lda, 1}, opt);
  auto b = trans_b ? at::from_blob(const_cast<T*>(B), {n, k}, {ldb, 1}, opt).t()
                   : at::from_blob(const_cast<T*>(B), {k, n}, {ldb, 1}, opt);
  auto c = at::from_blob(C, {m, n}, {ldc, 1}, opt);
  if (beta == T(0)) at::mm_out(c, a, b);
  else c.addmm_(a, b);
}

static void gemm(bool trans_b, int64_t m, int64_t n, int64_t k, const float* A, int64_t lda,
                 const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (sgemm_p == nullptr) return gemm_aten<float>(trans_b, m, n, k, A, lda, B, ldb, beta, C, ldc);
  const int M = (int)n, N = (int)m, K = (int)k, la = (int)ldb, lb = (int)lda, lc = (int)ldc;
  const float one = 1.0f;
  sgemm_p(trans_b ? "T" : "N", "N", &M, &N, &K, &one, B, &la, A, &lb, &beta, C, &lc);
}

static void gemm(bool trans_b, int64_t m, int64_t n, int64_t k, const double* A, int64_t lda,
                 const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (dgemm_p == nullptr) return gemm_aten<double>(trans_b, m, n, k, A, lda, B, ldb, beta, C, ldc);
  const int M = (int)n, N = (int)m, K = (int)k, la = (int)ldb, lb = (int)lda, lc = (int)ldc;
  const double one = 1.0;
  dgemm_p(trans_b ? "T" : "N", "N", &M, &N, &K, &one, B, &la, A, &lb, &beta, C, &lc);
}

// ---- the recurrence --------------------------------------------------------------------------------
enum Mix { FOLDED = 0, IRC_FULL = 1, IRC_DIAG = 2, IHC_FULL = 3, IHC_DIAG = 4 };

// A strided (T, B, N) operand, or a vector broadcast over t and b (strides 0).
template <typename T> struct Coef {
  const T* p = nullptr;
  int64_t st = 0, sb = 0;
  Coef() = default;
  explicit Coef(const at::Tensor& c) {
    if (!c.defined() || c.numel() == 0) return;
    p = c.data_ptr<T>();
    st = c.stride(0); sb = c.stride(1);
  }
  IRC_INLINE const T* at(int64_t t, int64_t b) const { return p + t * st + b * sb; }
};

struct Sizes { int64_t T, B, M, N, G, K; };

// One step's elementwise pass, forward: gates from pre-activations (P holds the recurrent part),
// then the family's update. P is overwritten with the gates (stored for the backward).
template <class F, typename T>
IRC_CLONES void fwd_elems(int64_t b0, int64_t b1, int64_t M, int64_t ldw, T* __restrict P,
                          const T* __restrict wx, const T* __restrict x, int64_t ldx,
                          const T* __restrict h, const T* __restrict c, T* __restrict hn,
                          T* __restrict cn, T beta) {
  constexpr int G = F::G;
  const int64_t GM = G * M;
  for (int64_t b = b0; b < b1; ++b) {
    T* p = P + b * GM;
    const T* w = wx + b * ldw;
    for (int64_t m = 0; m < M; ++m) {
      T s[G];
      for (int k = 0; k < G; ++k) {
        s[k] = sigm(p[k * M + m] + w[k * M + m]);
        p[k * M + m] = s[k];
      }
      T h_new, c_new = T(0);
      F::forward(s, w[GM + m], F::USES_X ? x[b * ldx + m] : T(0), h[b * M + m],
                 F::HAS_C ? c[b * M + m] : T(0), beta, h_new, c_new);
      hn[b * M + m] = h_new;
      if (F::HAS_C) cn[b * M + m] = c_new;
    }
  }
}

// One step's elementwise pass, backward. In: the gates S_t, g = dL/dh_t without its recurrent
// part (gh, finished here with nothing: the product was added by the previous step), gc = dL/dc_t.
// Out: δ_t = dL/d(gate pre-activations) and dL/da_t into dWX, dx_t (direct, SRU), the direct part
// of dL/dh_{t-1} added to base (dout_{t-1}) into gh, dL/dc_{t-1} into gc (in place), Σ dβ.
template <class F, typename T>
IRC_CLONES double bwd_elems(int64_t b0, int64_t b1, int64_t M, int64_t ldw, const T* __restrict S,
                            const T* __restrict wx, const T* __restrict x, int64_t ldx,
                            const T* __restrict h, const T* __restrict c, const T* __restrict hn,
                            const T* __restrict cn, T beta, T* __restrict gh,
                            const T* __restrict base, T* __restrict gc, T* __restrict dwx,
                            T* __restrict dx) {
  constexpr int G = F::G;
  const int64_t GM = G * M;
  double dbeta_sum = 0.0;
  for (int64_t b = b0; b < b1; ++b) {
    const T* s_ = S + b * GM;
    const T* w = wx + b * ldw;
    T* d = dwx + b * ldw;
    T dbeta_row = T(0);
    for (int64_t m = 0; m < M; ++m) {
      const int64_t i = b * M + m;
      T s[G], ds[G];
      for (int k = 0; k < G; ++k) s[k] = s_[k * M + m];
      T da, dx_ = T(0), dh = T(0), dc = T(0), dbeta = T(0);
      F::backward(s, w[GM + m], F::USES_X ? x[b * ldx + m] : T(0), h[i],
                  F::HAS_C ? c[i] : T(0), hn[i], F::HAS_C ? cn[i] : T(0), beta, gh[i],
                  F::HAS_C ? gc[i] : T(0), ds, da, dx_, dh, dc, dbeta);
      for (int k = 0; k < G; ++k) d[k * M + m] = ds[k] * s[k] * (T(1) - s[k]);
      d[GM + m] = da;
      if (F::USES_X) dx[b * ldx + m] = dx_;
      if (F::HAS_C) gc[i] = dc;
      gh[i] = (base ? base[i] : T(0)) + dh;
      if (F::HAS_BETA) dbeta_row += dbeta;
    }
    dbeta_sum += double(dbeta_row);
  }
  return dbeta_sum;
}

// The two-product recurrence's N-wide d_t from h_{t-1} (Y = h Vᵀ done): IRC d = α⊙(h U_Vᵀ) or s⊙h;
// IHC d = σ(h Γᵀ + hg_t)⊙(fb − x_t), fb = h U_Vᵀ (stacked in Y) or ω⊙h.
template <typename T>
IRC_CLONES void mix_elems(int mix, int64_t B, int64_t N, const T* __restrict Y, int64_t K,
                          const T* __restrict h, const T* __restrict vec, const T* __restrict hg,
                          const T* __restrict x, int64_t ldx, T* __restrict d) {
  for (int64_t b = 0; b < B; ++b) {
    const T* y = Y + b * K;
    T* dd = d + b * N;
    const T* xb = x + b * ldx;
    const T* hb = h + b * N;   // diagonal feedback: N = M
    const T* gb = hg ? hg + b * N : nullptr;
    switch (mix) {
      case IRC_FULL: for (int64_t n = 0; n < N; ++n) dd[n] = vec[n] * y[n]; break;
      case IRC_DIAG: for (int64_t n = 0; n < N; ++n) dd[n] = vec[n] * hb[n]; break;
      case IHC_FULL:
        for (int64_t n = 0; n < N; ++n) dd[n] = sigm(y[N + n] + gb[n]) * (y[n] - xb[n]);
        break;
      case IHC_DIAG:
        for (int64_t n = 0; n < N; ++n) dd[n] = sigm(y[n] + gb[n]) * (vec[n] * hb[n] - xb[n]);
        break;
    }
  }
}

// Backward of the mix for one step: from DD = δ_t W_g (B×N), Z = [DD⊙c1, DD⊙c2] (the rows that go
// through V) and the direct term DD⊙c3 added to gh.
template <typename T>
IRC_CLONES void mix_back_elems(int64_t B, int64_t N, int64_t t, const T* __restrict DD,
                               const Coef<T>& c1, const Coef<T>& c2, const Coef<T>& c3,
                               T* __restrict Z, int64_t K, T* __restrict gh) {
  for (int64_t b = 0; b < B; ++b) {
    const T* dd = DD + b * N;
    if (c1.p) { const T* c = c1.at(t, b); T* z = Z + b * K; for (int64_t n = 0; n < N; ++n) z[n] = dd[n] * c[n]; }
    if (c2.p) { const T* c = c2.at(t, b); T* z = Z + b * K + N; for (int64_t n = 0; n < N; ++n) z[n] = dd[n] * c[n]; }
    if (c3.p) { const T* c = c3.at(t, b); T* g = gh + b * N; for (int64_t n = 0; n < N; ++n) g[n] += dd[n] * c[n]; }
  }
}

static void check(const at::Tensor& t, const char* name) {
  TORCH_CHECK(!t.defined() || t.numel() == 0 || t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(!t.defined() || t.numel() == 0 || t.device().is_cpu(), name, " must be on the CPU");
}

// Forward over all T steps. S: (T, B, G·M) gates kept for the backward, or (1, B, G·M) scratch.
// W1: R (G·M×M, folded) or W_g (G·M×N); V: (K×M) the mix's product on h, or empty; vec, hg as mix.
template <class F, typename T>
void forward_loop(int mix, const at::Tensor& wx, const at::Tensor& x, const at::Tensor& h0,
                  const at::Tensor& out, const at::Tensor& C, const at::Tensor& S, double beta_d,
                  const at::Tensor& W1, const at::Tensor& V, const at::Tensor& vec,
                  const at::Tensor& hg) {
  const int64_t T_ = wx.size(0), B = wx.size(1), M = h0.size(1), N = x.size(2);
  constexpr int G = F::G;
  const int64_t GM = G * M, ldw = wx.size(2), K = V.numel() ? V.size(0) : 0;
  const bool store = S.size(0) == T_;
  const T beta = T(beta_d);
  const T* wxp = wx.data_ptr<T>();
  const T* xp = x.data_ptr<T>();
  T* outp = out.data_ptr<T>();
  T* Cp = F::HAS_C ? C.data_ptr<T>() : nullptr;
  T* Sp = S.data_ptr<T>();
  const T* W1p = W1.data_ptr<T>();
  at::Tensor Y, D;
  if (mix != FOLDED) {
    Y = at::empty({B, std::max<int64_t>(K, 1)}, wx.options());
    D = at::empty({B, N}, wx.options());
  }
  const T* hp = h0.data_ptr<T>();
  for (int64_t t = 0; t < T_; ++t) {
    T* P = Sp + (store ? t * B * GM : 0);
    if (mix == FOLDED) {
      gemm(true, B, GM, M, hp, M, W1p, M, T(0), P, GM);                 // h Rᵀ
    } else {
      T* y = Y.data_ptr<T>();
      if (K) gemm(true, B, K, M, hp, M, V.data_ptr<T>(), M, T(0), y, K);
      mix_elems<T>(mix, B, N, y, K, hp, vec.numel() ? vec.data_ptr<T>() : nullptr,
                   hg.numel() ? hg.data_ptr<T>() + t * B * N : nullptr, xp + t * B * N, N,
                   D.data_ptr<T>());
      gemm(true, B, GM, N, D.data_ptr<T>(), N, W1p, N, T(0), P, GM);    // d W_gᵀ
    }
    const T* wt = wxp + t * B * ldw;
    const T* xt = xp + t * B * N;
    const T* c = F::HAS_C ? Cp + t * B * M : nullptr;
    T* hn = outp + t * B * M;
    T* cn = F::HAS_C ? Cp + (t + 1) * B * M : nullptr;
    fwd_elems<F, T>(0, B, M, ldw, P, wt, xt, N, hp, c, hn, cn, beta);
    hp = hn;
  }
}

// Reverse loop. Fills dWX (δ_t and dL/da_t), dx (SRU's direct term), dh0, dc0 and, for the mix, DD
// (δ_t W_g, which the parameter gradients need). Returns Σ dβ.
template <class F, typename T>
double backward_loop(int mix, const at::Tensor& wx, const at::Tensor& x, const at::Tensor& h0,
                     const at::Tensor& out, const at::Tensor& C, const at::Tensor& S,
                     double beta_d, const at::Tensor& dout, const at::Tensor& dcT,
                     const at::Tensor& dWX, const at::Tensor& dx, const at::Tensor& dh0,
                     const at::Tensor& dc0, const at::Tensor& W1, const at::Tensor& V,
                     const at::Tensor& DD, const at::Tensor& c1, const at::Tensor& c2,
                     const at::Tensor& c3) {
  const int64_t T_ = wx.size(0), B = wx.size(1), M = h0.size(1), N = x.size(2);
  constexpr int G = F::G;
  const int64_t GM = G * M, ldw = wx.size(2), K = V.numel() ? V.size(0) : 0;
  const T beta = T(beta_d);
  const T* wxp = wx.data_ptr<T>();
  const T* xp = x.data_ptr<T>();
  const T* outp = out.data_ptr<T>();
  const T* Cp = F::HAS_C ? C.data_ptr<T>() : nullptr;
  const T* Sp = S.data_ptr<T>();
  const T* doutp = dout.data_ptr<T>();
  T* dwxp = dWX.data_ptr<T>();
  T* dxp = F::USES_X ? dx.data_ptr<T>() : nullptr;
  const T* W1p = W1.data_ptr<T>();
  T* gh = dh0.data_ptr<T>();           // carried gradient of h_t, finished as dh0
  T* gc = F::HAS_C ? dc0.data_ptr<T>() : nullptr;
  std::memcpy(gh, doutp + (T_ - 1) * B * M, sizeof(T) * B * M);
  if (F::HAS_C) std::memcpy(gc, dcT.data_ptr<T>(), sizeof(T) * B * M);
  const Coef<T> k1(c1), k2(c2), k3(c3);
  at::Tensor Z = mix != FOLDED ? at::empty({B, std::max<int64_t>(K, 1)}, wx.options()) : at::Tensor();
  double dbeta = 0.0;
  for (int64_t t = T_ - 1; t >= 0; --t) {
    const T* hprev = t > 0 ? outp + (t - 1) * B * M : h0.data_ptr<T>();
    const T* base = t > 0 ? doutp + (t - 1) * B * M : nullptr;
    const T* St = Sp + t * B * GM;
    const T* wt = wxp + t * B * ldw;
    const T* xt = xp + t * B * N;
    const T* c = F::HAS_C ? Cp + t * B * M : nullptr;
    const T* cn = F::HAS_C ? Cp + (t + 1) * B * M : nullptr;
    const T* hn = outp + t * B * M;
    T* dwt = dwxp + t * B * ldw;
    T* dxt = dxp ? dxp + t * B * N : nullptr;
    dbeta += bwd_elems<F, T>(0, B, M, ldw, St, wt, xt, N, hprev, c, hn, cn, beta, gh, base, gc, dwt,
                             dxt);
    // gh now holds dout_{t-1} + the direct part of dL/dh_{t-1}; add the recurrent part
    if (mix == FOLDED) {
      gemm(false, B, M, GM, dwt, ldw, W1p, M, T(1), gh, M);            // += δ_t R
    } else {
      T* ddt = DD.data_ptr<T>() + t * B * N;
      gemm(false, B, N, GM, dwt, ldw, W1p, N, T(0), ddt, N);           // DD_t = δ_t W_g
      T* z = Z.data_ptr<T>();
      mix_back_elems<T>(B, N, t, ddt, k1, k2, k3, z, K, gh);
      if (K) gemm(false, B, M, K, z, K, V.data_ptr<T>(), M, T(1), gh, M);   // += Z V
    }
  }
  return dbeta;
}

}  // namespace irc

// rnnbench/fused_cpp.py replaces the next line with one `struct Fam_<name>` per family, made
// from its CPP_UPDATE, and `#define IRC_FAMILIES(X) X(name) ...`.
// @FAMILIES@

namespace irc {

static at::ScalarType common_dtype(const at::Tensor& wx) {
  TORCH_CHECK(wx.scalar_type() == at::kFloat || wx.scalar_type() == at::kDouble,
              "the C++ loop runs float32 and float64, got ", wx.scalar_type());
  return wx.scalar_type();
}

#define IRC_FWD_CASE(name) \
  if (fam == #name) return forward_loop<Fam_##name, T>(mix, wx, x, h0, out, C, S, beta, W1, V, vec, hg);
#define IRC_BWD_CASE(name) \
  if (fam == #name) return backward_loop<Fam_##name, T>(mix, wx, x, h0, out, C, S, beta, dout, dcT, \
                                                        dWX, dx, dh0, dc0, W1, V, DD, c1, c2, c3);

template <typename T>
static void forward_t(const std::string& fam, int64_t mix, const at::Tensor& wx, const at::Tensor& x,
                      const at::Tensor& h0, const at::Tensor& out, const at::Tensor& C,
                      const at::Tensor& S, double beta, const at::Tensor& W1, const at::Tensor& V,
                      const at::Tensor& vec, const at::Tensor& hg) {
  IRC_FAMILIES(IRC_FWD_CASE)
  TORCH_CHECK(false, "no C++ update for family ", fam);
}

template <typename T>
static double backward_t(const std::string& fam, int64_t mix, const at::Tensor& wx,
                         const at::Tensor& x, const at::Tensor& h0, const at::Tensor& out,
                         const at::Tensor& C, const at::Tensor& S, double beta,
                         const at::Tensor& dout, const at::Tensor& dcT, const at::Tensor& dWX,
                         const at::Tensor& dx, const at::Tensor& dh0, const at::Tensor& dc0,
                         const at::Tensor& W1, const at::Tensor& V, const at::Tensor& DD,
                         const at::Tensor& c1, const at::Tensor& c2, const at::Tensor& c3) {
  IRC_FAMILIES(IRC_BWD_CASE)
  TORCH_CHECK(false, "no C++ update for family ", fam);
}

void forward(const std::string& fam, int64_t mix, const at::Tensor& wx, const at::Tensor& x,
             const at::Tensor& h0, const at::Tensor& out, const at::Tensor& C, const at::Tensor& S,
             double beta, const at::Tensor& W1, const at::Tensor& V, const at::Tensor& vec,
             const at::Tensor& hg) {
  for (auto* t : {&wx, &x, &h0, &out, &C, &S, &W1, &V, &vec, &hg}) check(*t, "an operand");
  at::NoGradGuard no_grad;
  if (common_dtype(wx) == at::kFloat) forward_t<float>(fam, mix, wx, x, h0, out, C, S, beta, W1, V, vec, hg);
  else forward_t<double>(fam, mix, wx, x, h0, out, C, S, beta, W1, V, vec, hg);
}

double backward(const std::string& fam, int64_t mix, const at::Tensor& wx, const at::Tensor& x,
                const at::Tensor& h0, const at::Tensor& out, const at::Tensor& C,
                const at::Tensor& S, double beta, const at::Tensor& dout, const at::Tensor& dcT,
                const at::Tensor& dWX, const at::Tensor& dx, const at::Tensor& dh0,
                const at::Tensor& dc0, const at::Tensor& W1, const at::Tensor& V,
                const at::Tensor& DD, const at::Tensor& c1, const at::Tensor& c2,
                const at::Tensor& c3) {
  for (auto* t : {&wx, &x, &h0, &out, &C, &S, &dout, &dcT, &dWX, &dx, &dh0, &dc0, &W1, &V, &DD})
    check(*t, "an operand");
  at::NoGradGuard no_grad;
  if (common_dtype(wx) == at::kFloat)
    return backward_t<float>(fam, mix, wx, x, h0, out, C, S, beta, dout, dcT, dWX, dx, dh0, dc0,
                             W1, V, DD, c1, c2, c3);
  return backward_t<double>(fam, mix, wx, x, h0, out, C, S, beta, dout, dcT, dWX, dx, dh0, dc0,
                            W1, V, DD, c1, c2, c3);
}

bool has_blas() { return sgemm_p != nullptr && dgemm_p != nullptr; }

}  // namespace irc

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  irc::find_blas();
  m.def("forward", &irc::forward, "fused IRC/IHC forward loop");
  m.def("backward", &irc::backward, "fused IRC/IHC reverse loop; returns the sum of dβ");
  m.def("has_blas", &irc::has_blas, "whether products go straight to torch's BLAS");
}
