"""T-LSTM (eqs. 36-39) and IRC/IHC-T-LSTM (eqs. 40-44, 52-53; N = M).

The baseline's "recurrent" products act on x_{t-1}, an input, so they are hoisted too: the baseline
loop is elementwise only.
"""

import torch

from rnnbench.cells.base import Cell, ParamInfo, linear
from rnnbench.cells.registry import register
from rnnbench.cells.regulated import RegulatedCell


@register("tlstm", "baseline", equations="f,o = σ(W x_t + U x_{t−1} + b); a = W_A x_t + U_A x_{t−1} + b_A; "
          "c' = f⊙c + (1−f)⊙a; h' = o⊙c'")
class TLSTM(Cell):
    title = "T-LSTM"
    state_names = ("c", "x_prev")
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
        return (self.hidden_size, self.input_size)

    def hoist(self, x, state):
        x_prev = torch.cat((state[1].unsqueeze(0), x[:-1]), 0)
        return (linear(x, self.W_FOA, self.b_FOA) + linear(x_prev, self.U_FOA),)

    def step(self, hoisted, x_t, state):
        (c, _), pre, M = state, hoisted[0], self.hidden_size
        f, o = torch.sigmoid(pre[:, :2 * M]).chunk(2, -1)
        c = torch.lerp(pre[:, 2 * M:], c, f)
        return o * c, (c, x_t)


@register("tlstm", "irc", kind="irc", requires_square=True,
          equations="v = x + α⊙(ω_V⊙h); f,o = σ(W_{F,O} v); a = W_A x; c' = f⊙c + (1−f)⊙a; h' = o⊙c'")
@register("tlstm", "ihc", kind="ihc", requires_square=True,
          equations="g = σ(W_G x + Γh + b_G); v = (1−g)⊙x + g⊙(ω_V⊙h); then as IRC-T-LSTM")
class RegulatedTLSTM(RegulatedCell):
    title = "T-LSTM"
    gates = ("F", "O")
    diagonal_feedback = True
    state_names = ("h", "c")

    def update(self, gates, a, x_t, state):
        (h, c), (f, o) = state, gates
        c = torch.lerp(a, c, f)
        h = o * c
        return h, (h, c)


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
