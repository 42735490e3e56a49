"""The recurrences of the fused IRC/IHC loop: what ``W_g d_t`` is as a function of h_{t-1}.

rnnbench/fused.py runs the time loops; a recurrence supplies the products inside them, forward and
backward, for one way of computing ``W_g d_t``:

* :class:`Folded` (IRC): ``h Rᵀ`` with ``R = W_g·diag(α)·U_V`` (or ``W_g·diag(α⊙ω_V)``), one product;
* :class:`Unfolded` (IRC): ``(α⊙(h U_Vᵀ)) W_gᵀ``, two products through the N-wide bottleneck;
* :class:`UnfoldedDiag` (IRC, diagonal feedback): ``((α⊙ω_V)⊙h) W_gᵀ``;
* :class:`IHC`: ``(g⊙(fb − x_t)) W_gᵀ`` with the gate g depending on h_{t-1}; never folded.

:func:`for_cell` picks one for a cell and returns it with the parameter tensors it takes.
"""

from __future__ import annotations

import torch

from rnnbench.cells.base import linear
from rnnbench.cells.family import dsig
from rnnbench.errors import ConfigError


class Recurrence:
    """How the gate pre-activations depend on h_{t-1}. Params are tensors the autograd Function gets.

    step(t, h, out):            out = gx_t + W_g d_t(h)                       (forward, per step)
    intermediates(Hp2d):        what back_step and grads need besides the gates (backward, once)
    recompute(Hp2d, gx2d):      intermediates, then all gate pre-activations at once, (T·B, G·M)
    back_step(t, dP, base, out): out = base + ∂(W_g d_t)/∂h applied to dP     (backward, per step)
    grads(dP2d, Hp2d):          gradients of the params (and extra input grads), after the loop
    """

    n_params = 0
    name = ""
    # the products of intermediates() and grads(); the C++ backend sets its own (fused_cpp.matmul)
    mm = staticmethod(torch.matmul)

    def __init__(self, G: int, N: int, M: int):
        self.G, self.N, self.M = G, N, M

    def bind(self, gx, x, params):
        self.gx, self.x, self.params = gx, x, params

    _config = ("G", "N", "M", "diagonal", "gamma_input", "mm")

    def release(self):
        """Drop the tensors bound for one pass, keep the configuration."""
        self.__dict__ = {k: v for k, v in self.__dict__.items() if k in self._config}


class Folded(Recurrence):
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
        return (self.mm(dP2d.t(), Hp2d) if needs[0] else None,), None, None


class Unfolded(Recurrence):
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
        self.FB = self.mm(Hp2d, self.UV.t())
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
        dWg = self.mm(dP2d.t(), self.D) if needs[0] else None
        dalpha = (DD * self.FB).sum(0) if needs[1] else None
        # (DD diag(α))ᵀ H = diag(α) DDᵀ H: scale the N×M result, not a T·B×N temporary
        dUV = self.mm(DD.t(), Hp2d).mul_(self.alpha.unsqueeze(1)) if needs[2] else None
        return (dWg, dalpha, dUV), None, None


class UnfoldedDiag(Recurrence):
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
        dWg = self.mm(dP2d.t(), self.D) if needs[0] else None
        ds = (self.DD.reshape(-1, self.N) * Hp2d).sum(0) if needs[1] else None
        return (dWg, ds), None, None


class IHC(Recurrence):
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
        return h * self.fbw if self.diagonal else self.mm(h, self.fbw.t())

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
            Y = self.mm(Hp2d, self.V.t())
            FB, GP = Y[:, :N], Y[:, N:] + hg2d
        else:
            FB = self._feedback(Hp2d)
            GP = torch.addmm(hg2d, Hp2d if self.gamma_input == "h" else FB, self.Gamma.t())
        g = torch.sigmoid(GP)
        diff = FB - x2d
        self.FB, self.g = FB, g
        self.D = g * diff
        self.Kgp = diff * dsig(g)

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
        dWg = self.mm(dP2d.t(), self.D) if needs[0] else None
        if needs[1]:
            dfbw = (dFB * Hp2d).sum(0) if self.diagonal else self.mm(dFB.t(), Hp2d)
        else:
            dfbw = None
        dGamma = self.mm(dGP.t(), Hp2d if self.gamma_input == "h" else self.FB) if needs[2] else None
        dhg = dGP.view(self.hg.shape) if needs[3] else None
        dx = -(DD * self.g).view(self.x.shape)
        return (dWg, dfbw, dGamma, dhg), dx, None


def kernel_operands(rec: Recurrence, params) -> dict:
    """A two-product recurrence's parameters as kernels.two_product_forward/backward take them."""
    if isinstance(rec, Unfolded):
        Wg, alpha, UV = params
        return dict(Wg=Wg, UV=UV, vec=alpha)
    if isinstance(rec, UnfoldedDiag):
        Wg, s = params
        return dict(Wg=Wg, vec=s)
    if not isinstance(rec, IHC) or rec.gamma_input != "h":  # pragma: no cover - fused_layer's job
        raise ValueError("the kernels take IHC with Γ acting on h (fused_layer rewrites the feedback form)")
    Wg, fbw, Gamma, hg = params
    if rec.diagonal:
        return dict(Wg=Wg, vec=fbw, Gam=Gamma, hg=hg)
    return dict(Wg=Wg, UV=fbw, Gam=Gamma, hg=hg)


def for_cell(cell, wx, x, *, use_fold: bool, impl: str, matmul=None, linear=linear
             ) -> tuple[Recurrence, tuple]:
    """The recurrence of one IRC/IHC layer and its parameters (differentiable tensors, formed once
    per forward so autograd carries their gradients back to the cell's own parameters).

    matmul, linear: the products to use (torch's by default; the C++ backend passes its own), for
    the parameters formed here and, matmul, for the recurrence's own products after the loop."""
    rec, params = _for_cell(cell, x, use_fold=use_fold, impl=impl, matmul=matmul or torch.matmul,
                            linear=linear)
    if matmul is not None:
        rec.mm = matmul
    return rec, params


def _for_cell(cell, x, *, use_fold, impl, matmul, linear):
    conn, G = cell.connection, len(cell.gates)
    N, M = x.shape[-1], cell.hidden_size
    Wg = cell.W[:G * M]
    if conn.kind == "irc":
        alpha = torch.sigmoid(conn.theta_alpha)
        if conn.diagonal:
            s = alpha * torch.tanh(conn.theta_omega)
            return (Folded(G, N, M), (Wg * s,)) if use_fold else (UnfoldedDiag(G, N, M), (Wg, s))
        if use_fold:
            return Folded(G, N, M), (matmul(Wg * alpha, conn.U_V),)     # R = W_g diag(α) U_V
        return Unfolded(G, N, M), (Wg, alpha, conn.U_V)
    if use_fold:
        raise ConfigError("IHC cannot be folded: its gate g depends on h_{t-1} through Γ")
    hg = linear(x, conn.W_G, conn.b_G)
    fbw = torch.tanh(conn.theta_omega) if conn.diagonal else conn.U_V
    Gamma, gamma_input = conn.Gamma, conn.gamma_input
    if impl in ("triton", "cpp") and gamma_input == "feedback":
        # Γ·(U_V h) = (Γ U_V) h: formed once here, so that every product in the kernels' and the
        # C++ loops takes h; autograd carries dΓ' back to Γ and U_V (θ_ω)
        Gamma = Gamma * fbw if conn.diagonal else matmul(Gamma, fbw)
        gamma_input = "h"
    return IHC(G, N, M, diagonal=conn.diagonal, gamma_input=gamma_input), (Wg, fbw, Gamma, hg)
