"""Triton kernels for the recurrence of every IRC/IHC cell family (the `triton` backend).

Nothing here imports Triton until a kernel is used: :func:`available` says whether the kernels can
run (a CUDA device, or the Triton interpreter with ``TRITON_INTERPRET=1`` on CPU tensors), and why
not. The kernels live in :mod:`kernels.irc_triton`, the loops that launch them in
:mod:`kernels.launch`; rnnbench/fused.py binds them into autograd.

Entry points, called by rnnbench.fused; a layer's tensors travel as one :class:`Layer`, which names
its family (rnnbench/cells/family.py): the kernels are generic, and the family's Triton update and
derivative are compiled into them (handed over as constexpr functions).

* :func:`irc_forward`  - the time loop of one folded IRC layer (R = W_g·diag(α)·U_V): fills out
  (T,B,M) and C (T+1,B,M).
* :func:`irc_backward` - its reverse loop: fills dWX = [δ_t | d a_t] (T,B,(G+1)M); returns dh0, dc0, dx.
* :func:`two_product_forward` / :func:`two_product_backward` - the same for the recurrences with an
  N-wide intermediate d_t between h_{t-1} and the gates: unfolded IRC and every IHC cell
  (operands in a :class:`TwoProduct`). Two launches per step, one per product; always per step
  (:data:`MODE` does not apply).

Which folded loop runs is :data:`MODE`: ``"step"`` (one fused launch per time step, any M),
``"persistent"`` (one launch for the whole sequence, each program owns a block of batch rows and all
M columns and keeps h, c and R on chip; M up to :data:`PERSISTENT_MAX_M`), or ``"auto"`` (persistent
when it fits).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass

import torch

from kernels import launch
from rnnbench.cells.family import Family

#: "auto", "step" or "persistent"
MODE = "auto"
#: the persistent kernels hold R (G·M², twice in the backward) and M-wide rows in registers: only
#: for small M (compiled for sm_90 here: fp32 spills from M = 64, bf16 is at the register limit)
PERSISTENT_MAX_M = 32
#: tl.dot precision for float32 operands on the GPU: None follows
#: torch.backends.cuda.matmul.allow_tf32 (default False: "ieee", exact fp32); or "ieee" / "tf32"
FP32_PRECISION: str | None = None

_TRUE = ("1", "true", "yes", "on")


def interpreting() -> bool:
    """Whether Triton will interpret kernels (TRITON_INTERPRET=1): they then run on CPU tensors."""
    return os.environ.get("TRITON_INTERPRET", "").strip().lower() in _TRUE


def available() -> tuple[bool, str]:
    """(True, what runs them) or (False, why the triton backend cannot run here)."""
    if importlib.util.find_spec("triton") is None:
        return False, "triton is not installed (pip install triton; Linux only)"
    mismatch = _import_mode_mismatch()
    if mismatch:
        return False, mismatch
    if interpreting():
        return True, "Triton interpreter (TRITON_INTERPRET=1): CPU tensors, for testing, not for timing"
    try:
        if not torch.cuda.is_available():
            return False, ("no CUDA device: the Triton kernels need an NVIDIA GPU "
                           "(TRITON_INTERPRET=1 runs them on CPU tensors for testing)")
        return True, f"CUDA: {torch.cuda.get_device_name()}"
    except Exception as e:  # pragma: no cover - broken driver
        return False, f"CUDA unusable: {type(e).__name__}: {e}"


def _import_mode_mismatch() -> str:
    """Triton's own @jit library functions (tl.zeros, ...) are built interpreted or compiled when
    triton.language is first imported; kernels cannot switch after that."""
    tl = sys.modules.get("triton.language")
    if tl is None:
        return ""
    was_interpreted = type(getattr(tl, "zeros", None)).__name__ == "InterpretedFunction"
    if was_interpreted == interpreting():
        return ""
    if interpreting():
        return ("triton was imported before TRITON_INTERPRET=1 was set, so its kernels cannot run "
                "in the interpreter in this process; set TRITON_INTERPRET=1 before triton is first "
                "imported (e.g. at the top of conftest.py)")
    return ("triton was imported with TRITON_INTERPRET=1 and it is no longer set; "
            "the kernels in this process are interpreted")


def _module():
    """kernels.irc_triton, (re)imported so its kernels match the current TRITON_INTERPRET setting.

    @triton.jit decides interpreter vs compiler when the module is imported, so a module imported
    before TRITON_INTERPRET was set is reloaded here.
    """
    ok, why = available()
    if not ok:
        raise RuntimeError(why)
    name = "kernels.irc_triton"
    mod = sys.modules.get(name)
    if mod is None:
        return importlib.import_module(name)
    if mod.INTERPRET != interpreting():
        mod = importlib.reload(mod)
    return mod


def uses_interpreter_kernels() -> bool:
    """True when the kernels can run, and do, as Triton InterpretedFunctions (the tests' guard)."""
    if not available()[0]:
        return False
    return _module().kernels_are_interpreted()


@contextlib.contextmanager
def mode(value: str):
    """Temporarily set :data:`MODE` ("auto", "step", "persistent")."""
    global MODE
    if value not in ("auto", "step", "persistent"):
        raise ValueError(f"mode must be auto, step or persistent, got {value!r}")
    old, MODE = MODE, value
    try:
        yield
    finally:
        MODE = old


def pick_mode(M: int) -> str:
    if MODE != "auto":
        return MODE
    return "persistent" if M <= PERSISTENT_MAX_M else "step"


@dataclass
class Layer:
    """One layer's tensors as every entry point takes them: contiguous, one dtype and device.

    wx (T, B, (G+1)M) hoisted [W_g x | W_A x]; x (T, B, N) (read by families that read x, and by
    IHC); h0 (B, M); out (T, B, M), filled by the forward; C (T+1, B, M) with C[0] = c_0, filled by
    the forward (families with a cell state; else None); beta (1,) or None.
    """

    family: Family
    wx: torch.Tensor
    x: torch.Tensor
    h0: torch.Tensor
    out: torch.Tensor
    C: torch.Tensor | None = None
    beta: torch.Tensor | None = None


@dataclass
class TwoProduct:
    """The operands of an unfolded-IRC or IHC recurrence (kernels.irc_triton.two_product_forward).

    Wg (GM, N); UV (N, M), or None for diagonal feedback (N = M); vec (N): α (IRC), α⊙ω_V (IRC,
    diagonal) or ω_V (IHC, diagonal), else None; Gam (N, M): Γ acting on h (IHC) or None; hg
    (T, B, N): W_G x + b_G (IHC). For the backward, what torch computed before the loop, each
    (T, B, N): D (d_t), and for IHC g and Kgp (the gate and its derivative factor); V = [U_V; Γ]
    (2N, M) for IHC with full U_V; DD (T, B, N), filled with δ_t W_g.
    """

    Wg: torch.Tensor
    UV: torch.Tensor | None = None
    vec: torch.Tensor | None = None
    Gam: torch.Tensor | None = None
    hg: torch.Tensor | None = None
    D: torch.Tensor | None = None
    V: torch.Tensor | None = None
    g: torch.Tensor | None = None
    Kgp: torch.Tensor | None = None
    DD: torch.Tensor | None = None

    @property
    def ihc(self) -> bool:
        return self.Gam is not None

    @property
    def diagonal(self) -> bool:
        return self.UV is None


def irc_forward(layer: Layer, R) -> None:
    """Run one folded IRC layer forward (R = W_g·diag(α)·U_V, (GM, M)): fills layer.out and layer.C."""
    launch.irc_forward(_module(), layer, R, mode=pick_mode(layer.h0.shape[-1]))


def irc_backward(layer: Layer, R, dout, dcT, dWX):
    """The reverse loop of one folded IRC layer: fills dWX = [δ_t | d a_t] (T, B, (G+1)M).
    Returns (dh0, dc0 or None, dx or None); dx is the direct gradient of x (families reading x)."""
    return launch.irc_backward(_module(), layer, R, dout, dcT, dWX, mode=pick_mode(layer.h0.shape[-1]))


def two_product_forward(layer: Layer, ops: TwoProduct) -> None:
    """Run one unfolded-IRC or IHC layer forward: fills layer.out and layer.C."""
    launch.two_product_forward(_module(), layer, ops)


def two_product_backward(layer: Layer, ops: TwoProduct, dout, dcT, dWX):
    """The reverse loop of one unfolded-IRC or IHC layer: fills dWX and ops.DD; returns as
    :func:`irc_backward` (dx: the family's direct part only; IHC's part comes from DD afterwards)."""
    return launch.two_product_backward(_module(), layer, ops, dout, dcT, dWX)
