"""LSTM (eqs. 18-21), its torch.nn.LSTM form, and IRC/IHC-LSTM (eqs. 22-26, 52-53)."""

import torch
from torch import nn

from rnnbench.cells.base import Cell, ParamInfo, linear
from rnnbench.cells.family import Coefficients, Family, dsig, tanh
from rnnbench.cells.registry import register, register_family
from rnnbench.cells.regulated import RegulatedCell


@register("lstm", "baseline", equations="f,i,o = σ(W x + U h + b); a = tanh(W_A x + U_A h + b_A); "
          "c' = f⊙c + i⊙a; h' = o⊙tanh(c')")
class LSTM(Cell):
    title = "LSTM"
    state_names = ("h", "c")
    param_info = {
        "W_FIOA": ParamInfo("W_{F,I,O,A}", "input weights of forget, input, output gates, candidate"),
        "U_FIOA": ParamInfo("U_{F,I,O,A}", "recurrent weights"),
        "b_FIOA": ParamInfo("b_{F,I,O,A}", "one bias per gate"),
    }

    def __init__(self, input_size, hidden_size):
        super().__init__(input_size, hidden_size)
        M, N = hidden_size, input_size
        self.new_param("W_FIOA", 4 * M, N)
        self.new_param("U_FIOA", 4 * M, M)
        self.new_param("b_FIOA", 4 * M)

    def hoist(self, x, state):
        return (linear(x, self.W_FIOA, self.b_FIOA),)

    def step(self, hoisted, x_t, state):
        (h, c), M = state, self.hidden_size
        pre = hoisted[0] + linear(h, self.U_FIOA)
        f, i, o = torch.sigmoid(pre[:, :3 * M]).chunk(3, -1)
        a = torch.tanh(pre[:, 3 * M:])
        c = f * c + i * a
        h = o * torch.tanh(c)
        return h, (h, c)


@register("lstm", "baseline", "canonical", equations="torch.nn.LSTM: i,f,o = σ(W x + b_i + U h + b_h); "
          "g = tanh(W_g x + b_ig + U_g h + b_hg); c' = f⊙c + i⊙g; h' = o⊙tanh(c')")
class LSTMCanonical(Cell):
    title = "LSTM"
    state_names = ("h", "c")
    param_info = {
        "weight_ih": ParamInfo("W_{i,f,g,o}", "input weights (torch order i, f, g, o)"),
        "weight_hh": ParamInfo("U_{i,f,g,o}", "recurrent weights"),
        "bias_ih": ParamInfo("b_{i·}", "input biases"),
        "bias_hh": ParamInfo("b_{h·}", "recurrent biases"),
    }

    def __init__(self, input_size, hidden_size):
        super().__init__(input_size, hidden_size)
        M, N = hidden_size, input_size
        self.new_param("weight_ih", 4 * M, N)
        self.new_param("weight_hh", 4 * M, M)
        self.new_param("bias_ih", 4 * M)
        self.new_param("bias_hh", 4 * M)

    def hoist(self, x, state):
        return (linear(x, self.weight_ih, self.bias_ih),)

    def step(self, hoisted, x_t, state):
        (h, c), M = state, self.hidden_size
        pre = hoisted[0] + linear(h, self.weight_hh, self.bias_hh)
        i, f = torch.sigmoid(pre[:, :2 * M]).chunk(2, -1)
        g = torch.tanh(pre[:, 2 * M:3 * M])
        o = torch.sigmoid(pre[:, 3 * M:])
        c = f * c + i * g
        h = o * torch.tanh(c)
        return h, (h, c)


# -- the regulated update, declared once: eager, fused (rnnbench/fused.py), Triton (kernels/) --

def update(gates, a, h, c, x, beta):
    f, i, o = gates
    c = f * c + i * a                                        # c' = f⊙c + i⊙a
    return o * torch.tanh(c), c                              # h' = o⊙tanh(c')


def coefficients(S, A, X, Hp, Cp, Cn, beta):
    f, i, o = S[:, :, 0], S[:, :, 1], S[:, :, 2]
    tc = torch.tanh(Cn)
    return Coefficients(Kq=o * (1 - tc * tc), Kc=torch.stack((Cp * dsig(f), A * dsig(i)), 2),
                        Ko=tc * dsig(o), F=f)


def input_grads(S, A, Gh, Q, beta):
    return Q * S[:, :, 1], None                              # da = q i


def triton_update(s0, s1, s2, a, h, c, x, beta):
    cn = s0 * c + s1 * a
    return s2 * tanh(cn), cn


def triton_backward(g, gc, s0, s1, s2, a, h, c, cn, x, beta):
    zero = g * 0.0
    tc = tanh(cn)
    q = gc + g * s2 * (1.0 - tc * tc)
    d0 = q * c * s0 * (1.0 - s0)
    d1 = q * a * s1 * (1.0 - s1)
    d2 = g * tc * s2 * (1.0 - s2)
    return d0, d1, d2, q * s1, zero, q * s0, zero


FAMILY = register_family(Family("lstm", ("F", "I", "O"), update, coefficients, input_grads,
                                has_c=True, triton_update=triton_update,
                                triton_backward=triton_backward, native=nn.LSTM))


@register("lstm", "irc", kind="irc", equations="v = x + α⊙(U_V h); f,i,o = σ(W_{F,I,O} v); a = W_A x; "
          "c' = f⊙c + i⊙a; h' = o⊙tanh(c')")
@register("lstm", "ihc", kind="ihc",
          equations="g = σ(W_G x + Γh + b_G); v = (1−g)⊙x + g⊙(U_V h); then as IRC-LSTM")
class RegulatedLSTM(RegulatedCell):
    title = "LSTM"
    family = FAMILY


# The update for the C++ loop of the `fused-cpp` backend (rnnbench/fused_cpp.py documents the names):
# c' = f⊙c + i⊙a, h' = o⊙tanh(c'), and its derivatives (q: the total gradient of c').
CPP_UPDATE = {
    "forward": r"""
        c_new = s[0] * c + s[1] * a;
        h_new = s[2] * tanh_(c_new);
    """,
    "backward": r"""
        const T tc = tanh_(c_new);
        const T q = gc + g * s[2] * (T(1) - tc * tc);
        ds[0] = q * c;
        ds[1] = q * a;
        ds[2] = g * tc;
        da = q * s[1];
        dc = q * s[0];
    """,
}
