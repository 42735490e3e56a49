"""The `fused` backend: IRC and IHC cells with hoisted products, folding, and a hand-written backward.

Every regulated cell (rnnbench/cells/regulated.py) computes per step

    v_t = x_t + d_t,     gates_t = σ(W_g x_t + W_g d_t),     a_t = W_A x_t,
    state_t = update(gates_t, a_t, x_t, state_{t-1})

where ``d_t = α⊙(U_V h_{t-1})`` (IRC) or ``d_t = g_t⊙(U_V h_{t-1} − x_t)`` (IHC, with
``g_t = σ(W_G x_t + Γ h_{t-1} + b_G)``); SRU and T-LSTM use ``ω_V⊙h`` in place of ``U_V h``.

What this module does with that (docs/kernels.md has the derivations):

* **Hoisting.** ``[W_g; W_A] x`` (and the IHC ``W_G x + b_G``) is one product over the whole sequence,
  done by autograd outside the time loop.
* **Folding (IRC only).** ``W_g(α⊙(U_V h)) = R h`` with ``R = W_g·diag(α)·U_V`` (G·M × M), formed once
  per forward by autograd, so a step is one (B×M)·(M×G·M) product instead of two through the N-wide
  bottleneck. :func:`choose_fold` is the cost model; ``fold=True/False`` forces either.
* **Hand-written backward through time.** The forward keeps only the h (and c) sequences. The backward
  recomputes all gates from them with ONE product over the whole sequence, turns the elementwise
  update into per-step coefficients (vectorised over time), and runs a reverse loop whose only
  product per step is the recurrent one (``dh_{t-1} += δ_t R``). The weight gradient of the recurrence
  is then ONE product after the loop (``dR = Σ_t δ_tᵀ h_{t-1}``), carried to W_g, θ_α, U_V (θ_ω) by
  autograd through the fold product.

``impl="torch"`` runs the loops with torch operations (any device, the `fused` backend);
``impl="triton"`` runs the loops as Triton kernel launches (kernels/, the `triton` backend): one per
step folded, two (one per product) for unfolded IRC and IHC.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from rnnbench.cells.base import linear
from rnnbench.errors import ConfigError, DeviceError, SizeError

__all__ = ["FAMILIES", "choose_fold", "fused_forward", "fused_layer", "supports", "compare_with_eager",
           "fold_costs", "resolve_gates", "GATES"]


# ---------------------------------------------------------------------------------------------------
# The families: the elementwise update, its forward step and its derivative coefficients
# ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Family:
    name: str
    gates: tuple[str, ...]
    has_c: bool = False      # a second state c_t that is not fed back
    uses_x: bool = False     # the update reads x_t (SRU's highway)
    has_beta: bool = False   # IRC-FastGRNN's scalar β = σ(θ_β)

    @property
    def n_gates(self) -> int:
        return len(self.gates)


FAMILIES: dict[str, Family] = {
    "gru": Family("gru", ("I", "R")),
    "lstm": Family("lstm", ("F", "I", "O"), has_c=True),
    "sru": Family("sru", ("F", "P"), has_c=True, uses_x=True),
    "tlstm": Family("tlstm", ("F", "O"), has_c=True),
    "fastgrnn": Family("fastgrnn", ("F",), has_beta=True),
    "pru": Family("pru", ("C",)),
}


def _fwd_update(fam: str, S, a, x, h, c, h_out, c_out, ba):
    """One step's state update from the gates S (B, G, M), written into h_out (and c_out)."""
    if fam == "gru":            # h' = (1−i)h + i(r a)
        i, r = S[:, 0], S[:, 1]
        torch.lerp(h, r * a, i, out=h_out)
    elif fam == "lstm":         # c' = f c + i a; h' = o tanh(c')
        f, i, o = S[:, 0], S[:, 1], S[:, 2]
        torch.mul(f, c, out=c_out)
        c_out.addcmul_(i, a)
        torch.tanh(c_out, out=h_out)
        h_out.mul_(o)
    elif fam == "sru":          # c' = f c + (1−f) a; h' = p c' + (1−p) x
        f, p = S[:, 0], S[:, 1]
        torch.lerp(a, c, f, out=c_out)
        torch.lerp(x, c_out, p, out=h_out)
    elif fam == "tlstm":        # c' = f c + (1−f) a; h' = o c'
        f, o = S[:, 0], S[:, 1]
        torch.lerp(a, c, f, out=c_out)
        torch.mul(o, c_out, out=h_out)
    elif fam == "fastgrnn":     # h' = f h + β(1−f) a = βa + f(h − βa)
        torch.lerp(ba, h, S[:, 0], out=h_out)
    elif fam == "pru":          # s' = c s + (1−c) a
        torch.lerp(a, h, S[:, 0], out=h_out)
    else:  # pragma: no cover
        raise ValueError(fam)


def _dsig(s):
    return s * (1 - s)


def _bwd_coefficients(fam: str, S, A, X, Hp, Hn, Cp, Cn, beta):
    """Per-step derivative coefficients of the update, for all steps at once (shapes (T, B, ...)).

    Families without c:  dP_t = g_t ⊙ K_t (each gate),  dh_{t-1} = g_t ⊙ Kh_t + dP_t R.
    Families with c:     q_t = gc_t + g_t ⊙ Kq_t,  dP_t = [q_t ⊙ Kc_t (c gates), g_t ⊙ Ko_t (last gate)],
                         gc_{t-1} = q_t ⊙ F_t,  dh_{t-1} = dP_t R.
    (g_t: total gradient of h_t; gc_t: gradient of c_t arriving from step t+1.)
    """
    k = {}
    if fam == "gru":                   # few passes over (T, B, M): this runs on every backward
        i, r = S[:, :, 0], S[:, :, 1]
        K = torch.empty_like(S)
        Kh = torch.sub(1, i)                                   # 1 − i
        torch.mul(r, A, out=K[:, :, 0]).sub_(Hp).mul_(i).mul_(Kh)          # (r a − h) i (1 − i)
        torch.mul(i, A, out=K[:, :, 1]).mul_(r).mul_(torch.sub(1, r))     # i a r (1 − r)
        k["K"], k["Kh"] = K, Kh
    elif fam == "fastgrnn":
        f = S[:, :, 0]
        k["K"] = ((Hp - beta * A) * _dsig(f)).unsqueeze(2)
        k["Kh"] = f
    elif fam == "pru":
        c = S[:, :, 0]
        k["K"] = ((Hp - A) * _dsig(c)).unsqueeze(2)
        k["Kh"] = c
    elif fam == "lstm":
        f, i, o = S[:, :, 0], S[:, :, 1], S[:, :, 2]
        tc = torch.tanh(Cn)
        k["Kq"] = o * (1 - tc * tc)
        k["Kc"] = torch.stack((Cp * _dsig(f), A * _dsig(i)), 2)
        k["Ko"] = tc * _dsig(o)
        k["F"] = f
    elif fam == "sru":
        f, p = S[:, :, 0], S[:, :, 1]
        k["Kq"] = p
        k["Kc"] = ((Cp - A) * _dsig(f)).unsqueeze(2)
        k["Ko"] = (Cn - X) * _dsig(p)
        k["F"] = f
    elif fam == "tlstm":
        f, o = S[:, :, 0], S[:, :, 1]
        k["Kq"] = o
        k["Kc"] = ((Cp - A) * _dsig(f)).unsqueeze(2)
        k["Ko"] = Cn * _dsig(o)
        k["F"] = f
    else:  # pragma: no cover
        raise ValueError(fam)
    return k


def _input_grads(fam: str, S, A, Gh, Q, beta):
    """After the reverse loop: d a_t, the direct d x_t (SRU) and dβ (FastGRNN), all steps at once."""
    dx = dbeta = None
    if fam == "gru":
        da = Gh * S[:, :, 0] * S[:, :, 1]
    elif fam == "fastgrnn":
        w = Gh * (1 - S[:, :, 0])
        da = w * beta
        dbeta = (w * A).sum().reshape(1)
    elif fam == "pru":
        da = Gh * (1 - S[:, :, 0])
    elif fam == "lstm":
        da = Q * S[:, :, 1]
    elif fam in ("sru", "tlstm"):
        da = Q * (1 - S[:, :, 0])
        if fam == "sru":
            dx = Gh * (1 - S[:, :, 1])
    else:  # pragma: no cover
        raise ValueError(fam)
    return da, dx, dbeta


# ---------------------------------------------------------------------------------------------------
# The recurrences: what W_g d_t is, as a function of h_{t-1}
# ---------------------------------------------------------------------------------------------------

class _Recurrence:
    """How the gate pre-activations depend on h_{t-1}. Params are tensors the autograd Function gets.

    step(t, h, out):            out = gx_t + W_g d_t(h)                       (forward, per step)
    intermediates(Hp2d):        what back_step and grads need besides the gates (backward, once)
    recompute(Hp2d, gx2d):      intermediates, then all gate pre-activations at once, (T·B, G·M)
    back_step(t, dP, base, out): out = base + ∂(W_g d_t)/∂h applied to dP     (backward, per step)
    grads(dP2d, Hp2d):          gradients of the params (and extra input grads), after the loop
    """

    n_params = 0
    name = ""

    def __init__(self, G: int, N: int, M: int):
        self.G, self.N, self.M = G, N, M

    def bind(self, gx, x, params):
        self.gx, self.x, self.params = gx, x, params

    _config = ("G", "N", "M", "diagonal", "gamma_input")

    def release(self):
        """Drop the tensors bound for one pass, keep the configuration."""
        self.__dict__ = {k: v for k, v in self.__dict__.items() if k in self._config}


class _Folded(_Recurrence):
    """pre = gx + h Rᵀ, R = W_g·diag(α)·U_V (or W_g·diag(α⊙ω_V)): one product per step."""
    n_params, name = 1, "folded"

    def bind(self, gx, x, params):
        super().bind(gx, x, params)
        self.R = params[0]
        self.Rt = self.R.t()

    def step(self, t, h, out):
        torch.addmm(self.gx[t], h, self.Rt, out=out)

    def intermediates(self, Hp2d):
        pass

    def recompute(self, Hp2d, gx2d):
        return torch.addmm(gx2d, Hp2d, self.Rt)

    def prepare_backward(self, T, B):
        pass

    def back_step(self, t, dP, base, out):
        torch.addmm(base, dP, self.R, out=out)

    def grads(self, dP2d, Hp2d, needs):
        return (dP2d.t() @ Hp2d if needs[0] else None,), None, None


class _Unfolded(_Recurrence):
    """pre = gx + (α⊙(h U_Vᵀ)) W_gᵀ: two products per step through the N-wide bottleneck."""
    n_params, name = 3, "unfolded"

    def bind(self, gx, x, params):
        super().bind(gx, x, params)
        self.Wg, self.alpha, self.UV = params

    def step(self, t, h, out):
        d = torch.mm(h, self.UV.t())
        d.mul_(self.alpha)
        torch.addmm(self.gx[t], d, self.Wg.t(), out=out)

    def intermediates(self, Hp2d):
        self.FB = Hp2d @ self.UV.t()
        self.D = self.FB * self.alpha

    def recompute(self, Hp2d, gx2d):
        self.intermediates(Hp2d)
        return torch.addmm(gx2d, self.D, self.Wg.t())

    def prepare_backward(self, T, B):
        self.DD = self.FB.new_empty(T, B, self.N)

    def back_step(self, t, dP, base, out):
        dd = torch.mm(dP, self.Wg, out=self.DD[t])
        torch.addmm(base, dd * self.alpha, self.UV, out=out)

    def grads(self, dP2d, Hp2d, needs):
        DD = self.DD.reshape(-1, self.N)
        dWg = dP2d.t() @ self.D if needs[0] else None
        dalpha = (DD * self.FB).sum(0) if needs[1] else None
        dUV = (DD * self.alpha).t() @ Hp2d if needs[2] else None
        return (dWg, dalpha, dUV), None, None


class _UnfoldedDiag(_Recurrence):
    """SRU/T-LSTM unfolded: pre = gx + (s⊙h) W_gᵀ with s = α⊙ω_V (N = M)."""
    n_params, name = 2, "unfolded"

    def bind(self, gx, x, params):
        super().bind(gx, x, params)
        self.Wg, self.s = params

    def step(self, t, h, out):
        torch.addmm(self.gx[t], h * self.s, self.Wg.t(), out=out)

    def intermediates(self, Hp2d):
        self.D = Hp2d * self.s

    def recompute(self, Hp2d, gx2d):
        self.intermediates(Hp2d)
        return torch.addmm(gx2d, self.D, self.Wg.t())

    def prepare_backward(self, T, B):
        self.DD = self.D.new_empty(T, B, self.N)

    def back_step(self, t, dP, base, out):
        dd = torch.mm(dP, self.Wg, out=self.DD[t])
        torch.addcmul(base, dd, self.s, out=out)

    def grads(self, dP2d, Hp2d, needs):
        dWg = dP2d.t() @ self.D if needs[0] else None
        ds = (self.DD.reshape(-1, self.N) * Hp2d).sum(0) if needs[1] else None
        return (dWg, ds), None, None


class _IHC(_Recurrence):
    """IHC: fb = U_V h (or ω_V⊙h); g = σ(hg_t + Γ·(h or fb)); d = g⊙(fb − x_t); pre = gx + d W_gᵀ.

    Not foldable: g depends on h_{t-1}. With a full U_V and Γ acting on h, ``h [U_V; Γ]ᵀ`` is one
    product, so a step is two products. Params: (W_g, U_V or ω_V, Γ, hg) with hg = W_G x + b_G hoisted.
    """
    n_params, name = 4, "ihc"

    def __init__(self, G, N, M, *, diagonal: bool, gamma_input: str):
        super().__init__(G, N, M)
        self.diagonal, self.gamma_input = diagonal, gamma_input

    def bind(self, gx, x, params):
        super().bind(gx, x, params)
        self.Wg, self.fbw, self.Gamma, self.hg = params
        self.stacked = not self.diagonal and self.gamma_input == "h"
        if self.stacked:
            self.V = torch.cat((self.fbw, self.Gamma), 0)   # (2N, M)

    def _feedback(self, h):
        return h * self.fbw if self.diagonal else h @ self.fbw.t()

    def step(self, t, h, out):
        N = self.N
        if self.stacked:
            Y = h @ self.V.t()
            fb, gp = Y[:, :N], Y[:, N:]
            gp.add_(self.hg[t])
        else:
            fb = self._feedback(h)
            gp = torch.addmm(self.hg[t], h if self.gamma_input == "h" else fb, self.Gamma.t())
        gp.sigmoid_()
        d = (fb - self.x[t]).mul_(gp)
        torch.addmm(self.gx[t], d, self.Wg.t(), out=out)

    def intermediates(self, Hp2d):
        N = self.N
        hg2d, x2d = self.hg.reshape(-1, N), self.x.reshape(-1, N)
        if self.stacked:
            Y = Hp2d @ self.V.t()
            FB, GP = Y[:, :N], Y[:, N:] + hg2d
        else:
            FB = self._feedback(Hp2d)
            GP = torch.addmm(hg2d, Hp2d if self.gamma_input == "h" else FB, self.Gamma.t())
        g = torch.sigmoid(GP)
        diff = FB - x2d
        self.FB, self.g = FB, g
        self.D = g * diff
        self.Kgp = diff * _dsig(g)

    def recompute(self, Hp2d, gx2d):
        self.intermediates(Hp2d)
        return torch.addmm(gx2d, self.D, self.Wg.t())

    def prepare_backward(self, T, B):
        N = self.N
        self.DD = self.D.new_empty(T, B, N)
        self.g3 = self.g.view(T, B, N)
        self.Kgp3 = self.Kgp.view(T, B, N)
        if self.stacked:
            self.KK = torch.stack((self.g3, self.Kgp3), 2)     # (T, B, 2, N)
            self.Z = self.D.new_empty(B, 2, N)

    def back_step(self, t, dP, base, out):
        dd = torch.mm(dP, self.Wg, out=self.DD[t])
        if self.stacked:                       # out = base + [dd⊙g, dd⊙Kgp] [U_V; Γ]
            torch.mul(self.KK[t], dd.unsqueeze(1), out=self.Z)
            torch.addmm(base, self.Z.view(dd.shape[0], -1), self.V, out=out)
            return
        dfb = dd * self.g3[t]
        dgp = dd * self.Kgp3[t]
        if self.gamma_input == "h":            # diagonal feedback, Γ on h
            torch.addmm(base, dgp, self.Gamma, out=out)
            out.addcmul_(dfb, self.fbw)
        else:                                  # Γ on the feedback
            dfb.addmm_(dgp, self.Gamma)
            if self.diagonal:
                torch.addcmul(base, dfb, self.fbw, out=out)
            else:
                torch.addmm(base, dfb, self.fbw, out=out)

    def grads(self, dP2d, Hp2d, needs):
        N = self.N
        DD = self.DD.reshape(-1, N)
        dGP = DD * self.Kgp
        dFB = DD * self.g
        if self.gamma_input == "feedback":
            dFB = dFB.addmm(dGP, self.Gamma)
        dWg = dP2d.t() @ self.D if needs[0] else None
        if needs[1]:
            dfbw = (dFB * Hp2d).sum(0) if self.diagonal else dFB.t() @ Hp2d
        else:
            dfbw = None
        dGamma = dGP.t() @ (Hp2d if self.gamma_input == "h" else self.FB) if needs[2] else None
        dhg = dGP.view(self.hg.shape) if needs[3] else None
        dx = -(DD * self.g).view(self.x.shape)
        return (dWg, dfbw, dGamma, dhg), dx, None


def _kernel_operands(rec: _Recurrence, params) -> dict:
    """A two-product recurrence's parameters as kernels.two_product_forward/backward take them."""
    if isinstance(rec, _Unfolded):
        Wg, alpha, UV = params
        return dict(Wg=Wg, UV=UV, vec=alpha)
    if isinstance(rec, _UnfoldedDiag):
        Wg, s = params
        return dict(Wg=Wg, vec=s)
    if not isinstance(rec, _IHC) or rec.gamma_input != "h":  # pragma: no cover - fused_layer's job
        raise ValueError("the kernels take IHC with Γ acting on h (fused_layer rewrites the feedback form)")
    Wg, fbw, Gamma, hg = params
    if rec.diagonal:
        return dict(Wg=Wg, vec=fbw, Gam=Gamma, hg=hg)
    return dict(Wg=Wg, UV=fbw, Gam=Gamma, hg=hg)


# ---------------------------------------------------------------------------------------------------
# The autograd Function: forward loop, reverse loop
# ---------------------------------------------------------------------------------------------------

def _poison_enabled() -> bool:
    return os.environ.get("RNNBENCH_POISON", "") not in ("", "0")


def _new(like, *shape):
    """Output buffers: NaN-filled when RNNBENCH_POISON=1, so an element never written shows up."""
    t = like.new_empty(*shape)
    if _poison_enabled():
        t.fill_(float("nan"))
    return t


class RegulatedRecurrence(torch.autograd.Function):
    """One layer's time loop for any IRC/IHC family.

    apply(family, recurrence, impl, store, wx, x, h0, c0, beta, *params) -> (out (T,B,M), c_T)
      wx = x [W_g; W_A]ᵀ hoisted (T, B, (G+1)M); x (T, B, N); h0, c0 (B, M) (c0 may be None);
      beta (1,) or None; params as the recurrence defines them.
    Saves wx, x, h0, the outputs (the h sequence) and the c sequence; with ``store`` (torch impl
    only) also the gates of every step, which the backward then reads instead of recomputing.
    """

    @staticmethod
    def forward(ctx, fam: Family, rec: _Recurrence, impl: str, store: bool, wx, x, h0, c0, beta,
                *params):
        T, B, _ = wx.shape
        M, G = rec.M, rec.G
        GM = G * M
        gx, A = wx[..., :GM], wx[..., GM:]
        out = _new(wx, T, B, M)
        C = None
        if fam.has_c:
            C = _new(wx, T + 1, B, M)
            C[0] = c0
        S_all = None
        if impl == "triton":
            import kernels
            if isinstance(rec, _Folded):
                kernels.irc_forward(fam.name, params[0], wx, x, h0, C, beta, out)
            else:
                kernels.two_product_forward(fam.name, wx, x, h0, C, beta, out,
                                            **_kernel_operands(rec, params))
        else:
            rec.bind(gx, x, params)
            BA = A * beta if fam.has_beta else None
            # storing costs nothing in the loop: the gates are written where the backward reads them
            S_all = wx.new_empty(T, B, GM) if store else None
            Pbuf = wx.new_empty(B, GM)
            h = h0
            for t in range(T):
                P = S_all[t] if store else Pbuf
                rec.step(t, h, P)
                P.sigmoid_()
                _fwd_update(fam.name, P.view(B, G, M), A[t], x[t], h, C[t] if C is not None else None,
                            out[t], C[t + 1] if C is not None else None,
                            BA[t] if BA is not None else None)
                h = out[t]
            rec.release()
        cT = C[T].clone() if C is not None else out.new_zeros(0)
        if C is None:
            ctx.mark_non_differentiable(cT)
        ctx.fam, ctx.rec, ctx.impl = fam, rec, impl
        ctx.has_c0 = c0 is not None
        ctx.save_for_backward(wx, x, h0, out, C, beta, S_all, *params)
        return out, cT

    @staticmethod
    def backward(ctx, dout, dcT):
        fam, rec, impl = ctx.fam, ctx.rec, ctx.impl
        wx, x, h0, out, C, beta, S_all, *params = ctx.saved_tensors
        T, B, W1 = wx.shape
        M, G = rec.M, rec.G
        GM = G * M
        needs = ctx.needs_input_grad
        if dout is None:
            dout = torch.zeros_like(out)
        if fam.has_c and dcT is None:
            dcT = torch.zeros_like(h0)
        Hp = torch.cat((h0.unsqueeze(0), out[:-1]), 0)           # h_{t-1}, (T, B, M)
        Hp2d = Hp.reshape(T * B, M)
        A = wx[..., GM:]
        dWX = _new(wx, T, B, W1)
        dP = dWX[..., :GM]                                        # gate gradients δ_t live in dWX
        dP2d = dP.reshape(T * B, GM)
        dx = dh0 = dc0 = dbeta = None

        if impl == "triton":
            import kernels
            if isinstance(rec, _Folded):
                R = params[0]
                dh0, dc0, dx = kernels.irc_backward(fam.name, R, wx, x, h0, out, C, beta,
                                                    dout.contiguous(), dcT, dWX)
                dparams, dx_rec = (dP2d.t() @ Hp2d,), None
            else:
                # the N-wide intermediates of every step at once (one batched product), as the torch
                # impl does; the kernels then need only one product per launch in the reverse loop
                rec.bind(wx[..., :GM], x, params)
                rec.intermediates(Hp2d)
                N = rec.N
                rec.DD = _new(wx, T, B, N)             # δ_t W_g, filled by the kernels, read by grads
                ops = _kernel_operands(rec, params)
                ops.pop("hg", None)
                ops["D"] = rec.D.reshape(T, B, N).contiguous()
                if isinstance(rec, _IHC):
                    ops["g"] = rec.g.reshape(T, B, N).contiguous()
                    ops["Kgp"] = rec.Kgp.reshape(T, B, N).contiguous()
                    if rec.stacked:
                        ops["V"] = rec.V.contiguous()
                dh0, dc0, dx = kernels.two_product_backward(fam.name, wx, x, h0, out, C, beta,
                                                            dout.contiguous(), dcT, dWX, rec.DD, **ops)
                dparams, dx_rec, _ = rec.grads(dP2d, Hp2d, needs[9:])
                rec.release()
            if fam.has_beta:
                dbeta = ((dWX[..., GM:] * A).sum() / beta).reshape(1)
        else:
            gx2d = wx[..., :GM].reshape(T * B, GM)
            rec.bind(wx[..., :GM], x, params)
            if S_all is not None:
                rec.intermediates(Hp2d)
                S = S_all.view(T, B, G, M)
            else:
                S = torch.sigmoid(rec.recompute(Hp2d, gx2d)).view(T, B, G, M)   # gates, recomputed
            Cp = C[:-1] if C is not None else None
            Cn = C[1:] if C is not None else None
            k = _bwd_coefficients(fam.name, S, A, x, Hp, out, Cp, Cn, beta)
            rec.prepare_backward(T, B)
            dP4 = dP.view(T, B, G, M)
            Gh = torch.empty_like(out)                            # total gradient of h_t
            Gh[T - 1] = dout[T - 1]
            if fam.has_c:
                Q = torch.empty_like(out)                         # total gradient of c_t
                Kq, Kc, Ko, F = k["Kq"], k["Kc"], k["Ko"], k["F"]
                gc = dcT
                for t in range(T - 1, -1, -1):
                    g, q = Gh[t], Q[t]
                    torch.addcmul(gc, g, Kq[t], out=q)
                    torch.mul(Kc[t], q.unsqueeze(1), out=dP4[t, :, :G - 1])
                    torch.mul(Ko[t], g, out=dP4[t, :, G - 1])
                    gc = q * F[t]
                    if t > 0:
                        rec.back_step(t, dP[t], dout[t - 1], Gh[t - 1])
                    else:
                        dh0 = torch.empty_like(h0)
                        rec.back_step(t, dP[t], torch.zeros_like(h0), dh0)
                dc0 = gc
            else:
                Q = None
                K, Kh = k["K"], k["Kh"]
                base = torch.empty_like(h0)
                for t in range(T - 1, -1, -1):
                    g = Gh[t]
                    torch.mul(K[t], g.unsqueeze(1), out=dP4[t])
                    if t > 0:
                        torch.addcmul(dout[t - 1], g, Kh[t], out=base)
                        rec.back_step(t, dP[t], base, Gh[t - 1])
                    else:
                        dh0 = torch.empty_like(h0)
                        rec.back_step(t, dP[t], g * Kh[t], dh0)
            da, dx, dbeta = _input_grads(fam.name, S, A, Gh, Q, beta)
            dWX[..., GM:] = da
            dparams, dx_rec, _ = rec.grads(dP2d, Hp2d, needs[9:])
            rec.release()
        if dx_rec is not None:
            dx = dx_rec if dx is None else dx + dx_rec
        if not needs[5]:
            dx = None
        return (None, None, None, None, dWX, dx, dh0, dc0 if ctx.has_c0 else None, dbeta, *dparams)


# ---------------------------------------------------------------------------------------------------
# Cost model, support, the layer and stack entry points
# ---------------------------------------------------------------------------------------------------

def fold_costs(n_gates: int, N: int, M: int, *, tokens: int | None = None, diagonal: bool = False
               ) -> tuple[float, float]:
    """Multiply-adds of one training step (fwd + bwd) of the recurrence, (folded, unfolded).

    Per token (one batch row, one step) each way does four products of the same shape: the forward
    step, the gate recompute in the backward, the backward step, and the weight-gradient product
    after the loop. Folded, each is M × G·M; unfolded, M × N then N × G·M (diagonal feedback: no
    M × N product). Folding adds a per-sequence cost independent of tokens: forming R = W_g diag(α) U_V
    (G·M·N·M) and carrying dR back through it (two more of the same), 3·G·M²·N in all (G·M² with
    diagonal feedback, an elementwise scale). ``tokens = T·B``; without it the per-sequence cost is
    ignored (the limit of long sequences).
    """
    G = n_gates
    if diagonal:
        per_fold, per_unfold, once = G * M * M, G * M * N, G * M * M
    else:
        per_fold, per_unfold, once = G * M * M, M * N + N * G * M, 3 * G * M * M * N
    n = tokens if tokens is not None else 1
    folded = 4.0 * n * per_fold + (once if tokens is not None else 0.0)
    unfolded = 4.0 * n * per_unfold
    return folded, unfolded


def choose_fold(n_gates: int, N: int, M: int, *, tokens: int | None = None,
                diagonal: bool = False) -> bool:
    """Fold R = W_g·diag(α)·U_V when it costs fewer multiply-adds (see :func:`fold_costs`).

    In the long-sequence limit, folding wins when G·M² < (G+1)·N·M, i.e. M < (1 + 1/G)·N:
    IRC-GRU (G = 2) M < 1.5 N, IRC-LSTM (G = 3) M < 1.33 N, IRC-FastGRNN/PRU (G = 1) M < 2 N.
    With diagonal feedback (SRU, T-LSTM; N = M) the step costs the same either way and folding just
    merges the scale into W_g, so it is chosen (ties fold).
    """
    folded, unfolded = fold_costs(n_gates, N, M, tokens=tokens, diagonal=diagonal)
    return folded <= unfolded


def _family_of(spec_or_cell) -> str | None:
    specs = getattr(spec_or_cell, "specs", None)
    if specs is None and hasattr(spec_or_cell, "family"):
        return spec_or_cell.family
    if specs is None:
        specs = getattr(type(spec_or_cell), "specs", ())
    return specs[0].family if specs else None


def supports(spec, impl: str = "torch") -> tuple[bool, str]:
    """Whether fused_forward runs this cell spec (and impl); the reason when it does not."""
    from rnnbench.cells.regulated import RegulatedCell

    name = getattr(spec, "label", str(spec))
    if getattr(spec, "variant", None) not in ("irc", "ihc"):
        return False, (f"{name}: the fused backend covers the IRC and IHC cells only "
                       "(baselines have no regulated input to fold)")
    fam = FAMILIES.get(spec.family)
    if fam is None or not issubclass(spec.cls, RegulatedCell):
        return False, f"{name}: no fused update written for family {spec.family!r}"
    if tuple(spec.cls.gates) != fam.gates:
        return False, f"{name}: gates {spec.cls.gates} differ from the fused family's {fam.gates}"
    if impl == "triton":
        import kernels
        ok, why = kernels.available()
        if not ok:
            return False, why
    elif impl == "cpp":
        from rnnbench import fused_cpp
        ok, why = fused_cpp.available()
        if not ok:
            return False, f"the C++ loop is unavailable: {why}"
    elif impl != "torch":
        return False, f"unknown impl {impl!r}; choose torch, cpp or triton"
    return True, ""


def _resolve_fold(fold, G, N, M, tokens, diagonal) -> bool:
    if fold == "auto":
        return choose_fold(G, N, M, tokens=tokens, diagonal=diagonal)
    if isinstance(fold, bool):
        return fold
    raise ConfigError(f"fold must be 'auto', True or False, got {fold!r}")


GATES = ("auto", "store", "recompute")


def resolve_gates(gates: str, impl: str, device) -> bool:
    """Whether the forward keeps every step's gates for the backward (True) or the backward
    recomputes them from the h sequence (False).

    "auto" stores on a CPU with the torch impl: there the products bound the time, and the recompute
    is one more (T·B × M)·(M × G·M) product for memory that equals the gate part of the hoisted
    buffer already saved. Elsewhere, and always in the Triton kernels, the gates are recomputed
    (issue #4's design: a GPU recomputes a gate faster than it reads one back at large sizes).
    """
    if gates not in GATES:
        raise ConfigError(f"gates must be one of {', '.join(GATES)}, got {gates!r}")
    if gates == "auto":
        return impl == "torch" and torch.device(device).type == "cpu"
    if gates == "store" and impl == "triton":
        raise ConfigError("the triton kernels recompute the gates in the backward; gates='store' "
                          "is for the torch impl (the fused backend)")
    return gates == "store"


def fused_layer(cell, x: torch.Tensor, state: tuple[torch.Tensor, ...], *, fold="auto",
                impl: str = "torch", gates: str = "auto"
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """One IRC/IHC layer over x (T, B, N): (outputs after cell.finish, final state), as run_layer."""
    fam = FAMILIES[_family_of(cell)]
    T, B, N = x.shape
    M, G = cell.hidden_size, fam.n_gates
    GM = G * M
    conn = cell.connection
    W = cell.W
    wx = linear(x, W)                         # hoisted: every gate's input part and the candidate
    Wg = W[:GM]
    h0 = state[0]
    c0 = state[1] if fam.has_c else None
    beta = torch.sigmoid(cell.theta_beta) if fam.has_beta else None
    if conn.kind == "irc":
        alpha = torch.sigmoid(conn.theta_alpha)
        use_fold = _resolve_fold(fold, G, N, M, T * B, conn.diagonal)
        if conn.diagonal:
            s = alpha * torch.tanh(conn.theta_omega)
            rec, params = ((_Folded(G, N, M), (Wg * s,)) if use_fold
                           else (_UnfoldedDiag(G, N, M), (Wg, s)))
        elif use_fold:
            rec, params = _Folded(G, N, M), ((Wg * alpha) @ conn.U_V,)   # R = W_g diag(α) U_V
        else:
            rec, params = _Unfolded(G, N, M), (Wg, alpha, conn.U_V)
    else:
        if fold is True:
            raise ConfigError("IHC cannot be folded: its gate g depends on h_{t-1} through Γ")
        hg = linear(x, conn.W_G, conn.b_G)
        fbw = torch.tanh(conn.theta_omega) if conn.diagonal else conn.U_V
        Gamma, gamma_input = conn.Gamma, conn.gamma_input
        if impl in ("triton", "cpp") and gamma_input == "feedback":
            # Γ·(U_V h) = (Γ U_V) h: formed once here, so that every product in the kernels' loop
            # takes h; autograd carries dΓ' back to Γ and U_V (θ_ω)
            Gamma = Gamma * fbw if conn.diagonal else Gamma @ fbw
            gamma_input = "h"
        rec = _IHC(G, N, M, diagonal=conn.diagonal, gamma_input=gamma_input)
        params = (Wg, fbw, Gamma, hg)
    if impl == "triton":
        wx = wx.contiguous()
        x = x.contiguous()
        params = tuple(p.contiguous() for p in params)
    # without a backward to come (inference, no_grad) the gates are scratch, as in the plain loop
    store = resolve_gates(gates, impl, x.device) and torch.is_grad_enabled() and (
        x.requires_grad or h0.requires_grad or any(p.requires_grad for p in cell.parameters()))
    if impl == "cpp":
        from rnnbench.fused_cpp import CppRecurrence as Recurrence   # the loops in C++
    else:
        Recurrence = RegulatedRecurrence
    out, cT = Recurrence.apply(fam, rec, impl, store, wx, x, h0, c0, beta, *params)
    finals = (out[-1], cT) if fam.has_c else (out[-1],)
    return cell.finish(out), finals


def fused_forward(stack, x: torch.Tensor, state=None, *, fold="auto", impl: str = "torch",
                  gates: str = "auto"):
    """RecurrentStack.forward with the fused algorithm: same (out, finals), same gradients.

    fold: "auto" (the cost model, :func:`choose_fold`), True or False (IRC only; IHC never folds).
    gates: "store", "recompute" or "auto" (:func:`resolve_gates`): keep each step's gates for the
    backward, or recompute them there from the h sequence.
    impl: "torch" (any device), "cpp" (rnnbench/fused_cpp.py: the loops in C++, CPU, float32/64)
    or "triton" (kernels/, CUDA or TRITON_INTERPRET=1).
    """
    ok, why = supports(stack.spec, impl)
    if not ok:
        raise ConfigError(why)
    if x.dim() != 3 or x.shape[-1] != stack.input_size:
        raise SizeError(f"expected input of shape (T, B, {stack.input_size}), got {tuple(x.shape)}")
    if stack.batch_first:
        x = x.transpose(0, 1)
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise SizeError(f"need at least one step and one sequence, got input {tuple(x.shape)}")
    if impl == "triton":
        import kernels
        if not (x.is_cuda or kernels.interpreting()):
            raise DeviceError("the triton backend needs CUDA tensors (or TRITON_INTERPRET=1 on CPU)")
        x = x.contiguous()
    if state is None:
        state = stack.init_state(x.shape[1], dtype=x.dtype, device=x.device)
    finals = []
    for cell, st in zip(stack.layers, state):
        x, st = fused_layer(cell, x, tuple(st), fold=fold, impl=impl, gates=gates)
        finals.append(st)
    if stack.batch_first:
        x = x.transpose(0, 1)
    return x, finals


def compare_with_eager(stack, x: torch.Tensor, state=None, *, fold="auto", impl: str = "torch",
                       seed: int = 0) -> dict[str, float]:
    """Relative errors ‖fused − eager‖/‖eager‖ of the outputs, final states and every gradient.

    For a `rnnbench verify` command: the eager RecurrentStack.forward is the reference. The loss is
    a fixed random projection of the outputs and final states, so every gradient path is exercised.
    Returns {"out": e, "final[l][i]": e, "grad x": e, "grad <param>": e, ...}.
    """
    x = x.detach().requires_grad_(True)

    def run(fn):
        stack.zero_grad(set_to_none=True)
        x.grad = None
        out, finals = fn()
        g = torch.Generator(device="cpu").manual_seed(seed)
        loss = (out * torch.randn(out.shape, generator=g).to(out)).sum()
        for st in finals:
            for s in st:
                loss = loss + (s * torch.randn(s.shape, generator=g).to(s)).sum()
        loss.backward()
        grads = {"x": x.grad.detach().clone()}
        grads.update({n: p.grad.detach().clone() for n, p in stack.named_parameters() if p.grad is not None})
        return out.detach(), [tuple(s.detach() for s in st) for st in finals], grads

    ref = run(lambda: stack(x, state))
    got = run(lambda: fused_forward(stack, x, state, fold=fold, impl=impl))

    def rel(a, b):
        a, b = a.double(), b.double()
        return float((a - b).norm() / b.norm().clamp_min(1e-30))

    errs = {"out": rel(got[0], ref[0])}
    for l, (sg, sr) in enumerate(zip(got[1], ref[1])):
        for i, (a, b) in enumerate(zip(sg, sr)):
            errs[f"final[{l}][{i}]"] = rel(a, b)
    for n, b in ref[2].items():
        a = got[2].get(n)
        errs[f"grad {n}"] = float("inf") if a is None else rel(a, b)
    return errs
