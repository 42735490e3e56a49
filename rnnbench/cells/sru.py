"""SRU (eqs. 27-30), the `sru` package's SRUCell form, and IRC/IHC-SRU (eqs. 31-35). N = M."""

import math

import torch

from rnnbench.cells.base import Cell, ParamInfo, linear
from rnnbench.cells.family import Coefficients, Family, dsig
from rnnbench.cells.registry import register, register_family
from rnnbench.cells.regulated import RegulatedCell


@register("sru", "baseline", requires_square=True,
          equations="f,p = σ(W x + ω⊙c + b); a = W_A x; c' = f⊙c + (1−f)⊙a; h' = p⊙c' + (1−p)⊙x")
class SRU(Cell):
    title = "SRU"
    #: h first, as in every family (the output; the recurrence reads c only)
    state_names = ("h", "c")
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
        (_, c), (fp, a) = state, hoisted
        f, p = torch.sigmoid(fp + self.omega_FP * torch.cat((c, c), -1)).chunk(2, -1)
        c = torch.lerp(a, c, f)  # f⊙c + (1-f)⊙a
        h = torch.lerp(x_t * self.highway_scale, c, p)
        return h, (h, c)


@register("sru", "baseline", "canonical", requires_square=True,
          equations="sru.SRUCell: as SRU, with the highway input scaled by sqrt(3): "
          "h' = p⊙c' + (1−p)⊙(√3·x)")
class SRUCanonical(SRU):
    # sru v2's default highway_bias = 0 gives scale_x = sqrt(1 + 2·e^0).
    highway_scale = math.sqrt(3.0)


# -- the regulated update, declared once: eager, fused (rnnbench/fused.py), Triton (kernels/) --

def update(gates, a, h, c, x, beta):
    f, p = gates
    c = torch.lerp(a, c, f)                                  # c' = f⊙c + (1−f)⊙a
    return torch.lerp(x, c, p), c                            # h' = p⊙c' + (1−p)⊙x


def coefficients(S, A, X, Hp, Cp, Cn, beta):
    f, p = S[:, :, 0], S[:, :, 1]
    return Coefficients(Kq=p, Kc=((Cp - A) * dsig(f)).unsqueeze(2), Ko=(Cn - X) * dsig(p), F=f)


def input_grads(S, A, Gh, Q, beta):
    return Q * (1 - S[:, :, 0]), Gh * (1 - S[:, :, 1])       # da = q (1−f), dx = g (1−p)


def triton_update(s0, s1, s2, a, h, c, x, beta):
    cn = a + s0 * (c - a)
    return x + s1 * (cn - x), cn


def triton_backward(g, gc, s0, s1, s2, a, h, c, cn, x, beta):
    zero = g * 0.0
    q = gc + g * s1
    d0 = q * (c - a) * s0 * (1.0 - s0)
    d1 = g * (cn - x) * s1 * (1.0 - s1)
    return d0, d1, zero, q * (1.0 - s0), zero, q * s0, g * (1.0 - s1)


FAMILY = register_family(Family("sru", ("F", "P"), update, coefficients, input_grads, has_c=True,
                                reads_x=True, diagonal_feedback=True, triton_update=triton_update,
                                triton_backward=triton_backward))


@register("sru", "irc", kind="irc", requires_square=True,
          equations="v = x + α⊙(ω_V⊙h); f,p = σ(W_{F,P} v); a = W_A x; c' = f⊙c + (1−f)⊙a; "
          "h' = p⊙c' + (1−p)⊙x")
@register("sru", "ihc", kind="ihc", requires_square=True,
          equations="g = σ(W_G x + Γh + b_G); v = (1−g)⊙x + g⊙(ω_V⊙h); then as IRC-SRU")
class RegulatedSRU(RegulatedCell):
    title = "SRU"
    family = FAMILY


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
