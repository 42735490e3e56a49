"""The canonical forms against the real libraries, weights copied across.

- gru/canonical  vs torch.nn.GRU
- lstm/canonical vs torch.nn.LSTM
- sru/canonical  vs sru.SRUCell (sru==2.6.0; on CPU with grad enabled it runs its pure-Python
  recurrence, ``sru.ops.elementwise_recurrence_naive``)
- fastgrnn/canonical vs EdgeML's FastGRNNCell (edgeml-pytorch==0.3.0)

Everything runs in float64, except one float32 check of the sru package left exactly as it builds
itself (its ``scale_x`` buffer holds √3 rounded to float32).
"""

from __future__ import annotations

import importlib.util
import math
import sys
import types
import warnings

import pytest
import torch

from rnnbench.cells import get
from rnnbench.runner import RecurrentStack

DT = torch.float64
TOL = dict(rtol=1e-10, atol=1e-10)


def randomize(module, lo=-0.5, hi=0.5):
    with torch.no_grad():
        for p in module.parameters():
            torch.nn.init.uniform_(p, lo, hi)
    return module


def ours(family, N, Ms, seed, **kw):
    torch.manual_seed(seed)
    return randomize(RecurrentStack(get(family, "baseline", "canonical"), N, Ms, **kw).to(DT))


def n_params(module):
    return sum(p.numel() for p in module.parameters())


# (N, hidden sizes, T, B): odd sizes, T = 1, B = 1, two layers of different widths
SHAPES = [(5, [7], 6, 3), (3, [2], 1, 1), (9, [4, 6], 4, 2), (6, [3], 7, 1)]
SHAPE_IDS = [f"N{n}-M{m}-T{t}-B{b}" for n, m, t, b in SHAPES]


# --------------------------------------------------------------------------------------------
# torch.nn.GRU / torch.nn.LSTM
# --------------------------------------------------------------------------------------------
TORCH_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def torch_layers(cls, ours_stack, N, Ms):
    """One single-layer torch RNN per rnnbench layer (widths may differ), weights copied in."""
    mods, n = [], N
    for cell, m in zip(ours_stack.layers, Ms):
        mod = cls(n, m, dtype=DT)
        with torch.no_grad():
            for name in TORCH_NAMES:
                getattr(mod, f"{name}_l0").copy_(getattr(cell, name))
        mods.append(mod)
        n = m
    return mods


@pytest.mark.parametrize("N,Ms,T,B", SHAPES, ids=SHAPE_IDS)
def test_gru_matches_torch(N, Ms, T, B):
    stack = ours("gru", N, Ms, seed=1)
    mods = torch_layers(torch.nn.GRU, stack, N, Ms)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(T, B, N, generator=gen, dtype=DT)
    h0 = [torch.randn(1, B, m, generator=gen, dtype=DT) for m in Ms]
    y, want_fin = x, []
    for mod, h in zip(mods, h0):
        y, hn = mod(y, h)
        want_fin.append(hn[0])
    got_y, got_fin = stack(x, [(h[0],) for h in h0])
    torch.testing.assert_close(got_y, y, **TOL)
    for (g,), w in zip(got_fin, want_fin):
        torch.testing.assert_close(g, w, **TOL)


@pytest.mark.parametrize("N,Ms,T,B", SHAPES, ids=SHAPE_IDS)
def test_lstm_matches_torch(N, Ms, T, B):
    stack = ours("lstm", N, Ms, seed=3)
    mods = torch_layers(torch.nn.LSTM, stack, N, Ms)
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(T, B, N, generator=gen, dtype=DT)
    s0 = [(torch.randn(1, B, m, generator=gen, dtype=DT), torch.randn(1, B, m, generator=gen, dtype=DT))
          for m in Ms]
    y, want_fin = x, []
    for mod, (h, c) in zip(mods, s0):
        y, (hn, cn) = mod(y, (h, c))
        want_fin.append((hn[0], cn[0]))
    got_y, got_fin = stack(x, [(h[0], c[0]) for h, c in s0])
    torch.testing.assert_close(got_y, y, **TOL)
    for (gh, gc), (wh, wc) in zip(got_fin, want_fin):
        torch.testing.assert_close(gh, wh, **TOL)
        torch.testing.assert_close(gc, wc, **TOL)


@pytest.mark.parametrize("family,cls", [("gru", torch.nn.GRU), ("lstm", torch.nn.LSTM)])
@pytest.mark.parametrize("batch_first", [False, True])
def test_multilayer_torch_module(family, cls, batch_first):
    """torch's own 2-layer module (same width) with weights copied into weight_ih_l{k} etc."""
    N, M, T, B = 5, 6, 4, 3
    stack = ours(family, N, [M, M], seed=5, batch_first=batch_first)
    ref = cls(N, M, num_layers=2, batch_first=batch_first, dtype=DT)
    with torch.no_grad():
        for k, cell in enumerate(stack.layers):
            for name in TORCH_NAMES:
                getattr(ref, f"{name}_l{k}").copy_(getattr(cell, name))
    gen = torch.Generator().manual_seed(6)
    x = torch.randn((B, T, N) if batch_first else (T, B, N), generator=gen, dtype=DT)
    h0 = torch.randn(2, B, M, generator=gen, dtype=DT)
    if family == "gru":
        want_y, hn = ref(x, h0)
        got_y, got_fin = stack(x, [(h0[0],), (h0[1],)])
        for k in range(2):
            torch.testing.assert_close(got_fin[k][0], hn[k], **TOL)
    else:
        c0 = torch.randn(2, B, M, generator=gen, dtype=DT)
        want_y, (hn, cn) = ref(x, (h0, c0))
        got_y, got_fin = stack(x, [(h0[0], c0[0]), (h0[1], c0[1])])
        for k in range(2):
            torch.testing.assert_close(got_fin[k][0], hn[k], **TOL)
            torch.testing.assert_close(got_fin[k][1], cn[k], **TOL)
    torch.testing.assert_close(got_y, want_y, **TOL)


@pytest.mark.parametrize("family,cls", [("gru", torch.nn.GRU), ("lstm", torch.nn.LSTM)])
def test_torch_param_count(family, cls):
    for N, M in [(5, 7), (650, 650), (3, 11)]:
        assert n_params(RecurrentStack(get(family, "baseline", "canonical"), N, [M])) == n_params(cls(N, M))


# --------------------------------------------------------------------------------------------
# sru.SRUCell
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sru():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it tries, and fails, to JIT-build its CUDA kernels
        return pytest.importorskip("sru")


def sru_cells(sru, stack, dtype):
    """An SRUCell per rnnbench layer with our W_FPA / omega_FP / b_FP copied in.

    SRUCell.weight is (N, 3M), viewed as (N, 1, M, 3): k=0 candidate, k=1 forget, k=2 highway
    (reset). weight_c = [v_f; v_r], bias = [b_f; b_r] (sru.ops.elementwise_recurrence_naive)."""
    cells = []
    for layer in stack.layers:
        N, M = layer.input_size, layer.hidden_size
        cell = sru.SRUCell(N, M)
        assert cell.num_matrices == 3 and cell.weight.shape == (N, 3 * M)
        cell = cell.to(dtype)
        W_F, W_P, W_A = layer.W_FPA.detach().chunk(3)
        with torch.no_grad():
            w = cell.weight.view(N, 1, M, 3)
            w[:, 0, :, 0] = W_A.T
            w[:, 0, :, 1] = W_F.T
            w[:, 0, :, 2] = W_P.T
            cell.weight_c.copy_(layer.omega_FP)
            cell.bias.copy_(layer.b_FP)
        cells.append(cell)
    return cells


def run_sru(cells, x, c0):
    y, finals = x, []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Running SRU on CPU with grad_enabled=True"
        with torch.enable_grad():  # keep the pure-Python path (no_grad switches to a C++ op)
            for cell, c in zip(cells, c0):
                y, cn = cell(y, c)
                finals.append(cn)
    return y, finals


@pytest.mark.parametrize("N,L,T,B", [(5, 1, 6, 3), (4, 1, 1, 1), (7, 2, 4, 2), (3, 3, 7, 1)],
                         ids=lambda v: str(v))
def test_sru_matches_package_float64(sru, N, L, T, B):
    stack = ours("sru", N, [N] * L, seed=7)
    cells = sru_cells(sru, stack, DT)
    for cell in cells:
        # the package computes scale_x = (1 + 2·e^{highway_bias})^0.5 in Python but stores it in a
        # float32 buffer; put the same formula's float64 value back so the comparison is exact
        assert cell.highway_bias == 0.0 and cell.rescale and cell.has_skip_term
        assert abs(float(cell.scale_x) - math.sqrt(3.0)) < 1e-6
        cell.scale_x.fill_((1 + 2 * math.exp(cell.highway_bias)) ** 0.5)
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(T, B, N, generator=gen, dtype=DT)
    c0 = [torch.randn(B, N, generator=gen, dtype=DT) for _ in range(L)]
    want_y, want_c = run_sru(cells, x, c0)
    got_y, got_fin = stack(x, [(torch.zeros_like(c), c) for c in c0])   # (h, c); h is not read
    assert want_y.dtype == DT
    torch.testing.assert_close(got_y, want_y, **TOL)
    for (_, gc), wc in zip(got_fin, want_c):
        torch.testing.assert_close(gc, wc, **TOL)


def test_sru_matches_package_float32_untouched(sru):
    """The package exactly as it builds itself (float32 scale_x), compared in float32."""
    N, L, T, B = 6, 2, 5, 3
    torch.manual_seed(9)
    stack = randomize(RecurrentStack(get("sru", "baseline", "canonical"), N, [N] * L))
    cells = sru_cells(sru, stack, torch.float32)
    gen = torch.Generator().manual_seed(10)
    x = torch.randn(T, B, N, generator=gen)
    c0 = [torch.randn(B, N, generator=gen) for _ in range(L)]
    want_y, want_c = run_sru(cells, x, c0)
    got_y, got_fin = stack(x, [(torch.zeros_like(c), c) for c in c0])   # (h, c); h is not read
    torch.testing.assert_close(got_y, want_y, rtol=1e-5, atol=1e-5)
    for (_, gc), wc in zip(got_fin, want_c):
        torch.testing.assert_close(gc, wc, rtol=1e-5, atol=1e-5)


def test_sru_highway_scale_is_the_packages(sru):
    cell = sru.SRUCell(4, 4)
    ours_cell = get("sru", "baseline", "canonical").build(4, 4)
    assert ours_cell.highway_scale == pytest.approx(float(cell.scale_x), rel=1e-7)


def test_sru_param_count(sru):
    for N in (4, 9, 1150):
        assert n_params(get("sru", "baseline", "canonical").build(N, N)) == n_params(sru.SRUCell(N, N))


# --------------------------------------------------------------------------------------------
# EdgeML FastGRNNCell
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def edgeml_rnn():
    # edgeml_pytorch.graph.rnn imports the CUDA extension `fastgrnn_cuda` at load whenever
    # utils.findCUDA() finds a CUDA install; stand in an empty module when it is not built.
    if "fastgrnn_cuda" not in sys.modules and importlib.util.find_spec("fastgrnn_cuda") is None:
        sys.modules["fastgrnn_cuda"] = types.ModuleType("fastgrnn_cuda")
    return pytest.importorskip("edgeml_pytorch.graph.rnn")


def edgeml_cells(rnn, stack):
    cells = []
    for layer in stack.layers:
        N, M = layer.input_size, layer.hidden_size
        cell = rnn.FastGRNNCell(N, M).to(DT)
        assert cell.W.shape == (M, N) and cell.U.shape == (M, M)
        assert cell.bias_gate.shape == (1, M) and cell.zeta.shape == (1, 1)
        with torch.no_grad():
            cell.W.copy_(layer.W)
            cell.U.copy_(layer.U)
            cell.bias_gate.copy_(layer.bias_gate.view(1, M))
            cell.bias_update.copy_(layer.bias_update.view(1, M))
            cell.zeta.copy_(layer.zeta.view(1, 1))
            cell.nu.copy_(layer.nu.view(1, 1))
        cells.append(cell)
    return cells


@pytest.mark.parametrize("N,Ms,T,B", SHAPES, ids=SHAPE_IDS)
def test_fastgrnn_matches_edgeml(edgeml_rnn, N, Ms, T, B):
    stack = ours("fastgrnn", N, Ms, seed=11)
    cells = edgeml_cells(edgeml_rnn, stack)
    gen = torch.Generator().manual_seed(12)
    x = torch.randn(T, B, N, generator=gen, dtype=DT)
    h0 = [torch.randn(B, m, generator=gen, dtype=DT) for m in Ms]
    y, want_fin = x, []
    for cell, h in zip(cells, h0):
        outs = []
        for x_t in y:
            h = cell(x_t, h)
            outs.append(h)
        y = torch.stack(outs)
        want_fin.append(h)
    assert y.dtype == DT
    got_y, got_fin = stack(x, [(h,) for h in h0])
    torch.testing.assert_close(got_y, y, **TOL)
    for (g,), w in zip(got_fin, want_fin):
        torch.testing.assert_close(g, w, **TOL)


def test_fastgrnn_init_is_edgemls(edgeml_rnn):
    """cells.md: biases init 1, ζ init 1, ν init −4, as EdgeML's FastGRNNCell."""
    N, M = 3, 5
    mine = get("fastgrnn", "baseline", "canonical").build(N, M)
    lib = edgeml_rnn.FastGRNNCell(N, M)
    for name in ("bias_gate", "bias_update", "zeta", "nu"):
        torch.testing.assert_close(getattr(mine, name).detach().reshape(-1),
                                   getattr(lib, name).detach().reshape(-1), rtol=0, atol=0)


def test_fastgrnn_param_count(edgeml_rnn):
    for N, M in [(3, 5), (650, 650), (9, 2)]:
        assert (n_params(get("fastgrnn", "baseline", "canonical").build(N, M))
                == n_params(edgeml_rnn.FastGRNNCell(N, M)))
