// The time loops of the fused IRC/IHC recurrence (rnnbench/fused_cpp.py), forward and the
// hand-written backward, without returning to Python between steps.
//
// Generic in the family: rnnbench/fused_cpp.py appends one struct per family, generated from the
// family's CPP_UPDATE snippet (rnnbench/cells/<family>.py), and the dispatch by family name
// (IRC_FAMILIES below). Generic in the recurrence: folded IRC (one product per step, R) or a
// two-product "mix" (unfolded IRC, IHC), as in rnnbench/fused.py.
//
// Threads: one team for the whole sequence (rnnbench/csrc/products.cpp comes first in the source).
// Each thread owns a range of hidden units and, for them, every gate's columns of the step's
// product, so it can apply the family's update to what it just computed with no one to wait for;
// the team meets once per step (h_t complete before step t+1 reads it) and, for a two-product
// recurrence, once more between the two products. Each thread packs its columns of the weights
// once, before the loop. The elementwise passes are compiled for several instruction sets
// (target_clones: the CPU picks at load time, so the build stays portable without -march=native).
#include <torch/extension.h>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>
#include <algorithm>

namespace irc {

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

// One step's elementwise pass, forward, for rows [b0, b1) and hidden units [m0, m1): gates from
// pre-activations (P holds the recurrent part; ADD_GX: plus wx's gate part, unless P has it
// already), then the family's update. P is overwritten with the gates (stored for the backward).
template <class F, typename T, bool ADD_GX>
IRC_CLONES void fwd_elems(int64_t b0, int64_t b1, int64_t m0, int64_t m1, int64_t M, int64_t ldw,
                          T* __restrict P, const T* __restrict wx, const T* __restrict x,
                          int64_t ldx, const T* __restrict h, const T* __restrict c,
                          T* __restrict hn, T* __restrict cn, T beta) {
  constexpr int G = F::G;
  const int64_t GM = G * M;
  for (int64_t b = b0; b < b1; ++b) {
    T* p = P + b * GM;
    const T* w = wx + b * ldw;
    for (int64_t m = m0; m < m1; ++m) {
      T s[G];
      for (int k = 0; k < G; ++k) {
        s[k] = sigm(ADD_GX ? p[k * M + m] + w[k * M + m] : p[k * M + m]);
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

// One step's elementwise pass, backward, rows [b0, b1), units [m0, m1). In: the gates S_t, g =
// dL/dh_t in gh (complete: the previous step added its product), gc = dL/dc_t. Out: δ_t =
// dL/d(gate pre-activations) and dL/da_t into dWX, dx_t (direct, SRU), the direct part of
// dL/dh_{t-1} added to base (dout_{t-1}) into gh, dL/dc_{t-1} into gc (in place), Σ dβ.
template <class F, typename T>
IRC_CLONES double bwd_elems(int64_t b0, int64_t b1, int64_t m0, int64_t m1, int64_t M, int64_t ldw,
                            const T* __restrict S, const T* __restrict wx, const T* __restrict x,
                            int64_t ldx, const T* __restrict h, const T* __restrict c,
                            const T* __restrict hn, const T* __restrict cn, T beta,
                            T* __restrict gh, const T* __restrict base, T* __restrict gc,
                            T* __restrict dwx, T* __restrict dx) {
  constexpr int G = F::G;
  const int64_t GM = G * M;
  double dbeta_sum = 0.0;
  for (int64_t b = b0; b < b1; ++b) {
    const T* s_ = S + b * GM;
    const T* w = wx + b * ldw;
    T* d = dwx + b * ldw;
    T dbeta_row = T(0);
    for (int64_t m = m0; m < m1; ++m) {
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

// The two-product recurrence's N-wide d_t from h_{t-1}, columns [n0, n1) (Y = h Vᵀ done for
// them): IRC d = α⊙(h U_Vᵀ) or s⊙h; IHC d = σ(h Γᵀ + hg_t)⊙(fb − x_t), fb = h U_Vᵀ (stacked in Y)
// or ω⊙h; then v_t = x_t + d_t, the cell's own input to W_g, into d.
template <typename T>
IRC_CLONES void mix_elems(int mix, int64_t n0, int64_t n1, int64_t B, int64_t N,
                          const T* __restrict Y, int64_t K, const T* __restrict h,
                          const T* __restrict vec, const T* __restrict hg, const T* __restrict x,
                          int64_t ldx, T* __restrict d) {
  for (int64_t b = 0; b < B; ++b) {
    const T* y = Y + b * K;
    T* dd = d + b * N;
    const T* xb = x + b * ldx;
    const T* hb = h + b * N;   // diagonal feedback: N = M
    const T* gb = hg ? hg + b * N : nullptr;
    switch (mix) {
      case IRC_FULL: for (int64_t n = n0; n < n1; ++n) dd[n] = vec[n] * y[n]; break;
      case IRC_DIAG: for (int64_t n = n0; n < n1; ++n) dd[n] = vec[n] * hb[n]; break;
      case IHC_FULL:
        for (int64_t n = n0; n < n1; ++n) dd[n] = sigm(y[N + n] + gb[n]) * (y[n] - xb[n]);
        break;
      case IHC_DIAG:
        for (int64_t n = n0; n < n1; ++n) dd[n] = sigm(y[n] + gb[n]) * (vec[n] * hb[n] - xb[n]);
        break;
    }
    for (int64_t n = n0; n < n1; ++n) dd[n] += xb[n];
  }
}

// Backward of the mix for one step, columns [n0, n1): from DD = δ_t W_g (B×N), Z = [DD⊙c1, DD⊙c2]
// (the rows that go through V) and the direct term DD⊙c3 added to gh (c3 only with N = M).
template <typename T>
IRC_CLONES void mix_back_elems(int64_t n0, int64_t n1, int64_t B, int64_t N, int64_t t,
                               const T* __restrict DD, const Coef<T>& c1, const Coef<T>& c2,
                               const Coef<T>& c3, T* __restrict Z, int64_t K, T* __restrict gh) {
  for (int64_t b = 0; b < B; ++b) {
    const T* dd = DD + b * N;
    if (c1.p) { const T* c = c1.at(t, b); T* z = Z + b * K; for (int64_t n = n0; n < n1; ++n) z[n] = dd[n] * c[n]; }
    if (c2.p) { const T* c = c2.at(t, b); T* z = Z + b * K + N; for (int64_t n = n0; n < n1; ++n) z[n] = dd[n] * c[n]; }
    if (c3.p) { const T* c = c3.at(t, b); T* g = gh + b * N; for (int64_t n = n0; n < n1; ++n) g[n] += dd[n] * c[n]; }
  }
}

static void check(const at::Tensor& t, const char* name) {
  TORCH_CHECK(!t.defined() || t.numel() == 0 || t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(!t.defined() || t.numel() == 0 || t.device().is_cpu(), name, " must be on the CPU");
}

template <typename T> static const T* ptr_or_null(const at::Tensor& t) {
  return t.defined() && t.numel() ? t.data_ptr<T>() : nullptr;
}

// This thread's place in the team: its hidden units [u0, u1) and, for a two-product recurrence,
// its columns [n0, n1) of the N-wide d_t (the same split when N = M, which the diagonal forms'
// direct terms rely on: a thread adds to gh only for units it owns).
struct TeamShare { int nt, id; int64_t u0, u1, n0, n1; };
static TeamShare my_share(int mix, int64_t M, int64_t N, int64_t grain) {
  TeamShare s{team_size(), thread_id(), 0, 0, 0, 0};
  share(M, s.nt, s.id, grain, s.u0, s.u1);
  if (mix != FOLDED) share(N, s.nt, s.id, grain, s.n0, s.n1);
  return s;
}

static IRC_INLINE void team_barrier() {
#ifdef _OPENMP
#pragma omp barrier
#endif
}

// Forward over all T steps. S: (T, B, G·M) gates kept for the backward, or (1, B, G·M) scratch.
// W1: R (G·M×M, folded) or W_g (G·M×N); V: (K×M) the mix's product on h, or empty; vec, hg as mix.
// Win: the layer's stacked input weight ((G+1)·M × N) when the loop itself computes wx_t = x_t Winᵀ
// step by step into wx (each thread its own columns, while they are hot in its cache), or empty
// when wx comes computed. A two-product recurrence is merged: its gates read W_g v_t with
// v_t = x_t + d_t, the cell's own form, so wx holds only the candidate's columns (the gates'
// columns are never read). threads: the team's size; grain: a thread's hidden units come in
// multiples of it.
template <class F, typename T>
void forward_loop(int mix, const at::Tensor& wx, const at::Tensor& x, const at::Tensor& h0,
                  const at::Tensor& out, const at::Tensor& C, const at::Tensor& S, double beta_d,
                  const at::Tensor& W1, const at::Tensor& V, const at::Tensor& vec,
                  const at::Tensor& hg, const at::Tensor& Win, int threads, int64_t grain) {
  const int64_t T_ = x.size(0), B = x.size(1), M = h0.size(1), N = x.size(2);
  constexpr int G = F::G;
  const int64_t GM = G * M, ldw = wx.size(2), K = V.numel() ? V.size(0) : 0;
  const int64_t K1 = mix == FOLDED ? M : N;   // the width of the product to the gates
  const bool store = S.size(0) == T_;
  // wx: (T, B, ·), or one step's scratch when the loop computes it and no backward will read it
  const int64_t wx_step = wx.size(0) == T_ ? B * ldw : 0;
  const T beta = T(beta_d);
  T* wxp = wx.data_ptr<T>();
  const T* xp = x.data_ptr<T>();
  const T* h0p = h0.data_ptr<T>();
  const T* Winp = ptr_or_null<T>(Win);
  T* outp = out.data_ptr<T>();
  T* Cp = F::HAS_C ? C.data_ptr<T>() : nullptr;
  T* Sp = S.data_ptr<T>();
  const T* W1p = W1.data_ptr<T>();
  const T* Vp = ptr_or_null<T>(V);
  const T* vecp = ptr_or_null<T>(vec);
  const T* hgp = ptr_or_null<T>(hg);
  std::vector<T> Y(mix != FOLDED ? B * std::max<int64_t>(K, 1) : 0), D(mix != FOLDED ? B * N : 0);
  // diagonal IRC: d_t = s⊙h_{t-1} needs no product, so each thread forms all of it in its own
  // buffer and the team meets once a step, not twice
  const bool own_d = mix == IRC_DIAG;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) if (threads > 1)
#endif
  {
    const auto [nt, id, u0, u1, n0, n1] = my_share(mix, M, N, grain);
    Panels<T> toGates, onH, fromX;   // h Rᵀ or d W_gᵀ for this thread's gate columns; h Vᵀ for
                                     // its d_t; x_t Winᵀ for its gate and candidate columns
    const bool one_row = B == 1;   // read the weights' rows in place: no transposed copy
    for (int g = 0; g < G; ++g) toGates.add(W1p, 1, K1, K1, g * M + u0, u1 - u0, one_row);
    // merged: W_g x_t is never computed apart, only W_A x_t (here, or before the loop)
    const bool merge = mix != FOLDED;
    if (Winp)
      for (int g = merge ? G : 0; g <= G; ++g)
        fromX.add(Winp, 1, N, N, g * M + u0, u1 - u0, one_row);
    if (K) {
      onH.add(Vp, 1, M, M, n0, n1 - n0, one_row);
      if (mix == IHC_FULL) onH.add(Vp, 1, M, M, N + n0, n1 - n0, one_row);
    }
    std::vector<T> myD(own_d ? B * N : 0);
    T* Dp = own_d ? myD.data() : D.data();
    const T* hp = h0p;
    for (int64_t t = 0; t < T_; ++t) {
      T* P = Sp + (store ? t * B * GM : 0);
      const T* xt = xp + t * B * N;
      T* wt = wxp + t * wx_step;
      if (Winp) fromX.product(B, xt, N, wt, ldw, false);
      if (mix == FOLDED) {
        toGates.product(B, hp, M, P, GM, false);
      } else {
        if (K) onH.product(B, hp, M, Y.data(), K, false);
        mix_elems<T>(mix, own_d ? 0 : n0, own_d ? N : n1, B, N, Y.data(), K, hp, vecp,
                     hgp ? hgp + t * B * N : nullptr, xt, N, Dp);
        if (!own_d) team_barrier();           // d_t complete
        toGates.product(B, Dp, N, P, GM, false);
      }
      T* hn = outp + t * B * M;
      T* c = F::HAS_C ? Cp + t * B * M : nullptr;
      T* cn = F::HAS_C ? Cp + (t + 1) * B * M : nullptr;
      if (merge) fwd_elems<F, T, false>(0, B, u0, u1, M, ldw, P, wt, xt, N, hp, c, hn, cn, beta);
      else fwd_elems<F, T, true>(0, B, u0, u1, M, ldw, P, wt, xt, N, hp, c, hn, cn, beta);
      team_barrier();                         // h_t complete
      hp = hn;
    }
  }
}

// Reverse loop. Fills dWX (δ_t and dL/da_t), dx (SRU's direct term), dh0, dc0 and, for the mix, DD
// (δ_t W_g, which the parameter gradients need); with Win and dXin given, also dXin_t = dWX_t Win
// step by step (the input products' part of dL/dx). Returns Σ dβ.
template <class F, typename T>
double backward_loop(int mix, const at::Tensor& wx, const at::Tensor& x, const at::Tensor& h0,
                     const at::Tensor& out, const at::Tensor& C, const at::Tensor& S,
                     double beta_d, const at::Tensor& dout, const at::Tensor& dcT,
                     const at::Tensor& dWX, const at::Tensor& dx, const at::Tensor& dh0,
                     const at::Tensor& dc0, const at::Tensor& W1, const at::Tensor& V,
                     const at::Tensor& DD, const at::Tensor& c1, const at::Tensor& c2,
                     const at::Tensor& c3, const at::Tensor& Win, const at::Tensor& dXin,
                     int threads, int64_t grain) {
  const int64_t T_ = x.size(0), B = x.size(1), M = h0.size(1), N = x.size(2);
  constexpr int G = F::G;
  const int64_t GM = G * M, ldw = wx.size(2), K = V.numel() ? V.size(0) : 0;
  const T beta = T(beta_d);
  const T* wxp = wx.data_ptr<T>();
  const T* xp = x.data_ptr<T>();
  const T* h0p = h0.data_ptr<T>();
  const T* outp = out.data_ptr<T>();
  const T* Cp = F::HAS_C ? C.data_ptr<T>() : nullptr;
  const T* Sp = S.data_ptr<T>();
  const T* doutp = dout.data_ptr<T>();
  T* dwxp = dWX.data_ptr<T>();
  T* dxp = F::USES_X ? dx.data_ptr<T>() : nullptr;
  const T* W1p = W1.data_ptr<T>();
  const T* Vp = ptr_or_null<T>(V);
  T* DDp = mix != FOLDED ? DD.data_ptr<T>() : nullptr;
  const T* Winp = ptr_or_null<T>(Win);
  T* dXp = dXin.defined() && dXin.numel() ? dXin.data_ptr<T>() : nullptr;
  const int64_t GM1 = GM + M;
  T* gh = dh0.data_ptr<T>();           // carried gradient of h_t, finished as dh0
  T* gc = F::HAS_C ? dc0.data_ptr<T>() : nullptr;
  std::memcpy(gh, doutp + (T_ - 1) * B * M, sizeof(T) * B * M);
  if (F::HAS_C) std::memcpy(gc, dcT.data_ptr<T>(), sizeof(T) * B * M);
  const Coef<T> k1(c1), k2(c2), k3(c3);
  std::vector<T> Z(mix != FOLDED ? B * std::max<int64_t>(K, 1) : 0);
  std::vector<double> dbeta(std::max(threads, 1), 0.0);
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) if (threads > 1)
#endif
  {
    const auto [nt, id, u0, u1, n0, n1] = my_share(mix, M, N, grain);
    // folded: δ_t R for this thread's units (R: G·M × M); mix: δ_t W_g for its d_t columns, then
    // Z V for its units (V: K × M)
    Panels<T> fromGates, throughV;
    if (mix == FOLDED) fromGates.add(W1p, M, 1, GM, u0, u1 - u0);
    else fromGates.add(W1p, N, 1, GM, n0, n1 - n0);
    if (K) throughV.add(Vp, M, 1, K, u0, u1 - u0);
    Panels<T> toX;   // dWX_t Win for this thread's columns of dx_t
    int64_t x0, x1;
    share(N, nt, id, grain, x0, x1);
    if (Winp && dXp) toX.add(Winp, N, 1, GM1, x0, x1 - x0);
    double my_dbeta = 0.0;
    for (int64_t t = T_ - 1; t >= 0; --t) {
      const T* hprev = t > 0 ? outp + (t - 1) * B * M : h0p;
      T* dwt = dwxp + t * B * ldw;
      my_dbeta += bwd_elems<F, T>(0, B, u0, u1, M, ldw, Sp + t * B * GM, wxp + t * B * ldw,
                                  xp + t * B * N, N, hprev, F::HAS_C ? Cp + t * B * M : nullptr,
                                  outp + t * B * M, F::HAS_C ? Cp + (t + 1) * B * M : nullptr,
                                  beta, gh, t > 0 ? doutp + (t - 1) * B * M : nullptr, gc, dwt,
                                  dxp ? dxp + t * B * N : nullptr);
      team_barrier();                         // δ_t complete
      if (dXp) toX.product(B, dwt, ldw, dXp + t * B * N, N, false);
      // gh now holds dout_{t-1} + the direct part of dL/dh_{t-1}; add the recurrent part
      if (mix == FOLDED) {
        fromGates.product(B, dwt, ldw, gh, M, true);           // += δ_t R
      } else {
        T* ddt = DDp + t * B * N;
        fromGates.product(B, dwt, ldw, ddt, N, false);         // DD_t = δ_t W_g
        mix_back_elems<T>(n0, n1, B, N, t, ddt, k1, k2, k3, Z.data(), K, gh);
        if (K) {   // without V (diagonal IRC) a thread's direct term went to its own units only
          team_barrier();                     // Z complete
          throughV.product(B, Z.data(), K, gh, M, true);       // += Z V
        }
      }
    }
    dbeta[id] = my_dbeta;
  }
  double total = 0.0;
  for (double d : dbeta) total += d;
  return total;
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
  if (fam == #name) return forward_loop<Fam_##name, T>(mix, wx, x, h0, out, C, S, beta, W1, V, vec, hg, \
                                                       Win, threads, grain);
#define IRC_BWD_CASE(name) \
  if (fam == #name) return backward_loop<Fam_##name, T>(mix, wx, x, h0, out, C, S, beta, dout, dcT, \
                                                        dWX, dx, dh0, dc0, W1, V, DD, c1, c2, c3, \
                                                        Win, dXin, threads, grain);

template <typename T>
static void forward_t(const std::string& fam, int64_t mix, const at::Tensor& wx, const at::Tensor& x,
                      const at::Tensor& h0, const at::Tensor& out, const at::Tensor& C,
                      const at::Tensor& S, double beta, const at::Tensor& W1, const at::Tensor& V,
                      const at::Tensor& vec, const at::Tensor& hg, const at::Tensor& Win,
                      int threads, int64_t grain) {
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
                         const at::Tensor& c1, const at::Tensor& c2, const at::Tensor& c3,
                         const at::Tensor& Win, const at::Tensor& dXin, int threads,
                         int64_t grain) {
  IRC_FAMILIES(IRC_BWD_CASE)
  TORCH_CHECK(false, "no C++ update for family ", fam);
}

static int team(int64_t threads, int64_t grain) {
  TORCH_CHECK(grain >= 1, "grain must be at least 1");
  return (int)std::max<int64_t>(1, threads);
}

void forward(const std::string& fam, int64_t mix, const at::Tensor& wx, const at::Tensor& x,
             const at::Tensor& h0, const at::Tensor& out, const at::Tensor& C, const at::Tensor& S,
             double beta, const at::Tensor& W1, const at::Tensor& V, const at::Tensor& vec,
             const at::Tensor& hg, const at::Tensor& Win, int64_t threads, int64_t grain) {
  for (auto* t : {&wx, &x, &h0, &out, &C, &S, &W1, &V, &vec, &hg, &Win}) check(*t, "an operand");
  const int nt = team(threads, grain);
  if (common_dtype(wx) == at::kFloat)
    forward_t<float>(fam, mix, wx, x, h0, out, C, S, beta, W1, V, vec, hg, Win, nt, grain);
  else forward_t<double>(fam, mix, wx, x, h0, out, C, S, beta, W1, V, vec, hg, Win, nt, grain);
}

double backward(const std::string& fam, int64_t mix, const at::Tensor& wx, const at::Tensor& x,
                const at::Tensor& h0, const at::Tensor& out, const at::Tensor& C,
                const at::Tensor& S, double beta, const at::Tensor& dout, const at::Tensor& dcT,
                const at::Tensor& dWX, const at::Tensor& dx, const at::Tensor& dh0,
                const at::Tensor& dc0, const at::Tensor& W1, const at::Tensor& V,
                const at::Tensor& DD, const at::Tensor& c1, const at::Tensor& c2,
                const at::Tensor& c3, const at::Tensor& Win, const at::Tensor& dXin,
                int64_t threads, int64_t grain) {
  for (auto* t : {&wx, &x, &h0, &out, &C, &S, &dout, &dcT, &dWX, &dx, &dh0, &dc0, &W1, &V, &DD,
                  &Win, &dXin})
    check(*t, "an operand");
  const int nt = team(threads, grain);
  if (common_dtype(wx) == at::kFloat)
    return backward_t<float>(fam, mix, wx, x, h0, out, C, S, beta, dout, dcT, dWX, dx, dh0, dc0,
                             W1, V, DD, c1, c2, c3, Win, dXin, nt, grain);
  return backward_t<double>(fam, mix, wx, x, h0, out, C, S, beta, dout, dcT, dWX, dx, dh0, dc0,
                            W1, V, DD, c1, c2, c3, Win, dXin, nt, grain);
}

}  // namespace irc

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &irc::forward, "fused IRC/IHC forward loop");
  m.def("backward", &irc::backward, "fused IRC/IHC reverse loop; returns the sum of dβ");
  m.def("mm", &irc::mm, "C = [C +] A·B for 2-D float32/float64 tensors of any strides");
}
