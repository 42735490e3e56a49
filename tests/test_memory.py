"""Memory: bytes saved for backward against counts derived by hand from the cells' equations, scale
laws for every cell, parameter bytes, and the peak of a training step.

What autograd saves, per op (from torch's derivative formulas): a matrix product saves both factors
(its gradient needs the other one); ``sigmoid`` and ``tanh`` save their *output*; ``a * b`` saves both
``a`` and ``b``; ``torch.lerp(start, end, weight)`` saves all three; ``+``, slicing, ``chunk``,
``unbind`` and ``stack`` save nothing. A saved view keeps its whole storage, and a storage saved
several times is counted once. Parameters and the input batch are left out of ``saved_bytes``.
"""

from __future__ import annotations

import pytest
import torch

from rnnbench.backends import build_stack, make_inputs
from rnnbench.bench.dispatch import measure
from rnnbench.bench.memory import (MemorySettings, measure_memory, peak_rss_subprocess,
                                   saved_tensor_bytes)
from rnnbench.case import Case
from rnnbench.cells.registry import all_specs

B, T, N, M = 3, 4, 7, 5   # N ≠ M: the counts show which width each saved tensor has
F32 = 4


def saved(cell, variant="baseline", form="paper", *, batch=B, seq_len=T, input_size=N,
          hidden_size=M, dtype="float32", backend="eager") -> int:
    c = Case("memory", cell, variant, form, backend=backend, dtype=dtype, batch=batch,
             seq_len=seq_len, input_size=input_size, hidden_size=hidden_size)
    row = measure_memory(c, MemorySettings(rss=False))
    assert row.status == "ok", row.reason
    return row.metrics["saved_bytes"]


def test_gru_paper_form_by_hand():
    """GRU (eqs. 1-3), one step t, with h = h_{t-1} (the zero initial state at t = 0):

    i,r = σ(W_{I,R} x + b + U_{I,R} h)   product U h saves h ............. B·M
                                         σ saves its output (i, r) ...... B·2M
    a = tanh(W_A x + b_A + U_A (r⊙h))    r⊙h saves r (in σ's output) and h (counted)
                                         product U_A(r⊙h) saves r⊙h ..... B·M
                                         tanh saves a ................... B·M
    h' = lerp(h, a, i)                   saves h, a, i (all counted)
                                                                          = 5·B·M per step
    The input products W x + b are one addmm over the sequence: it saves x (the input) and W (a
    parameter); its result feeds only additions, so it is not saved. h_T is saved by no one.
    """
    assert saved("gru") == 5 * T * B * M * F32


def test_gru_canonical_form_by_hand():
    """torch.nn.GRU's equations, one step:

    gh = U h + b_h                       addmm saves h .................. B·M
    r,z = σ(gx_rz + gh_rz)               σ saves its output ............. B·2M
    n = tanh(gx_n + r⊙gh_n)              r⊙gh_n saves r and gh_n, a slice of gh: all of gh .. B·3M
                                         tanh saves n ................... B·M
    h' = lerp(n, h, z)                   saves n, h, z (counted)          = 7·B·M per step
    """
    assert saved("gru", form="canonical") == 7 * T * B * M * F32


def test_lstm_canonical_form_by_hand():
    """torch.nn.LSTM's equations, one step, with (h, c) = (h_{t-1}, c_{t-1}):

    pre = gx + U h + b_h                 addmm saves h .................. B·M
    i,f = σ(pre_if); o = σ(pre_o)        σ outputs ...................... B·2M + B·M
    g = tanh(pre_g)                      tanh output .................... B·M
    c' = f⊙c + i⊙g                       f⊙c saves c ..................... B·M (i, f, g counted)
    h' = o⊙tanh(c')                      tanh output .................... B·M (o counted)
                                                                          = 7·B·M per step
    c' is saved by the next step's f⊙c (as its c), so nothing is counted twice; c_T is not saved.
    """
    assert saved("lstm", form="canonical") == 7 * T * B * M * F32


def test_irc_gru_by_hand():
    """IRC-GRU (eqs. 14-17) as the regulated runner computes it, one step:

    fb = U_V h                           product saves h ................ B·M
    α = σ(θ_α)                           σ output (recomputed per step) . N
    d = α⊙fb                             saves α (counted) and fb ....... B·N
    i,r = σ(W_{I,R} x + W_{I,R} d)       product saves d ................ B·N (W is a parameter)
                                         σ output ....................... B·2M
    h' = lerp(h, r⊙a, i), a = W_A x      r⊙a saves r and a; a is a slice of the hoisted W x for the
                                         whole sequence, whose storage is kept: once, T·B·3M
                                         lerp saves r⊙a ................. B·M (h, i counted)
                                                                  = 4·B·M + 2·B·N + N per step
    """
    per_step = 4 * B * M + 2 * B * N + N
    assert saved("gru", "irc") == (T * per_step + T * B * 3 * M) * F32


@pytest.mark.parametrize("spec", all_specs(), ids=lambda s: s.label.replace(" ", ""))
def test_scale_laws_for_every_cell(spec):
    """Every cell saves a fixed amount per step, so saved bytes are affine in T (a + b·T: SRU and
    T-LSTM also keep c_T, which feeds their output, a term independent of T) and affine in B (a
    per-step term like σ(θ_α) does not grow with the batch); and exactly twice as much in float64."""
    n = 4  # N = M so the square-only cells run too

    def f(**kw):
        return saved(spec.family, spec.variant, spec.form, input_size=n, hidden_size=n, **kw)

    t1, t2, t3 = (f(seq_len=t) for t in (1, 2, 3))
    assert t3 - t2 == t2 - t1 > 0
    b1, b2, b3 = (f(batch=b) for b in (1, 2, 3))
    assert b3 - b2 == b2 - b1 > 0
    assert f(dtype="float64") == 2 * f()


def test_saved_tensor_hook_counts_a_storage_once_and_leaves_out_exclusions():
    w = torch.randn(3, 3, requires_grad=True)
    x = torch.randn(3, 3)

    def fn():
        # x @ w saves x only (w's factor is needed for x's gradient, which is not asked for);
        # sigmoid saves y; y * y saves y twice more: one storage, saved three times
        y = torch.sigmoid(x @ w)
        return (y * y)[0]

    s, out = saved_tensor_bytes(fn, exclude=[w, x])
    assert (s.bytes, s.storages, s.tensors) == (9 * F32, 1, 4)
    s_all, _ = saved_tensor_bytes(fn)
    assert (s_all.bytes, s_all.storages) == (2 * 9 * F32, 2)


def test_parameter_bytes_and_native_memory():
    row = measure(Case("memory", "lstm", form="canonical", backend="native", batch=B, seq_len=T,
                       input_size=N, hidden_size=M), rss=False)
    assert row.status == "ok", row.reason
    # nn.LSTM: weight_ih 4M×N, weight_hh 4M×M, two biases 4M
    assert row.metrics["param_bytes"] == (4 * M * N + 4 * M * M + 8 * M) * F32
    assert row.metrics["saved_bytes"] > 0


def test_memory_rows_for_impossible_sizes_are_unsupported():
    row = measure_memory(Case("memory", "sru", input_size=6, hidden_size=4, batch=2, seq_len=2),
                         MemorySettings(rss=False))
    assert row.status == "unsupported" and "N equal to hidden size M" in row.reason


def test_peak_rss_of_a_step_holds_its_saved_tensors():
    # large enough that every saved tensor is its own mmap (see bench/memory.py), small enough to
    # run in a second or two
    c = Case("memory", "gru", batch=64, seq_len=32, input_size=256, hidden_size=256)
    row = measure_memory(c)
    assert row.status == "ok", row.reason
    m = row.metrics
    assert m["saved_bytes"] == 5 * 32 * 64 * 256 * F32
    # at the end of the forward pass every saved tensor is alive at once
    assert m["saved_bytes"] <= m["peak_rss_bytes"] <= 3 * m["saved_bytes"]
    assert m["rss_baseline_bytes"] > 0


def test_peak_rss_child_reports_errors_as_one_line():
    c = Case("memory", "gru", "irc", backend="native", batch=2, seq_len=2, input_size=4,
             hidden_size=4)
    res = peak_rss_subprocess(c, MemorySettings())
    assert res == {"error": "Unsupported: native is torch.nn.GRU/LSTM; IRC-GRU has no torch "
                            "implementation"}


@pytest.mark.gpu
def test_cuda_peak_covers_saved_tensors():
    c = Case("memory", "gru", device="cuda", batch=32, seq_len=64, input_size=256, hidden_size=256)
    row = measure_memory(c)
    assert row.status == "ok", row.reason
    m = row.metrics
    assert m["saved_bytes"] == 5 * 64 * 32 * 256 * F32
    assert m["peak_allocated_bytes"] >= m["saved_bytes"]
    assert m["peak_reserved_bytes"] >= 0


def test_inputs_and_weights_are_not_counted_whatever_their_size():
    # doubling N changes neither the GRU's saved bytes (nothing N-wide is saved per step)
    assert saved("gru", input_size=2 * N) == saved("gru")
    # ...nor does it depend on which input set is used
    c = Case("memory", "gru", batch=B, seq_len=T, input_size=N, hidden_size=M)
    stack = build_stack(c)
    xs = make_inputs(c, 2)
    a, _ = saved_tensor_bytes(lambda: stack(xs[0]), exclude=[*stack.parameters(), xs[0]])
    b, _ = saved_tensor_bytes(lambda: stack(xs[1]), exclude=[*stack.parameters(), xs[1]])
    assert a.bytes == b.bytes == 5 * T * B * M * F32
