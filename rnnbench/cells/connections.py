"""The IRC and IHC regulated inputs (paper eqs. 15 and 52-53), written once for every family.

Both produce the regulated input as ``v_t = x_t + d_t``, and a regulated cell uses only
``W v_t = W x_t + W d_t``: the ``W x_t`` part is hoisted over the whole sequence with the cell's
other input products, and only ``W d_t`` stays in the loop.

- IRC: ``v = x + alpha * (U_V h)``, so ``d = alpha * (U_V h)``.
- IHC: ``v = (1-g) * x + g * (U_V h)``, so ``d = g * (U_V h - x)``, with
  ``g = sigmoid(W_G x + Gamma h + b_G)``.

SRU and T-LSTM use the diagonal feedback ``omega_V * h`` (N = M) in place of ``U_V h``.
"""

from __future__ import annotations

import torch
from torch import nn

from rnnbench.cells.base import ParamInfo, linear

CONNECTION_INFO = {
    "U_V": ParamInfo("U_V", "feedback from the hidden state to the input width (N×M)"),
    "theta_omega": ParamInfo("θ_ω", "raw diagonal feedback, ω_V = tanh(θ_ω)"),
    "theta_alpha": ParamInfo("θ_α", "raw IRC scale, α = σ(θ_α)"),
    "W_G": ParamInfo("W_G", "IHC gate, input part (N×N)"),
    "Gamma": ParamInfo("Γ", "IHC gate, recurrent part"),
    "b_G": ParamInfo("b_G", "IHC gate bias"),
}

#: Published-reading switch for IHC: eq. 53 applies Γ (N×M) to h; the DRAW figure of 0.42M
#: parameters (85.4%) fits only Γ (N×N) applied to the feedback U_V h.
IHC_GAMMA_INPUTS = ("h", "feedback")


class Connection(nn.Module):
    """Parameters and per-step correction ``d_t`` of one regulated input."""

    def __init__(self, kind: str, input_size: int, hidden_size: int, *, diagonal: bool,
                 gamma_input: str = "h", alpha_init: float = 2.0):
        super().__init__()
        if kind not in ("irc", "ihc"):
            raise ValueError(kind)
        if gamma_input not in IHC_GAMMA_INPUTS:
            raise ValueError(f"gamma_input must be one of {IHC_GAMMA_INPUTS}")
        self.kind, self.diagonal, self.gamma_input = kind, diagonal, gamma_input
        N, M = input_size, hidden_size
        k = 1.0 / M ** 0.5

        def param(*shape, fill=None):
            p = torch.empty(*shape)
            p.fill_(fill) if fill is not None else p.uniform_(-k, k)
            return nn.Parameter(p)

        if diagonal:
            self.theta_omega = param(N)
        else:
            self.U_V = param(N, M)
        if kind == "irc":
            # The authors initialise theta_alpha = 2 (alpha = 0.881).
            self.theta_alpha = param(N, fill=alpha_init)
        else:
            self.W_G = param(N, N)
            self.Gamma = param(N, M if gamma_input == "h" else N)
            self.b_G = param(N)

    def hoist(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The input-only part of the IHC gate, for all steps (IRC has none)."""
        if self.kind == "irc":
            return ()
        return (linear(x, self.W_G, self.b_G),)

    def feedback(self, h: torch.Tensor) -> torch.Tensor:
        if self.diagonal:
            return torch.tanh(self.theta_omega) * h
        return linear(h, self.U_V)

    def correction(self, hoisted: tuple[torch.Tensor, ...], x_t: torch.Tensor,
                   h: torch.Tensor) -> torch.Tensor:
        fb = self.feedback(h)
        if self.kind == "irc":
            return torch.sigmoid(self.theta_alpha) * fb
        gamma_in = h if self.gamma_input == "h" else fb
        g = torch.sigmoid(hoisted[0] + linear(gamma_in, self.Gamma))
        return g * (fb - x_t)

    @property
    def n_hoisted(self) -> int:
        return 0 if self.kind == "irc" else 1
