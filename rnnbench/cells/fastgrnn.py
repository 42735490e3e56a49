"""FastGRNN (eqs. 45-47), EdgeML's FastGRNNCell form, and IRC/IHC-FastGRNN (eqs. 48-51)."""

import torch

from rnnbench.cells.base import Cell, ParamInfo, linear
from rnnbench.cells.family import Coefficients, Family, dsig
from rnnbench.cells.registry import register, register_family
from rnnbench.cells.regulated import THETA_BETA_INIT, RegulatedCell

# EdgeML initialises zeta = 1 and nu = -4 (beta = 0.73, kappa = 0.018).
THETA_KAPPA_INIT = -4.0


@register("fastgrnn", "baseline", equations="f = σ(W_F x + U_F h + b_F); a = tanh(W_A x + U_A h + b_A); "
          "h' = f⊙h + (β(1−f) + κ)⊙a")
class FastGRNN(Cell):
    title = "FastGRNN"
    param_info = {
        "W_FA": ParamInfo("W_{F,A}", "input weights of the gate and the candidate"),
        "U_FA": ParamInfo("U_{F,A}", "recurrent weights"),
        "b_FA": ParamInfo("b_{F,A}", "one bias per gate"),
        "theta_beta": ParamInfo("θ_β", "β = σ(θ_β)"),
        "theta_kappa": ParamInfo("θ_κ", "κ = σ(θ_κ)"),
    }

    def __init__(self, input_size, hidden_size):
        super().__init__(input_size, hidden_size)
        M, N = hidden_size, input_size
        self.new_param("W_FA", 2 * M, N)
        self.new_param("U_FA", 2 * M, M)
        self.new_param("b_FA", 2 * M)
        self.new_param("theta_beta", 1, init=THETA_BETA_INIT)
        self.new_param("theta_kappa", 1, init=THETA_KAPPA_INIT)

    def hoist(self, x, state):
        return (linear(x, self.W_FA, self.b_FA),)

    def step(self, hoisted, x_t, state):
        (h,), M = state, self.hidden_size
        pre = hoisted[0] + linear(h, self.U_FA)
        f = torch.sigmoid(pre[:, :M])
        a = torch.tanh(pre[:, M:])
        beta, kappa = torch.sigmoid(self.theta_beta), torch.sigmoid(self.theta_kappa)
        h = f * h + (beta * (1 - f) + kappa) * a
        return h, (h,)


@register("fastgrnn", "baseline", "canonical", equations="EdgeML FastGRNNCell: W, U shared; "
          "z = σ(Wx + Uh + b_g); h̃ = tanh(Wx + Uh + b_u); h' = z⊙h + (σ(ζ)(1−z) + σ(ν))⊙h̃")
class FastGRNNCanonical(Cell):
    title = "FastGRNN"
    param_info = {
        "W": ParamInfo("W", "input weights, shared by gate and candidate"),
        "U": ParamInfo("U", "recurrent weights, shared by gate and candidate"),
        "bias_gate": ParamInfo("b_g", "gate bias"),
        "bias_update": ParamInfo("b_u", "candidate bias"),
        "zeta": ParamInfo("ζ", "σ(ζ) scales 1−z"),
        "nu": ParamInfo("ν", "σ(ν) is added to the candidate's weight"),
    }

    def __init__(self, input_size, hidden_size):
        super().__init__(input_size, hidden_size)
        M, N = hidden_size, input_size
        self.new_param("W", M, N)
        self.new_param("U", M, M)
        self.new_param("bias_gate", M, init=1.0)
        self.new_param("bias_update", M, init=1.0)
        self.new_param("zeta", 1, init=THETA_BETA_INIT)
        self.new_param("nu", 1, init=THETA_KAPPA_INIT)

    def hoist(self, x, state):
        return (linear(x, self.W),)

    def step(self, hoisted, x_t, state):
        (h,) = state
        pre = hoisted[0] + linear(h, self.U)
        z = torch.sigmoid(pre + self.bias_gate)
        c = torch.tanh(pre + self.bias_update)
        h = z * h + (torch.sigmoid(self.zeta) * (1 - z) + torch.sigmoid(self.nu)) * c
        return h, (h,)


# -- the regulated update, declared once: eager, fused (rnnbench/fused.py), Triton (kernels/) --

def update(gates, a, h, c, x, beta):
    (f,) = gates
    return f * h + beta * (1 - f) * a, None                  # h' = f⊙h + β(1−f)⊙a


def coefficients(S, A, X, Hp, Cp, Cn, beta):
    f = S[:, :, 0]
    return Coefficients(K=((Hp - beta * A) * dsig(f)).unsqueeze(2), Kh=f)


def input_grads(S, A, Gh, Q, beta):
    return Gh * (1 - S[:, :, 0]) * beta, None                # da = g β (1−f)


def beta_grad(dA, A, beta):
    return ((dA * A).sum() / beta).reshape(1)                # dβ = Σ g (1−f) a = Σ da a / β


def triton_update(s0, s1, s2, a, h, c, x, beta):
    ba = beta * a
    return ba + s0 * (h - ba), c


def triton_backward(g, gc, s0, s1, s2, a, h, c, cn, x, beta):
    zero = g * 0.0
    d0 = g * (h - beta * a) * s0 * (1.0 - s0)
    return d0, zero, zero, g * beta * (1.0 - s0), g * s0, zero, zero


FAMILY = register_family(Family("fastgrnn", ("F",), update, coefficients, input_grads,
                                has_beta=True, beta_grad=beta_grad, triton_update=triton_update,
                                triton_backward=triton_backward))


@register("fastgrnn", "irc", kind="irc",
          equations="v = x + α⊙(U_V h); f = σ(W_F v); a = W_A x; h' = f⊙h + β(1−f)⊙a")
@register("fastgrnn", "ihc", kind="ihc",
          equations="g = σ(W_G x + Γh + b_G); v = (1−g)⊙x + g⊙(U_V h); then as IRC-FastGRNN")
class RegulatedFastGRNN(RegulatedCell):
    title = "FastGRNN"
    family = FAMILY


# The update for the C++ loop of the `fused-cpp` backend (rnnbench/fused_cpp.py documents the names):
# h' = f⊙h + β(1 − f)⊙a, and its derivatives (dβ is summed over every element by the loop).
CPP_UPDATE = {
    "forward": r"""
        h_new = s[0] * h + beta * (T(1) - s[0]) * a;
    """,
    "backward": r"""
        ds[0] = g * (h - beta * a);
        da = g * beta * (T(1) - s[0]);
        dh = g * s[0];
        dbeta = g * (T(1) - s[0]) * a;
    """,
}
