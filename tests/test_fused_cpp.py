"""The `fused-cpp` backend (rnnbench/fused_cpp.py: the fused loops in C++) against the eager stack.

The extension is built once per test session (the `cpp_loop` fixture in conftest.py; torch caches
the build between sessions). Every IRC/IHC family, folded and unfolded IRC and IHC, T = 1 and 7, B = 1 and 3, N ≠ M
where the cell allows it, two layers; outputs, final states and the gradient of every parameter, of
x and of the initial state, with every output buffer NaN-filled first (RNNBENCH_POISON=1) so that an
element the loops never write shows up. float64 to 1e-10 of eager; float32 against the eager
float64 result within 1e-4.
"""

from __future__ import annotations

import copy

import pytest
import torch

from rnnbench import backends, fused_cpp
from rnnbench.case import Case
from rnnbench.cells import declared_families, get
from rnnbench.errors import DeviceError
from rnnbench.fused import fused_forward

from fused_helpers import perturbed_stack, run_with_grads

FAMS = [f.name for f in declared_families()]
PATHS = [("irc", "on"), ("irc", "off"), ("ihc", "auto")]
SHAPES = [(1, 1), (7, 3)]


@pytest.fixture
def cpp(cpp_loop):
    return cpp_loop


@pytest.fixture
def poison(monkeypatch):
    monkeypatch.setenv("RNNBENCH_POISON", "1")


def _build(family, variant, dtype, seed=0, **opts):
    spec = get(family, variant)
    N, Ms = (7, [7, 7]) if spec.requires_square else (6, [5, 11])
    return perturbed_stack(spec, N, Ms, dtype, seed, **opts), N


def _state(stack, B, dtype):
    return [tuple(torch.randn(B, n, dtype=dtype) * 0.5 for n in c.state_sizes()) for c in stack.layers]


def _compare(got, ref, tol):
    assert got.keys() == ref.keys()

    def rel(a, b):
        a, b = a.detach().double(), b.detach().double()
        return float((a - b).norm() / b.norm().clamp_min(1e-300))

    bad = {k: rel(got[k], ref[k]) for k in ref if not rel(got[k], ref[k]) < tol}
    assert not bad, f"relative error over {tol}: {bad}"


def _cpp(fold):
    return lambda s, x, st: fused_forward(s, x, st, fold=fold, impl="cpp")


@pytest.mark.parametrize("T,B", SHAPES)
@pytest.mark.parametrize("variant,fold", PATHS)
@pytest.mark.parametrize("family", FAMS)
def test_cpp_float64_matches_eager(cpp, poison, family, variant, fold, T, B):
    stack, N = _build(family, variant, torch.float64)
    x = torch.randn(T, B, N, dtype=torch.float64)
    state = _state(stack, B, torch.float64)
    ref = run_with_grads(stack, x, state, lambda s, x, st: s(x, st))
    _compare(run_with_grads(stack, x, state, _cpp(fold)), ref, 1e-10)


@pytest.mark.parametrize("variant,fold", PATHS)
@pytest.mark.parametrize("family", FAMS)
def test_cpp_float32_within_1e4_of_float64_eager(cpp, poison, family, variant, fold):
    stack, N = _build(family, variant, torch.float64)
    x = torch.randn(7, 3, N, dtype=torch.float64)
    state = _state(stack, 3, torch.float64)
    ref = run_with_grads(stack, x, state, lambda s, x, st: s(x, st))
    s32 = copy.deepcopy(stack).float()
    got = run_with_grads(s32, x.float(), [tuple(t.float() for t in st) for st in state], _cpp(fold))
    _compare(got, ref, 1e-4)


@pytest.mark.parametrize("family", ["gru", "lstm", "sru", "fastgrnn"])
def test_cpp_ihc_gamma_on_feedback(cpp, family):
    stack, N = _build(family, "ihc", torch.float64, gamma_input="feedback")
    x = torch.randn(7, 3, N, dtype=torch.float64)
    state = _state(stack, 3, torch.float64)
    ref = run_with_grads(stack, x, state, lambda s, x, st: s(x, st))
    _compare(run_with_grads(stack, x, state, _cpp("auto")), ref, 1e-10)


def test_cpp_float32_saturated_gates_and_no_grad(cpp):
    # large pre-activations drive σ and tanh to their limits, where the loop's own exp clamps
    stack, N = _build("lstm", "irc", torch.float32)
    x = torch.randn(9, 2, N) * 60
    with torch.no_grad():
        ref, ref_fin = copy.deepcopy(stack).double()(x.double())
        out, fin = fused_forward(stack, x, impl="cpp")
    assert torch.isfinite(out).all()
    assert (out.double() - ref).abs().max() < 1e-5
    assert (fin[1][1].double() - ref_fin[1][1]).abs().max() < 1e-4


@pytest.mark.parametrize("family,variant", [("gru", "irc"), ("lstm", "ihc"), ("sru", "irc"),
                                            ("fastgrnn", "irc")])
def test_cpp_gradcheck(cpp, family, variant):
    torch.manual_seed(0)
    spec = get(family, variant)
    N, M = (3, 3) if spec.requires_square else (3, 2)
    stack = perturbed_stack(spec, N, [M], torch.float64)
    x = torch.randn(3, 2, N, dtype=torch.float64, requires_grad=True)

    def f(x, *ps):
        out, finals = fused_forward(stack, x, impl="cpp")
        return out, *finals[0]

    assert torch.autograd.gradcheck(f, (x, *stack.parameters()), eps=1e-6, atol=1e-7)


# -- the thread team and the products (rnnbench/csrc/products.cpp) -----------------------------------
# The sizes above run the loops on one thread (a step under fused_cpp.MIN_STEP_WORK) with the
# hoisted input products (B < IN_LOOP_MIN_BATCH). These lower both and raise the thread count, so
# that every partition of the hidden units is reached on small sizes: one unit per grain and three
# threads (some owning nothing at M = 5), the input products in the loop or hoisted.
TEAMS = [(1, 1, 3), (2, 1, 2), (16, 10**9, 3)]


@pytest.fixture(params=TEAMS, ids=["grain1-inloop-3", "grain2-inloop-2", "grain16-hoisted-3"])
def team(request, monkeypatch):
    grain, in_loop_from, threads = request.param
    monkeypatch.setattr(fused_cpp, "GRAIN", grain)
    monkeypatch.setattr(fused_cpp, "MIN_STEP_WORK", 0)
    monkeypatch.setattr(fused_cpp, "IN_LOOP_MIN_BATCH", in_loop_from)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    yield request.param
    torch.set_num_threads(before)


@pytest.mark.parametrize("B", [1, 5])   # one row: the weights' rows read in place, not packed
@pytest.mark.parametrize("variant,fold", PATHS)
@pytest.mark.parametrize("family", FAMS)
def test_cpp_thread_teams_match_eager(cpp, poison, team, family, variant, fold, B):
    stack, N = _build(family, variant, torch.float64)
    x = torch.randn(4, B, N, dtype=torch.float64)
    state = _state(stack, B, torch.float64)
    ref = run_with_grads(stack, x, state, lambda s, x, st: s(x, st))
    _compare(run_with_grads(stack, x, state, _cpp(fold)), ref, 1e-10)


@pytest.mark.parametrize("family,variant,fold", [("lstm", "irc", "on"), ("gru", "irc", "off"),
                                                 ("sru", "irc", "off"), ("lstm", "ihc", "auto"),
                                                 ("sru", "ihc", "auto")])
def test_cpp_inference_matches_eager(cpp, team, family, variant, fold):
    # without a backward the gates and a loop-made wx are one step's scratch; with the input
    # products in the loop a two-product step multiplies W_g by x_t + d_t (every kind of mix)
    stack, N = _build(family, variant, torch.float64)
    x = torch.randn(6, 5, N, dtype=torch.float64)
    with torch.inference_mode():
        out, finals = fused_forward(stack, x, fold=fold, impl="cpp")
        ref, ref_finals = stack(x)
    assert (out - ref).abs().max() < 1e-10
    for got, want in zip(finals, ref_finals):
        for g, w in zip(got, want):
            assert (g - w).abs().max() < 1e-10


@pytest.mark.parametrize("B", [12, 13])
def test_cpp_whole_register_tiles_match_eager(cpp, poison, monkeypatch, B):
    # M = 40 in float64 (8 lanes, 32-column panels) on two threads of 16-unit grains: a whole
    # panel and an edge one per gate; 12 and 13 rows: whole 6-row tiles and uneven ones
    monkeypatch.setattr(fused_cpp, "MIN_STEP_WORK", 0)
    monkeypatch.setattr(fused_cpp, "IN_LOOP_MIN_BATCH", 1)
    stack = perturbed_stack(get("lstm", "irc"), 40, [40], torch.float64)
    x = torch.randn(3, B, 40, dtype=torch.float64)
    state = _state(stack, B, torch.float64)
    ref = run_with_grads(stack, x, state, lambda s, x, st: s(x, st))
    for fold in ("on", "off"):
        _compare(run_with_grads(stack, x, state, _cpp(fold)), ref, 1e-10)


@pytest.mark.parametrize("variant,fold", PATHS)
def test_cpp_one_row_reads_wide_weights_in_place(cpp, poison, variant, fold):
    # B = 1 and k ≥ 512: the forward's transposed weights are read as rows (dot products), not
    # packed; 515 leaves a tail of k past the vectors and of rows past the groups of eight
    stack = perturbed_stack(get("lstm", variant), 515, [515], torch.float64)
    x = torch.randn(2, 1, 515, dtype=torch.float64)
    state = _state(stack, 1, torch.float64)
    ref = run_with_grads(stack, x, state, lambda s, x, st: s(x, st))
    _compare(run_with_grads(stack, x, state, _cpp(fold)), ref, 1e-10)


def test_cpp_result_does_not_depend_on_the_thread_count(cpp, monkeypatch):
    # each element is summed by one thread in one order, whatever the team's size
    monkeypatch.setattr(fused_cpp, "MIN_STEP_WORK", 0)
    monkeypatch.setattr(fused_cpp, "IN_LOOP_MIN_BATCH", 1)
    monkeypatch.setattr(fused_cpp, "GRAIN", 2)
    stack = perturbed_stack(get("lstm", "irc"), 24, [24], torch.float32)
    x = torch.randn(5, 9, 24)
    state = _state(stack, 9, torch.float32)
    before = torch.get_num_threads()
    try:
        runs = []
        for threads in (1, 3):
            torch.set_num_threads(threads)
            runs.append(run_with_grads(stack, x, state, _cpp("on")))
    finally:
        torch.set_num_threads(before)
    for k in runs[0]:
        assert torch.equal(runs[0][k], runs[1][k]), k


def test_cpp_fold_choice_counts_the_merged_inputs(cpp, monkeypatch):
    # N = M = 16, T = 20, hoisted (B = 4) or in the loop (B = 8): a merged step saves W_g x_t
    # (rnnbench.fused.fold_costs), so IRC-LSTM unfolds where the torch loop's count folds it
    # (M < 1.33 N); IRC-FastGRNN (one gate) folds for a training step (3·M³ ≤ 2·T·B·M²) and
    # unfolds for a forward alone (T·B·M² + M³ > T·B·M²)
    from rnnbench import recurrences
    seen = []
    real = recurrences.for_cell
    monkeypatch.setattr(recurrences, "for_cell",
                        lambda *a, **k: seen.append(k["use_fold"]) or real(*a, **k))
    for family, expected in (("lstm", [False, False]), ("fastgrnn", [True, False])):
        stack = perturbed_stack(get(family, "irc"), 16, [16], torch.float32)
        for B in (4, 8):
            seen.clear()
            fused_forward(stack, torch.randn(20, B, 16), impl="cpp")[0].sum().backward()
            with torch.inference_mode():
                fused_forward(stack, torch.randn(20, B, 16), impl="cpp")
            assert seen == expected, (family, B)
    seen.clear()
    fused_forward(stack, torch.randn(20, 4, 16), impl="torch")[0].sum().backward()
    assert seen == [True]          # the torch loop's count: M < 2 N folds FastGRNN


MM_SHAPES = [(1, 1, 1), (7, 600, 70), (13, 5, 1100), (130, 257, 65), (40, 600, 1100)]


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-13)])
@pytest.mark.parametrize("m,k,n", MM_SHAPES)
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_cpp_product_matches_torch(cpp, dtype, tol, m, k, n, ta, tb):
    # edge rows and columns of the register tile, more than one block of k (512), of columns
    # (1024) and of rows (96), and above a million multiply-adds the split between threads
    g = torch.Generator().manual_seed(m * k + n)
    a = torch.randn(k, m, generator=g, dtype=dtype).t() if ta else torch.randn(m, k, generator=g, dtype=dtype)
    b = torch.randn(n, k, generator=g, dtype=dtype).t() if tb else torch.randn(k, n, generator=g, dtype=dtype)
    want = a.double() @ b.double()
    scale = want.abs().max().clamp_min(1.0)
    assert ((fused_cpp.mm(a, b).double() - want).abs().max() / scale) < tol
    c = torch.randn(m, n, generator=g, dtype=dtype)
    c2 = c.clone()
    fused_cpp.mm(a, b, out=c2, accumulate=True)
    assert ((c2.double() - c.double() - want).abs().max() / scale) < tol
    if k:  # the autograd product: both gradients
        a1, b1 = a.detach().requires_grad_(), b.detach().requires_grad_()
        gout = torch.randn(m, n, generator=g, dtype=dtype)
        fused_cpp.matmul(a1, b1).backward(gout)
        assert ((a1.grad.double() - gout.double() @ b.double().t()).abs().max() / scale) < tol * 10
        assert ((b1.grad.double() - a.double().t() @ gout.double()).abs().max() / scale) < tol * 10


def test_cpp_product_of_nothing(cpp):
    c = torch.full((3, 4), 7.0)
    fused_cpp.mm(torch.empty(3, 0), torch.empty(0, 4), out=c)
    assert torch.equal(c, torch.zeros(3, 4))
    c2 = torch.ones(3, 4)
    fused_cpp.mm(torch.empty(3, 0), torch.empty(0, 4), out=c2, accumulate=True)
    assert torch.equal(c2, torch.ones(3, 4))


def test_every_family_has_a_cpp_update(cpp):
    src = fused_cpp.generate_source()
    for name in FAMS:
        assert f"struct Fam_{name} " in src, f"{name} has no CPP_UPDATE in its module"
    assert "// @FAMILIES@" not in src


def test_cpp_refuses_other_dtypes():
    stack, N = _build("gru", "irc", torch.float32)
    if not fused_cpp.available()[0]:
        pytest.skip("no C++ loop here")
    with pytest.raises(DeviceError, match="float32 and float64"):
        fused_forward(stack.bfloat16(), torch.randn(2, 1, N).bfloat16(), impl="cpp")


# -- the backends ------------------------------------------------------------------------------------
def _case(backend, **kw):
    return Case(**{"bench": "speed", "cell": "lstm", "variant": "irc", "backend": backend,
                   "batch": 2, "seq_len": 3, "input_size": 4, "hidden_size": 5, **kw})


@pytest.mark.parametrize("backend,want", [("fused", "cpp"), ("fused-cpp", "cpp"), ("fused-torch", "torch")])
def test_fused_uses_the_cpp_loop_on_a_cpu(cpp, fused_calls, backend, want):
    seen = fused_calls
    run = backends.build(_case(backend, mode="fwd+bwd"))
    assert run.verify_error is not None and run.verify_error < 1e-4
    assert seen["impl"] == want


def test_fused_cpp_unsupported_for_bfloat16(cpp):
    with pytest.raises(backends.Unsupported, match="float32 and float64"):
        backends.build(_case("fused-cpp", dtype="bfloat16"))
    # the `fused` backend keeps its torch loop there, silently: nothing is missing
    assert backends.build(_case("fused", dtype="bfloat16"), check=False) is not None


def test_without_a_compiler_fused_falls_back_with_one_line(monkeypatch, capsys):
    monkeypatch.setattr(fused_cpp, "_state", None)
    monkeypatch.setattr(fused_cpp, "_noted", False)
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    ok, why = fused_cpp.available()
    assert not ok and why == "no C++ compiler ('/nonexistent/c++' not found; set CXX)"
    import rnnbench.fused as fused

    seen = []
    real = fused.fused_forward
    monkeypatch.setattr(fused, "fused_forward", lambda s, x, **kw: seen.append(kw["impl"]) or real(s, x, **kw))
    for _ in range(2):
        run = backends.build(_case("fused"))
        assert run.verify_error is not None and run.verify_error < 1e-4
    assert set(seen) == {"torch"}
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["rnnbench: note: fused runs its torch loop, the C++ loop is unavailable: "
                   "no C++ compiler ('/nonexistent/c++' not found; set CXX)"]
    with pytest.raises(backends.Unsupported, match="C\\+\\+ loop is unavailable: no C\\+\\+ compiler"):
        backends.build(_case("fused-cpp"))


def test_no_cpp_switch(monkeypatch):
    monkeypatch.setattr(fused_cpp, "_state", None)
    monkeypatch.setenv("RNNBENCH_NO_CPP", "1")
    assert fused_cpp.available() == (False, "RNNBENCH_NO_CPP is set")


def test_a_failed_build_is_one_line(monkeypatch):
    # what torch raises when the compiler fails: its command lines, then the compiler's output
    def failing_build(**kw):
        raise RuntimeError("Error building extension 'rnnbench_irc_loop_x': [1/2] c++ -MMD -MF "
                           "main.o.d -O3 -c main.cpp\nFAILED: main.o\nmain.cpp:12:3: error: 'sigm' "
                           "was not declared in this scope\nninja: build stopped")

    from torch.utils import cpp_extension
    monkeypatch.setattr(fused_cpp, "_state", None)
    monkeypatch.setattr(cpp_extension, "load_inline", failing_build)
    monkeypatch.setattr(cpp_extension, "is_ninja_available", lambda: True)
    monkeypatch.setattr(fused_cpp.shutil, "which", lambda name: "/usr/bin/c++")
    assert fused_cpp.available() == (False, "building the C++ loop failed: main.cpp:12:3: error: "
                                             "'sigm' was not declared in this scope")


def test_without_ninja(monkeypatch):
    from torch.utils import cpp_extension
    monkeypatch.setattr(fused_cpp, "_state", None)
    monkeypatch.setattr(cpp_extension, "is_ninja_available", lambda: False)
    monkeypatch.setattr(fused_cpp.shutil, "which", lambda name: "/usr/bin/c++")
    assert fused_cpp.available() == (False, "ninja is not installed (pip install ninja)")
