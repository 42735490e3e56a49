"""Triton kernels for the IRC/IHC recurrences, forward and backward, every IRC family.

Imported only through kernels._module() (it imports Triton at the top). The host loops that launch
these kernels are in kernels/launch.py. Notation as rnnbench/fused.py:
R (G·M × M) is the folded recurrence, wx_t = [W_g x_t | W_A x_t] (B × (G+1)M) hoisted, P_t = wx_t[:, :GM]
+ h_{t-1} Rᵀ the gate pre-activations, a_t = wx_t[:, GM:]. Without folding (unfolded IRC, IHC),
P_t = wx_t[:, :GM] + d_t W_gᵀ with the N-wide d_t computed from h_{t-1} first.

Kernels
-------
_fwd_step         grid (B/BLOCK_B, M/BLOCK_M), one launch per step. Each program computes the G gate
                  tiles of its (rows, columns) block as p · W_gᵀ (K-loop over the product input p:
                  h_{t-1} with W = R folded, d_t with W = W_g otherwise) and applies the gate
                  nonlinearities and the family's state update in the epilogue: no gate tensor is
                  written to memory, only h_t (and c_t).
_bwd_step         grid as above, one launch per reverse step. Each program (1) finishes the gradient of
                  h_t for its block: g_t = dout_t + direct_t + (Z V)[:, block] (K-loop; folded Z = δ_{t+1},
                  V = R) + DIR (diagonal feedback), (2) recomputes the gates of step t from the saved
                  product input (the same K-loop as the forward), (3) applies the family's derivative
                  and writes δ_t, d a_t (into dWX), the direct part of dh_{t-1}, dc_{t-1} and (SRU) dx_t.
_mix_step         unfolded IRC / IHC, before _fwd_step: d_t from h_{t-1}, grid (B/BLOCK_B, N/BLOCK_N).
                  One K-loop over M fills up to two accumulators (h U_Vᵀ and h Γᵀ share the h tiles).
_dd_step          unfolded IRC / IHC, before _bwd_step: DD_{t+1} = δ_{t+1} W_g (K-loop over G·M) and the
                  scaled rows Z (and DIR) that carry it on to h_t.
_fwd_persistent   grid (B/BLOCK_B,): one launch for all T steps, folded IRC only. Each program owns
                  BLOCK_B batch rows and all M columns (rows of a batch never interact), loads R once,
                  and keeps h and c in registers across steps; it writes h_t (and c_t).
_bwd_persistent   the reverse loop likewise, δ_{t+1} kept in registers; also writes dh_0 and dc_0.

All arithmetic is float32; tensors may be stored as float32 or bfloat16 (then tl.dot takes bfloat16
operands with a float32 accumulator). Under the interpreter (TRITON_INTERPRET=1), whose bfloat16
tl.dot is wrong in Triton 3.x, dot operands are upcast to float32 first (UPCAST), which is exact.
"""

from __future__ import annotations

import types

import torch
import triton
import triton.language as tl
from triton import knobs
from triton.runtime.interpreter import InterpretedFunction

import kernels

INTERPRET = bool(knobs.runtime.interpret)


# ---------------------------------------------------------------------------------------------------
# device helpers
# ---------------------------------------------------------------------------------------------------

@triton.jit
def _sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def _tanh(x):
    e = tl.exp(-2.0 * tl.abs(x))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -t, t)


@triton.jit
def _dsig(s):
    return s * (1.0 - s)


@triton.jit
def _mm(a, b, acc, PREC: tl.constexpr, UPCAST: tl.constexpr):
    if UPCAST:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision=PREC)
    return tl.dot(a, b, acc, input_precision=PREC)


@triton.jit
def _tile(B, C, BLOCK_B: tl.constexpr, BLOCK_C: tl.constexpr):
    """This program's (BLOCK_B rows × BLOCK_C columns) block of a B × C grid: the row and column
    indices, their masks and the block's mask."""
    rb = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    rc = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mb = rb < B
    mc = rc < C
    return rb, rc, mb, mc, mb[:, None] & mc[None, :]


@triton.jit
def _rows(B, M, BLOCK_B: tl.constexpr, MP: tl.constexpr):
    """A persistent program's BLOCK_B batch rows and all M columns (padded to MP)."""
    rb = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    rm = tl.arange(0, MP)
    mb = rb < B
    mm = rm < M
    return rb, rm, mb, mm, mb[:, None] & mm[None, :]


@triton.jit
def _gate_products(PIN, W, rb, rm, mb, mm, M, K, G: tl.constexpr, BLOCK_B: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, PREC: tl.constexpr,
                   UPCAST: tl.constexpr):
    """acc_g[b, m] = Σ_k p[b, k] W[g·M + m, k] for the block (rb, rm), g < G (up to 3 gates).

    p (B × K) is the product input: h_{t-1} with W = R (K = M) folded, d_t with W = W_g (K = N) else.
    """
    acc0 = tl.zeros((BLOCK_B, BLOCK_M), dtype=tl.float32)
    acc1 = tl.zeros((BLOCK_B, BLOCK_M), dtype=tl.float32)
    acc2 = tl.zeros((BLOCK_B, BLOCK_M), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        mk = rk < K
        p = tl.load(PIN + rb[:, None] * K + rk[None, :], mask=mb[:, None] & mk[None, :], other=0.0)
        tmask = mk[:, None] & mm[None, :]
        w0 = tl.load(W + rm[None, :] * K + rk[:, None], mask=tmask, other=0.0)
        acc0 = _mm(p, w0, acc0, PREC, UPCAST)
        if G > 1:
            w1 = tl.load(W + (M + rm[None, :]) * K + rk[:, None], mask=tmask, other=0.0)
            acc1 = _mm(p, w1, acc1, PREC, UPCAST)
        if G > 2:
            w2 = tl.load(W + (2 * M + rm[None, :]) * K + rk[:, None], mask=tmask, other=0.0)
            acc2 = _mm(p, w2, acc2, PREC, UPCAST)
    return acc0, acc1, acc2


@triton.jit
def _gates(acc0, acc1, acc2, wxp, msk, M, G: tl.constexpr):
    """The epilogue every step shares: σ(recurrent part + hoisted input part) per gate, and the
    candidate a_t, from the hoisted row block at ``wxp`` ([W_g x_t | W_A x_t])."""
    s0 = _sigmoid(acc0 + tl.load(wxp, mask=msk, other=0.0).to(tl.float32))
    s1 = s0
    s2 = s0
    if G > 1:
        s1 = _sigmoid(acc1 + tl.load(wxp + M, mask=msk, other=0.0).to(tl.float32))
    if G > 2:
        s2 = _sigmoid(acc2 + tl.load(wxp + 2 * M, mask=msk, other=0.0).to(tl.float32))
    a = tl.load(wxp + G * M, mask=msk, other=0.0).to(tl.float32)
    return s0, s1, s2, a


@triton.jit
def _gates_on_chip(h, rt0, rt1, rt2, zero, wxp, msk, M, G: tl.constexpr, PREC: tl.constexpr,
                   UPCAST: tl.constexpr):
    """The persistent kernels' gates: R_gᵀ already in registers, so each gate is one dot."""
    acc0 = _mm(h, rt0, zero, PREC, UPCAST)
    acc1 = zero
    acc2 = zero
    if G > 1:
        acc1 = _mm(h, rt1, zero, PREC, UPCAST)
    if G > 2:
        acc2 = _mm(h, rt2, zero, PREC, UPCAST)
    return _gates(acc0, acc1, acc2, wxp, msk, M, G)


def _device(fn):
    """A family's plain-Python update (rnnbench/cells/<family>.py) as a Triton device function: the
    names it calls besides arithmetic (tanh, sigmoid, dsig) bound to Triton's versions."""
    scope = dict(fn.__globals__, tl=tl, tanh=_tanh, sigmoid=_sigmoid, dsig=_dsig)
    return triton.jit(types.FunctionType(fn.__code__, scope, fn.__name__, fn.__defaults__,
                                         fn.__closure__))


_DEVICE: dict = {}


def family_constants(fam) -> dict:
    """What the generic kernels need to know of a family, as constexpr arguments: its update and
    derivative (compiled once per family declaration), its gate count and which tensors it reads."""
    fns = _DEVICE.get(id(fam))
    if fns is None or fns[0] is not fam:
        fns = _DEVICE[id(fam)] = (fam, _device(fam.triton_update), _device(fam.triton_backward))
    return dict(UPDATE=fns[1], UPDATE_BWD=fns[2], G=fam.n_gates, HAS_C=fam.has_c,
                READS_X=fam.reads_x, HAS_BETA=fam.has_beta)


def _forward_constants(fam) -> dict:
    consts = family_constants(fam)
    del consts["UPDATE_BWD"]
    return consts


def _backward_constants(fam) -> dict:
    consts = family_constants(fam)
    del consts["UPDATE"]
    return dict(consts, H_DIRECT=fam.h_direct)


# ---------------------------------------------------------------------------------------------------
# per-step kernels
# ---------------------------------------------------------------------------------------------------

@triton.jit
def _fwd_step(HP, PIN, CP, WX, XT, W, BETA, HN, CN, B, M, K, stride_wx,
              UPDATE: tl.constexpr, G: tl.constexpr, HAS_C: tl.constexpr, READS_X: tl.constexpr,
              HAS_BETA: tl.constexpr,
              BLOCK_B: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
              PREC: tl.constexpr, UPCAST: tl.constexpr):
    rb, rm, mb, mm, msk = _tile(B, M, BLOCK_B, BLOCK_M)
    acc0, acc1, acc2 = _gate_products(PIN, W, rb, rm, mb, mm, M, K, G, BLOCK_B, BLOCK_M, BLOCK_K,
                                      PREC, UPCAST)
    # epilogue: gate nonlinearities and the state update; nothing but the state leaves the chip
    wxp = WX + rb[:, None] * stride_wx + rm[None, :]
    s0, s1, s2, a = _gates(acc0, acc1, acc2, wxp, msk, M, G)
    sp = rb[:, None] * M + rm[None, :]
    h = tl.load(HP + sp, mask=msk, other=0.0).to(tl.float32)
    c = h
    x = h
    beta = 0.0
    if HAS_C:
        c = tl.load(CP + sp, mask=msk, other=0.0).to(tl.float32)
    if READS_X:
        x = tl.load(XT + sp, mask=msk, other=0.0).to(tl.float32)
    if HAS_BETA:
        beta = tl.load(BETA).to(tl.float32)
    hn, cn = UPDATE(s0, s1, s2, a, h, c, x, beta)
    tl.store(HN + sp, hn.to(HN.dtype.element_ty), mask=msk)
    if HAS_C:
        tl.store(CN + sp, cn.to(CN.dtype.element_ty), mask=msk)


@triton.jit
def _bwd_step(ZN, V, DIRN, HP, PIN, W, CP, CN, WX, XT, BETA, DOUT, GHD_IN, GC_IN, DWX, GHD_OUT, GC_OUT,
              DXT, B, M, K, KZ, stride_wx, stride_z,
              UPDATE_BWD: tl.constexpr, G: tl.constexpr, HAS_C: tl.constexpr, READS_X: tl.constexpr,
              HAS_BETA: tl.constexpr, H_DIRECT: tl.constexpr, HAS_NEXT: tl.constexpr, NEXT_PRODUCT: tl.constexpr, NEXT_DIRECT: tl.constexpr,
              BLOCK_B: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
              PREC: tl.constexpr, UPCAST: tl.constexpr):
    rb, rm, mb, mm, msk = _tile(B, M, BLOCK_B, BLOCK_M)
    sp = rb[:, None] * M + rm[None, :]
    # (1) total gradient of h_t for this block: what step t+1 sends back through the recurrence is
    # Σ_k Z[b, k] V[k, m] (folded: Z = δ_{t+1}, V = R) plus, with diagonal feedback, a direct term
    g = tl.load(DOUT + sp, mask=msk, other=0.0).to(tl.float32)
    if HAS_NEXT:
        if H_DIRECT:
            g += tl.load(GHD_IN + sp, mask=msk, other=0.0)
        if NEXT_DIRECT:
            g += tl.load(DIRN + sp, mask=msk, other=0.0)
        if NEXT_PRODUCT:
            acc = tl.zeros((BLOCK_B, BLOCK_M), dtype=tl.float32)
            for j0 in range(0, KZ, BLOCK_K):
                rj = j0 + tl.arange(0, BLOCK_K)
                mj = rj < KZ
                z = tl.load(ZN + rb[:, None] * stride_z + rj[None, :], mask=mb[:, None] & mj[None, :],
                            other=0.0)
                v = tl.load(V + rj[:, None] * M + rm[None, :], mask=mj[:, None] & mm[None, :], other=0.0)
                acc = _mm(z, v, acc, PREC, UPCAST)
            g += acc
    # (2) the gates of step t, recomputed from the product input of step t (h_{t-1} folded)
    acc0, acc1, acc2 = _gate_products(PIN, W, rb, rm, mb, mm, M, K, G, BLOCK_B, BLOCK_M, BLOCK_K,
                                      PREC, UPCAST)
    wxp = WX + rb[:, None] * stride_wx + rm[None, :]
    s0, s1, s2, a = _gates(acc0, acc1, acc2, wxp, msk, M, G)
    h = tl.load(HP + sp, mask=msk, other=0.0).to(tl.float32)
    c = h
    cn = h
    x = h
    gc = g * 0.0
    beta = 0.0
    if HAS_C:
        c = tl.load(CP + sp, mask=msk, other=0.0).to(tl.float32)
        cn = tl.load(CN + sp, mask=msk, other=0.0).to(tl.float32)
        gc = tl.load(GC_IN + sp, mask=msk, other=0.0)
    if READS_X:
        x = tl.load(XT + sp, mask=msk, other=0.0).to(tl.float32)
    if HAS_BETA:
        beta = tl.load(BETA).to(tl.float32)
    # (3) the family's derivative
    d0, d1, d2, da, dh, dc, dx = UPDATE_BWD(g, gc, s0, s1, s2, a, h, c, cn, x, beta)
    dwp = DWX + rb[:, None] * stride_wx + rm[None, :]
    ty = DWX.dtype.element_ty
    tl.store(dwp, d0.to(ty), mask=msk)
    if G > 1:
        tl.store(dwp + M, d1.to(ty), mask=msk)
    if G > 2:
        tl.store(dwp + 2 * M, d2.to(ty), mask=msk)
    tl.store(dwp + G * M, da.to(ty), mask=msk)
    if H_DIRECT:
        tl.store(GHD_OUT + sp, dh, mask=msk)
    if HAS_C:
        tl.store(GC_OUT + sp, dc, mask=msk)
    if READS_X:
        tl.store(DXT + sp, dx.to(DXT.dtype.element_ty), mask=msk)


# ---------------------------------------------------------------------------------------------------
# the two-product recurrences (unfolded IRC, IHC): the N-wide intermediate between h and the gates
# ---------------------------------------------------------------------------------------------------

@triton.jit
def _mix_step(HP, UV, GAM, VEC, HG, XT, D, B, M, N,
              IHC: tl.constexpr, DIAG: tl.constexpr,
              BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
              PREC: tl.constexpr, UPCAST: tl.constexpr):
    """d_t (B × N) from h_{t-1} (B × M): the first product of a step, into a scratch row block.

    IRC: d = VEC⊙(h U_Vᵀ), VEC = α (DIAG: d = VEC⊙h, VEC = α⊙ω_V, N = M).
    IHC: d = σ(h Γᵀ + hg_t)⊙(fb − x_t), fb = h U_Vᵀ (DIAG: fb = VEC⊙h, VEC = ω_V). Γ acts on h here:
    fused_layer turns Γ on the feedback into Γ·U_V (or Γ·diag(ω_V)) before the loop.
    """
    rb, rn, mb, mn, msk = _tile(B, N, BLOCK_B, BLOCK_N)
    fb = tl.zeros((BLOCK_B, BLOCK_N), dtype=tl.float32)
    gp = tl.zeros((BLOCK_B, BLOCK_N), dtype=tl.float32)
    if IHC or not DIAG:
        # one pass over h feeds both accumulators (U_V and Γ share the operand)
        for k0 in range(0, M, BLOCK_K):
            rk = k0 + tl.arange(0, BLOCK_K)
            mk = rk < M
            h = tl.load(HP + rb[:, None] * M + rk[None, :], mask=mb[:, None] & mk[None, :], other=0.0)
            tmask = mk[:, None] & mn[None, :]
            if not DIAG:
                u = tl.load(UV + rn[None, :] * M + rk[:, None], mask=tmask, other=0.0)
                fb = _mm(h, u, fb, PREC, UPCAST)
            if IHC:
                gm = tl.load(GAM + rn[None, :] * M + rk[:, None], mask=tmask, other=0.0)
                gp = _mm(h, gm, gp, PREC, UPCAST)
    vec = tl.load(VEC + rn, mask=mn, other=0.0).to(tl.float32)
    sp = rb[:, None] * N + rn[None, :]
    if DIAG:
        fb = vec[None, :] * tl.load(HP + sp, mask=msk, other=0.0).to(tl.float32)   # N = M
    if IHC:
        g = _sigmoid(gp + tl.load(HG + sp, mask=msk, other=0.0).to(tl.float32))
        d = g * (fb - tl.load(XT + sp, mask=msk, other=0.0).to(tl.float32))
    elif DIAG:
        d = fb
    else:
        d = vec[None, :] * fb
    tl.store(D + sp, d.to(D.dtype.element_ty), mask=msk)


@triton.jit
def _dd_step(DP, WG, VEC, GT, KT, DD, Z, DIR, B, N, GM, stride_dp,
             IHC: tl.constexpr, DIAG: tl.constexpr,
             BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
             PREC: tl.constexpr, UPCAST: tl.constexpr):
    """DD_t = δ_t W_g (B × N), the first product of a reverse step, and the rows the next launch needs.

    Stores DD_t (the parameter gradients use it after the loop) and, from the float32 accumulator,
    Z (the operand of the product with V in _bwd_step) and DIR (a float32 term added to dh_{t-1}
    directly, diagonal feedback only, N = M):
      IRC:        Z = DD⊙α                      (V = U_V)      DIAG: DIR = DD⊙α⊙ω_V
      IHC:        Z = [DD⊙g_t | DD⊙Kgp_t]        (V = [U_V; Γ]) DIAG: Z = DD⊙Kgp_t (V = Γ), DIR = DD⊙g_t⊙ω_V
    with Kgp_t = (fb_t − x_t)⊙σ'(·), the gate's derivative, recomputed by torch before the loop.
    """
    rb, rn, mb, mn, msk = _tile(B, N, BLOCK_B, BLOCK_N)
    acc = tl.zeros((BLOCK_B, BLOCK_N), dtype=tl.float32)
    for j0 in range(0, GM, BLOCK_K):
        rj = j0 + tl.arange(0, BLOCK_K)
        mj = rj < GM
        dp = tl.load(DP + rb[:, None] * stride_dp + rj[None, :], mask=mb[:, None] & mj[None, :], other=0.0)
        w = tl.load(WG + rj[:, None] * N + rn[None, :], mask=mj[:, None] & mn[None, :], other=0.0)
        acc = _mm(dp, w, acc, PREC, UPCAST)
    sp = rb[:, None] * N + rn[None, :]
    ty = DD.dtype.element_ty
    tl.store(DD + sp, acc.to(ty), mask=msk)
    if IHC:
        g = tl.load(GT + sp, mask=msk, other=0.0).to(tl.float32)
        kg = tl.load(KT + sp, mask=msk, other=0.0).to(tl.float32)
        if DIAG:
            vec = tl.load(VEC + rn, mask=mn, other=0.0).to(tl.float32)
            tl.store(DIR + sp, acc * g * vec[None, :], mask=msk)
            tl.store(Z + sp, (acc * kg).to(ty), mask=msk)
        else:
            zp = Z + rb[:, None] * (2 * N) + rn[None, :]
            tl.store(zp, (acc * g).to(ty), mask=msk)
            tl.store(zp + N, (acc * kg).to(ty), mask=msk)
    else:
        vec = tl.load(VEC + rn, mask=mn, other=0.0).to(tl.float32)
        if DIAG:
            tl.store(DIR + sp, acc * vec[None, :], mask=msk)
        else:
            tl.store(Z + sp, (acc * vec[None, :]).to(ty), mask=msk)


# ---------------------------------------------------------------------------------------------------
# persistent kernels: the whole sequence in one launch (small M)
# ---------------------------------------------------------------------------------------------------

@triton.jit
def _load_rt(R, g: tl.constexpr, M, rk, rm, mk, mm):
    """R_gᵀ as a (MP, MP) block: [k, m] = R[g·M + m, k]."""
    return tl.load(R + (g * M + rm[None, :]) * M + rk[:, None], mask=mk[:, None] & mm[None, :], other=0.0)


@triton.jit
def _load_r(R, g: tl.constexpr, M, rj, rm, mj, mm):
    """R_g as a (MP, MP) block: [j, m] = R[g·M + j, m]."""
    return tl.load(R + (g * M + rj[:, None]) * M + rm[None, :], mask=mj[:, None] & mm[None, :], other=0.0)


@triton.jit
def _fwd_persistent(H0, C0, WX, X, R, BETA, OUT, C, T, B, M, stride_wx,
                    UPDATE: tl.constexpr, G: tl.constexpr, HAS_C: tl.constexpr,
                    READS_X: tl.constexpr, HAS_BETA: tl.constexpr,
                    BLOCK_B: tl.constexpr, MP: tl.constexpr,
                    PREC: tl.constexpr, UPCAST: tl.constexpr):
    rb, rm, mb, mm, msk = _rows(B, M, BLOCK_B, MP)
    sp = rb[:, None] * M + rm[None, :]
    ty = OUT.dtype.element_ty
    rt0 = _load_rt(R, 0, M, rm, rm, mm, mm)
    rt1 = rt0
    rt2 = rt0
    if G > 1:
        rt1 = _load_rt(R, 1, M, rm, rm, mm, mm)
    if G > 2:
        rt2 = _load_rt(R, 2, M, rm, rm, mm, mm)
    h = tl.load(H0 + sp, mask=msk, other=0.0)           # storage dtype: the dot operand
    c = h.to(tl.float32)
    if HAS_C:
        c = tl.load(C0 + sp, mask=msk, other=0.0).to(tl.float32)
    beta = 0.0
    if HAS_BETA:
        beta = tl.load(BETA).to(tl.float32)
    zero = tl.zeros((BLOCK_B, MP), dtype=tl.float32)
    for t in range(0, T):
        wxp = WX + t * B * stride_wx + rb[:, None] * stride_wx + rm[None, :]
        s0, s1, s2, a = _gates_on_chip(h, rt0, rt1, rt2, zero, wxp, msk, M, G, PREC, UPCAST)
        x = c
        if READS_X:
            x = tl.load(X + t * B * M + sp, mask=msk, other=0.0).to(tl.float32)
        hn, cn = UPDATE(s0, s1, s2, a, h.to(tl.float32), c, x, beta)
        hn = tl.where(msk, hn, 0.0).to(ty)               # rounded to storage, as the backward sees it
        tl.store(OUT + t * B * M + sp, hn, mask=msk)
        if HAS_C:
            cn = tl.where(msk, cn, 0.0).to(ty)
            tl.store(C + (t + 1) * B * M + sp, cn, mask=msk)
            c = cn.to(tl.float32)
        h = hn


@triton.jit
def _bwd_persistent(R, HPREV, C, WX, X, BETA, DOUT, DCT, DWX, DX, DH0, DC0, T, B, M, stride_wx,
                    UPDATE_BWD: tl.constexpr, G: tl.constexpr, HAS_C: tl.constexpr,
                    READS_X: tl.constexpr, HAS_BETA: tl.constexpr,
                    H_DIRECT: tl.constexpr, BLOCK_B: tl.constexpr, MP: tl.constexpr,
                    PREC: tl.constexpr, UPCAST: tl.constexpr):
    rb, rm, mb, mm, msk = _rows(B, M, BLOCK_B, MP)
    sp = rb[:, None] * M + rm[None, :]
    ty = DWX.dtype.element_ty
    rt0 = _load_rt(R, 0, M, rm, rm, mm, mm)
    r0 = _load_r(R, 0, M, rm, rm, mm, mm)
    rt1 = rt0
    rt2 = rt0
    r1 = r0
    r2 = r0
    if G > 1:
        rt1 = _load_rt(R, 1, M, rm, rm, mm, mm)
        r1 = _load_r(R, 1, M, rm, rm, mm, mm)
    if G > 2:
        rt2 = _load_rt(R, 2, M, rm, rm, mm, mm)
        r2 = _load_r(R, 2, M, rm, rm, mm, mm)
    beta = 0.0
    if HAS_BETA:
        beta = tl.load(BETA).to(tl.float32)
    zero = tl.zeros((BLOCK_B, MP), dtype=tl.float32)
    gc = zero
    if HAS_C:
        gc = tl.load(DCT + sp, mask=msk, other=0.0).to(tl.float32)
    ghd = zero
    # δ_{t+1} of the previous iteration, in the storage dtype (as the step kernels read it back)
    p0 = zero.to(ty)
    p1 = p0
    p2 = p0
    for it in range(0, T):
        t = T - 1 - it
        g = tl.load(DOUT + t * B * M + sp, mask=msk, other=0.0).to(tl.float32) + ghd
        g = _mm(p0, r0, g, PREC, UPCAST)
        if G > 1:
            g = _mm(p1, r1, g, PREC, UPCAST)
        if G > 2:
            g = _mm(p2, r2, g, PREC, UPCAST)
        hp = tl.load(HPREV + t * B * M + sp, mask=msk, other=0.0)
        wxp = WX + t * B * stride_wx + rb[:, None] * stride_wx + rm[None, :]
        s0, s1, s2, a = _gates_on_chip(hp, rt0, rt1, rt2, zero, wxp, msk, M, G, PREC, UPCAST)
        c = zero
        cn = zero
        x = zero
        if HAS_C:
            c = tl.load(C + t * B * M + sp, mask=msk, other=0.0).to(tl.float32)
            cn = tl.load(C + (t + 1) * B * M + sp, mask=msk, other=0.0).to(tl.float32)
        if READS_X:
            x = tl.load(X + t * B * M + sp, mask=msk, other=0.0).to(tl.float32)
        d0, d1, d2, da, dh, dc, dx = UPDATE_BWD(g, gc, s0, s1, s2, a, hp.to(tl.float32), c, cn, x,
                                                beta)
        d0 = tl.where(msk, d0, 0.0)
        d1 = tl.where(msk, d1, 0.0)
        d2 = tl.where(msk, d2, 0.0)
        dwp = DWX + t * B * stride_wx + rb[:, None] * stride_wx + rm[None, :]
        p0 = d0.to(ty)
        tl.store(dwp, p0, mask=msk)
        if G > 1:
            p1 = d1.to(ty)
            tl.store(dwp + M, p1, mask=msk)
        if G > 2:
            p2 = d2.to(ty)
            tl.store(dwp + 2 * M, p2, mask=msk)
        tl.store(dwp + G * M, da.to(ty), mask=msk)
        if READS_X:
            tl.store(DX + t * B * M + sp, dx.to(DX.dtype.element_ty), mask=msk)
        if H_DIRECT:
            ghd = tl.where(msk, dh, 0.0)
        if HAS_C:
            gc = tl.where(msk, dc, 0.0)
    # dh_0 = direct part + δ_0 R
    dh0 = _mm(p0, r0, ghd, PREC, UPCAST)
    if G > 1:
        dh0 = _mm(p1, r1, dh0, PREC, UPCAST)
    if G > 2:
        dh0 = _mm(p2, r2, dh0, PREC, UPCAST)
    tl.store(DH0 + sp, dh0, mask=msk)
    if HAS_C:
        tl.store(DC0 + sp, gc, mask=msk)


# ---------------------------------------------------------------------------------------------------
# configurations: autotuned on the GPU (keyed on the sizes and the cell, never on B or T); one under
# the interpreter, small blocks so that tiny test shapes still span several blocks
# ---------------------------------------------------------------------------------------------------

_INTERP_STEP = dict(BLOCK_B=4, BLOCK_M=8, BLOCK_K=8)
_INTERP_MIX = dict(BLOCK_B=4, BLOCK_N=8, BLOCK_K=8)
_INTERP_PERSISTENT_BLOCK_B = 2


# Chosen by compiling every kernel for sm_90 here (no GPU): with these, IRC-LSTM (G = 3, the most
# registers) compiles without spills in the step kernels (small spills at BLOCK_B = 64), fp32 and bf16.
# _mix_step (two accumulators) and _dd_step (one) use the same tiles over (B, N).
_STEP_CONFIGS = [(16, 32, 32, 4), (16, 64, 32, 8), (32, 64, 32, 8), (64, 64, 32, 8)]
_PERSISTENT_CONFIGS = [(bb, w) for bb in (16, 32, 64) for w in (2, 4, 8)]


def _step_configs(col="BLOCK_M"):
    return [triton.Config({"BLOCK_B": bb, col: bm, "BLOCK_K": bk}, num_warps=w)
            for bb, bm, bk, w in _STEP_CONFIGS]


def _persistent_configs():
    return [triton.Config(dict(BLOCK_B=bb), num_warps=w) for bb, w in _PERSISTENT_CONFIGS]


def _prune_persistent(configs, named_args, **kwargs):
    """Keep configs with at least 4 elements of a (BLOCK_B, MP) block per thread. Fewer crashes
    LLVM's SLP vectorizer (an assertion, which aborts the process) when compiling the IRC-LSTM
    persistent backward with fp32 "ieee" dots in Triton 3.9; seen when compiling for sm_90 here."""
    mp = kwargs.get("MP", named_args.get("MP"))
    keep = [c for c in configs if c.kwargs["BLOCK_B"] * mp >= 4 * 32 * c.num_warps]
    return keep or [min(configs, key=lambda c: c.num_warps)]


if INTERPRET:
    fwd_step, bwd_step = _fwd_step, _bwd_step
    mix_step, dd_step = _mix_step, _dd_step
    fwd_persistent, bwd_persistent = _fwd_persistent, _bwd_persistent
else:  # pragma: no cover - needs a GPU
    # every kernel is idempotent (inputs and outputs never alias), so the autotuner may rerun it.
    # K (product input width) and KZ (width of the backward's product operand) tell the folded path
    # (K = M, KZ = G·M) from the two-product ones (K = N, KZ = N or 2N) at equal M.
    _key = ["M", "UPDATE", "G"]
    _prune = {"early_config_prune": _prune_persistent}
    fwd_step = triton.autotune(_step_configs(), key=["M", "K", "UPDATE", "G"])(_fwd_step)
    bwd_step = triton.autotune(_step_configs(), key=["M", "K", "KZ", "UPDATE_BWD", "G"])(_bwd_step)
    mix_step = triton.autotune(_step_configs("BLOCK_N"), key=["M", "N", "IHC", "DIAG"])(_mix_step)
    dd_step = triton.autotune(_step_configs("BLOCK_N"), key=["N", "GM", "IHC", "DIAG"])(_dd_step)
    fwd_persistent = triton.autotune(_persistent_configs(), key=_key, prune_configs_by=_prune)(_fwd_persistent)
    bwd_persistent = triton.autotune(_persistent_configs(), key=["M", "UPDATE_BWD", "G"],
                                     prune_configs_by=_prune)(_bwd_persistent)


def kernels_are_interpreted() -> bool:
    return isinstance(_fwd_step, InterpretedFunction)


def _precision():
    if INTERPRET:
        return "ieee"
    prec = kernels.FP32_PRECISION
    if prec is None:  # follow torch's float32 matmul setting
        prec = "tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee"
    return prec


def _dot_constants() -> dict:
    return dict(PREC=_precision(), UPCAST=INTERPRET)
