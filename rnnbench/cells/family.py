"""What a cell family declares once, for every implementation to derive from.

A regulated (IRC/IHC) cell is the same in every family up to its elementwise update (see
regulated.py): per step ``gates = σ(W_g v_t)``, ``a = W_A x_t`` and then

    h', c' = update(gates, a, h, c, x, β)

A family module (``rnnbench/cells/<family>.py``) writes that update, its derivative and the same
update for Triton next to each other, fills in a :class:`Family` and passes it to
:func:`rnnbench.cells.registry.register_family`. The eager cells, the `fused` backend
(rnnbench/fused.py), the Triton kernels (kernels/), the C++ loop and the `native` backend all read
the family from the registry; none of them knows a family by name.

The functions a family declares (shapes: every argument is a tensor of the same shape, or None):

``update(gates, a, h, c, x, beta) -> (h', c')``
    torch; ``gates`` is the tuple of gate activations in the order of :attr:`Family.gates`.
    Families without a cell state get and return ``c = None``; ``x`` is x_t when
    :attr:`Family.reads_x`, ``beta`` is σ(θ_β) (shape (1,)) when :attr:`Family.has_beta`.
``coefficients(S, A, X, Hp, Cp, Cn, beta) -> Coefficients``
    torch, for all steps at once ((T, B, M) each; S is (T, B, G, M), the gates). The hand-written
    backward (rnnbench/fused.py) runs its reverse loop on these; see :class:`Coefficients`.
``input_grads(S, A, Gh, Q, beta) -> (da, dx)``
    torch, after the reverse loop: the gradient of the candidate a_t and the direct gradient of x_t
    (None unless the family reads x). Gh is the total gradient of h_t, Q that of c_t (None without
    a cell state).
``beta_grad(dA, A, beta) -> dβ (1,)``
    families with β only: dβ from the candidate's gradient dA over all steps (every path has dA;
    the kernels keep nothing else).
``triton_update(s0, s1, s2, a, h, c, x, beta) -> (h', c')`` and
``triton_backward(g, gc, s0, s1, s2, a, h, c, cn, x, beta) -> (d0, d1, d2, da, dh, dc, dx)``
    the same update and its derivative on float32 blocks, written with arithmetic operators and
    :func:`tanh` / :func:`sigmoid` only. kernels/ compiles them with ``@triton.jit``, binding those
    two names to Triton device functions; here they are torch's, so the functions also run on
    tensors (which is how the tests hold them to the torch update). Up to three gates: a missing
    gate is passed as a copy of s0 and its δ ignored; a family without c gets c = cn = h and must
    return dc = 0; dh is the direct part of dh_{t-1} (zero when the family has a cell state,
    where h' is reached through c only); dx is the direct part of dx_t (zero unless reads_x).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the declarations are read by `rnnbench --help`, which must not wait for torch
    import torch

#: what the Triton kernels can take: the gate products are unrolled for up to three gates
TRITON_MAX_GATES = 3


def tanh(x):
    """tanh in a Triton update: torch's here, Triton's once kernels/ compiles the update."""
    import torch
    return torch.tanh(x)


def sigmoid(x):
    """σ in a Triton update: torch's here, Triton's once kernels/ compiles the update."""
    import torch
    return torch.sigmoid(x)


def dsig(s):
    """σ'(z) from s = σ(z)."""
    return s * (1 - s)


@dataclass
class Coefficients:
    """Per-step factors of the update's derivative, for all steps ((T, B, ...) each).

    With g_t the total gradient of h_t and, with a cell state, gc_t that of c_t from step t+1:

    * without c: ``δ_t = g_t ⊙ K_t`` (K: (T, B, G, M), every gate) and the direct part of
      dh_{t-1} is ``g_t ⊙ Kh_t``;
    * with c: ``q_t = gc_t + g_t ⊙ Kq_t`` (the total gradient of c_t), the gates that feed c (all but
      the last) get ``δ = q_t ⊙ Kc_t`` (Kc: (T, B, G−1, M)), the last (output) gate ``δ = g_t ⊙ Ko_t``,
      and ``gc_{t-1} = q_t ⊙ F_t``; h_{t-1} is reached through the gates only.
    """

    K: torch.Tensor | None = None
    Kh: torch.Tensor | None = None
    Kq: torch.Tensor | None = None
    Kc: torch.Tensor | None = None
    Ko: torch.Tensor | None = None
    F: torch.Tensor | None = None


@dataclass(frozen=True, eq=False)
class Family:
    """One cell family's regulated update and everything derived from it (see the module doc)."""

    name: str
    gates: tuple[str, ...]
    update: Callable
    coefficients: Callable
    input_grads: Callable
    has_c: bool = False          # a second state c_t that is not fed back
    reads_x: bool = False        # the update reads x_t (SRU's highway)
    has_beta: bool = False       # a scalar β = σ(θ_β) in the update (FastGRNN)
    #: the regulated input feeds back ω_V⊙h (elementwise, so N = M) instead of U_V h (SRU, T-LSTM)
    diagonal_feedback: bool = False
    beta_grad: Callable | None = None
    triton_update: Callable | None = None
    triton_backward: Callable | None = None
    #: torch.nn module computing this family's canonical baseline (the `native` backend), or None
    native: type | None = None
    #: the elementwise update and its derivative for the C++ CPU loop (rnnbench/fused_cpp.py
    #: documents the names): ``{"forward": ..., "backward": ...}``, or None. A family module may
    #: instead end with ``CPP_UPDATE = {...}``; :meth:`cpp_source` reads either.
    cpp_update: dict[str, str] | None = None
    module: str = ""             # the declaring module (set by register_family)

    @property
    def n_gates(self) -> int:
        return len(self.gates)

    @property
    def h_direct(self) -> bool:
        """Whether h_{t-1} enters the update itself (not only through the gates): no cell state."""
        return not self.has_c

    @property
    def has_triton(self) -> bool:
        return (self.triton_update is not None and self.triton_backward is not None
                and self.n_gates <= TRITON_MAX_GATES)

    def cpp_source(self) -> dict[str, str] | None:
        if self.cpp_update is not None:
            return self.cpp_update
        mod = sys.modules.get(self.module)
        return getattr(mod, "CPP_UPDATE", None) if mod is not None else None

    def state_names(self, h: str = "h") -> tuple[str, ...]:
        """The regulated cells' state: the fed-back h first, then c if the family has one."""
        return (h, "c") if self.has_c else (h,)
