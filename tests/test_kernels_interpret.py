"""The Triton kernels (kernels/) under the Triton interpreter, on CPU tensors, against eager.

TRITON_INTERPRET=1 is set here, before this module imports Triton. Triton decides interpreter or
compiler when a @triton.jit function is defined, and kernels._module() re-imports the kernel module
if it was loaded under the other setting, so this works even when another module imported Triton
first. If the kernels still are not interpreted, every test here is skipped with the reason (set
TRITON_INTERPRET=1 for the whole run, e.g. in conftest.py, to avoid that).

Every output buffer is filled with NaN before the kernels write it (RNNBENCH_POISON=1), so an element
a kernel fails to write makes the comparison fail. Shapes are tiny and odd: T = 1 and 7, B = 1 and 3,
N ≠ M where the cell allows, M = 13 (not a power of two; the interpreter's 8-wide blocks split it in
two, and B = 3 leaves part of a 4-row block masked). float32: relative error under 1e-4.

Two kernel paths: folded IRC (one launch per step, or one persistent launch), and the two-product
recurrences, unfolded IRC and IHC (two launches per step; there N = 10, so the N-wide intermediate
also spans two blocks).
"""

from __future__ import annotations

import os

os.environ["TRITON_INTERPRET"] = "1"

import copy  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton")

import kernels  # noqa: E402
from rnnbench.cells import declared_families, get, get_family  # noqa: E402
from rnnbench.fused import fused_forward  # noqa: E402

from fused_helpers import perturbed_stack, run_with_grads  # noqa: E402

_OK, _WHY = kernels.available()
_INTERPRETED = _OK and kernels.uses_interpreter_kernels()
if _OK and not _INTERPRETED:  # pragma: no cover
    _WHY = "the Triton kernels were built for the GPU, not the interpreter"

pytestmark = [
    pytest.mark.interpreter,
    pytest.mark.skipif(not _INTERPRETED, reason=f"Triton interpreter unusable here: {_WHY}"),
]

FAMS = [f.name for f in declared_families()]


@pytest.fixture(autouse=True)
def _poison(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setenv("RNNBENCH_POISON", "1")


def _sizes(spec, layers, n_in):
    if spec.requires_square:
        return 13, [13] * layers
    return n_in, [13, 5][:layers]


def _build(family, layers=1, dtype=torch.float64, seed=0, variant="irc", n_in=6, **opts):
    spec = get(family, variant)
    N, Ms = _sizes(spec, layers, n_in)
    return perturbed_stack(spec, N, Ms, dtype, seed, **opts), N


def _rel(a, b):
    assert a is not None and b is not None
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def _compare(got, ref, tol):
    assert got.keys() == ref.keys()
    for k, v in got.items():
        assert not torch.isnan(v).any(), f"{k} has NaN: an element was never written"
    bad = {k: _rel(got[k], ref[k]) for k in ref if not _rel(got[k], ref[k]) < tol}
    assert not bad, f"relative error over {tol}: {bad}"


def _triton(mode="step", fold=True):
    def fn(stack, x, state):
        with kernels.mode(mode):
            return fused_forward(stack, x, state, impl="triton", fold=fold)
    return fn


def _case(family, T, B, layers, dtype, mode, tol, fold=True, **build):
    ref_stack, N = _build(family, layers, **build)
    x = torch.randn(T, B, N, dtype=torch.float64)
    state = [tuple(torch.randn(B, n, dtype=torch.float64) * 0.5 for n in c.state_sizes())
             for c in ref_stack.layers]
    ref = run_with_grads(ref_stack, x, state, lambda s, x, st: s(x, st))
    stack = copy.deepcopy(ref_stack).to(dtype)
    got = run_with_grads(stack, x.to(dtype), [tuple(t.to(dtype) for t in st) for st in state],
               _triton(mode, fold))
    assert got["out"].dtype == dtype
    _compare(got, ref, tol)


@pytest.mark.parametrize("T,B", [(1, 1), (7, 3)])
@pytest.mark.parametrize("mode", ["step", "persistent"])
@pytest.mark.parametrize("family", FAMS)
def test_kernels_float32_match_eager(family, mode, T, B):
    _case(family, T, B, 1, torch.float32, mode, 1e-4)


@pytest.mark.parametrize("mode", ["step", "persistent"])
@pytest.mark.parametrize("family", ["gru", "lstm", "sru"])
def test_kernels_two_layers(family, mode):
    _case(family, 5, 3, 2, torch.float32, mode, 1e-4)


@pytest.mark.parametrize("mode", ["step", "persistent"])
@pytest.mark.parametrize("family", ["gru", "lstm"])
def test_kernels_bfloat16(family, mode):
    # bfloat16 storage, float32 arithmetic: the error is bfloat16 rounding of states and weights
    _case(family, 7, 3, 1, torch.bfloat16, mode, 5e-2)


@pytest.mark.parametrize("family", FAMS)
def test_step_and_persistent_agree_with_torch_fused(family):
    stack, N = _build(family, 1, torch.float32, seed=2)
    x = torch.randn(7, 3, N)
    state = [tuple(torch.randn(3, n) for n in c.state_sizes()) for c in stack.layers]
    ref = run_with_grads(stack, x, state, lambda s, x, st: fused_forward(s, x, st, fold=True))
    for mode in ("step", "persistent"):
        _compare(run_with_grads(stack, x, state, _triton(mode, fold=True)), ref, 1e-5)


def test_poison_catches_an_unwritten_step(monkeypatch):
    """The guard itself: a forward that skipped its last step leaves NaN where h_T belongs."""
    kt = kernels._module()
    stack, N = _build("gru", 1, torch.float32)
    cell, M, T, B = stack.layers[0], 13, 3, 2
    x = torch.randn(T, B, N)
    out = torch.full((T, B, M), float("nan"))
    real = kt.fwd_step

    class SkipLastStep:
        def __getitem__(self, grid):
            def launch(**kw):
                if kw["HN"].data_ptr() != out[T - 1].data_ptr():   # h_t's buffer
                    real[grid](**kw)
            return launch

    monkeypatch.setattr(kt, "fwd_step", SkipLastStep())
    with torch.no_grad():
        R = ((cell.W[:2 * M] * torch.sigmoid(cell.connection.theta_alpha)) @ cell.connection.U_V)
        wx = torch.nn.functional.linear(x, cell.W).contiguous()
        layer = kernels.Layer(get_family("gru"), wx, x, torch.zeros(B, M), out)
        with kernels.mode("step"):
            kernels.irc_forward(layer, R.contiguous())
    assert not torch.isnan(out[:T - 1]).any() and torch.isnan(out[T - 1]).all()


# ---------------------------------------------------------------------------------------------------
# the two-product recurrences: unfolded IRC (fold=False) and IHC, per-step _mix_step/_dd_step launches
# ---------------------------------------------------------------------------------------------------

TWO_PRODUCT = [("irc", False), ("ihc", "auto")]


def _two_product(family, variant, fold, T, B, dtype=torch.float32, tol=1e-4, layers=1, **opts):
    _case(family, T, B, layers, dtype, "step", tol, fold=fold, variant=variant, n_in=10, **opts)


@pytest.mark.parametrize("T,B", [(1, 1), (7, 3)])
@pytest.mark.parametrize("variant,fold", TWO_PRODUCT)
@pytest.mark.parametrize("family", FAMS)
def test_two_product_float32_match_eager(family, variant, fold, T, B):
    _two_product(family, variant, fold, T, B)


@pytest.mark.parametrize("family", ["gru", "sru", "fastgrnn"])
def test_ihc_gamma_on_feedback(family):
    # the kernels see Γ' = Γ U_V (Γ diag(ω) for SRU) acting on h; dΓ' reaches Γ and U_V by autograd
    _two_product(family, "ihc", "auto", 7, 3, gamma_input="feedback")


@pytest.mark.parametrize("family,variant,fold", [("lstm", "irc", False), ("gru", "ihc", "auto")])
def test_two_product_two_layers(family, variant, fold):
    _two_product(family, variant, fold, 5, 3, layers=2)


@pytest.mark.parametrize("family,variant,fold", [("gru", "irc", False), ("lstm", "ihc", "auto"),
                                                 ("sru", "ihc", "auto")])
def test_two_product_bfloat16(family, variant, fold):
    _two_product(family, variant, fold, 7, 3, dtype=torch.bfloat16, tol=5e-2)


@pytest.mark.parametrize("family", FAMS)
def test_folded_and_unfolded_kernels_agree(family):
    stack, N = _build(family, 1, torch.float32, seed=3, n_in=10)
    x = torch.randn(5, 3, N)
    state = [tuple(torch.randn(3, n) for n in c.state_sizes()) for c in stack.layers]
    folded = run_with_grads(stack, x, state, _triton("step", fold=True))
    _compare(run_with_grads(stack, x, state, _triton("step", fold=False)), folded, 1e-5)


class _SkipOne:
    """Stands in for a kernel launcher: runs every launch but the `skip`-th (0-based)."""

    def __init__(self, real, skip):
        self.real, self.skip, self.n = real, skip, 0

    def __getitem__(self, grid):
        def launch(*args, **kw):
            if self.n != self.skip:
                self.real[grid](*args, **kw)
            self.n += 1
        return launch


def test_poison_catches_a_skipped_mix_launch(monkeypatch):
    """Forward: without the last step's _mix_step, d_T is the NaN of the refilled scratch, so h_T is."""
    kt = kernels._module()
    T = 4
    stack, N = _build("gru", 1, torch.float32, variant="ihc", n_in=10)
    monkeypatch.setattr(kt, "mix_step", _SkipOne(kt.mix_step, T - 1))
    with torch.no_grad():
        out, _ = fused_forward(stack, torch.randn(T, 2, N), impl="triton")
    assert not torch.isnan(out[:T - 1]).any() and torch.isnan(out[T - 1]).all()


def test_poison_catches_a_skipped_dd_launch(monkeypatch):
    """Backward: without step T−1's _dd_step, what reaches h_{T−2} through U_V is NaN, and so is every
    gradient of the steps before; step T−1's own input gradient stays finite."""
    kt = kernels._module()
    T = 4
    stack, N = _build("gru", 1, torch.float32, n_in=10)
    monkeypatch.setattr(kt, "dd_step", _SkipOne(kt.dd_step, 0))       # the first: step T−1's
    x = torch.randn(T, 2, N, requires_grad=True)
    out, _ = fused_forward(stack, x, impl="triton", fold=False)
    out.sum().backward()
    assert torch.isnan(x.grad[:T - 1]).all() and not torch.isnan(x.grad[T - 1]).any()
    assert torch.isnan(stack.layers[0].connection.U_V.grad).any()


def test_available_reports_interpreter_and_gpu_reason(monkeypatch):
    ok, why = kernels.available()
    assert ok and "interpreter" in why
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    ok, why = kernels.available()
    # triton was imported interpreted: without the variable the kernels cannot run here, and say why
    assert not ok and "TRITON_INTERPRET" in why


def test_mode_selection_and_persistent_config_pruning():
    assert kernels.pick_mode(kernels.PERSISTENT_MAX_M) == "persistent"
    assert kernels.pick_mode(kernels.PERSISTENT_MAX_M + 1) == "step"
    with kernels.mode("step"):
        assert kernels.pick_mode(8) == "step"
    with pytest.raises(ValueError):
        with kernels.mode("sometimes"):
            pass
    import triton

    kt = kernels._module()
    cfgs = [triton.Config(dict(BLOCK_B=bb), num_warps=w) for bb, w in kt._PERSISTENT_CONFIGS]
    # fewer than 4 elements of a (BLOCK_B, MP) block per thread crashes LLVM for the LSTM backward
    for mp in (16, 32):
        kept = kt._prune_persistent(cfgs, {}, MP=mp)
        assert kept and all(c.kwargs["BLOCK_B"] * mp >= 4 * 32 * c.num_warps for c in kept)
    assert not any(c.kwargs["BLOCK_B"] == 16 and c.num_warps == 8
                   for c in kt._prune_persistent(cfgs, {}, MP=32))
