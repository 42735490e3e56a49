"""SRU (eqs. 27-30), the `sru` package's SRUCell form, and IRC/IHC-SRU (eqs. 31-35). N = M."""

import math

import torch

from rnnbench.cells.base import Cell, ParamInfo, linear
from rnnbench.cells.registry import register
from rnnbench.cells.regulated import RegulatedCell


@register("sru", "baseline", requires_square=True,
          equations="f,p = σ(W x + ω⊙c + b); a = W_A x; c' = f⊙c + (1−f)⊙a; h' = p⊙c' + (1−p)⊙x")
class SRU(Cell):
    title = "SRU"
    state_names = ("c",)
    #: the sru package multiplies the highway input by sqrt(1 + 2·e^{highway_bias}); the paper does not
    highway_scale = 1.0
    param_info = {
        "W_FPA": ParamInfo("W_{F,P,A}", "input weights of forget gate, highway gate, candidate"),
        "omega_FP": ParamInfo("ω_{F,P}", "elementwise weights on c_{t−1}"),
        "b_FP": ParamInfo("b_{F,P}", "gate biases"),
    }

    def __init__(self, input_size, hidden_size):
        super().__init__(input_size, hidden_size)
        M, N = hidden_size, input_size
        self.new_param("W_FPA", 3 * M, N)
        self.new_param("omega_FP", 2 * M)
        self.new_param("b_FP", 2 * M)

    def hoist(self, x, state):
        M = self.hidden_size
        wx = linear(x, self.W_FPA)
        return wx[..., :2 * M] + self.b_FP, wx[..., 2 * M:]

    def step(self, hoisted, x_t, state):
        (c,), (fp, a) = state, hoisted
        f, p = torch.sigmoid(fp + self.omega_FP * torch.cat((c, c), -1)).chunk(2, -1)
        c = torch.lerp(a, c, f)  # f⊙c + (1-f)⊙a
        h = torch.lerp(x_t * self.highway_scale, c, p)
        return h, (c,)


@register("sru", "baseline", "canonical", requires_square=True,
          equations="sru.SRUCell: as SRU, with the highway input scaled by sqrt(3): "
          "h' = p⊙c' + (1−p)⊙(√3·x)")
class SRUCanonical(SRU):
    # sru v2's default highway_bias = 0 gives scale_x = sqrt(1 + 2·e^0).
    highway_scale = math.sqrt(3.0)


@register("sru", "irc", kind="irc", requires_square=True,
          equations="v = x + α⊙(ω_V⊙h); f,p = σ(W_{F,P} v); a = W_A x; c' = f⊙c + (1−f)⊙a; "
          "h' = p⊙c' + (1−p)⊙x")
@register("sru", "ihc", kind="ihc", requires_square=True,
          equations="g = σ(W_G x + Γh + b_G); v = (1−g)⊙x + g⊙(ω_V⊙h); then as IRC-SRU")
class RegulatedSRU(RegulatedCell):
    title = "SRU"
    gates = ("F", "P")
    diagonal_feedback = True
    state_names = ("h", "c")

    def update(self, gates, a, x_t, state):
        (h, c), (f, p) = state, gates
        c = torch.lerp(a, c, f)
        h = torch.lerp(x_t, c, p)
        return h, (h, c)


# The update for the C++ loop of the `fused-cpp` backend (rnnbench/fused_cpp.py documents the names):
# c' = a + f⊙(c − a), h' = x + p⊙(c' − x), and its derivatives (q: the total gradient of c').
CPP_UPDATE = {
    "forward": r"""
        c_new = a + s[0] * (c - a);
        h_new = x + s[1] * (c_new - x);
    """,
    "backward": r"""
        const T q = gc + g * s[1];
        ds[0] = q * (c - a);
        ds[1] = g * (c_new - x);
        da = q * (T(1) - s[0]);
        dc = q * s[0];
        dx = g * (T(1) - s[1]);
    """,
}
