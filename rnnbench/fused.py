"""The `fused` backend: IRC and IHC cells with hoisted products, folding, and a hand-written backward.

Every regulated cell (rnnbench/cells/regulated.py) computes per step

    v_t = x_t + d_t,     gates_t = σ(W_g x_t + W_g d_t),     a_t = W_A x_t,
    state_t = update(gates_t, a_t, x_t, state_{t-1})

where ``d_t = α⊙(U_V h_{t-1})`` (IRC) or ``d_t = g_t⊙(U_V h_{t-1} − x_t)`` (IHC, with
``g_t = σ(W_G x_t + Γ h_{t-1} + b_G)``); SRU and T-LSTM use ``ω_V⊙h`` in place of ``U_V h``.
Nothing here knows a family: ``update`` and its derivative coefficients come from the family's
declaration (rnnbench/cells/family.py), the products of ``W_g d_t`` from rnnbench/recurrences.py.

What this module does with that (docs/kernels.md has the derivations):

* **Hoisting.** ``[W_g; W_A] x`` (and the IHC ``W_G x + b_G``) is one product over the whole sequence,
  done by autograd outside the time loop.
* **Folding (IRC only).** ``W_g(α⊙(U_V h)) = R h`` with ``R = W_g·diag(α)·U_V`` (G·M × M), formed once
  per forward by autograd, so a step is one (B×M)·(M×G·M) product instead of two through the N-wide
  bottleneck. :func:`choose_fold` is the cost model; ``fold="on"/"off"`` forces either.
* **Hand-written backward through time.** The forward keeps only the h (and c) sequences. The backward
  recomputes all gates from them with ONE product over the whole sequence, turns the elementwise
  update into per-step coefficients (vectorised over time), and runs a reverse loop whose only
  product per step is the recurrent one (``dh_{t-1} += δ_t R``). The weight gradient of the recurrence
  is then ONE product after the loop (``dR = Σ_t δ_tᵀ h_{t-1}``), carried to W_g, θ_α, U_V (θ_ω) by
  autograd through the fold product.

``impl="torch"`` runs the loops with torch operations (any device, the `fused-torch` backend);
``impl="cpp"`` runs each loop as one C++ call (rnnbench/fused_cpp.py, a CPU, the `fused-cpp`
backend; :func:`pick_impl` makes `fused` take it where it builds); ``impl="triton"`` runs the loops
as Triton kernel launches (kernels/, the `triton` backend): one per step folded, two (one per
product) for unfolded IRC and IHC.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

import kernels
from rnnbench import fused_cpp, recurrences
from rnnbench.case import FOLDS
from rnnbench.cells.base import linear
from rnnbench.cells.family import Family
from rnnbench.cells.registry import get_family
from rnnbench.cells.regulated import RegulatedCell
from rnnbench.errors import ConfigError, DeviceError, SizeError

__all__ = ["FOLDS", "GATES", "IMPLS", "choose_fold", "declares", "fold_costs", "fused_forward",
           "fused_layer", "parse_fold", "pick_impl", "resolve_gates", "supports"]

#: where the time loops run: torch operations (any device), C++ (rnnbench/fused_cpp.py: a CPU,
#: float32/64, built on first use) or the Triton kernels (kernels/)
IMPLS = ("torch", "cpp", "triton")


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


def _kernel_layer(fam, wx, x, h0, out, C, beta):
    return kernels.Layer(fam, wx, x, h0, out, C, beta)


def _two_product(rec, params, **extra):
    return kernels.TwoProduct(**recurrences.kernel_operands(rec, params), **extra)


def _forward_torch(fam: Family, rec, store: bool, wx, x, h0, C, beta, params, out):
    """The time loop with torch operations; returns every step's gates when ``store``."""
    T, B, _ = wx.shape
    M, G = rec.M, rec.G
    A = wx[..., G * M:]
    rec.bind(wx[..., :G * M], x, params)
    # storing costs nothing in the loop: the gates are written where the backward reads them
    S_all = wx.new_empty(T, B, G * M) if store else None
    Pbuf = wx.new_empty(B, G * M)
    h = h0
    for t in range(T):
        P = S_all[t] if store else Pbuf
        rec.step(t, h, P)
        P.sigmoid_()
        hn, cn = fam.update(P.view(B, G, M).unbind(1), A[t], h, C[t] if C is not None else None,
                            x[t], beta)
        out[t].copy_(hn)
        if C is not None:
            C[t + 1].copy_(cn)
        h = out[t]
    rec.release()
    return S_all


def _forward_triton(fam: Family, rec, wx, x, h0, C, beta, params, out) -> None:
    layer = _kernel_layer(fam, wx, x, h0, out, C, beta)
    if isinstance(rec, recurrences.Folded):
        kernels.irc_forward(layer, params[0])
    else:
        kernels.two_product_forward(layer, _two_product(rec, params))


@dataclass
class _Backward:
    """What one layer's backward starts from, and the buffer it fills: dWX = [δ_t | d a_t]."""

    fam: Family
    rec: recurrences.Recurrence
    wx: torch.Tensor
    x: torch.Tensor
    h0: torch.Tensor
    out: torch.Tensor
    C: torch.Tensor | None
    beta: torch.Tensor | None
    S_all: torch.Tensor | None
    params: tuple
    dout: torch.Tensor
    dcT: torch.Tensor | None
    needs_params: tuple

    def __post_init__(self):
        T, B, W1 = self.wx.shape
        M, GM = self.rec.M, self.rec.G * self.rec.M
        self.T, self.B, self.M, self.GM = T, B, M, GM
        self.Hp = torch.cat((self.h0.unsqueeze(0), self.out[:-1]), 0)         # h_{t-1}, (T, B, M)
        self.Hp2d = self.Hp.reshape(T * B, M)
        self.A = self.wx[..., GM:]
        self.dWX = _new(self.wx, T, B, W1)
        self.dP = self.dWX[..., :GM]                            # gate gradients δ_t live in dWX
        self.dP2d = self.dP.reshape(T * B, GM)


def _gates_for_backward(b: _Backward) -> torch.Tensor:
    """Every step's gates (T, B, G, M): as stored by the forward, or recomputed with one product."""
    rec = b.rec
    if b.S_all is not None:
        rec.intermediates(b.Hp2d)
        return b.S_all.view(b.T, b.B, rec.G, b.M)
    gx2d = b.wx[..., :b.GM].reshape(b.T * b.B, b.GM)
    return torch.sigmoid(rec.recompute(b.Hp2d, gx2d)).view(b.T, b.B, rec.G, b.M)


def _reverse_loop_h(b: _Backward, k) -> tuple[torch.Tensor, torch.Tensor]:
    """Families without a cell state: returns (Gh, dh0), Gh the total gradient of every h_t."""
    T, rec, dout = b.T, b.rec, b.dout
    dP4 = b.dP.view(T, b.B, rec.G, b.M)
    Gh = torch.empty_like(b.out)
    Gh[T - 1] = dout[T - 1]
    base = torch.empty_like(b.h0)
    dh0 = torch.empty_like(b.h0)
    for t in range(T - 1, -1, -1):
        g = Gh[t]
        torch.mul(k.K[t], g.unsqueeze(1), out=dP4[t])
        if t > 0:
            torch.addcmul(dout[t - 1], g, k.Kh[t], out=base)
            rec.back_step(t, b.dP[t], base, Gh[t - 1])
        else:
            rec.back_step(t, b.dP[t], g * k.Kh[t], dh0)
    return Gh, dh0


def _reverse_loop_c(b: _Backward, k):
    """Families with a cell state: returns (Gh, Q, dh0, dc0), Q the total gradient of every c_t."""
    T, rec, dout, G = b.T, b.rec, b.dout, b.rec.G
    dP4 = b.dP.view(T, b.B, G, b.M)
    Gh = torch.empty_like(b.out)
    Gh[T - 1] = dout[T - 1]
    Q = torch.empty_like(b.out)
    gc = b.dcT
    dh0 = torch.empty_like(b.h0)
    for t in range(T - 1, -1, -1):
        g, q = Gh[t], Q[t]
        torch.addcmul(gc, g, k.Kq[t], out=q)
        torch.mul(k.Kc[t], q.unsqueeze(1), out=dP4[t, :, :G - 1])
        torch.mul(k.Ko[t], g, out=dP4[t, :, G - 1])
        gc = q * k.F[t]
        if t > 0:
            rec.back_step(t, b.dP[t], dout[t - 1], Gh[t - 1])
        else:
            rec.back_step(t, b.dP[t], torch.zeros_like(b.h0), dh0)
    return Gh, Q, dh0, gc


def _backward_torch(b: _Backward):
    """Gates, coefficients (all steps at once), the reverse loop, then the input and weight grads."""
    fam, rec = b.fam, b.rec
    rec.bind(b.wx[..., :b.GM], b.x, b.params)
    S = _gates_for_backward(b)
    Cp, Cn = (b.C[:-1], b.C[1:]) if b.C is not None else (None, None)
    k = fam.coefficients(S, b.A, b.x, b.Hp, Cp, Cn, b.beta)
    rec.prepare_backward(b.T, b.B)
    if fam.has_c:
        Gh, Q, dh0, dc0 = _reverse_loop_c(b, k)
    else:
        (Gh, dh0), Q, dc0 = _reverse_loop_h(b, k), None, None
    da, dx = fam.input_grads(S, b.A, Gh, Q, b.beta)
    b.dWX[..., b.GM:] = da
    dparams, dx_rec, _ = rec.grads(b.dP2d, b.Hp2d, b.needs_params)
    rec.release()
    return dh0, dc0, dx, dx_rec, dparams


def _backward_triton(b: _Backward):
    """The kernels' reverse loop; the weight gradients are products after it, in torch."""
    rec = b.rec
    layer = _kernel_layer(b.fam, b.wx, b.x, b.h0, b.out, b.C, b.beta)
    dout = b.dout.contiguous()
    if isinstance(rec, recurrences.Folded):
        dh0, dc0, dx = kernels.irc_backward(layer, b.params[0], dout, b.dcT, b.dWX)
        return dh0, dc0, dx, None, (b.dP2d.t() @ b.Hp2d,)
    # the N-wide intermediates of every step at once (one batched product), as the torch impl
    # does; the kernels then need only one product per launch in the reverse loop
    rec.bind(b.wx[..., :b.GM], b.x, b.params)
    rec.intermediates(b.Hp2d)
    T, B, N = b.T, b.B, rec.N
    rec.DD = _new(b.wx, T, B, N)               # δ_t W_g, filled by the kernels, read by grads
    extra = dict(D=rec.D.reshape(T, B, N).contiguous(), DD=rec.DD)
    if isinstance(rec, recurrences.IHC):
        extra.update(g=rec.g.reshape(T, B, N).contiguous(), Kgp=rec.Kgp.reshape(T, B, N).contiguous(),
                     V=rec.V.contiguous() if rec.stacked else None)
    ops = _two_product(rec, b.params, **extra)
    ops.hg = None
    dh0, dc0, dx = kernels.two_product_backward(layer, ops, dout, b.dcT, b.dWX)
    dparams, dx_rec, _ = rec.grads(b.dP2d, b.Hp2d, b.needs_params)
    rec.release()
    return dh0, dc0, dx, dx_rec, dparams


class RegulatedRecurrence(torch.autograd.Function):
    """One layer's time loop for any IRC/IHC family.

    apply(family, recurrence, impl, store, wx, x, h0, c0, beta, *params) -> (out (T,B,M), c_T)
      wx = x [W_g; W_A]ᵀ hoisted (T, B, (G+1)M); x (T, B, N); h0, c0 (B, M) (c0 may be None);
      beta (1,) or None; params as the recurrence defines them.
    Saves wx, x, h0, the outputs (the h sequence) and the c sequence; with ``store`` (torch impl
    only) also the gates of every step, which the backward then reads instead of recomputing.
    """

    @staticmethod
    def forward(ctx, fam: Family, rec, impl: str, store: bool, wx, x, h0, c0, beta, *params):
        T, B, _ = wx.shape
        out = _new(wx, T, B, rec.M)
        C = None
        if fam.has_c:
            C = _new(wx, T + 1, B, rec.M)
            C[0] = c0
        S_all = None
        if impl == "triton":
            _forward_triton(fam, rec, wx, x, h0, C, beta, params, out)
        else:
            S_all = _forward_torch(fam, rec, store, wx, x, h0, C, beta, params, out)
        cT = C[T].clone() if C is not None else out.new_zeros(0)
        if C is None:
            ctx.mark_non_differentiable(cT)
        ctx.fam, ctx.rec, ctx.impl = fam, rec, impl
        ctx.has_c0 = c0 is not None
        ctx.save_for_backward(wx, x, h0, out, C, beta, S_all, *params)
        return out, cT

    @staticmethod
    def backward(ctx, dout, dcT):
        fam = ctx.fam
        wx, x, h0, out, C, beta, S_all, *params = ctx.saved_tensors
        needs = ctx.needs_input_grad
        if dout is None:
            dout = torch.zeros_like(out)
        if fam.has_c and dcT is None:
            dcT = torch.zeros_like(h0)
        b = _Backward(fam, ctx.rec, wx, x, h0, out, C, beta, S_all, tuple(params), dout,
                      dcT if fam.has_c else None, needs[9:])
        run = _backward_triton if ctx.impl == "triton" else _backward_torch
        dh0, dc0, dx, dx_rec, dparams = run(b)
        if dx_rec is not None:
            dx = dx_rec if dx is None else dx + dx_rec
        dbeta = fam.beta_grad(b.dWX[..., b.GM:], b.A, beta) if fam.has_beta else None
        return (None, None, None, None, b.dWX, dx if needs[5] else None, dh0,
                dc0 if ctx.has_c0 else None, dbeta, *dparams)


# ---------------------------------------------------------------------------------------------------
# Cost model, support, the layer and stack entry points
# ---------------------------------------------------------------------------------------------------

def fold_costs(n_gates: int, N: int, M: int, *, tokens: int | None = None, diagonal: bool = False,
               backward: bool = True, merged: bool = False) -> tuple[float, float]:
    """Multiply-adds of one training step (fwd + bwd) of the recurrence, (folded, unfolded).

    Per token (one batch row, one step) each way does four products of the same shape: the forward
    step, the gate recompute in the backward, the backward step, and the weight-gradient product
    after the loop. Folded, each is M × G·M; unfolded, M × N then N × G·M (diagonal feedback: no
    M × N product). Folding adds a per-sequence cost independent of tokens: forming R = W_g diag(α) U_V
    (G·M·N·M) and carrying dR back through it (two more of the same), 3·G·M²·N in all.
    ``tokens = T·B``; without it the per-sequence cost is ignored (the limit of long sequences).

    Only products are counted. With diagonal feedback (N = M) there is no M × N product either way:
    folding scales W_g once (elementwise) where the unfolded loop scales h every step (elementwise),
    so both ways cost the same and the tie folds.

    backward=False: a forward alone (one product of each shape per token; forming R only).
    merged=True: the C++ loop with its input products in the loop (rnnbench/fused_cpp.py), whose
    unfolded step multiplies W_g by v_t = x_t + d_t: per token it saves the N × G·M product of x_t
    in the forward and, with a backward, the one of dW_g (δᵀ v as one product, not δᵀ x and δᵀ d).
    """
    G = n_gates
    if diagonal:
        per_fold, per_unfold, once = G * M * M, G * M * N, 0
    else:
        per_fold, per_unfold, once = G * M * M, M * N + N * G * M, 3 * G * M * M * N
    steps = 4.0 if backward else 1.0
    if not backward:
        once //= 3
    n = tokens if tokens is not None else 1
    folded = steps * n * per_fold + (once if tokens is not None else 0.0)
    unfolded = steps * n * per_unfold - ((2.0 if backward else 1.0) * n * G * M * N if merged else 0.0)
    return folded, unfolded


def choose_fold(n_gates: int, N: int, M: int, *, tokens: int | None = None,
                diagonal: bool = False, backward: bool = True, merged: bool = False) -> bool:
    """Fold R = W_g·diag(α)·U_V when it costs fewer multiply-adds (see :func:`fold_costs`).

    In the long-sequence limit, folding wins when G·M² < (G+1)·N·M, i.e. M < (1 + 1/G)·N:
    IRC-GRU (G = 2) M < 1.5 N, IRC-LSTM (G = 3) M < 1.33 N, IRC-FastGRNN/PRU (G = 1) M < 2 N.
    With diagonal feedback (SRU, T-LSTM; N = M) the step costs the same either way and folding just
    merges the scale into W_g, so it is chosen (ties fold).
    """
    folded, unfolded = fold_costs(n_gates, N, M, tokens=tokens, diagonal=diagonal,
                                  backward=backward, merged=merged)
    return folded <= unfolded


def _family_of(spec) -> Family | None:
    """The declared family of a spec whose cells are regulated, else None."""
    if spec.variant not in ("irc", "ihc") or not issubclass(spec.cls, RegulatedCell):
        return None
    return get_family(spec.family)


def declares(spec, impl: str = "torch") -> tuple[bool, str]:
    """Whether fused_forward covers this cell spec with this impl (wherever the impl can run)."""
    name = spec.label if hasattr(spec, "label") else str(spec)
    if getattr(spec, "variant", None) not in ("irc", "ihc"):
        return False, (f"{name}: the fused backend covers the IRC and IHC cells only "
                       "(baselines have no regulated input to fold)")
    fam = _family_of(spec)
    if fam is None:
        return False, f"{name}: family {spec.family!r} declares no regulated update"
    if impl == "triton" and not fam.has_triton:
        return False, f"{name}: family {fam.name!r} declares no Triton update (or has over 3 gates)"
    if impl == "cpp" and fam.cpp_source() is None:
        return False, f"{name}: family {fam.name!r} declares no C++ update (CPP_UPDATE)"
    if impl not in IMPLS:
        return False, f"unknown impl {impl!r}; choose {', '.join(IMPLS)}"
    return True, ""


def supports(spec, impl: str = "torch") -> tuple[bool, str]:
    """Whether fused_forward runs this cell spec (and impl) here; the reason when it does not."""
    ok, why = declares(spec, impl)
    if ok and impl == "triton":
        ok, why = kernels.available()
    elif ok and impl == "cpp":
        ok, why = fused_cpp.available()
        why = why and f"the C++ loop is unavailable: {why}"
    return ok, why if not ok else ""


def pick_impl(spec, device, dtype) -> str:
    """The `fused` backend's loops: "cpp" where the C++ loop takes this family, device and dtype and
    builds, else "torch". A failed build is said once, in one line on stderr (fused_cpp.note_fallback)."""
    if not (fused_cpp.runs(device, dtype) and declares(spec, "cpp")[0]):
        return "torch"
    if fused_cpp.available()[0]:
        return "cpp"
    fused_cpp.note_fallback()
    return "torch"


_FOLD_WORDS = {"auto": "auto", "on": "on", "off": "off", True: "on", False: "off"}


def parse_fold(fold) -> str:
    """One of :data:`rnnbench.case.FOLDS` (True/False also taken, for callers of the Python API)."""
    word = _FOLD_WORDS.get(fold) if isinstance(fold, (str, bool)) else None
    if word is None:
        raise ConfigError(f"fold must be one of {', '.join(FOLDS)}, got {fold!r}")
    return word


def _resolve_fold(fold, G, N, M, tokens, diagonal, backward=True, merged=False) -> bool:
    fold = parse_fold(fold)
    if fold == "auto":
        return choose_fold(G, N, M, tokens=tokens, diagonal=diagonal, backward=backward,
                           merged=merged)
    return fold == "on"


GATES = ("auto", "store", "recompute")


def resolve_gates(gates: str, impl: str, device) -> bool:
    """Whether the forward keeps every step's gates for the backward (True) or the backward
    recomputes them from the h sequence (False).

    "auto" stores on a CPU with the torch impl: there the products bound the time, and the recompute
    is one more (T·B × M)·(M × G·M) product for memory that equals the gate part of the hoisted
    buffer already saved. Elsewhere, and always in the Triton kernels, the gates are recomputed
    (issue #4's design: a GPU recomputes a gate faster than it reads one back at large sizes).
    The C++ loop always stores (its loop writes them where the backward reads them).
    """
    if gates not in GATES:
        raise ConfigError(f"gates must be one of {', '.join(GATES)}, got {gates!r}")
    if impl == "cpp":
        if gates == "recompute":
            raise ConfigError("the C++ loop keeps the gates for the backward; gates='recompute' "
                              "is for the torch impl (fused-recompute)")
        return True
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
    fam = cell.family
    T, B, N = x.shape
    conn = cell.connection
    h0 = state[0]
    # without a backward to come (inference, no_grad) the gates are scratch, as in the plain loop
    store = resolve_gates(gates, impl, x.device) and torch.is_grad_enabled() and (
        x.requires_grad or h0.requires_grad or any(p.requires_grad for p in cell.parameters()))
    # the C++ backend's products are its own (rnnbench/csrc/products.cpp), outside the loop too,
    # and it does the input products itself (wx = None): a two-product step multiplies W_g by
    # x_t + d_t, which changes what folding saves (fold_costs: merged); the torch and Triton loops
    # keep the training step's count
    cpp = impl == "cpp"
    lin, mm = (fused_cpp.linear, fused_cpp.matmul) if cpp else (linear, None)
    if conn.kind == "irc":
        use_fold = _resolve_fold(fold, fam.n_gates, N, cell.hidden_size, T * B, conn.diagonal,
                                 backward=store or not cpp, merged=cpp)
    else:
        use_fold = parse_fold(fold) == "on"          # refused by the recurrence: IHC never folds
    # hoisted: every gate's input part and the candidate, one product for the whole sequence
    wx = None if cpp else lin(x, cell.W)
    rec, params = recurrences.for_cell(cell, wx, x, use_fold=use_fold, impl=impl, matmul=mm,
                                       linear=lin)
    c0 = state[1] if fam.has_c else None
    if impl in ("triton", "cpp"):
        wx = wx.contiguous() if wx is not None else None
        x = x.contiguous()
        params = tuple(p.contiguous() for p in params)
    if impl == "cpp":
        out, cT = fused_cpp.CppRecurrence.apply(fam, rec, impl, store, x, h0, c0, cell.beta(),
                                                cell.W, *params)
    else:
        out, cT = RegulatedRecurrence.apply(fam, rec, impl, store, wx, x, h0, c0, cell.beta(),
                                            *params)
    finals = (out[-1], cT) if fam.has_c else (out[-1],)
    return cell.finish(out), finals


def fused_forward(stack, x: torch.Tensor, state=None, *, fold="auto", impl: str = "torch",
                  gates: str = "auto"):
    """RecurrentStack.forward with the fused algorithm: same (out, finals), same gradients.

    fold: "auto" (the cost model, :func:`choose_fold`), "on" or "off" (IRC only; IHC never folds);
    True/False are read as on/off.
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
        if not (x.is_cuda or kernels.interpreting()):
            raise DeviceError("the triton backend needs CUDA tensors (or TRITON_INTERPRET=1 on CPU)")
        x = x.contiguous()
    if impl == "cpp" and not fused_cpp.runs(x.device, x.dtype):
        raise DeviceError(f"the C++ loop runs float32 and float64 on a CPU, got "
                          f"{str(x.dtype).removeprefix('torch.')} on {x.device}")
    if state is None:
        state = stack.init_state(x.shape[1], dtype=x.dtype, device=x.device)
    finals = []
    for cell, st in zip(stack.layers, state):
        x, st = fused_layer(cell, x, tuple(st), fold=fold, impl=impl, gates=gates)
        finals.append(st)
    if stack.batch_first:
        x = x.transpose(0, 1)
    return x, finals
