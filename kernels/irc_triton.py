"""Triton kernels for the folded IRC step, forward and backward, every IRC family.

Imported only through kernels._module() (it imports Triton at the top). Notation as rnnbench/fused.py:
R (G·M × M) is the folded recurrence, wx_t = [W_g x_t | W_A x_t] (B × (G+1)M) hoisted, P_t = wx_t[:, :GM]
+ h_{t-1} Rᵀ the gate pre-activations, a_t = wx_t[:, GM:].

Kernels
-------
_fwd_step         grid (B/BLOCK_B, M/BLOCK_M), one launch per step. Each program computes the G gate
                  tiles of its (rows, columns) block as h_{t-1} · R_gᵀ (K-loop over M) and applies the
                  gate nonlinearities and the family's state update in the epilogue: no gate tensor is
                  written to memory, only h_t (and c_t).
_bwd_step         grid as above, one launch per reverse step. Each program (1) finishes the gradient of
                  h_t for its block: g_t = dout_t + direct_t + (δ_{t+1} R)[:, block] (K-loop over G·M),
                  (2) recomputes the gates of step t from the saved h_{t-1} (the same K-loop as the
                  forward), (3) applies the family's derivative and writes δ_t, d a_t (into dWX), the
                  direct part of dh_{t-1}, dc_{t-1} and (SRU) dx_t.
_fwd_persistent   grid (B/BLOCK_B,): one launch for all T steps. Each program owns BLOCK_B batch rows and
                  all M columns (rows of a batch never interact), loads R once, and keeps h and c in
                  registers across steps; it writes h_t (and c_t) for the backward and the output.
_bwd_persistent   the reverse loop likewise, δ_{t+1} kept in registers; also writes dh_0 and dc_0.

All arithmetic is float32; tensors may be stored as float32 or bfloat16 (then tl.dot takes bfloat16
operands with a float32 accumulator). Under the interpreter (TRITON_INTERPRET=1), whose bfloat16
tl.dot is wrong in Triton 3.x, dot operands are upcast to float32 first (UPCAST), which is exact.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl
from triton import knobs

INTERPRET = bool(knobs.runtime.interpret)

FAMILY_CODE = {"gru": 0, "lstm": 1, "sru": 2, "tlstm": 3, "fastgrnn": 4, "pru": 5}
HAS_C = {"lstm", "sru", "tlstm"}
#: families whose h_{t-1} also enters the update directly (not only through the gates)
H_DIRECT = {"gru", "fastgrnn", "pru"}


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
def _mm(a, b, acc, PREC: tl.constexpr, UPCAST: tl.constexpr):
    if UPCAST:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision=PREC)
    return tl.dot(a, b, acc, input_precision=PREC)


@triton.jit
def _gate_products(HP, R, rb, rm, mb, mm, M, G: tl.constexpr, BLOCK_B: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, PREC: tl.constexpr,
                   UPCAST: tl.constexpr):
    """acc_g[b, m] = Σ_k h[b, k] R[g·M + m, k] for the block (rb, rm), g < G (up to 3 gates)."""
    acc0 = tl.zeros((BLOCK_B, BLOCK_M), dtype=tl.float32)
    acc1 = tl.zeros((BLOCK_B, BLOCK_M), dtype=tl.float32)
    acc2 = tl.zeros((BLOCK_B, BLOCK_M), dtype=tl.float32)
    for k0 in range(0, M, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        mk = rk < M
        h = tl.load(HP + rb[:, None] * M + rk[None, :], mask=mb[:, None] & mk[None, :], other=0.0)
        tmask = mk[:, None] & mm[None, :]
        r0 = tl.load(R + rm[None, :] * M + rk[:, None], mask=tmask, other=0.0)
        acc0 = _mm(h, r0, acc0, PREC, UPCAST)
        if G > 1:
            r1 = tl.load(R + (M + rm[None, :]) * M + rk[:, None], mask=tmask, other=0.0)
            acc1 = _mm(h, r1, acc1, PREC, UPCAST)
        if G > 2:
            r2 = tl.load(R + (2 * M + rm[None, :]) * M + rk[:, None], mask=tmask, other=0.0)
            acc2 = _mm(h, r2, acc2, PREC, UPCAST)
    return acc0, acc1, acc2


@triton.jit
def _update(FAMILY: tl.constexpr, s0, s1, s2, a, h, c, x, beta):
    """The state update from the gates (float32 blocks): returns (h_t, c_t)."""
    hn = h
    cn = c
    if FAMILY == 0:      # GRU: h' = h + i (r a − h)
        hn = h + s0 * (s1 * a - h)
    elif FAMILY == 1:    # LSTM: c' = f c + i a; h' = o tanh(c')
        cn = s0 * c + s1 * a
        hn = s2 * _tanh(cn)
    elif FAMILY == 2:    # SRU: c' = a + f (c − a); h' = x + p (c' − x)
        cn = a + s0 * (c - a)
        hn = x + s1 * (cn - x)
    elif FAMILY == 3:    # T-LSTM: c' = a + f (c − a); h' = o c'
        cn = a + s0 * (c - a)
        hn = s1 * cn
    elif FAMILY == 4:    # FastGRNN: h' = β a + f (h − β a)
        ba = beta * a
        hn = ba + s0 * (h - ba)
    else:                # PRU: s' = a + c (s − a)
        hn = a + s0 * (h - a)
    return hn, cn


@triton.jit
def _update_backward(FAMILY: tl.constexpr, g, gc, s0, s1, s2, a, h, c, cn, x, beta):
    """Derivative of the update. g: dL/dh_t (total), gc: dL/dc_t from step t+1.

    Returns (δ_0, δ_1, δ_2) (gate pre-activation gradients), d a_t, direct dh_{t-1}, dc_{t-1}, dx_t.
    """
    zero = g * 0.0
    d0 = zero
    d1 = zero
    d2 = zero
    dh = zero
    dc = zero
    dx = zero
    if FAMILY == 0:      # GRU
        d0 = g * (s1 * a - h) * s0 * (1.0 - s0)
        d1 = g * s0 * a * s1 * (1.0 - s1)
        da = g * s0 * s1
        dh = g * (1.0 - s0)
    elif FAMILY == 1:    # LSTM
        tc = _tanh(cn)
        q = gc + g * s2 * (1.0 - tc * tc)
        d0 = q * c * s0 * (1.0 - s0)
        d1 = q * a * s1 * (1.0 - s1)
        d2 = g * tc * s2 * (1.0 - s2)
        da = q * s1
        dc = q * s0
    elif FAMILY == 2:    # SRU
        q = gc + g * s1
        d0 = q * (c - a) * s0 * (1.0 - s0)
        d1 = g * (cn - x) * s1 * (1.0 - s1)
        da = q * (1.0 - s0)
        dc = q * s0
        dx = g * (1.0 - s1)
    elif FAMILY == 3:    # T-LSTM
        q = gc + g * s1
        d0 = q * (c - a) * s0 * (1.0 - s0)
        d1 = g * cn * s1 * (1.0 - s1)
        da = q * (1.0 - s0)
        dc = q * s0
    elif FAMILY == 4:    # FastGRNN
        d0 = g * (h - beta * a) * s0 * (1.0 - s0)
        da = g * beta * (1.0 - s0)
        dh = g * s0
    else:                # PRU
        d0 = g * (h - a) * s0 * (1.0 - s0)
        da = g * (1.0 - s0)
        dh = g * s0
    return d0, d1, d2, da, dh, dc, dx


# ---------------------------------------------------------------------------------------------------
# per-step kernels
# ---------------------------------------------------------------------------------------------------

@triton.jit
def _fwd_step(HP, CP, WX, XT, R, BETA, HN, CN, B, M, stride_wx,
              FAMILY: tl.constexpr, G: tl.constexpr, HAS_C: tl.constexpr,
              BLOCK_B: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
              PREC: tl.constexpr, UPCAST: tl.constexpr):
    pid_b = tl.program_id(0)
    pid_m = tl.program_id(1)
    rb = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    mb = rb < B
    mm = rm < M
    msk = mb[:, None] & mm[None, :]
    acc0, acc1, acc2 = _gate_products(HP, R, rb, rm, mb, mm, M, G, BLOCK_B, BLOCK_M, BLOCK_K,
                                      PREC, UPCAST)
    # epilogue: gate nonlinearities and the state update; nothing but the state leaves the chip
    wxp = WX + rb[:, None] * stride_wx + rm[None, :]
    s0 = _sigmoid(acc0 + tl.load(wxp, mask=msk, other=0.0).to(tl.float32))
    s1 = s0
    s2 = s0
    if G > 1:
        s1 = _sigmoid(acc1 + tl.load(wxp + M, mask=msk, other=0.0).to(tl.float32))
    if G > 2:
        s2 = _sigmoid(acc2 + tl.load(wxp + 2 * M, mask=msk, other=0.0).to(tl.float32))
    a = tl.load(wxp + G * M, mask=msk, other=0.0).to(tl.float32)
    sp = rb[:, None] * M + rm[None, :]
    h = tl.load(HP + sp, mask=msk, other=0.0).to(tl.float32)
    c = h
    x = h
    beta = 0.0
    if HAS_C:
        c = tl.load(CP + sp, mask=msk, other=0.0).to(tl.float32)
    if FAMILY == 2:
        x = tl.load(XT + sp, mask=msk, other=0.0).to(tl.float32)
    if FAMILY == 4:
        beta = tl.load(BETA).to(tl.float32)
    hn, cn = _update(FAMILY, s0, s1, s2, a, h, c, x, beta)
    tl.store(HN + sp, hn.to(HN.dtype.element_ty), mask=msk)
    if HAS_C:
        tl.store(CN + sp, cn.to(CN.dtype.element_ty), mask=msk)


@triton.jit
def _bwd_step(DPN, R, HP, CP, CN, WX, XT, BETA, DOUT, GHD_IN, GC_IN, DWX, GHD_OUT, GC_OUT, DXT,
              B, M, stride_wx,
              FAMILY: tl.constexpr, G: tl.constexpr, HAS_C: tl.constexpr, H_DIRECT: tl.constexpr,
              HAS_NEXT: tl.constexpr,
              BLOCK_B: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
              PREC: tl.constexpr, UPCAST: tl.constexpr):
    pid_b = tl.program_id(0)
    pid_m = tl.program_id(1)
    rb = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    mb = rb < B
    mm = rm < M
    msk = mb[:, None] & mm[None, :]
    sp = rb[:, None] * M + rm[None, :]
    # (1) total gradient of h_t for this block
    g = tl.load(DOUT + sp, mask=msk, other=0.0).to(tl.float32)
    if HAS_NEXT:
        if H_DIRECT:
            g += tl.load(GHD_IN + sp, mask=msk, other=0.0)
        acc = tl.zeros((BLOCK_B, BLOCK_M), dtype=tl.float32)
        GM = G * M
        for j0 in range(0, GM, BLOCK_K):
            rj = j0 + tl.arange(0, BLOCK_K)
            mj = rj < GM
            dp = tl.load(DPN + rb[:, None] * stride_wx + rj[None, :], mask=mb[:, None] & mj[None, :],
                         other=0.0)
            r = tl.load(R + rj[:, None] * M + rm[None, :], mask=mj[:, None] & mm[None, :], other=0.0)
            acc = _mm(dp, r, acc, PREC, UPCAST)
        g += acc
    # (2) the gates of step t, recomputed from h_{t-1}
    acc0, acc1, acc2 = _gate_products(HP, R, rb, rm, mb, mm, M, G, BLOCK_B, BLOCK_M, BLOCK_K,
                                      PREC, UPCAST)
    wxp = WX + rb[:, None] * stride_wx + rm[None, :]
    s0 = _sigmoid(acc0 + tl.load(wxp, mask=msk, other=0.0).to(tl.float32))
    s1 = s0
    s2 = s0
    if G > 1:
        s1 = _sigmoid(acc1 + tl.load(wxp + M, mask=msk, other=0.0).to(tl.float32))
    if G > 2:
        s2 = _sigmoid(acc2 + tl.load(wxp + 2 * M, mask=msk, other=0.0).to(tl.float32))
    a = tl.load(wxp + G * M, mask=msk, other=0.0).to(tl.float32)
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
    if FAMILY == 2:
        x = tl.load(XT + sp, mask=msk, other=0.0).to(tl.float32)
    if FAMILY == 4:
        beta = tl.load(BETA).to(tl.float32)
    # (3) the family's derivative
    d0, d1, d2, da, dh, dc, dx = _update_backward(FAMILY, g, gc, s0, s1, s2, a, h, c, cn, x, beta)
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
    if FAMILY == 2:
        tl.store(DXT + sp, dx.to(DXT.dtype.element_ty), mask=msk)


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
                    FAMILY: tl.constexpr, G: tl.constexpr, HAS_C: tl.constexpr,
                    BLOCK_B: tl.constexpr, MP: tl.constexpr,
                    PREC: tl.constexpr, UPCAST: tl.constexpr):
    pid_b = tl.program_id(0)
    rb = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
    rm = tl.arange(0, MP)
    mb = rb < B
    mm = rm < M
    msk = mb[:, None] & mm[None, :]
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
    if FAMILY == 4:
        beta = tl.load(BETA).to(tl.float32)
    zero = tl.zeros((BLOCK_B, MP), dtype=tl.float32)
    for t in range(0, T):
        wxp = WX + t * B * stride_wx + rb[:, None] * stride_wx + rm[None, :]
        s0 = _sigmoid(_mm(h, rt0, zero, PREC, UPCAST) + tl.load(wxp, mask=msk, other=0.0).to(tl.float32))
        s1 = s0
        s2 = s0
        if G > 1:
            s1 = _sigmoid(_mm(h, rt1, zero, PREC, UPCAST)
                          + tl.load(wxp + M, mask=msk, other=0.0).to(tl.float32))
        if G > 2:
            s2 = _sigmoid(_mm(h, rt2, zero, PREC, UPCAST)
                          + tl.load(wxp + 2 * M, mask=msk, other=0.0).to(tl.float32))
        a = tl.load(wxp + G * M, mask=msk, other=0.0).to(tl.float32)
        x = c
        if FAMILY == 2:
            x = tl.load(X + t * B * M + sp, mask=msk, other=0.0).to(tl.float32)
        hn, cn = _update(FAMILY, s0, s1, s2, a, h.to(tl.float32), c, x, beta)
        hn = tl.where(msk, hn, 0.0).to(ty)               # rounded to storage, as the backward sees it
        tl.store(OUT + t * B * M + sp, hn, mask=msk)
        if HAS_C:
            cn = tl.where(msk, cn, 0.0).to(ty)
            tl.store(C + (t + 1) * B * M + sp, cn, mask=msk)
            c = cn.to(tl.float32)
        h = hn


@triton.jit
def _bwd_persistent(R, HPREV, C, WX, X, BETA, DOUT, DCT, DWX, DX, DH0, DC0, T, B, M, stride_wx,
                    FAMILY: tl.constexpr, G: tl.constexpr, HAS_C: tl.constexpr,
                    H_DIRECT: tl.constexpr, BLOCK_B: tl.constexpr, MP: tl.constexpr,
                    PREC: tl.constexpr, UPCAST: tl.constexpr):
    pid_b = tl.program_id(0)
    rb = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
    rm = tl.arange(0, MP)
    mb = rb < B
    mm = rm < M
    msk = mb[:, None] & mm[None, :]
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
    if FAMILY == 4:
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
        s0 = _sigmoid(_mm(hp, rt0, zero, PREC, UPCAST) + tl.load(wxp, mask=msk, other=0.0).to(tl.float32))
        s1 = s0
        s2 = s0
        if G > 1:
            s1 = _sigmoid(_mm(hp, rt1, zero, PREC, UPCAST)
                          + tl.load(wxp + M, mask=msk, other=0.0).to(tl.float32))
        if G > 2:
            s2 = _sigmoid(_mm(hp, rt2, zero, PREC, UPCAST)
                          + tl.load(wxp + 2 * M, mask=msk, other=0.0).to(tl.float32))
        a = tl.load(wxp + G * M, mask=msk, other=0.0).to(tl.float32)
        c = zero
        cn = zero
        x = zero
        if HAS_C:
            c = tl.load(C + t * B * M + sp, mask=msk, other=0.0).to(tl.float32)
            cn = tl.load(C + (t + 1) * B * M + sp, mask=msk, other=0.0).to(tl.float32)
        if FAMILY == 2:
            x = tl.load(X + t * B * M + sp, mask=msk, other=0.0).to(tl.float32)
        d0, d1, d2, da, dh, dc, dx = _update_backward(FAMILY, g, gc, s0, s1, s2, a, hp.to(tl.float32),
                                                      c, cn, x, beta)
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
        if FAMILY == 2:
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
# configurations: autotuned on the GPU (keyed on M and the cell, never on B or T); one under the
# interpreter, small blocks so that tiny test shapes still span several blocks
# ---------------------------------------------------------------------------------------------------

_INTERP_STEP = dict(BLOCK_B=4, BLOCK_M=8, BLOCK_K=8)
_INTERP_PERSISTENT_BLOCK_B = 2


# Chosen by compiling every kernel for sm_90 here (no GPU): with these, IRC-LSTM (G = 3, the most
# registers) compiles without spills in the step kernels (small spills at BLOCK_B = 64), fp32 and bf16.
_STEP_CONFIGS = [(16, 32, 32, 4), (16, 64, 32, 8), (32, 64, 32, 8), (64, 64, 32, 8)]
_PERSISTENT_CONFIGS = [(bb, w) for bb in (16, 32, 64) for w in (2, 4, 8)]


def _step_configs():
    return [triton.Config(dict(BLOCK_B=bb, BLOCK_M=bm, BLOCK_K=bk), num_warps=w)
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
    fwd_persistent, bwd_persistent = _fwd_persistent, _bwd_persistent
else:  # pragma: no cover - needs a GPU
    # every kernel is idempotent (inputs and outputs never alias), so the autotuner may rerun it
    _key = ["M", "FAMILY", "G"]
    _prune = {"early_config_prune": _prune_persistent}
    fwd_step = triton.autotune(_step_configs(), key=_key)(_fwd_step)
    bwd_step = triton.autotune(_step_configs(), key=_key)(_bwd_step)
    fwd_persistent = triton.autotune(_persistent_configs(), key=_key, prune_configs_by=_prune)(_fwd_persistent)
    bwd_persistent = triton.autotune(_persistent_configs(), key=_key, prune_configs_by=_prune)(_bwd_persistent)


def kernels_are_interpreted() -> bool:
    from triton.runtime.interpreter import InterpretedFunction
    return isinstance(_fwd_step, InterpretedFunction)


def _common(family: str, wx, M):
    G = wx.shape[-1] // M - 1
    prec = "ieee"
    if not INTERPRET:
        import kernels
        prec = kernels.FP32_PRECISION
        if prec is None:  # follow torch's float32 matmul setting
            prec = "tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee"
    return dict(FAMILY=FAMILY_CODE[family], G=G, PREC=prec, UPCAST=INTERPRET), G


def _step_grid(B, M):
    if INTERPRET:
        return (triton.cdiv(B, _INTERP_STEP["BLOCK_B"]), triton.cdiv(M, _INTERP_STEP["BLOCK_M"]))
    return lambda meta: (triton.cdiv(B, meta["BLOCK_B"]), triton.cdiv(M, meta["BLOCK_M"]))


def _persistent_grid(B):
    if INTERPRET:
        return (triton.cdiv(B, _INTERP_PERSISTENT_BLOCK_B),)
    return lambda meta: (triton.cdiv(B, meta["BLOCK_B"]),)


def _check(*tensors):
    for t in tensors:
        if t is not None and not t.is_contiguous():
            raise ValueError("kernels need contiguous tensors")


def _poison_on() -> bool:
    return os.environ.get("RNNBENCH_POISON", "") not in ("", "0")


def _poisoned(like, *shape, dtype=None):
    """A new output buffer; NaN-filled under RNNBENCH_POISON=1 so an element never written shows."""
    t = torch.empty(*shape, dtype=dtype or like.dtype, device=like.device)
    if _poison_on():
        t.fill_(float("nan"))
    return t


# ---------------------------------------------------------------------------------------------------
# host entry points
# ---------------------------------------------------------------------------------------------------

def irc_forward(family, R, wx, x, h0, C, beta, out, *, mode="step"):
    """Forward time loop of one IRC layer. Fills out[t] = h_t and (c families) C[t+1] = c_t.

    R (GM, M), wx (T, B, (G+1)M), x (T, B, M) (read by SRU only), h0 (B, M), C (T+1, B, M) with C[0] =
    c_0 or None, beta (1,) or None, out (T, B, M). All contiguous, same dtype and device.
    """
    T, B, W1 = wx.shape
    M = h0.shape[-1]
    h0 = h0.contiguous()
    _check(R, wx, x, C, out)
    meta, G = _common(family, wx, M)
    has_c = family in HAS_C
    dummy = wx
    Cp = C if has_c else dummy
    bp = beta if beta is not None else dummy
    xp = x if family == "sru" else dummy
    if mode == "persistent":
        extra = {} if not INTERPRET else dict(BLOCK_B=_INTERP_PERSISTENT_BLOCK_B)
        MP = max(16, triton.next_power_of_2(M))
        fwd_persistent[_persistent_grid(B)](h0, Cp, wx, xp, R, bp, out, Cp, T, B, M, W1,
                                            HAS_C=has_c, MP=MP, **meta, **extra)
        return
    extra = _INTERP_STEP if INTERPRET else {}
    grid = _step_grid(B, M)
    for t in range(T):
        hp = h0 if t == 0 else out[t - 1]
        fwd_step[grid](hp, Cp[t] if has_c else dummy, wx[t], xp[t] if family == "sru" else dummy,
                       R, bp, out[t], Cp[t + 1] if has_c else dummy, B, M, W1,
                       HAS_C=has_c, **meta, **extra)


def irc_backward(family, R, wx, x, h0, out, C, beta, dout, dcT, dWX, *, mode="step"):
    """Reverse time loop of one IRC layer. Fills dWX[..., :GM] = δ_t and dWX[..., GM:] = d a_t.

    Returns (dh0, dc0 or None, dx or None): dx is SRU's direct highway gradient (T, B, M).
    """
    T, B, W1 = wx.shape
    M = h0.shape[-1]
    meta, G = _common(family, wx, M)
    GM = G * M
    has_c, h_direct = family in HAS_C, family in H_DIRECT
    dout = dout.contiguous()
    _check(R, wx, x, out, C, dWX)
    Hp = torch.cat((h0.unsqueeze(0), out[:-1]), 0).contiguous()
    dummy = wx
    bp = beta if beta is not None else dummy
    xp = x if family == "sru" else dummy
    Cp = C if has_c else dummy
    gc0 = (dcT.float().contiguous() if dcT is not None else torch.zeros_like(h0, dtype=torch.float32)) \
        if has_c else dummy
    dx = _poisoned(wx, T, B, M) if family == "sru" else None
    dxp = dx if dx is not None else dummy
    if mode == "persistent":
        extra = {} if not INTERPRET else dict(BLOCK_B=_INTERP_PERSISTENT_BLOCK_B)
        MP = max(16, triton.next_power_of_2(M))
        dh0 = _poisoned(wx, B, M, dtype=torch.float32)
        dc0 = _poisoned(wx, B, M, dtype=torch.float32) if has_c else None
        bwd_persistent[_persistent_grid(B)](R, Hp, Cp, wx, xp, bp, dout, gc0, dWX, dxp, dh0,
                                            dc0 if has_c else dummy, T, B, M, W1,
                                            HAS_C=has_c, H_DIRECT=h_direct, MP=MP, **meta, **extra)
        return dh0.to(h0.dtype), dc0.to(h0.dtype) if has_c else None, dx
    extra = _INTERP_STEP if INTERPRET else {}
    grid = _step_grid(B, M)
    ghd = [_poisoned(wx, B, M, dtype=torch.float32) for _ in range(2)] if h_direct else [dummy, dummy]
    gcs = [gc0, _poisoned(wx, B, M, dtype=torch.float32)] if has_c else [dummy, dummy]
    poison = _poison_on()
    cur = 0
    for t in range(T - 1, -1, -1):
        nxt = 1 - cur
        if poison:  # the carry buffers are reused: make every element this launch must write NaN
            for buf in (ghd[nxt] if h_direct else None, gcs[nxt] if has_c else None):
                if buf is not None:
                    buf.fill_(float("nan"))
        bwd_step[grid](dWX[t + 1] if t < T - 1 else dWX[t], R, Hp[t],
                       Cp[t] if has_c else dummy, Cp[t + 1] if has_c else dummy,
                       wx[t], xp[t] if family == "sru" else dummy, bp, dout[t],
                       ghd[cur], gcs[cur], dWX[t], ghd[nxt], gcs[nxt],
                       dx[t] if dx is not None else dummy, B, M, W1,
                       HAS_C=has_c, H_DIRECT=h_direct, HAS_NEXT=t < T - 1, **meta, **extra)
        cur = nxt
    dP0 = dWX[0, :, :GM].float()
    base = ghd[cur] if h_direct else torch.zeros_like(h0, dtype=torch.float32)
    dh0 = torch.addmm(base, dP0, R.float())
    dc0 = gcs[cur].to(h0.dtype) if has_c else None
    return dh0.to(h0.dtype), dc0, dx
