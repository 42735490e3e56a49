"""A family is one declaration: a toy family declared only here runs eagerly, fused and as Triton
kernels (interpreted), in agreement; and every registered family runs on every backend it declares.

The toy is a one-gate cell written for this file: ``f = σ(W_F v)``, ``h' = f⊙h + (1−f)⊙tanh(W_A x)``
with the IRC/IHC regulated input v. Its references are a step loop written from that equation
(forward) and autograd through the eager runner (gradients).
"""

from __future__ import annotations

import copy
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from rnnbench import backends  # noqa: E402
from rnnbench.case import FOLDS, Case  # noqa: E402
from rnnbench.cells import (all_specs, declared_families, get, register, register_family,  # noqa: E402
                            unregister_family)
from rnnbench.cells.family import Coefficients, Family, dsig, tanh  # noqa: E402
from rnnbench.cells.regulated import RegulatedCell  # noqa: E402
from rnnbench.fused import fused_forward  # noqa: E402

from fused_helpers import perturbed_stack, run_with_grads  # noqa: E402


# -- the toy family, declared entirely here ----------------------------------------------------------
def toy_update(gates, a, h, c, x, beta):
    (f,) = gates
    return f * h + (1 - f) * torch.tanh(a), None


def toy_coefficients(S, A, X, Hp, Cp, Cn, beta):
    f = S[:, :, 0]
    return Coefficients(K=((Hp - torch.tanh(A)) * dsig(f)).unsqueeze(2), Kh=f)


def toy_input_grads(S, A, Gh, Q, beta):
    ta = torch.tanh(A)
    return Gh * (1 - S[:, :, 0]) * (1 - ta * ta), None


def toy_triton_update(s0, s1, s2, a, h, c, x, beta):
    return s0 * h + (1.0 - s0) * tanh(a), c


def toy_triton_backward(g, gc, s0, s1, s2, a, h, c, cn, x, beta):
    zero = g * 0.0
    ta = tanh(a)
    return g * (h - ta) * dsig(s0), zero, zero, g * (1.0 - s0) * (1.0 - ta * ta), g * s0, zero, zero


TOY = Family("toy", ("F",), toy_update, toy_coefficients, toy_input_grads,
             triton_update=toy_triton_update, triton_backward=toy_triton_backward)


@pytest.fixture
def toy():
    fam = register_family(TOY)

    class Toy(RegulatedCell):
        title = "Toy"
        family = fam

    register("toy", "irc", kind="irc", equations="v = x + α⊙(U_V h); f = σ(W_F v); "
             "h' = f⊙h + (1−f)⊙tanh(W_A x)")(Toy)
    register("toy", "ihc", kind="ihc", equations="as IRC-Toy with the IHC input")(Toy)
    try:
        yield fam
    finally:
        unregister_family("toy")


def _toy_loop(cell, x, h):
    """IRC-Toy from its equation, one step at a time (independent of the family's functions)."""
    M = cell.hidden_size
    conn = cell.connection
    alpha = torch.sigmoid(conn.theta_alpha)
    out = []
    for x_t in x:
        v = x_t + alpha * (h @ conn.U_V.T)
        f = torch.sigmoid(v @ cell.W[:M].T)
        h = f * h + (1 - f) * torch.tanh(x_t @ cell.W[M:].T)
        out.append(h)
    return torch.stack(out)


def _rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-300))


def _compare(got, ref, tol):
    assert got.keys() == ref.keys()
    bad = {k: _rel(got[k], ref[k]) for k in ref if not _rel(got[k], ref[k]) < tol}
    assert not bad, f"relative error over {tol}: {bad}"


def test_toy_eager_follows_its_equation(toy):
    stack = perturbed_stack(get("toy", "irc"), 5, [6], torch.float64)
    x = torch.randn(4, 3, 5, dtype=torch.float64)
    with torch.no_grad():
        out, finals = stack(x)
        ref = _toy_loop(stack.layers[0], x, torch.zeros(3, 6, dtype=torch.float64))
    assert _rel(out, ref) < 1e-12 and _rel(finals[0][0], ref[-1]) < 1e-12


@pytest.mark.parametrize("variant,fold", [("irc", "on"), ("irc", "off"), ("ihc", "auto")])
def test_toy_fused_and_triton_agree_with_eager(toy, variant, fold):
    kernels = pytest.importorskip("kernels")
    if not kernels.available()[0]:
        pytest.skip(kernels.available()[1])
    stack = perturbed_stack(get("toy", variant), 5, [6, 7], torch.float64)
    x = torch.randn(4, 3, 5, dtype=torch.float64)
    state = [tuple(torch.randn(3, n, dtype=torch.float64) * 0.5 for n in c.state_sizes())
             for c in stack.layers]
    ref = run_with_grads(stack, x, state, lambda s, x, st: s(x, st))
    fused = run_with_grads(stack, x, state,
                           lambda s, x, st: fused_forward(s, x, st, fold=fold, gates="recompute"))
    _compare(fused, ref, 1e-10)
    s32 = copy.deepcopy(stack).float()
    state32 = [tuple(t.float() for t in st) for st in state]
    triton = run_with_grads(s32, x.float(), state32,
                            lambda s, x, st: fused_forward(s, x, st, fold=fold, impl="triton"))
    _compare(triton, ref, 1e-4)


def test_unregistered_toy_is_gone(toy):
    unregister_family("toy")
    assert all(s.family != "toy" for s in all_specs())


# -- every family, every backend it declares ---------------------------------------------------------
def _tiny_case(spec, backend, fold="auto"):
    n = 4 if spec.requires_square else 3
    return Case("speed", spec.family, spec.variant, spec.form, backend, mode="fwd+bwd",
                dtype="float32", batch=2, seq_len=3, input_size=n, hidden_size=4, fold=fold)


def _declared():
    # compile is left out: torch.compile takes tens of seconds per cell on 2 cores
    # (tests/test_backends.py compiles one case, under RNNBENCH_SLOW=1); every fold a backend
    # takes for the spec (IRC on the fused backends: auto, on, off)
    return [(spec, b, f) for spec in all_specs() for b in backends.covering(spec) if b != "compile"
            for f in backends.folds_for(b, spec.variant, FOLDS)]


@pytest.mark.parametrize("spec,backend,fold", _declared(), ids=lambda v: getattr(v, "label", v))
def test_every_family_runs_on_every_backend_it_declares(spec, backend, fold):
    if backend.startswith("triton"):
        import kernels
        if not kernels.available()[0]:
            pytest.skip(kernels.available()[1])
    runnable = backends.build(_tiny_case(spec, backend, fold))  # builds, then checks against eager
    if backend != "eager":
        assert runnable.verify_error is not None and runnable.verify_error < 1e-4


def test_declared_coverage_is_what_the_families_say():
    covered = {(s.family, s.variant, s.form): set(backends.covering(s)) for s in all_specs()}
    assert "native" in covered["gru", "baseline", "canonical"]
    assert "native" not in covered["sru", "baseline", "canonical"]
    assert {"fused", "triton"} <= covered["sru", "ihc", "paper"]
    assert backends.folds_for("fused", "irc", FOLDS) == list(FOLDS)
    assert backends.folds_for("fused", "ihc", FOLDS) == ["auto"]   # IHC cannot fold
    assert backends.folds_for("eager", "irc", FOLDS) == ["auto"]
    assert not {"fused", "triton"} & covered["gru", "baseline", "paper"]
    assert all({"eager", "compile"} <= c for c in covered.values())


# -- each declaration is self-consistent ------------------------------------------------------------
def _update_inputs(fam, gen):
    shape = (3, 5)

    def r():
        return torch.randn(shape, generator=gen, dtype=torch.float64).requires_grad_(True)

    z = [r() for _ in fam.gates]
    a, h, x = r(), r(), r()
    c = r() if fam.has_c else None
    beta = torch.rand(1, generator=gen, dtype=torch.float64).requires_grad_(True) if fam.has_beta else None
    return z, a, h, c, x, beta


def _padded(s):
    return (list(s) + [s[0]] * 3)[:3]


@pytest.mark.parametrize("fam", declared_families(), ids=lambda f: f.name)
def test_triton_functions_are_the_torch_update_and_its_derivative(fam):
    """The Triton update runs on tensors here (tanh, sigmoid are torch's): it must equal the torch
    update, and its derivative must equal autograd's through the torch update."""
    gen = torch.Generator().manual_seed(0)
    z, a, h, c, x, beta = _update_inputs(fam, gen)
    s = [torch.sigmoid(t) for t in z]
    hn, cn = fam.update(tuple(s), a, h, c, x, beta)
    th, tc = fam.triton_update(*_padded(s), a, h, c if fam.has_c else h, x,
                               beta if fam.has_beta else 0.0)
    torch.testing.assert_close(th, hn)
    if fam.has_c:
        torch.testing.assert_close(tc, cn)
    g = torch.randn(hn.shape, generator=gen, dtype=torch.float64)
    gc = torch.randn(hn.shape, generator=gen, dtype=torch.float64) if fam.has_c else g * 0
    loss = (g * hn).sum() + ((gc * cn).sum() if fam.has_c else 0)
    wrt = [*z, a, h, x] + ([c] if fam.has_c else []) + ([beta] if fam.has_beta else [])
    auto = torch.autograd.grad(loss, wrt, allow_unused=True)
    d = fam.triton_backward(g, gc, *[t.detach() for t in _padded(s)], a.detach(), h.detach(),
                            (c if fam.has_c else h).detach(), (cn if fam.has_c else hn).detach(),
                            x.detach(), beta.detach() if fam.has_beta else 0.0)
    dz, da, dh, dc, dx = d[:fam.n_gates], d[3], d[4], d[5], d[6]
    zero = torch.zeros_like(g)
    for got, want in zip([*dz, da, dh, dx], auto[:fam.n_gates + 3]):
        torch.testing.assert_close(got, want if want is not None else zero)
    if fam.has_c:
        torch.testing.assert_close(dc, auto[fam.n_gates + 3])
    if fam.has_beta:
        torch.testing.assert_close(fam.beta_grad(da, a.detach(), beta.detach()), auto[-1])


def test_cpp_update_slot(toy, monkeypatch):
    """A family module may end with CPP_UPDATE = {...} instead of filling cpp_update."""
    import sys
    assert toy.cpp_source() is None
    update = {"forward": "h_new = s[0] * h;", "backward": "ds[0] = g * h; dh = g * s[0];"}
    monkeypatch.setattr(sys.modules[toy.module], "CPP_UPDATE", update, raising=False)
    assert toy.cpp_source() == update


def test_the_cpp_loader_looks_again_only_after_a_registration(monkeypatch):
    """fused_cpp.load() runs on every fused forward: it reads the declared families again only when
    the registry changed, and then builds for a family declared since (with its C++ update) and
    without one removed since."""
    import dataclasses

    from rnnbench import fused_cpp

    built = []
    monkeypatch.setattr(fused_cpp, "_build", lambda fams: built.append([f.name for f in fams])
                        or ("a module", ""))
    monkeypatch.setattr(fused_cpp, "_state", None)
    monkeypatch.setattr(fused_cpp, "_built_for", None)
    monkeypatch.setattr(fused_cpp, "_checked_at", -1)
    fused_cpp.load()
    fused_cpp.load()
    assert len(built) == 1 and "toy2" not in built[0]
    update = {"forward": "h_new = s[0] * h;", "backward": "ds[0] = g * h; dh = g * s[0];"}
    register_family(dataclasses.replace(TOY, name="toy2", cpp_update=update))
    try:
        assert fused_cpp.load() == "a module"
        assert len(built) == 2 and built[1][-1] == "toy2"
    finally:
        unregister_family("toy2")
    fused_cpp.load()
    assert len(built) == 3 and built[2] == built[0]


def test_toy_without_a_cpp_update_runs_fused_on_the_torch_loop(toy, monkeypatch):
    """fused-cpp does not cover a family without CPP_UPDATE (and says so when asked anyway); `fused`
    runs it on the torch loop, without rebuilding the C++ loop or a note on stderr."""
    from rnnbench import fused, fused_cpp
    from rnnbench.outcome import Unsupported

    spec = get("toy", "irc")
    assert "fused-cpp" not in backends.covering(spec) and "fused" in backends.covering(spec)
    with pytest.raises(Unsupported, match="declares no C\\+\\+ update"):
        backends.build(_tiny_case(spec, "fused-cpp"))
    monkeypatch.setattr(fused_cpp, "_build", lambda families: pytest.fail("the C++ loop was rebuilt"))
    seen = []
    real = fused.fused_forward
    monkeypatch.setattr(fused, "fused_forward", lambda s, x, **kw: seen.append(kw["impl"]) or real(s, x, **kw))
    runnable = backends.build(_tiny_case(spec, "fused"))
    assert runnable.verify_error is not None and runnable.verify_error < 1e-4
    assert seen and set(seen) == {"torch"}
