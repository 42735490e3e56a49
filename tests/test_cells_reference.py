"""Every registered cell against an independent step-by-step reference written from cells.md.

The references below are plain time loops in float64, one per cell family and variant, written from
the equations in ``shared/papers/cells.md`` (paper form) and, for the canonical forms, from the
equations the libraries document (torch.nn.GRU / torch.nn.LSTM docs, sru v2, EdgeML FastGRNNCell).
They read the module's parameters by name, check each one's shape, split stacked matrices into
per-gate matrices themselves, and must use every parameter the module has. Nothing here compares
against output the implementation produced earlier.
"""

from __future__ import annotations

import math
import re

import pytest
import torch

from rnnbench.cells import all_specs, get
from rnnbench.errors import SizeError
from rnnbench.runner import RecurrentStack

DT = torch.float64
TOL = dict(rtol=1e-10, atol=1e-10)

# --------------------------------------------------------------------------------------------
# What the zoo must contain, and facts about each cell taken from cells.md / the brief
# --------------------------------------------------------------------------------------------
FAMILIES = ("gru", "lstm", "sru", "tlstm", "fastgrnn", "pru")
CANONICAL = ("gru", "lstm", "sru", "fastgrnn")
EXPECTED_KEYS = {(f, v, "paper") for f in FAMILIES for v in ("baseline", "irc", "ihc")} | {
    (f, "baseline", "canonical") for f in CANONICAL}

# Square-only cells (N must equal M): SRU in every form; IRC/IHC T-LSTM (diagonal ω_V⊙h feedback).
SQUARE_ONLY = {("sru", v, "paper") for v in ("baseline", "irc", "ihc")} | {
    ("sru", "baseline", "canonical"), ("tlstm", "irc", "paper"), ("tlstm", "ihc", "paper")}


def key(spec):
    return (spec.family, spec.variant, spec.form)


def state_names(family: str, variant: str) -> tuple[str, ...]:
    if family == "lstm":
        return ("h", "c")
    if family == "sru":
        return ("h", "c")
    if family == "tlstm":
        return ("h", "c", "x_prev") if variant == "baseline" else ("h", "c")
    if family == "pru":
        return ("s",)
    return ("h",)


def sig(z):
    return 1.0 / (1.0 + torch.exp(-z))


def lin(x, W, b=None):
    """x W^T (+ b) for a (B, in) batch: the paper's W x written for row vectors."""
    y = x @ W.T
    return y if b is None else y + b


class Params:
    """A layer's parameters by name; records which were read so a reference must use them all."""

    def __init__(self, cell):
        self.p = {n: t.detach().clone() for n, t in cell.named_parameters()}
        self.used: set[str] = set()

    def get(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        assert name in self.p, f"parameter {name!r} missing; module has {sorted(self.p)}"
        t = self.p[name]
        assert tuple(t.shape) == tuple(shape), f"{name}: shape {tuple(t.shape)}, expected {shape}"
        self.used.add(name)
        return t

    def assert_all_used(self):
        unused = set(self.p) - self.used
        assert not unused, f"parameters the equations do not account for: {sorted(unused)}"


# --------------------------------------------------------------------------------------------
# References: paper-form baselines
# --------------------------------------------------------------------------------------------
def ref_gru(P, x, state, opts):
    """eqs. 1-3: i,r = σ(W x + U h + b); a = tanh(W_A x + U_A(r⊙h) + b_A); h' = (1−i)⊙h + i⊙a."""
    N, (h,) = x.shape[-1], state
    M = h.shape[-1]
    W_I, W_R, W_A = P.get("W_IRA", (3 * M, N)).chunk(3)
    U_I, U_R = P.get("U_IR", (2 * M, M)).chunk(2)
    U_A = P.get("U_A", (M, M))
    b_I, b_R, b_A = P.get("b_IRA", (3 * M,)).chunk(3)
    ys = []
    for x_t in x:
        i = sig(lin(x_t, W_I, b_I) + lin(h, U_I))
        r = sig(lin(x_t, W_R, b_R) + lin(h, U_R))
        a = torch.tanh(lin(x_t, W_A, b_A) + lin(r * h, U_A))
        h = (1 - i) * h + i * a
        ys.append(h)
    return torch.stack(ys), (h,)


def ref_lstm(P, x, state, opts):
    """eqs. 18-21: f,i,o = σ(W x + U h + b); a = tanh(..); c' = f⊙c + i⊙a; h' = o⊙tanh(c')."""
    N, (h, c) = x.shape[-1], state
    M = h.shape[-1]
    W_F, W_I, W_O, W_A = P.get("W_FIOA", (4 * M, N)).chunk(4)
    U_F, U_I, U_O, U_A = P.get("U_FIOA", (4 * M, M)).chunk(4)
    b_F, b_I, b_O, b_A = P.get("b_FIOA", (4 * M,)).chunk(4)
    ys = []
    for x_t in x:
        f = sig(lin(x_t, W_F, b_F) + lin(h, U_F))
        i = sig(lin(x_t, W_I, b_I) + lin(h, U_I))
        o = sig(lin(x_t, W_O, b_O) + lin(h, U_O))
        a = torch.tanh(lin(x_t, W_A, b_A) + lin(h, U_A))
        c = f * c + i * a
        h = o * torch.tanh(c)
        ys.append(h)
    return torch.stack(ys), (h, c)


def _sru(P, x, state, highway_scale):
    """eqs. 27-30: f,p = σ(W x + ω⊙c + b); a = W_A x; c' = f⊙c + (1−f)⊙a; h' = p⊙c' + (1−p)⊙x."""
    N, (h, c) = x.shape[-1], state      # h: the last output, not read by the recurrence
    M = c.shape[-1]
    assert N == M
    W_F, W_P, W_A = P.get("W_FPA", (3 * M, N)).chunk(3)
    w_F, w_P = P.get("omega_FP", (2 * M,)).chunk(2)
    b_F, b_P = P.get("b_FP", (2 * M,)).chunk(2)
    ys = []
    for x_t in x:
        f = sig(lin(x_t, W_F, b_F) + w_F * c)
        p = sig(lin(x_t, W_P, b_P) + w_P * c)
        a = lin(x_t, W_A)
        c = f * c + (1 - f) * a
        h = p * c + (1 - p) * (highway_scale * x_t)
        ys.append(h)
    return torch.stack(ys), (h, c)


def ref_sru(P, x, state, opts):
    return _sru(P, x, state, 1.0)


def ref_tlstm(P, x, state, opts):
    """eqs. 36-39, state (h, c, x_{t−1}): f,o = σ(W x_t + U x_{t−1} + b); a = W_A x_t + U_A x_{t−1} + b_A;
    c' = f⊙c + (1−f)⊙a; h' = o⊙c'  (U ∈ R^{M×N}); h is the last output, not read."""
    N, (h, c, x_prev) = x.shape[-1], state
    M = c.shape[-1]
    W_F, W_O, W_A = P.get("W_FOA", (3 * M, N)).chunk(3)
    U_F, U_O, U_A = P.get("U_FOA", (3 * M, N)).chunk(3)
    b_F, b_O, b_A = P.get("b_FOA", (3 * M,)).chunk(3)
    ys = []
    for x_t in x:
        f = sig(lin(x_t, W_F, b_F) + lin(x_prev, U_F))
        o = sig(lin(x_t, W_O, b_O) + lin(x_prev, U_O))
        a = lin(x_t, W_A, b_A) + lin(x_prev, U_A)
        c = f * c + (1 - f) * a
        h = o * c
        ys.append(h)
        x_prev = x_t
    return torch.stack(ys), (h, c, x_prev)


def ref_fastgrnn(P, x, state, opts):
    """eqs. 45-47: f = σ(W_F x + U_F h + b_F); a = tanh(W_A x + U_A h + b_A);
    h' = f⊙h + (β(1−f) + κ)⊙a, β = σ(θ_β), κ = σ(θ_κ)."""
    N, (h,) = x.shape[-1], state
    M = h.shape[-1]
    W_F, W_A = P.get("W_FA", (2 * M, N)).chunk(2)
    U_F, U_A = P.get("U_FA", (2 * M, M)).chunk(2)
    b_F, b_A = P.get("b_FA", (2 * M,)).chunk(2)
    beta = sig(P.get("theta_beta", (1,)))
    kappa = sig(P.get("theta_kappa", (1,)))
    ys = []
    for x_t in x:
        f = sig(lin(x_t, W_F, b_F) + lin(h, U_F))
        a = torch.tanh(lin(x_t, W_A, b_A) + lin(h, U_A))
        h = f * h + (beta * (1 - f) + kappa) * a
        ys.append(h)
    return torch.stack(ys), (h,)


def _output_map(P, s, M, opts):
    if not opts.get("output_map", True):
        return s
    return torch.tanh(lin(s, P.get("W_Y", (M, M)), P.get("b_Y", (M,))))


def ref_pru(P, x, state, opts):
    """PRU: u = tanh(W_u x + U_u s + b_u); c = σ(W_c x + U_c s + b_c); s' = c⊙s + (1−c)⊙u;
    y = tanh(W_y s' + b_y) (optional)."""
    N, (s,) = x.shape[-1], state
    M = s.shape[-1]
    W_C, W_U = P.get("W_CU", (2 * M, N)).chunk(2)
    U_C, U_U = P.get("U_CU", (2 * M, M)).chunk(2)
    b_C, b_U = P.get("b_CU", (2 * M,)).chunk(2)
    ys = []
    for x_t in x:
        u = torch.tanh(lin(x_t, W_U, b_U) + lin(s, U_U))
        c = sig(lin(x_t, W_C, b_C) + lin(s, U_C))
        s = c * s + (1 - c) * u
        ys.append(_output_map(P, s, M, opts))
    return torch.stack(ys), (s,)


# --------------------------------------------------------------------------------------------
# References: canonical forms, from the libraries' documented equations
# --------------------------------------------------------------------------------------------
def ref_gru_canonical(P, x, state, opts):
    """torch.nn.GRU docs: r = σ(W_ir x + b_ir + W_hr h + b_hr); z = σ(W_iz x + b_iz + W_hz h + b_hz);
    n = tanh(W_in x + b_in + r⊙(W_hn h + b_hn)); h' = (1−z)⊙n + z⊙h."""
    N, (h,) = x.shape[-1], state
    M = h.shape[-1]
    W_ir, W_iz, W_in = P.get("weight_ih", (3 * M, N)).chunk(3)
    W_hr, W_hz, W_hn = P.get("weight_hh", (3 * M, M)).chunk(3)
    b_ir, b_iz, b_in = P.get("bias_ih", (3 * M,)).chunk(3)
    b_hr, b_hz, b_hn = P.get("bias_hh", (3 * M,)).chunk(3)
    ys = []
    for x_t in x:
        r = sig(lin(x_t, W_ir, b_ir) + lin(h, W_hr, b_hr))
        z = sig(lin(x_t, W_iz, b_iz) + lin(h, W_hz, b_hz))
        n = torch.tanh(lin(x_t, W_in, b_in) + r * lin(h, W_hn, b_hn))
        h = (1 - z) * n + z * h
        ys.append(h)
    return torch.stack(ys), (h,)


def ref_lstm_canonical(P, x, state, opts):
    """torch.nn.LSTM docs (gate order i, f, g, o), two biases per gate."""
    N, (h, c) = x.shape[-1], state
    M = h.shape[-1]
    W_ii, W_if, W_ig, W_io = P.get("weight_ih", (4 * M, N)).chunk(4)
    W_hi, W_hf, W_hg, W_ho = P.get("weight_hh", (4 * M, M)).chunk(4)
    b_ii, b_if, b_ig, b_io = P.get("bias_ih", (4 * M,)).chunk(4)
    b_hi, b_hf, b_hg, b_ho = P.get("bias_hh", (4 * M,)).chunk(4)
    ys = []
    for x_t in x:
        i = sig(lin(x_t, W_ii, b_ii) + lin(h, W_hi, b_hi))
        f = sig(lin(x_t, W_if, b_if) + lin(h, W_hf, b_hf))
        g = torch.tanh(lin(x_t, W_ig, b_ig) + lin(h, W_hg, b_hg))
        o = sig(lin(x_t, W_io, b_io) + lin(h, W_ho, b_ho))
        c = f * c + i * g
        h = o * torch.tanh(c)
        ys.append(h)
    return torch.stack(ys), (h, c)


def ref_sru_canonical(P, x, state, opts):
    """sru v2 SRUCell with default highway_bias 0: highway input scaled by sqrt(1 + 2·e^0) = √3."""
    return _sru(P, x, state, math.sqrt(1 + 2 * math.exp(0.0)))


def ref_fastgrnn_canonical(P, x, state, opts):
    """EdgeML FastGRNNCell: z = σ(Wx + Uh + b_g); h̃ = tanh(Wx + Uh + b_u);
    h' = z⊙h + (σ(ζ)(1−z) + σ(ν))⊙h̃."""
    N, (h,) = x.shape[-1], state
    M = h.shape[-1]
    W = P.get("W", (M, N))
    U = P.get("U", (M, M))
    b_g = P.get("bias_gate", (M,))
    b_u = P.get("bias_update", (M,))
    zeta = P.get("zeta", (1,))
    nu = P.get("nu", (1,))
    ys = []
    for x_t in x:
        pre = lin(x_t, W) + lin(h, U)
        z = sig(pre + b_g)
        ht = torch.tanh(pre + b_u)
        h = z * h + (sig(zeta) * (1 - z) + sig(nu)) * ht
        ys.append(h)
    return torch.stack(ys), (h,)


# --------------------------------------------------------------------------------------------
# References: IRC / IHC cells (eqs. 14-17, 22-26, 31-35, 40-44, 48-51, 52-53)
# --------------------------------------------------------------------------------------------
def regulated_input(P, x_t, h, variant, diagonal, gamma_input):
    """IRC: v = x + α⊙fb, α = σ(θ_α).  IHC: g = σ(W_G x + Γ·(h or fb) + b_G); v = (1−g)⊙x + g⊙fb.
    fb = U_V h, or ω_V⊙h with ω_V = tanh(θ_ω) for SRU and T-LSTM."""
    N, M = x_t.shape[-1], h.shape[-1]
    if diagonal:
        assert N == M
        fb = torch.tanh(P.get("connection.theta_omega", (N,))) * h
    else:
        fb = lin(h, P.get("connection.U_V", (N, M)))
    if variant == "irc":
        alpha = sig(P.get("connection.theta_alpha", (N,)))
        return x_t + alpha * fb
    assert variant == "ihc"
    W_G = P.get("connection.W_G", (N, N))
    b_G = P.get("connection.b_G", (N,))
    if gamma_input == "h":
        g = sig(lin(x_t, W_G, b_G) + lin(h, P.get("connection.Gamma", (N, M))))
    else:  # the reading that fits the published DRAW count: Γ (N×N) acts on the feedback
        g = sig(lin(x_t, W_G, b_G) + lin(fb, P.get("connection.Gamma", (N, N))))
    return (1 - g) * x_t + g * fb


def ref_gru_regulated(P, x, state, opts, variant, candidate="x"):
    """eqs. 14-17: v; i,r = σ(W_{I,R} v); a = W_A x; h' = (1−i)⊙h + i⊙(r⊙a)."""
    N, (h,) = x.shape[-1], state
    M = h.shape[-1]
    W_I, W_R, W_A = P.get("W_IRA", (3 * M, N)).chunk(3)
    ys = []
    for x_t in x:
        v = regulated_input(P, x_t, h, variant, False, opts.get("gamma_input", "h"))
        i, r = sig(lin(v, W_I)), sig(lin(v, W_R))
        a = lin(x_t if candidate == "x" else v, W_A)
        h = (1 - i) * h + i * (r * a)
        ys.append(h)
    return torch.stack(ys), (h,)


def ref_lstm_regulated(P, x, state, opts, variant, candidate="x"):
    """eqs. 22-26: v; f,i,o = σ(W_{F,I,O} v); a = W_A x; c' = f⊙c + i⊙a; h' = o⊙tanh(c')."""
    N, (h, c) = x.shape[-1], state
    M = h.shape[-1]
    W_F, W_I, W_O, W_A = P.get("W_FIOA", (4 * M, N)).chunk(4)
    ys = []
    for x_t in x:
        v = regulated_input(P, x_t, h, variant, False, opts.get("gamma_input", "h"))
        f, i, o = sig(lin(v, W_F)), sig(lin(v, W_I)), sig(lin(v, W_O))
        a = lin(x_t if candidate == "x" else v, W_A)
        c = f * c + i * a
        h = o * torch.tanh(c)
        ys.append(h)
    return torch.stack(ys), (h, c)


def ref_sru_regulated(P, x, state, opts, variant, candidate="x"):
    """eqs. 31-35: v = x + α⊙(ω_V⊙h); f,p = σ(W_{F,P} v); a = W_A x; c' = f⊙c + (1−f)⊙a;
    h' = p⊙c' + (1−p)⊙x."""
    N, (h, c) = x.shape[-1], state
    M = h.shape[-1]
    W_F, W_P, W_A = P.get("W_FPA", (3 * M, N)).chunk(3)
    ys = []
    for x_t in x:
        v = regulated_input(P, x_t, h, variant, True, opts.get("gamma_input", "h"))
        f, p = sig(lin(v, W_F)), sig(lin(v, W_P))
        a = lin(x_t if candidate == "x" else v, W_A)
        c = f * c + (1 - f) * a
        h = p * c + (1 - p) * x_t
        ys.append(h)
    return torch.stack(ys), (h, c)


def ref_tlstm_regulated(P, x, state, opts, variant, candidate="x"):
    """eqs. 40-44: v = x + α⊙(ω_V⊙h); f,o = σ(W_{F,O} v); a = W_A x; c' = f⊙c + (1−f)⊙a; h' = o⊙c'."""
    N, (h, c) = x.shape[-1], state
    M = h.shape[-1]
    W_F, W_O, W_A = P.get("W_FOA", (3 * M, N)).chunk(3)
    ys = []
    for x_t in x:
        v = regulated_input(P, x_t, h, variant, True, opts.get("gamma_input", "h"))
        f, o = sig(lin(v, W_F)), sig(lin(v, W_O))
        a = lin(x_t if candidate == "x" else v, W_A)
        c = f * c + (1 - f) * a
        h = o * c
        ys.append(h)
    return torch.stack(ys), (h, c)


def ref_fastgrnn_regulated(P, x, state, opts, variant, candidate="x"):
    """eqs. 48-51: v; f = σ(W_F v); a = W_A x; h' = f⊙h + β(1−f)⊙a, β = σ(θ_β) (a scalar)."""
    N, (h,) = x.shape[-1], state
    M = h.shape[-1]
    W_F, W_A = P.get("W_FA", (2 * M, N)).chunk(2)
    beta = sig(P.get("theta_beta", (1,)))
    ys = []
    for x_t in x:
        v = regulated_input(P, x_t, h, variant, False, opts.get("gamma_input", "h"))
        f = sig(lin(v, W_F))
        a = lin(x_t if candidate == "x" else v, W_A)
        h = f * h + beta * (1 - f) * a
        ys.append(h)
    return torch.stack(ys), (h,)


def ref_pru_regulated(P, x, state, opts, variant, candidate="x"):
    """IRC-PRU: v = x + α⊙(U_V s); c = σ(W_c v); u = W_u x; s' = c⊙s + (1−c)⊙u; y = tanh(W_y s' + b_y)."""
    N, (s,) = x.shape[-1], state
    M = s.shape[-1]
    W_C, W_U = P.get("W_CU", (2 * M, N)).chunk(2)
    ys = []
    for x_t in x:
        v = regulated_input(P, x_t, s, variant, False, opts.get("gamma_input", "h"))
        c = sig(lin(v, W_C))
        u = lin(x_t if candidate == "x" else v, W_U)
        s = c * s + (1 - c) * u
        ys.append(_output_map(P, s, M, opts))
    return torch.stack(ys), (s,)


BASELINE_REFS = {
    ("gru", "paper"): ref_gru, ("lstm", "paper"): ref_lstm, ("sru", "paper"): ref_sru,
    ("tlstm", "paper"): ref_tlstm, ("fastgrnn", "paper"): ref_fastgrnn, ("pru", "paper"): ref_pru,
    ("gru", "canonical"): ref_gru_canonical, ("lstm", "canonical"): ref_lstm_canonical,
    ("sru", "canonical"): ref_sru_canonical, ("fastgrnn", "canonical"): ref_fastgrnn_canonical,
}
REGULATED_REFS = {
    "gru": ref_gru_regulated, "lstm": ref_lstm_regulated, "sru": ref_sru_regulated,
    "tlstm": ref_tlstm_regulated, "fastgrnn": ref_fastgrnn_regulated, "pru": ref_pru_regulated,
}


def reference_layer(spec, P, x, state, opts, candidate="x"):
    if spec.variant == "baseline":
        return BASELINE_REFS[(spec.family, spec.form)](P, x, state, opts)
    return REGULATED_REFS[spec.family](P, x, state, opts, spec.variant, candidate)


def reference_stack(spec, stack, x, states, opts, candidate="x"):
    out, finals = x, []
    for cell, st in zip(stack.layers, states):
        P = Params(cell)
        out, fin = reference_layer(spec, P, out, st, opts, candidate)
        P.assert_all_used()
        finals.append(fin)
    return out, finals


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
def build(spec, N, Ms, opts, seed, **kw):
    torch.manual_seed(seed)
    stack = RecurrentStack(spec, N, Ms, **opts, **kw).to(DT)
    randomize(stack)
    return stack


def randomize(module):
    with torch.no_grad():
        for p in module.parameters():
            torch.nn.init.uniform_(p, -0.5, 0.5)
    return module


def random_states(spec, N, Ms, B, gen):
    """A random non-zero initial state per layer, shaped from the equations (not from the module)."""
    names = state_names(spec.family, spec.variant)
    states, n = [], N
    for m in Ms:
        states.append(tuple(torch.randn(B, n if name == "x_prev" else m, generator=gen, dtype=DT)
                            for name in names))
        n = m
    return states


def assert_states_close(got, want):
    assert len(got) == len(want)
    for layer, (g, w) in enumerate(zip(got, want)):
        assert len(g) == len(w), f"layer {layer}: {len(g)} state tensors, expected {len(w)}"
        for k, (gt, wt) in enumerate(zip(g, w)):
            torch.testing.assert_close(gt, wt, **TOL, msg=lambda m: f"layer {layer} state {k}: {m}")


SPECS = all_specs()


def spec_id(spec):
    return spec.label.replace(" ", "").replace("(", "-").replace(")", "").replace("/", "-")


def cases():
    """(spec, N, hidden sizes, T, B, options) covering odd sizes, T=1, B=1, 2 layers."""
    out = []
    for spec in SPECS:
        square = key(spec) in SQUARE_ONLY
        shapes = ([(5, [5], 6, 3), (6, [6, 6], 4, 2), (4, [4], 1, 1), (7, [7], 7, 1)] if square else
                  [(5, [7], 6, 3), (9, [4, 6], 4, 2), (3, [2], 1, 1), (6, [3], 7, 1), (2, [8, 5], 3, 2)])
        optsets = [{}]
        if spec.variant == "ihc":
            optsets = [{}, {"gamma_input": "h"}, {"gamma_input": "feedback"}]
        if spec.family == "pru":
            optsets = [{**o, "output_map": om} for o in optsets for om in (True, False)]
        for i, (N, Ms, T, B) in enumerate(shapes):
            for j, o in enumerate(optsets):
                oid = ",".join(f"{k}={v}" for k, v in o.items()) or "default"
                out.append(pytest.param(spec, N, Ms, T, B, o, id=f"{spec_id(spec)}-N{N}-M{Ms}-T{T}-B{B}-{oid}"))
    return out


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------
def test_zoo_is_complete():
    keys = [key(s) for s in SPECS]
    assert len(keys) == len(set(keys))
    assert set(keys) == EXPECTED_KEYS
    assert len(keys) == 22


@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_state_names(spec):
    cell = spec.build(4, 4)
    assert tuple(cell.state_names) == state_names(spec.family, spec.variant)


@pytest.mark.parametrize("spec,N,Ms,T,B,opts", cases())
def test_matches_reference(spec, N, Ms, T, B, opts):
    stack = build(spec, N, Ms, opts, seed=1234 + N * 31 + T)
    gen = torch.Generator().manual_seed(99 + N + 7 * T + B)
    x = torch.randn(T, B, N, generator=gen, dtype=DT)
    states = random_states(spec, N, Ms, B, gen)
    want_y, want_fin = reference_stack(spec, stack, x, states, opts)
    got_y, got_fin = stack(x, [tuple(s) for s in states])
    assert got_y.dtype == DT and got_y.shape == (T, B, Ms[-1])
    torch.testing.assert_close(got_y, want_y, **TOL)
    assert_states_close(got_fin, want_fin)
    # the run must actually depend on the initial state (so a cell that ignored it would fail)
    zero_y, _ = reference_stack(spec, stack, x, [tuple(torch.zeros_like(t) for t in s) for s in states], opts)
    assert (zero_y - want_y).abs().max() > 1e-6


@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_default_state_is_zero(spec):
    """state=None starts from zeros, as the reference with an all-zero state."""
    N, Ms = (5, [5]) if key(spec) in SQUARE_ONLY else (5, [3])
    stack = build(spec, N, Ms, {}, seed=7)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(4, 2, N, generator=gen, dtype=DT)
    zeros = [tuple(torch.zeros_like(t) for t in s) for s in random_states(spec, N, Ms, 2, gen)]
    want_y, want_fin = reference_stack(spec, stack, x, zeros, {})
    got_y, got_fin = stack(x)
    torch.testing.assert_close(got_y, want_y, **TOL)
    assert_states_close(got_fin, want_fin)


REGULATED = [s for s in SPECS if s.variant != "baseline"]


@pytest.mark.parametrize("spec", REGULATED, ids=spec_id)
def test_candidate_uses_x_not_v(spec):
    """IRC/IHC candidates read x_t, not the regulated v_t (eq. 16 for IRC-GRU: a = W_A x)."""
    N, Ms = (5, [5]) if key(spec) in SQUARE_ONLY else (4, [6])
    stack = build(spec, N, Ms, {}, seed=11)
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(5, 3, N, generator=gen, dtype=DT)
    states = random_states(spec, N, Ms, 3, gen)
    got_y, _ = stack(x, states)
    want_x, _ = reference_stack(spec, stack, x, states, {}, candidate="x")
    want_v, _ = reference_stack(spec, stack, x, states, {}, candidate="v")
    assert (want_x - want_v).abs().max() > 1e-3  # the two readings are distinguishable here
    torch.testing.assert_close(got_y, want_x, **TOL)


def test_irc_gru_candidate_is_w_a_x():
    """Directly: with the IRC feedback made large, IRC-GRU's step equals (1−i)⊙h + i⊙(r⊙W_A x)."""
    spec = get("gru", "irc", "paper")
    N, M, B = 3, 4, 2
    stack = build(spec, N, [M], {}, seed=21)
    cell = stack.layers[0]
    with torch.no_grad():
        cell.connection.U_V.mul_(20.0)  # make v very different from x
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(1, B, N, generator=gen, dtype=DT)
    h0 = torch.randn(B, M, generator=gen, dtype=DT)
    y, _ = stack(x, [(h0,)])
    P = Params(cell)
    W_I, W_R, W_A = P.get("W_IRA", (3 * M, N)).chunk(3)
    v = x[0] + sig(P.get("connection.theta_alpha", (N,))) * lin(h0, P.get("connection.U_V", (N, M)))
    i, r = sig(lin(v, W_I)), sig(lin(v, W_R))
    from_x = (1 - i) * h0 + i * (r * lin(x[0], W_A))
    from_v = (1 - i) * h0 + i * (r * lin(v, W_A))
    assert (from_x - from_v).abs().max() > 1e-2
    torch.testing.assert_close(y[0], from_x, **TOL)


@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_batch_first(spec):
    N, Ms = (4, [4, 4]) if key(spec) in SQUARE_ONLY else (4, [3, 5])
    T, B = 5, 3
    torch.manual_seed(0)
    tf = build(spec, N, Ms, {}, seed=31)
    bf = RecurrentStack(spec, N, Ms, batch_first=True).to(DT)
    bf.load_state_dict(tf.state_dict())
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(T, B, N, generator=gen, dtype=DT)
    states = random_states(spec, N, Ms, B, gen)
    want_y, want_fin = reference_stack(spec, tf, x, states, {})
    got_y, got_fin = bf(x.transpose(0, 1).contiguous(), states)
    assert got_y.shape == (B, T, Ms[-1])
    torch.testing.assert_close(got_y, want_y.transpose(0, 1), **TOL)
    assert_states_close(got_fin, want_fin)
    # and equals the time-first module's output, transposed
    torch.testing.assert_close(got_y, tf(x, states)[0].transpose(0, 1), **TOL)


def grad_cases():
    out = []
    for spec in SPECS:
        optsets = [{}]
        if spec.variant == "ihc":
            optsets = [{"gamma_input": "h"}, {"gamma_input": "feedback"}]
        if spec.family == "pru":
            optsets = [{**o, "output_map": om} for o in optsets for om in (True, False)]
        for o in optsets:
            oid = ",".join(f"{k}={v}" for k, v in o.items()) or "default"
            out.append(pytest.param(spec, o, id=f"{spec_id(spec)}-{oid}"))
    return out


@pytest.mark.parametrize("spec,opts", grad_cases())
def test_gradients_reach_every_parameter(spec, opts):
    N, Ms = (5, [5, 5]) if key(spec) in SQUARE_ONLY else (5, [4, 6])
    stack = build(spec, N, Ms, opts, seed=41)
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(4, 3, N, generator=gen, dtype=DT)
    states = random_states(spec, N, Ms, 3, gen)
    y, _ = stack(x, states)
    w = torch.randn(y.shape, generator=gen, dtype=DT)
    (y * w).sum().backward()
    names = [n for n, _ in stack.named_parameters()]
    assert names, "no parameters"
    for name, p in stack.named_parameters():
        assert p.grad is not None, f"{name}: no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient"
        assert (p.grad != 0).all(), f"{name}: gradient has zero entries ({(p.grad == 0).sum()} of {p.numel()})"


@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_square_only_flag(spec):
    assert spec.requires_square == (key(spec) in SQUARE_ONLY)


@pytest.mark.parametrize("spec", [s for s in SPECS if key(s) in SQUARE_ONLY], ids=spec_id)
@pytest.mark.parametrize("N,Ms,bad", [(5, [7], (5, 7)), (8, [3], (8, 3)), (6, [6, 9], (6, 9))])
def test_size_error_for_square_only_cells(spec, N, Ms, bad):
    with pytest.raises(SizeError) as info:
        RecurrentStack(spec, N, Ms)
    msg = str(info.value)
    assert spec.family in msg.lower(), msg
    if spec.variant != "baseline":
        assert spec.variant in msg.lower(), msg
    for n in bad:
        assert re.search(rf"(?<!\d){n}(?!\d)", msg), f"size {n} not named in: {msg}"


@pytest.mark.parametrize("spec", [s for s in SPECS if key(s) not in SQUARE_ONLY], ids=spec_id)
def test_non_square_cells_accept_n_ne_m(spec):
    stack = RecurrentStack(spec, 5, [7, 3])
    assert [(c.input_size, c.hidden_size) for c in stack.layers] == [(5, 7), (7, 3)]


@pytest.mark.parametrize("spec", [s for s in SPECS if s.variant == "irc"], ids=spec_id)
def test_irc_alpha_starts_at_authors_value(spec):
    """cells.md: the authors initialise θ_α = 2, so α = σ(2) ≈ 0.881 at the start."""
    cell = spec.build(4, 4)
    theta = cell.connection.theta_alpha.detach()
    assert theta.shape == (4,)
    torch.testing.assert_close(theta, torch.full((4,), 2.0), rtol=0, atol=0)
    assert round(float(sig(theta[0].double())), 3) == 0.881
