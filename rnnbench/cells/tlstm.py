"""T-LSTM (eqs. 36-39) and IRC/IHC-T-LSTM (eqs. 40-44, 52-53; N = M).

The baseline's "recurrent" products act on x_{t-1}, an input, so they are hoisted too: the baseline
loop is elementwise only.
"""

import torch

from rnnbench.cells.base import Cell, ParamInfo, linear
from rnnbench.cells.family import Coefficients, Family, dsig
from rnnbench.cells.registry import register, register_family
from rnnbench.cells.regulated import RegulatedCell


@register("tlstm", "baseline", equations="f,o = σ(W x_t + U x_{t−1} + b); a = W_A x_t + U_A x_{t−1} + b_A; "
          "c' = f⊙c + (1−f)⊙a; h' = o⊙c'")
class TLSTM(Cell):
    title = "T-LSTM"
    #: h first, as in every family (the output; the recurrence reads c and x_{t−1})
    state_names = ("h", "c", "x_prev")
    param_info = {
        "W_FOA": ParamInfo("W_{F,O,A}", "weights on x_t of forget gate, output gate, candidate"),
        "U_FOA": ParamInfo("U_{F,O,A}", "weights on x_{t−1} (M×N)"),
        "b_FOA": ParamInfo("b_{F,O,A}", "one bias per gate"),
    }

    def __init__(self, input_size, hidden_size):
        super().__init__(input_size, hidden_size)
        M, N = hidden_size, input_size
        self.new_param("W_FOA", 3 * M, N)
        self.new_param("U_FOA", 3 * M, N)
        self.new_param("b_FOA", 3 * M)

    def state_sizes(self):
        return (self.hidden_size, self.hidden_size, self.input_size)

    def hoist(self, x, state):
        x_prev = torch.cat((state[2].unsqueeze(0), x[:-1]), 0)
        return (linear(x, self.W_FOA, self.b_FOA) + linear(x_prev, self.U_FOA),)

    def step(self, hoisted, x_t, state):
        (_, c, _), pre, M = state, hoisted[0], self.hidden_size
        f, o = torch.sigmoid(pre[:, :2 * M]).chunk(2, -1)
        c = torch.lerp(pre[:, 2 * M:], c, f)
        h = o * c
        return h, (h, c, x_t)


# -- the regulated update, declared once: eager, fused (rnnbench/fused.py), Triton (kernels/) --

def update(gates, a, h, c, x, beta):
    f, o = gates
    c = torch.lerp(a, c, f)                                  # c' = f⊙c + (1−f)⊙a
    return o * c, c                                          # h' = o⊙c'


def coefficients(S, A, X, Hp, Cp, Cn, beta):
    f, o = S[:, :, 0], S[:, :, 1]
    return Coefficients(Kq=o, Kc=((Cp - A) * dsig(f)).unsqueeze(2), Ko=Cn * dsig(o), F=f)


def input_grads(S, A, Gh, Q, beta):
    return Q * (1 - S[:, :, 0]), None                        # da = q (1−f)


def triton_update(s0, s1, s2, a, h, c, x, beta):
    cn = a + s0 * (c - a)
    return s1 * cn, cn


def triton_backward(g, gc, s0, s1, s2, a, h, c, cn, x, beta):
    zero = g * 0.0
    q = gc + g * s1
    d0 = q * (c - a) * s0 * (1.0 - s0)
    d1 = g * cn * s1 * (1.0 - s1)
    return d0, d1, zero, q * (1.0 - s0), zero, q * s0, zero


FAMILY = register_family(Family("tlstm", ("F", "O"), update, coefficients, input_grads, has_c=True,
                                diagonal_feedback=True, triton_update=triton_update,
                                triton_backward=triton_backward))


@register("tlstm", "irc", kind="irc", requires_square=True,
          equations="v = x + α⊙(ω_V⊙h); f,o = σ(W_{F,O} v); a = W_A x; c' = f⊙c + (1−f)⊙a; h' = o⊙c'")
@register("tlstm", "ihc", kind="ihc", requires_square=True,
          equations="g = σ(W_G x + Γh + b_G); v = (1−g)⊙x + g⊙(ω_V⊙h); then as IRC-T-LSTM")
class RegulatedTLSTM(RegulatedCell):
    title = "T-LSTM"
    family = FAMILY


# The update for the C++ loop of the `fused-cpp` backend (rnnbench/fused_cpp.py documents the names):
# c' = a + f⊙(c − a), h' = o⊙c', and its derivatives (q: the total gradient of c').
CPP_UPDATE = {
    "forward": r"""
        c_new = a + s[0] * (c - a);
        h_new = s[1] * c_new;
    """,
    "backward": r"""
        const T q = gc + g * s[1];
        ds[0] = q * (c - a);
        ds[1] = g * c_new;
        da = q * (T(1) - s[0]);
        dc = q * s[0];
    """,
}
