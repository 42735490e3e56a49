"""GRU (eqs. 1-3), its torch.nn.GRU form, and IRC/IHC-GRU (eqs. 14-17, 52-53)."""

import torch
from torch import nn

from rnnbench.cells.base import Cell, ParamInfo, linear
from rnnbench.cells.family import Coefficients, Family
from rnnbench.cells.registry import register, register_family
from rnnbench.cells.regulated import RegulatedCell


@register("gru", "baseline", equations="i,r = σ(W x + U h + b); a = tanh(W_A x + U_A(r⊙h) + b_A); "
          "h' = (1−i)⊙h + i⊙a")
class GRU(Cell):
    title = "GRU"
    param_info = {
        "W_IRA": ParamInfo("W_{I,R,A}", "input weights of input gate, reset gate, candidate"),
        "U_IR": ParamInfo("U_{I,R}", "recurrent weights of the gates"),
        "U_A": ParamInfo("U_A", "recurrent weights of the candidate, applied to r⊙h"),
        "b_IRA": ParamInfo("b_{I,R,A}", "one bias per gate"),
    }

    def __init__(self, input_size, hidden_size):
        super().__init__(input_size, hidden_size)
        M, N = hidden_size, input_size
        self.new_param("W_IRA", 3 * M, N)
        self.new_param("U_IR", 2 * M, M)
        self.new_param("U_A", M, M)
        self.new_param("b_IRA", 3 * M)

    def hoist(self, x, state):
        return (linear(x, self.W_IRA, self.b_IRA),)

    def step(self, hoisted, x_t, state):
        (h,), wx, M = state, hoisted[0], self.hidden_size
        i, r = torch.sigmoid(wx[:, :2 * M] + linear(h, self.U_IR)).chunk(2, -1)
        a = torch.tanh(wx[:, 2 * M:] + linear(r * h, self.U_A))
        h = torch.lerp(h, a, i)  # (1-i)⊙h + i⊙a
        return h, (h,)


@register("gru", "baseline", "canonical", equations="torch.nn.GRU: r,z = σ(W x + b_i + U h + b_h); "
          "n = tanh(W_n x + b_in + r⊙(U_n h + b_hn)); h' = (1−z)⊙n + z⊙h")
class GRUCanonical(Cell):
    title = "GRU"
    param_info = {
        "weight_ih": ParamInfo("W_{r,z,n}", "input weights (torch order r, z, n)"),
        "weight_hh": ParamInfo("U_{r,z,n}", "recurrent weights"),
        "bias_ih": ParamInfo("b_{i·}", "input biases"),
        "bias_hh": ParamInfo("b_{h·}", "recurrent biases (b_hn inside the reset product)"),
    }

    def __init__(self, input_size, hidden_size):
        super().__init__(input_size, hidden_size)
        M, N = hidden_size, input_size
        self.new_param("weight_ih", 3 * M, N)
        self.new_param("weight_hh", 3 * M, M)
        self.new_param("bias_ih", 3 * M)
        self.new_param("bias_hh", 3 * M)

    def hoist(self, x, state):
        return (linear(x, self.weight_ih, self.bias_ih),)

    def step(self, hoisted, x_t, state):
        (h,), gx, M = state, hoisted[0], self.hidden_size
        gh = linear(h, self.weight_hh, self.bias_hh)
        r, z = torch.sigmoid(gx[:, :2 * M] + gh[:, :2 * M]).chunk(2, -1)
        n = torch.tanh(gx[:, 2 * M:] + r * gh[:, 2 * M:])
        h = torch.lerp(n, h, z)  # (1-z)⊙n + z⊙h
        return h, (h,)


# -- the regulated update, declared once: eager, fused (rnnbench/fused.py), Triton (kernels/) --

def update(gates, a, h, c, x, beta):
    i, r = gates
    return torch.lerp(h, r * a, i), None                   # h' = (1−i)⊙h + i⊙(r⊙a)


def coefficients(S, A, X, Hp, Cp, Cn, beta):
    i, r = S[:, :, 0], S[:, :, 1]          # few passes over (T, B, M): this runs on every backward
    K = torch.empty_like(S)
    Kh = torch.sub(1, i)                                                  # 1 − i
    torch.mul(r, A, out=K[:, :, 0]).sub_(Hp).mul_(i).mul_(Kh)             # (r a − h) i (1 − i)
    torch.mul(i, A, out=K[:, :, 1]).mul_(r).mul_(torch.sub(1, r))        # i a r (1 − r)
    return Coefficients(K=K, Kh=Kh)


def input_grads(S, A, Gh, Q, beta):
    return Gh * S[:, :, 0] * S[:, :, 1], None                # da = g i r


def triton_update(s0, s1, s2, a, h, c, x, beta):
    return h + s0 * (s1 * a - h), c


def triton_backward(g, gc, s0, s1, s2, a, h, c, cn, x, beta):
    zero = g * 0.0
    d0 = g * (s1 * a - h) * s0 * (1.0 - s0)
    d1 = g * s0 * a * s1 * (1.0 - s1)
    return d0, d1, zero, g * s0 * s1, g * (1.0 - s0), zero, zero


FAMILY = register_family(Family("gru", ("I", "R"), update, coefficients, input_grads,
                                triton_update=triton_update, triton_backward=triton_backward,
                                native=nn.GRU))


@register("gru", "irc", kind="irc",
          equations="v = x + α⊙(U_V h); i,r = σ(W_{I,R} v); a = W_A x; h' = (1−i)⊙h + i⊙(r⊙a)")
@register("gru", "ihc", kind="ihc",
          equations="g = σ(W_G x + Γh + b_G); v = (1−g)⊙x + g⊙(U_V h); then as IRC-GRU")
class RegulatedGRU(RegulatedCell):
    title = "GRU"
    family = FAMILY


# The update for the C++ loop of the `fused-cpp` backend (rnnbench/fused_cpp.py documents the names):
# h' = h + i⊙(r⊙a − h), and its derivatives.
CPP_UPDATE = {
    "forward": r"""
        h_new = h + s[0] * (s[1] * a - h);
    """,
    "backward": r"""
        ds[0] = g * (s[1] * a - h);
        ds[1] = g * s[0] * a;
        da = g * s[0] * s[1];
        dh = g * (T(1) - s[0]);
    """,
}
