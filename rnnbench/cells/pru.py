"""PRU, the Prototypical Recurrent Unit (Long et al.), and IRC/IHC-PRU.

The output map y = tanh(W_Y s + b_Y) does not feed back, so it runs once after the loop over all
steps. It can be switched off (output_map=False) to get the bare state recurrence.
"""

import torch

from rnnbench.cells.base import Cell, ParamInfo, linear
from rnnbench.cells.family import Coefficients, Family, dsig
from rnnbench.cells.registry import register, register_family
from rnnbench.cells.regulated import RegulatedCell

OUTPUT_INFO = {
    "W_Y": ParamInfo("W_y", "output map (M×M)"),
    "b_Y": ParamInfo("b_y", "output map bias"),
}


class _OutputMap:
    """Mixin: the PRU's output map, applied after the loop."""

    def _init_output_map(self, output_map: bool):
        self.output_map = output_map
        if output_map:
            self.new_param("W_Y", self.hidden_size, self.hidden_size)
            self.new_param("b_Y", self.hidden_size)

    def finish(self, outputs):
        return torch.tanh(linear(outputs, self.W_Y, self.b_Y)) if self.output_map else outputs


@register("pru", "baseline", equations="u = tanh(W_u x + U_u s + b_u); c = σ(W_c x + U_c s + b_c); "
          "s' = c⊙s + (1−c)⊙u; y = tanh(W_y s' + b_y)")
class PRU(_OutputMap, Cell):
    title = "PRU"
    state_names = ("s",)
    param_info = {
        "W_CU": ParamInfo("W_{c,u}", "input weights of the gate and the candidate"),
        "U_CU": ParamInfo("U_{c,u}", "recurrent weights"),
        "b_CU": ParamInfo("b_{c,u}", "one bias per gate"),
        **OUTPUT_INFO,
    }

    def __init__(self, input_size, hidden_size, output_map: bool = True):
        super().__init__(input_size, hidden_size)
        M, N = hidden_size, input_size
        self.new_param("W_CU", 2 * M, N)
        self.new_param("U_CU", 2 * M, M)
        self.new_param("b_CU", 2 * M)
        self._init_output_map(output_map)

    def hoist(self, x, state):
        return (linear(x, self.W_CU, self.b_CU),)

    def step(self, hoisted, x_t, state):
        (s,), M = state, self.hidden_size
        pre = hoisted[0] + linear(s, self.U_CU)
        c = torch.sigmoid(pre[:, :M])
        u = torch.tanh(pre[:, M:])
        s = torch.lerp(u, s, c)  # c⊙s + (1-c)⊙u
        return s, (s,)


# -- the regulated update, declared once: eager, fused (rnnbench/fused.py), Triton (kernels/) --

# (the gate is the paper's c; the family has no cell state, so its c argument is None)
def update(gates, a, h, c, x, beta):
    (k,) = gates
    return torch.lerp(a, h, k), None                         # s' = c⊙s + (1−c)⊙u


def coefficients(S, A, X, Hp, Cp, Cn, beta):
    k = S[:, :, 0]
    return Coefficients(K=((Hp - A) * dsig(k)).unsqueeze(2), Kh=k)


def input_grads(S, A, Gh, Q, beta):
    return Gh * (1 - S[:, :, 0]), None                       # du = g (1−c)


def triton_update(s0, s1, s2, a, h, c, x, beta):
    return a + s0 * (h - a), c


def triton_backward(g, gc, s0, s1, s2, a, h, c, cn, x, beta):
    zero = g * 0.0
    return g * (h - a) * s0 * (1.0 - s0), zero, zero, g * (1.0 - s0), g * s0, zero, zero


FAMILY = register_family(Family("pru", ("C",), update, coefficients, input_grads,
                                triton_update=triton_update, triton_backward=triton_backward))


@register("pru", "irc", kind="irc",
          equations="v = x + α⊙(U_V s); c = σ(W_c v); u = W_u x; s' = c⊙s + (1−c)⊙u; y = tanh(W_y s' + b_y)")
@register("pru", "ihc", kind="ihc",
          equations="g = σ(W_G x + Γs + b_G); v = (1−g)⊙x + g⊙(U_V s); then as IRC-PRU")
class RegulatedPRU(_OutputMap, RegulatedCell):
    title = "PRU"
    family = FAMILY
    candidate = "U"
    state_names = ("s",)
    extra_param_info = OUTPUT_INFO

    def __init__(self, input_size, hidden_size, output_map: bool = True, **kw):
        super().__init__(input_size, hidden_size, **kw)
        self._init_output_map(output_map)


# The update for the C++ loop of the `fused-cpp` backend (rnnbench/fused_cpp.py documents the names):
# s' = a + c⊙(s − a) (the state is h here), and its derivatives.
CPP_UPDATE = {
    "forward": r"""
        h_new = a + s[0] * (h - a);
    """,
    "backward": r"""
        ds[0] = g * (h - a);
        da = g * (T(1) - s[0]);
        dh = g * s[0];
    """,
}
