"""Backends: native and fused against eager, the registry seam, and every status a case can end in.

torch.nn.GRU / nn.LSTM are an implementation independent of the zoo's runner, so their agreement
with eager (outputs and every parameter gradient) checks both the weight copy and the runner.
"""

from __future__ import annotations

import os

import pytest
import torch

from rnnbench import backends, fused_cpp
from rnnbench.backends import (BACKENDS, Backend, Mismatch, Runnable, Unsupported, build,
                               make_inputs, verify)
from rnnbench.bench.dispatch import measure
from rnnbench.bench.speed import SpeedSettings, measure_speed
from rnnbench.case import Case
from rnnbench.errors import ConfigError, DeviceError, RnnbenchError
from rnnbench.outcome import classify
from rnnbench.runner import RecurrentStack

TINY = dict(batch=3, seq_len=5, input_size=6, hidden_size=4)
QUICK = SpeedSettings(min_run_time=0.01, sample_time=0.002, warmup=1, warmup_time=0.0,
                      min_samples=3, input_sets=2)


def case(cell="gru", **kw):
    return Case(**{"bench": "speed", "cell": cell, **TINY, **kw})


def test_registry_lists_every_backend():
    assert list(BACKENDS)[:5] == ["eager", "compile", "native", "fused", "triton"]
    assert {"fused-torch", "fused-cpp", "fused-recompute"} <= set(BACKENDS)
    from rnnbench.commands.common import parse_backends
    assert parse_backends("eager, native") == ["eager", "native"]
    assert parse_backends("all") == list(BACKENDS)
    with pytest.raises(RnnbenchError, match="unknown backend 'cudnn'"):
        parse_backends("eager,cudnn")


# -- native against eager --------------------------------------------------------------------------
@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("layers", [1, 2])
def test_native_matches_eager_outputs_and_gradients(cell, layers):
    c = case(cell, form="canonical", backend="native", mode="fwd+bwd", layers=layers,
             dtype="float64")
    x = make_inputs(c, 1, seed=3)[0]
    r = build(c, example=x)
    assert isinstance(r.module, (torch.nn.GRU, torch.nn.LSTM))
    # the check build ran is tight in float64
    assert r.verify_error < 1e-10
    # and independently here: outputs and gradients, parameter by parameter
    ref = r.reference
    out_n = r.forward(x)
    out_e, _ = ref(x)
    torch.testing.assert_close(out_n, out_e, rtol=1e-10, atol=1e-12)
    g_n = torch.autograd.grad(out_n.square().sum(), r.parameters())
    g_e = torch.autograd.grad(out_e.square().sum(), list(ref.parameters()))
    assert len(g_n) == 4 * layers
    for a, b in zip(g_n, g_e):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_verify_catches_a_wrong_backend():
    c = case("gru", form="canonical", backend="native", mode="fwd")
    r = build(c)
    with torch.no_grad():
        r.module.weight_hh_l0.add_(0.1)
    with pytest.raises(Mismatch, match="does not match eager"):
        verify(r, make_inputs(c, 1)[0], train=False)


@pytest.mark.parametrize("kw, why", [
    (dict(cell="gru", variant="irc", form="paper"), "IRC-GRU has no torch implementation"),
    (dict(cell="gru", form="paper"), "use --form canonical"),
    (dict(cell="sru", form="paper", input_size=4), "SRU has no torch implementation"),
])
def test_native_unsupported_cases_give_reasons(kw, why):
    row = measure_speed(case(**{**kw, "backend": "native"}), QUICK)
    assert row.status == "unsupported" and why in row.reason
    assert row.metrics == {}


def test_native_needs_one_hidden_size():
    c = case("lstm", form="canonical", backend="native", hidden_size=(4, 5), layers=2)
    with pytest.raises(Unsupported, match="one hidden size"):
        build(c)


def test_impossible_sizes_are_unsupported_rows():
    row = measure_speed(case("sru", input_size=6, hidden_size=4), QUICK)
    assert row.status == "unsupported" and "N equal to hidden size M" in row.reason


# -- fused -----------------------------------------------------------------------------------------
def test_fused_when_present_is_checked_against_eager():
    c = case("gru", variant="irc", backend="fused", mode="fwd+bwd", input_size=4)
    r = build(c)
    assert r.verify_error is not None and r.verify_error < 1e-3


# -- compile ---------------------------------------------------------------------------------------
def test_compile_failure_is_unsupported(monkeypatch):
    def broken_compile(module, **kw):
        def run(*a, **k):
            raise RuntimeError("InductorError: no C compiler\nlong traceback")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    row = measure_speed(case("gru", backend="compile", mode="fwd"), QUICK)
    assert row.status == "unsupported"
    assert row.reason == "torch.compile failed here: RuntimeError: InductorError: no C compiler"


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("RNNBENCH_SLOW"),
                    reason="compiles for 30-60 s on 2 cores; set RNNBENCH_SLOW=1")
def test_compile_runs_and_reports_compile_time():
    row = measure_speed(case("gru", backend="compile", mode="fwd", seq_len=3), QUICK)
    assert row.status == "ok", row.reason
    assert row.metrics["compile_time_s"] > 0 and row.metrics["verify_rel_err"] < 1e-3


# -- every status path -----------------------------------------------------------------------------
def _with_backend(monkeypatch, name, builder):
    monkeypatch.setitem(BACKENDS, name, Backend(name, builder, "test backend"))


def _eager_then(raise_this):
    def builder(stack, c):
        def forward(x):
            raise raise_this
        return Runnable(c.backend, forward, stack, stack)
    return builder


@pytest.mark.parametrize("bench", ["speed", "memory"])
def test_oom_becomes_an_oom_row_and_frees_the_cache(monkeypatch, bench):
    freed = []
    monkeypatch.setattr("rnnbench.outcome.empty_cache", lambda d: freed.append(d))
    _with_backend(monkeypatch, "hungry",
                  _eager_then(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8 GiB")))
    row = measure(Case(bench=bench, cell="gru", backend="hungry", **TINY), speed=QUICK, rss=False)
    assert row.status == "oom"
    assert row.reason == "OutOfMemoryError: CUDA out of memory. Tried to allocate 8 GiB"
    assert freed == ["cpu"]


def test_unsupported_from_a_builder(monkeypatch):
    def builder(stack, c):
        raise Unsupported("needs sm_90")
    _with_backend(monkeypatch, "picky", builder)
    row = measure(case(backend="picky"), speed=QUICK)
    assert (row.status, row.reason) == ("unsupported", "needs sm_90")


def test_failure_is_a_failed_row_with_one_line(monkeypatch):
    _with_backend(monkeypatch, "buggy", _eager_then(ValueError("bad shape\nsecond line")))
    row = measure(case(backend="buggy", mode="fwd"), speed=QUICK)
    assert (row.status, row.reason) == ("failed", "ValueError: bad shape")


def test_mismatch_is_a_failed_row(monkeypatch):
    def builder(stack, c):
        return Runnable(c.backend, lambda x: stack(x)[0] * 1.01, stack, stack)
    _with_backend(monkeypatch, "wrong", builder)
    row = measure(case(backend="wrong", mode="fwd"), speed=QUICK)
    assert row.status == "failed" and "does not match eager" in row.reason


@pytest.mark.parametrize("exc, status", [
    (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9 GB"), "oom"),
    (RuntimeError('"addmm" not implemented for \'Half\''), "unsupported"),
    (NotImplementedError("no kernel"), "unsupported"),
    (KeyError("x"), "failed"),
])
def test_classify(exc, status):
    assert classify(exc)[0] == status


def test_user_errors_still_stop_the_run():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(DeviceError, match="no CUDA GPU is available"):
        measure(case(device="cuda"), speed=QUICK)
    with pytest.raises(ConfigError, match="unknown measurement setting"):
        measure(case(), min_runtime=1.0)
    with pytest.raises(ConfigError, match="cannot measure bench 'params'"):
        measure(Case(bench="params", cell="gru"))


# -- inputs ----------------------------------------------------------------------------------------
def test_input_sets_differ_and_are_capped():
    c = case()
    xs = make_inputs(c, 3)
    assert len(xs) == 3 and xs[0].shape == (5, 3, 6)
    assert not torch.equal(xs[0], xs[1]) and not torch.equal(xs[1], xs[2])
    assert len(make_inputs(c, 3, max_bytes=2 * 5 * 3 * 6 * 4)) == 2


def test_same_seed_same_weights_whatever_the_global_rng():
    c = case("lstm")
    torch.manual_seed(1)
    a = backends.build_stack(c)
    torch.manual_seed(2)
    b = backends.build_stack(c)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    assert isinstance(a, RecurrentStack)


@pytest.mark.parametrize("name,fold,gates", [("fused", "auto", "auto"), ("fused-torch", "on", "auto"),
                                             ("fused-torch", "off", "auto"),
                                             ("fused-recompute", "auto", "recompute"),
                                             ("fused-recompute", "on", "recompute")])
def test_fused_backends_pass_the_case_fold_and_their_gates(fused_calls, name, fold, gates):
    seen = fused_calls
    case = Case("speed", "gru", "irc", backend=name, batch=2, seq_len=3, input_size=4, hidden_size=5,
                fold=fold)
    run = backends.build(case)
    assert run.verify_error is not None and run.verify_error < 1e-4
    # `fused` runs its loops in C++ on a CPU where that builds (tests/test_fused_cpp.py)
    impl = "cpp" if name == "fused" and fused_cpp.available()[0] else "torch"
    assert seen == {"impl": impl, "fold": fold, "gates": gates}


def test_fold_is_one_word_in_flags_suites_and_rows(tmp_path):
    """auto/on/off everywhere: a case's fold is in its row's labels and key (absent for auto),
    the old fold-in-the-name backends say what they are now, and a suite's fold axis collapses
    where nothing folds (eager, IHC, baselines)."""
    from rnnbench.commands.common import parse_backends, parse_folds
    from rnnbench.suite import load_suite
    row = Case("speed", "gru", "irc", backend="fused", fold="off").row()
    assert row.labels["fold"] == "off" and "/fused/fold=off/" in row.key
    assert "fold" not in Case("speed", "gru", "irc", backend="fused").row().labels
    for old, new in backends.RENAMED.items():
        with pytest.raises(RnnbenchError, match=f"--backend {new[0]} --fold {new[1]}"):
            parse_backends(old)
    assert parse_folds("on, off") == ["on", "off"]
    with pytest.raises(RnnbenchError, match="unknown fold 'folded'"):
        parse_folds("folded")
    suite = tmp_path / "s.toml"
    suite.write_text('[meta]\nbench = ["speed"]\n[axes]\ncell = ["gru"]\n'
                     'variant = ["baseline", "irc", "ihc"]\nbackend = ["eager", "fused"]\n'
                     'fold = ["auto", "on", "off"]\nbatch = [2]\nseq_len = [3]\n'
                     'input_equals_hidden = true\nhidden_size = [4]\n', encoding="utf-8")
    folds = sorted((c.variant, c.backend, c.fold) for c in load_suite(suite).cases)
    assert folds == sorted([(v, b, "auto") for v in ("baseline", "irc", "ihc") for b in ("eager", "fused")]
                           + [("irc", "fused", "on"), ("irc", "fused", "off")])
    suite.write_text(suite.read_text(encoding="utf-8").replace('"fused"]', '"fused-folded"]'),
                     encoding="utf-8")
    with pytest.raises(RnnbenchError, match="now --backend fused-torch --fold on"):
        load_suite(suite)


def test_triton_runs_on_cpu_through_the_normal_path_under_the_interpreter():
    """conftest sets TRITON_INTERPRET=1: the triton backend then builds, checks against eager and
    is timed like any backend, and its row says the times are the interpreter's."""
    kernels = pytest.importorskip("kernels")
    if not kernels.available()[0]:
        pytest.skip(kernels.available()[1])
    row = measure_speed(case("gru", variant="irc", backend="triton", input_size=4), QUICK)
    assert row.status == "ok", row.reason
    assert row.metrics["verify_rel_err"] < 1e-4
    assert any("interpreter" in w for w in row.warnings)
