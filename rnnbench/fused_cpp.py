"""The `fused-cpp` backend: rnnbench/fused.py's IRC/IHC algorithm with its time loops in C++.

Folding and the recurrences' parameter gradients stay as rnnbench/fused.py does them (autograd
around one autograd Function per layer, the products' parameters from rnnbench/recurrences.py), with
every product done by the extension's own GEMM (rnnbench/csrc/products.cpp: :func:`mm`,
:func:`matmul`, :func:`linear`). This module replaces that Function's two Python loops, the forward
and the hand-written reverse loop, by one C++ call each (rnnbench/csrc/irc_loop.cpp), which runs the
whole sequence on one team of threads: each thread owns a range of hidden units and every gate of
them, packs its columns of the weights once, and per step computes its products and then applies the
family's update (forward) or derivative (backward) to its units; the team meets once a step (twice
for a two-product recurrence with a product on h). The Function does the input products itself: from
IN_LOOP_MIN_BATCH rows of batch up the loop computes x_t Wᵀ step by step, below that one product
comes before the loop; a two-product step multiplies W_g by x_t + d_t (merged). Nothing is
allocated per step. The gates are always kept
for the backward (free in the loop; the torch impl's `gates="recompute"` does not apply).

Each family's elementwise update is a C++ snippet at the end of its own module,
``rnnbench/cells/<family>.py``: ``CPP_UPDATE = {"forward": ..., "backward": ...}``
(:meth:`Family.cpp_source` reads it; a family without one runs `fused` on the torch loop and is not
covered by `fused-cpp`). The two function bodies use these names (T is the scalar type, float or
double; ``sigm`` and ``tanh_`` are there):

* forward: in ``s[k]`` (the k-th gate after σ, in the family's gate order), ``a`` (the candidate
  W_A x_t), ``x`` (x_t, for a family that reads x; N = M), ``h``, ``c`` (h_{t-1}, c_{t-1}),
  ``beta``; out ``h_new`` (and ``c_new``).
* backward: the same plus ``h_new``, ``c_new`` (h_t, c_t), ``g`` (dL/dh_t, total) and ``gc``
  (dL/dc_t arriving from step t+1); out ``ds[k]`` (dL/d s_k; the loop applies σ'), ``da``, and
  where they are not zero ``dh`` (the direct part of dL/dh_{t-1}), ``dc`` (dL/dc_{t-1}), ``dx``
  (the direct dL/dx_t) and ``dbeta`` (summed by the loop).

The extension is built on first use with torch.utils.cpp_extension (gcc or clang, and ninja) and
cached by torch (~/.cache/torch_extensions) under a name that carries the source's hash, so a
changed snippet rebuilds; a family declared later with a snippet (a test's) rebuilds too. When it
cannot be built, :func:`available` says why in one line and `fused` keeps its torch loop.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
from pathlib import Path

import torch

from rnnbench import recurrences
from rnnbench.cells import registry
from rnnbench.cells.family import Family
from rnnbench.cells.registry import declared_families
from rnnbench.errors import ConfigError

__all__ = ["available", "load", "generate_source", "CppRecurrence", "build_seconds", "runs", "matmul",
           "linear", "mm", "team", "inputs_in_loop"]

SOURCE = Path(__file__).with_name("csrc") / "irc_loop.cpp"
PRODUCTS = Path(__file__).with_name("csrc") / "products.cpp"   # compiled first, in the same unit
MARKER = "// @FAMILIES@"
DTYPES = (torch.float32, torch.float64)
# the C++ recurrence kinds (enum Mix in irc_loop.cpp)
FOLDED, IRC_FULL, IRC_DIAG, IHC_FULL, IHC_DIAG = range(5)

_FWD_ARGS = "const T* s, T a, T x, T h, T c, T beta, T& h_new, T& c_new"
_BWD_ARGS = ("const T* s, T a, T x, T h, T c, T h_new, T c_new, T beta, T g, T gc, T* ds, T& da, "
             "T& dx, T& dh, T& dc, T& dbeta")

_state: tuple[object, str] | None = None     # (extension module or None, why not)
_built_for: tuple[Family, ...] | None = None  # the families that module was generated from
_checked_at = -1                             # the registry's generation _built_for was checked at
_noted = False
build_seconds: float | None = None           # this process's build (or cache load) time


def _with_cpp() -> tuple[Family, ...]:
    """The declared families that write a C++ update, in the registry's order."""
    return tuple(f for f in declared_families() if f.cpp_source() is not None)


def generate_source(families: tuple[Family, ...] | None = None) -> str:
    """irc_loop.cpp with one ``struct Fam_<family>`` per family inserted, made from its snippet."""
    parts = ["namespace irc {"]
    names = []
    for fam in _with_cpp() if families is None else families:
        name, update = fam.name, fam.cpp_source()
        if not name.isidentifier():
            raise ValueError(f"family name {name!r} is not a C++ identifier")
        if not isinstance(update, dict) or set(update) != {"forward", "backward"}:
            raise ValueError(f"{fam.module}.CPP_UPDATE must be a dict with the keys forward and "
                             "backward")
        names.append(name)
        flags = (f"HAS_C = {str(fam.has_c).lower()}, USES_X = {str(fam.reads_x).lower()}, "
                 f"HAS_BETA = {str(fam.has_beta).lower()}")
        parts.append(
            f"struct Fam_{name} {{  // from rnnbench/cells (CPP_UPDATE of {name})\n"
            f"  static constexpr int G = {fam.n_gates};\n"
            f"  static constexpr bool {flags};\n"
            f"  template <typename T> static IRC_INLINE void forward({_FWD_ARGS}) {{\n"
            f"{update['forward']}\n  }}\n"
            f"  template <typename T> static IRC_INLINE void backward({_BWD_ARGS}) {{\n"
            f"{update['backward']}\n  }}\n}};")
    parts.append("}  // namespace irc")
    parts.append("#define IRC_FAMILIES(X) " + " ".join(f"X({n})" for n in names))
    text = SOURCE.read_text(encoding="utf-8")
    if MARKER not in text:  # pragma: no cover - a broken checkout
        raise ValueError(f"{SOURCE} lacks its {MARKER} line")
    return PRODUCTS.read_text(encoding="utf-8") + "\n" + text.replace(MARKER, "\n".join(parts), 1)


def _one_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    # a compiler failure's useful line is its first "error:", not torch's preamble
    err = next((ln for ln in lines if "error:" in ln), lines[0] if lines else type(e).__name__)
    return err if len(err) <= 200 else err[:199] + "…"


def _build(families: tuple[Family, ...]) -> tuple[object, str]:
    global build_seconds
    if os.environ.get("RNNBENCH_NO_CPP", "") not in ("", "0"):
        return None, "RNNBENCH_NO_CPP is set"
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        return None, f"no C++ compiler ({cxx!r} not found; set CXX)"
    from torch.utils import cpp_extension
    if not cpp_extension.is_ninja_available():
        return None, "ninja is not installed (pip install ninja)"
    try:
        src = generate_source(families)
        name = "rnnbench_irc_loop_" + hashlib.sha256(src.encode()).hexdigest()[:16]
        t0 = time.perf_counter()
        # -ffp-contract=fast: ISO C++ mode would forbid the fused multiply-adds the product tiles
        # are written for; OpenMP for the loops' thread team (the libgomp torch itself loads)
        module = cpp_extension.load_inline(
            name=name, cpp_sources=[src], extra_cflags=["-O3", "-ffp-contract=fast", "-fopenmp"],
            extra_ldflags=["-fopenmp"], verbose=False)
        build_seconds = time.perf_counter() - t0
    except Exception as e:  # a failed build of any kind means: keep the torch loop
        return None, f"building the C++ loop failed: {_one_line(e)}"
    return module, ""


def load():
    """The extension module, built (or loaded from torch's cache) on the first call, and again when
    the families with a C++ update have changed; None when it cannot be built."""
    global _state, _built_for, _checked_at
    # every fused forward asks; the families are looked at again only after a (un)registration
    if _state is not None and _checked_at == registry.generation():
        return _state[0]
    families = _with_cpp()
    if _state is None or families != _built_for:
        _state, _built_for = _build(families), families
    _checked_at = registry.generation()
    return _state[0]


def available() -> tuple[bool, str]:
    """(True, "") when the C++ loop runs here, else (False, the reason in one line)."""
    load()
    return _state[0] is not None, _state[1]


def note_fallback(stream=None) -> None:
    """Say once per process, in one line on stderr, why `fused` keeps its torch loop."""
    global _noted
    ok, why = available()
    if ok or _noted:
        return
    _noted = True
    print(f"rnnbench: note: fused runs its torch loop, the C++ loop is unavailable: {why}",
          file=stream or sys.stderr)


def runs(device, dtype) -> bool:
    """Whether the C++ loop takes tensors of this device and dtype (it is built lazily, later)."""
    return torch.device(device).type == "cpu" and dtype in DTYPES


# ---------------------------------------------------------------------------------------------------
# Products (rnnbench/csrc/products.cpp) and the loops' thread team
# ---------------------------------------------------------------------------------------------------

# The hidden units a loop thread owns come in multiples of GRAIN (a whole vector of float32); below
# MIN_STEP_WORK multiply-adds per step one thread runs the loop alone: a step that small takes
# about as long as the team's meeting point. Tests lower both to reach every partition on tiny sizes.
GRAIN = 16
MIN_STEP_WORK = 1 << 15


# From this batch size up the loop computes the input products x_t Wᵀ itself, step by step, and
# their share of dL/dx in the reverse loop (each thread's columns while its cache holds them;
# measured in docs/kernels.md); below it one product over the whole sequence comes before the loop,
# where its weights would otherwise crowd R out of a thread's cache every step.
IN_LOOP_MIN_BATCH = 8


def inputs_in_loop(batch: int) -> bool:
    """Whether the C++ loop computes the layer's input products itself (see IN_LOOP_MIN_BATCH)."""
    return batch >= IN_LOOP_MIN_BATCH


def team(step_work: int) -> tuple[int, int]:
    """(threads, grain) for a loop whose step costs `step_work` multiply-adds: torch's thread
    count (`torch.set_num_threads`, rnnbench's --threads), or one thread for a tiny step."""
    threads = torch.get_num_threads() if step_work >= MIN_STEP_WORK else 1
    return threads, GRAIN


def mm(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None,
       accumulate: bool = False) -> torch.Tensor:
    """a @ b (2-D, any strides: a transposed view costs nothing) by the extension's product, into
    `out` (contiguous rows; added to it with accumulate) or a new tensor. No autograd."""
    c = a.new_empty(a.shape[0], b.shape[1]) if out is None else out
    load().mm(a, b, c, accumulate, torch.get_num_threads())
    return c


class _Matmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return mm(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        da = mm(g, b.t()) if ctx.needs_input_grad[0] else None
        db = mm(a.t(), g) if ctx.needs_input_grad[1] else None
        return da, db


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b for 2-D tensors with autograd, both directions by the extension's product."""
    return _Matmul.apply(a, b)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """rnnbench.cells.base.linear (x @ weight.T + bias over any leading dimensions) by :func:`matmul`."""
    y = matmul(x.reshape(-1, x.shape[-1]), weight.t())
    if bias is not None:
        y = y + bias
    return y.reshape(*x.shape[:-1], weight.shape[0])


# ---------------------------------------------------------------------------------------------------
# The autograd Function
# ---------------------------------------------------------------------------------------------------

def _empty(like):
    return like.new_empty(0)


def _operands(rec, params):
    """(mix, W1, V, vec, hg) of the C++ loop for one of rnnbench.recurrences' recurrences."""
    e = _empty(params[0])
    if isinstance(rec, recurrences.Folded):
        return FOLDED, params[0].contiguous(), e, e, e
    if isinstance(rec, recurrences.Unfolded):
        Wg, alpha, UV = params
        return IRC_FULL, Wg.contiguous(), UV.contiguous(), alpha.contiguous(), e
    if isinstance(rec, recurrences.UnfoldedDiag):
        Wg, s = params
        return IRC_DIAG, Wg.contiguous(), e, s.contiguous(), e
    Wg, fbw, Gamma, hg = params
    if rec.gamma_input != "h":  # pragma: no cover - fused_layer rewrites Γ on the feedback
        raise ValueError("the C++ loop takes IHC with Γ acting on h (recurrences.for_cell "
                         "rewrites the feedback form)")
    if rec.diagonal:
        return IHC_DIAG, Wg.contiguous(), Gamma.contiguous(), fbw.contiguous(), hg.contiguous()
    return IHC_FULL, Wg.contiguous(), torch.cat((fbw, Gamma), 0), e, hg.contiguous()


class CppRecurrence(torch.autograd.Function):
    """rnnbench.fused.RegulatedRecurrence with C++ loops: its apply() arguments and results, but
    without wx and with W, the layer's stacked input weight ((G+1)·M × N), before the recurrence's
    parameters: the Function does the input products itself and its backward returns dL/dW as one
    tensor. From IN_LOOP_MIN_BATCH rows up (see :func:`inputs_in_loop`) the loop computes x_t Wᵀ
    step by step, and the reverse loop dL/dx_t's share from them; below, one product before the
    loop. Either way a two-product recurrence is merged: its loop multiplies W_g by
    v_t = x_t + d_t, so only the candidate's W_A x is computed apart, and the backward forms
    dL/dW_g = δᵀ V as one product. Saves wx, x, h0, the h and c
    sequences and every step's gates (when a backward will come).
    """

    @staticmethod
    def forward(ctx, fam, rec, impl, store, x, h0, c0, beta, W, *params):
        from rnnbench.fused import _new

        if not runs(x.device, x.dtype):
            raise ConfigError(f"the C++ loop runs float32 and float64 on a CPU, got "
                              f"{str(x.dtype).removeprefix('torch.')} on {x.device}")
        ext = load()
        if ext is None:
            raise ConfigError(f"the C++ loop is unavailable: {_state[1]}")
        T, B, N = x.shape
        M, G = rec.M, rec.G
        x, h0 = x.contiguous(), h0.contiguous()
        e = _empty(x)
        # store: a backward will come (fused_layer's word); without one, gates and the loop-made wx
        # are one step's scratch
        keep = T if store and any(ctx.needs_input_grad) else 1
        mix, W1, V, vec, hg = _operands(rec, params)
        in_loop = inputs_in_loop(B)
        W, Win = W.contiguous(), e
        if in_loop:
            wx, Win = _new(x, keep, B, W.shape[0]), W          # the loop fills it step by step
        else:
            # merged: only the candidate's columns of wx are read (the gates take W_g v_t)
            first = G * M if mix != FOLDED else 0
            wx = _new(x, T, B, W.shape[0])
            mm(x.view(T * B, N), W[first:].t(), out=wx.view(T * B, -1)[:, first:])
        out = _new(wx, T, B, M)
        C = e
        if fam.has_c:
            C = _new(wx, T + 1, B, M)
            C[0] = c0
        S = _new(wx, keep, B, G * M)
        b = float(beta) if beta is not None else 0.0
        K1 = M if mix == FOLDED else N
        step_work = B * (G * M * K1 + (V.shape[0] * M if V.numel() else 0)
                         + (Win.shape[0] * N if Win.numel() else 0))
        ctx.team = team(step_work)
        ext.forward(fam.name, mix, wx, x, h0, out, C, S, b, W1, V, vec, hg, Win, *ctx.team)
        cT = C[T].clone() if fam.has_c else out.new_zeros(0)
        if not fam.has_c:
            ctx.mark_non_differentiable(cT)
        ctx.fam, ctx.rec, ctx.mix, ctx.in_loop = fam, rec, mix, in_loop
        ctx.has_c0 = c0 is not None
        ctx.save_for_backward(wx, x, h0, out, C if fam.has_c else None, beta, S, W, *params)
        return out, cT

    @staticmethod
    def backward(ctx, dout, dcT):
        from rnnbench.fused import _new

        fam, rec, mix = ctx.fam, ctx.rec, ctx.mix
        wx, x, h0, out, C, beta, S, W, *params = ctx.saved_tensors
        T, B, W1w = wx.shape
        M, G, N = rec.M, rec.G, x.shape[2]
        GM = G * M
        needs = ctx.needs_input_grad
        NP = 9           # where the recurrence's parameters start among apply()'s arguments
        dout = torch.zeros_like(out) if dout is None else dout.contiguous()
        e = _empty(wx)
        dcT = (torch.zeros_like(h0) if dcT is None else dcT.contiguous()) if fam.has_c else e
        dWX = _new(wx, T, B, W1w)
        dx_direct = _new(wx, T, B, N) if fam.reads_x else e
        # the input products' share of dL/dx: the reverse loop's, step by step, or one product
        # after it (below)
        dx_in = _new(wx, T, B, N) if ctx.in_loop and needs[4] else e
        dh0 = torch.empty_like(h0)
        dc0 = torch.empty_like(h0) if fam.has_c else e
        _, W1, V, _, _ = _operands(rec, params)
        Hp2d = torch.cat((h0.unsqueeze(0), out[:-1]), 0).reshape(T * B, M)
        DD = c1 = c2 = c3 = e
        if mix != FOLDED:
            # the N-wide intermediates of every step at once, as the torch impl's backward has them
            rec.bind(wx[..., :GM], x, params)
            rec.intermediates(Hp2d)
            DD = rec.DD = _new(wx, T, B, N)
            if mix == IRC_FULL:
                c1 = params[1].contiguous().expand(T, B, N)
            elif mix == IRC_DIAG:
                c3 = params[1].contiguous().expand(T, B, N)
            elif mix == IHC_FULL:
                c1 = rec.g.reshape(T, B, N).contiguous()
                c2 = rec.Kgp.reshape(T, B, N).contiguous()
            else:
                c1 = rec.Kgp.reshape(T, B, N).contiguous()
                c3 = (rec.g * params[1]).reshape(T, B, N).contiguous()
        b = float(beta) if beta is not None else 0.0
        dbeta_sum = load().backward(fam.name, mix, wx, x, h0, out, C if C is not None else e, S, b,
                                    dout, dcT, dWX, dx_direct, dh0, dc0, W1, V, DD, c1, c2, c3,
                                    W if ctx.in_loop else e, dx_in, *ctx.team)
        dP2d = dWX[..., :GM].reshape(T * B, GM)
        x2d = x.reshape(T * B, N)
        if not ctx.in_loop and needs[4]:
            dx_in = mm(dWX.view(T * B, W1w), W).view(T, B, N)
        dx = [d for d in (dx_direct, dx_in) if d.numel()]
        dW = None
        if mix == FOLDED:
            dparams = (mm(dP2d.t(), Hp2d) if needs[NP] else None,)
        else:
            # merged (the loop multiplied W_g by v = x + d): dW_g = δᵀ v as one product, given
            # below with W's gradient, instead of δᵀ d here and δᵀ x there
            dparams, dx_rec, _ = rec.grads(dP2d, Hp2d, (needs[NP] and not needs[8],)
                                           + tuple(needs[NP + 1:]))
            if needs[8]:
                dW = _new(wx, W1w, N)
                # rec.D is not read again: v = x + d in its place, no temporary
                mm(dP2d.t(), rec.D.add_(x2d), out=dW[:GM])
                mm(dWX[..., GM:].reshape(T * B, W1w - GM).t(), x2d, out=dW[GM:])
            rec.release()
            if dx_rec is not None:
                dx.append(dx_rec)
        dx = (dx[0] if len(dx) == 1 else sum(dx[1:], dx[0])) if dx and needs[4] else None
        if needs[8] and dW is None:
            dW = mm(dWX.reshape(T * B, W1w).t(), x2d)
        dbeta = torch.full((1,), dbeta_sum, dtype=wx.dtype) if fam.has_beta else None
        return (None, None, None, None, dx, dh0, dc0 if ctx.has_c0 else None, dbeta, dW, *dparams)
