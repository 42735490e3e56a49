"""The `fused` backend (rnnbench/fused.py, impl="torch") against the eager RecurrentStack.

Every IRC/IHC family, folded and unfolded, float64 and float32, odd shapes (T = 1 and 7, B = 1 and 3,
N ≠ M where the cell allows it, M not a power of two), two layers: outputs, final states and the
gradient of every parameter, of the input and of the initial state. float32 is compared with the
eager float64 result of the same parameters: relative error (‖a − b‖ / ‖b‖) under 1e-4.
"""

from __future__ import annotations

import copy

import pytest
import torch

from rnnbench.cells import declared_families, get, get_family
from rnnbench.errors import ConfigError
from rnnbench.fused import choose_fold, fold_costs, fused_forward, supports
from rnnbench.runner import RecurrentStack

from fused_helpers import perturbed_stack, run_with_grads

FAMS = [f.name for f in declared_families()]
# (variant, fold) pairs: IHC never folds
PATHS = [("irc", True), ("irc", False), ("ihc", False)]
SHAPES = [(1, 1), (7, 3)]          # (T, B)


def _sizes(spec):
    """Input size and two hidden sizes: N ≠ M and M not a power of two wherever the cell allows."""
    if spec.requires_square:
        return 7, [7, 7]
    return 6, [5, 11]


def _build(family, variant, dtype, seed=0, **opts):
    spec = get(family, variant)
    N, Ms = _sizes(spec)
    return perturbed_stack(spec, N, Ms, dtype, seed, **opts), N


def _eager(stack, x, state):
    return stack(x, state)


def _rel(a, b):
    assert a is not None and b is not None
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def _random_state(stack, B, dtype):
    return [tuple(torch.randn(B, n, dtype=dtype) * 0.5 for n in c.state_sizes()) for c in stack.layers]


def _compare(got, ref, tol):
    assert got.keys() == ref.keys()
    bad = {k: _rel(got[k], ref[k]) for k in ref if not _rel(got[k], ref[k]) < tol}
    assert not bad, f"relative error over {tol}: {bad}"


@pytest.mark.parametrize("gates", ["store", "recompute"])
@pytest.mark.parametrize("T,B", SHAPES)
@pytest.mark.parametrize("variant,fold", PATHS)
@pytest.mark.parametrize("family", FAMS)
def test_fused_float64_matches_eager(family, variant, fold, T, B, gates):
    stack, N = _build(family, variant, torch.float64)
    x = torch.randn(T, B, N, dtype=torch.float64)
    state = _random_state(stack, B, torch.float64)
    ref = run_with_grads(stack, x, state, _eager)
    got = run_with_grads(stack, x, state, lambda s, x, st: fused_forward(s, x, st, fold=fold, gates=gates))
    _compare(got, ref, 1e-10)


def _saved_bytes(fn):
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def test_stored_gates_cost_exactly_their_bytes():
    # one GRU layer, G = 2 gates: storing keeps T·B·2M more float64 values, nothing else changes
    torch.manual_seed(0)
    T, B, N, M = 5, 3, 4, 6
    stack = RecurrentStack(get("gru", "irc"), N, M).double()
    x = torch.randn(T, B, N, dtype=torch.float64)
    store = _saved_bytes(lambda: fused_forward(stack, x, gates="store"))
    recompute = _saved_bytes(lambda: fused_forward(stack, x, gates="recompute"))
    assert store - recompute == T * B * 2 * M * 8
    # no backward to come: nothing to store, whatever was asked
    with torch.no_grad():
        assert _saved_bytes(lambda: fused_forward(stack, x, gates="store")) == 0
    assert _saved_bytes(lambda: fused_forward(stack.requires_grad_(False), x, gates="store")) == 0


def test_gates_auto_and_refusals():
    from rnnbench.fused import resolve_gates
    assert resolve_gates("auto", "torch", "cpu") is True
    assert resolve_gates("auto", "torch", "cuda") is False
    assert resolve_gates("auto", "triton", "cpu") is False
    assert resolve_gates("recompute", "torch", "cpu") is False
    with pytest.raises(ConfigError):
        resolve_gates("store", "triton", "cuda")
    with pytest.raises(ConfigError):
        resolve_gates("sometimes", "torch", "cpu")


@pytest.mark.parametrize("gates", ["store", "recompute"])
@pytest.mark.parametrize("T,B", SHAPES)
@pytest.mark.parametrize("variant,fold", PATHS)
@pytest.mark.parametrize("family", FAMS)
def test_fused_float32_within_1e4_of_float64_eager(family, variant, fold, T, B, gates):
    stack, N = _build(family, variant, torch.float64)
    x = torch.randn(T, B, N, dtype=torch.float64)
    state = _random_state(stack, B, torch.float64)
    ref = run_with_grads(stack, x, state, _eager)
    s32 = copy.deepcopy(stack).float()
    got = run_with_grads(s32, x.float(), [tuple(t.float() for t in st) for st in state],
               lambda s, x, st: fused_forward(s, x, st, fold=fold, gates=gates))
    _compare(got, ref, 1e-4)


@pytest.mark.parametrize("gates", ["store", "recompute"])
@pytest.mark.parametrize("family", ["gru", "lstm", "sru", "fastgrnn"])
def test_ihc_gamma_on_feedback(family, gates):
    stack, N = _build(family, "ihc", torch.float64, gamma_input="feedback")
    x = torch.randn(7, 3, N, dtype=torch.float64)
    state = _random_state(stack, 3, torch.float64)
    ref = run_with_grads(stack, x, state, _eager)
    got = run_with_grads(stack, x, state, lambda s, x, st: fused_forward(s, x, st, gates=gates))
    _compare(got, ref, 1e-10)


@pytest.mark.parametrize("family", FAMS)
def test_folded_and_unfolded_agree(family):
    stack, N = _build(family, "irc", torch.float64, seed=3)
    x = torch.randn(7, 3, N, dtype=torch.float64)
    state = _random_state(stack, 3, torch.float64)
    a = run_with_grads(stack, x, state, lambda s, x, st: fused_forward(s, x, st, fold=True))
    b = run_with_grads(stack, x, state, lambda s, x, st: fused_forward(s, x, st, fold=False))
    _compare(a, b, 1e-11)


def test_default_state_batch_first_and_no_grad():
    stack, N = _build("lstm", "irc", torch.float64)
    x = torch.randn(7, 3, N, dtype=torch.float64)
    ref_out, ref_fin = stack(x)
    with torch.no_grad():
        out, fin = fused_forward(stack, x)
    assert not out.requires_grad
    assert _rel(out, ref_out) < 1e-12 and _rel(fin[1][1], ref_fin[1][1]) < 1e-12
    spec = get("lstm", "irc")
    bf = RecurrentStack(spec, N, [5, 11], batch_first=True).double()
    bf.load_state_dict(stack.state_dict())
    out_bf, _ = fused_forward(bf, x.transpose(0, 1))
    assert _rel(out_bf.transpose(0, 1), ref_out) < 1e-12


@pytest.mark.parametrize("gates", ["store", "recompute"])
@pytest.mark.parametrize("family,variant", [("gru", "irc"), ("lstm", "ihc"), ("sru", "irc"),
                                            ("fastgrnn", "irc")])
def test_gradcheck(family, variant, gates):
    torch.manual_seed(0)
    spec = get(family, variant)
    N, M = (3, 3) if spec.requires_square else (3, 2)
    stack = RecurrentStack(spec, N, M).double()
    x = torch.randn(3, 2, N, dtype=torch.float64, requires_grad=True)
    params = list(stack.parameters())

    def f(x, *ps):
        out, finals = fused_forward(stack, x, gates=gates)
        return out, *finals[0]

    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("gates", ["store", "recompute"])
def test_bfloat16_runs_close(gates):
    stack, N = _build("gru", "irc", torch.float32)
    x = torch.randn(7, 3, N).bfloat16()
    st = [tuple(t.bfloat16() for t in s) for s in _random_state(stack, 3, torch.float32)]
    ref = run_with_grads(stack, x.float(), [tuple(t.float() for t in s) for s in st], _eager)
    got = run_with_grads(copy.deepcopy(stack).to(torch.bfloat16), x, st,
               lambda s, x, st: fused_forward(s, x, st, gates=gates))
    assert got["out"].dtype == torch.bfloat16
    _compare(got, ref, 5e-2)


def test_ihc_cannot_fold():
    stack, N = _build("gru", "ihc", torch.float32)
    with pytest.raises(ConfigError, match="cannot be folded"):
        fused_forward(stack, torch.randn(2, 1, N), fold=True)


def test_supports():
    assert supports(get("gru", "irc")) == (True, "")
    ok, why = supports(get("gru", "baseline"))
    assert not ok and "IRC and IHC" in why
    ok, why = supports(get("lstm", "ihc"), impl="nope")
    assert not ok and "unknown impl" in why
    with pytest.raises(ConfigError):
        fused_forward(RecurrentStack(get("gru"), 4, 4), torch.randn(2, 1, 4))


def test_triton_unsupported_without_gpu_or_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    import kernels
    ok, why = kernels.available()
    assert not ok and why
    ok2, why2 = supports(get("gru", "irc"), impl="triton")
    assert not ok2 and why2 == why
    with pytest.raises(ConfigError):
        fused_forward(RecurrentStack(get("gru", "irc"), 4, 4), torch.randn(2, 1, 4), impl="triton")


def test_choose_fold_cost_model():
    G = get_family("gru").n_gates
    # the rule for IRC-GRU: fold when M < 1.5 N (long-sequence limit)
    assert choose_fold(G, 100, 149) and not choose_fold(G, 100, 151)
    assert choose_fold(3, 300, 399) and not choose_fold(3, 300, 401)       # LSTM: M < 4/3 N
    assert choose_fold(1, 100, 199) and not choose_fold(1, 100, 201)       # FastGRNN/PRU: M < 2 N
    assert choose_fold(2, 512, 512, diagonal=True)                         # SRU/T-LSTM: always
    # the one-off cost of forming R matters for very short runs
    assert choose_fold(G, 100, 140) and not choose_fold(G, 100, 140, tokens=1)
    f, u = fold_costs(G, 512, 512)
    assert f < u


def test_fold_cost_model_with_the_inputs_merged_and_a_forward_alone():
    # counted by hand per token at N = M: folded 4·G·M² (+ 3·G·M³ once), unfolded 4·(M² + G·M²);
    # merged saves G·M² forward and G·M² in dW_g; a forward alone is one product of each
    G, M, n = 3, 256, 4096
    assert fold_costs(G, M, M, tokens=n) == (4 * n * G * M**2 + 3 * G * M**3, 4 * n * (M**2 + G * M**2))
    assert fold_costs(G, M, M, tokens=n, merged=True)[1] == 4 * n * (M**2 + G * M**2) - 2 * n * G * M**2
    assert fold_costs(G, M, M, tokens=n, backward=False, merged=True) == (n * G * M**2 + G * M**3,
                                                                         n * M**2)
    # so at B = 32, T = 128 the C++ loop unfolds IRC-LSTM and IRC-GRU; hoisted, they fold
    for G in (2, 3):
        assert choose_fold(G, M, M, tokens=n)
        assert not choose_fold(G, M, M, tokens=n, merged=True)
        assert not choose_fold(G, M, M, tokens=n, backward=False, merged=True)
    # diagonal feedback (SRU, T-LSTM): hoisted, a tie that folds; merged, W_g (x + s⊙h) is the
    # only product of a step, so it unfolds
    assert choose_fold(2, M, M, tokens=n, diagonal=True)
    assert fold_costs(2, M, M, tokens=n, diagonal=True, merged=True) == (4 * n * 2 * M**2, 2 * n * 2 * M**2)
    assert not choose_fold(2, M, M, tokens=n, diagonal=True, merged=True)


def test_auto_fold_picks_per_layer_and_matches_eager():
    stack, N = _build("gru", "irc", torch.float64)      # layers (6→5) folds, (5→11) does not
    assert choose_fold(2, 6, 5, tokens=21) and not choose_fold(2, 5, 11, tokens=21)
    x = torch.randn(7, 3, N, dtype=torch.float64)
    assert _rel(fused_forward(stack, x, fold="auto")[0], stack(x)[0]) < 1e-12
    with pytest.raises(ConfigError):
        fused_forward(stack, x, fold="sometimes")
