"""Parameter counts against the closed forms of cells.md, and its Table II / Section V "ours" column.

Counts are taken three ways, which must agree: ``sum(p.numel() for p in module.parameters())``,
the same over ``named_parameters(remove_duplicate=False)`` (no tensor registered twice), and the
size of every distinct parameter storage (no tensor counted twice, no hidden storage).
"""

from __future__ import annotations

import random

import pytest

from rnnbench.cells import all_specs, get
from rnnbench.runner import RecurrentStack

SQUARE_ONLY = {("sru", "baseline"), ("sru", "irc"), ("sru", "ihc"), ("tlstm", "irc"), ("tlstm", "ihc")}


# --------------------------------------------------------------------------------------------
# Closed forms (one layer, input width N, hidden width M), from cells.md
# --------------------------------------------------------------------------------------------
def irc_count(family, N, M, output_map=True):
    return {
        "gru": 4 * N * M + N,
        "lstm": 5 * N * M + N,
        "sru": 3 * N * M + 2 * N,
        "tlstm": 3 * N * M + 2 * N,
        "fastgrnn": 3 * N * M + N + 1,
        "pru": 3 * N * M + N + ((M * M + M) if output_map else 0),
    }[family]


def closed_form(family, variant, form, N, M, *, output_map=True, gamma_input="h"):
    if form == "canonical":
        assert variant == "baseline"
        return {
            "gru": 3 * N * M + 3 * M * M + 6 * M,
            "lstm": 4 * N * M + 4 * M * M + 8 * M,
            "sru": 3 * N * M + 4 * M,
            "fastgrnn": N * M + M * M + 2 * M + 2,
        }[family]
    if variant == "baseline":
        return {
            "gru": 3 * N * M + 3 * M * M + 3 * M,
            "lstm": 4 * N * M + 4 * M * M + 4 * M,
            "sru": 3 * N * M + 4 * M,
            "tlstm": 6 * N * M + 3 * M,
            "fastgrnn": 2 * N * M + 2 * M * M + 2 * M + 2,
            "pru": (2 * N * M + 3 * M * M + 3 * M) if output_map else (2 * N * M + 2 * M * M + 2 * M),
        }[family]
    irc = irc_count(family, N, M, output_map)
    if variant == "irc":
        return irc
    # IHC (eqs. 52-53): drop θ_α (N), add W_G (N²), Γ (N×M, eq. 53) and b_G (N)  => IRC + N² + NM.
    # The DRAW-fitting reading has Γ (N×N) acting on the feedback instead  => IRC + 2N².
    return irc + N * N + (N * M if gamma_input == "h" else N * N)


def stack_closed_form(family, variant, form, N, Ms, **kw):
    total, n = 0, N
    for m in Ms:
        total += closed_form(family, variant, form, n, m, **kw)
        n = m
    return total


# --------------------------------------------------------------------------------------------
# Counting
# --------------------------------------------------------------------------------------------
def count(module):
    return sum(p.numel() for p in module.parameters())


def count_with_duplicates(module):
    return sum(p.numel() for _, p in module.named_parameters(remove_duplicate=False))


def count_unique_storage(module):
    seen, total = set(), 0
    for p in module.parameters():
        st = p.untyped_storage()
        if st.data_ptr() in seen:
            continue
        seen.add(st.data_ptr())
        total += st.nbytes() // p.element_size()
    return total


def assert_count(module, expected):
    assert count(module) == expected
    assert count_with_duplicates(module) == expected
    assert count_unique_storage(module) == expected


# --------------------------------------------------------------------------------------------
# Random sizes against the closed forms
# --------------------------------------------------------------------------------------------
def size_pairs(seed, n=20):
    rng = random.Random(seed)
    return [(rng.randint(1, 40), rng.randint(1, 40)) for _ in range(n)]


def variants_of(spec):
    """(build options, closed-form options) for the switches a cell has."""
    out = [({}, {})]
    if spec.variant == "ihc":
        out = [({}, {}), ({"gamma_input": "h"}, {"gamma_input": "h"}),
               ({"gamma_input": "feedback"}, {"gamma_input": "feedback"})]
    if spec.family == "pru":
        out = [({**b, "output_map": om}, {**c, "output_map": om}) for b, c in out for om in (True, False)]
    return out


SPECS = all_specs()


def spec_id(spec):
    return spec.label.replace(" ", "").replace("(", "-").replace(")", "").replace("/", "-")


def test_every_cell_has_a_closed_form():
    assert len(SPECS) == 22
    for spec in SPECS:
        closed_form(spec.family, spec.variant, spec.form, 3, 3)  # KeyError if a cell is unknown


@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_single_layer_counts(spec):
    square = (spec.family, spec.variant) in SQUARE_ONLY
    for i, (N, M) in enumerate(size_pairs(1000 + SPECS.index(spec))):
        if square:
            N = M
        for build_opts, form_opts in variants_of(spec):
            cell = spec.build(N, M, **build_opts)
            expected = closed_form(spec.family, spec.variant, spec.form, N, M, **form_opts)
            assert count(cell) == expected, (N, M, build_opts)
            assert count_with_duplicates(cell) == expected, (N, M, build_opts)
            assert count_unique_storage(cell) == expected, (N, M, build_opts)


@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_stack_counts(spec):
    """Layer l > 0 takes the previous layer's hidden size as its N."""
    rng = random.Random(77 + SPECS.index(spec))
    square = (spec.family, spec.variant) in SQUARE_ONLY
    for _ in range(5):
        L = rng.randint(1, 3)
        if square:
            n = rng.randint(1, 30)
            N, Ms = n, [n] * L
        else:
            N, Ms = rng.randint(1, 30), [rng.randint(1, 30) for _ in range(L)]
        for build_opts, form_opts in variants_of(spec):
            stack = RecurrentStack(spec, N, Ms, **build_opts)
            assert_count(stack, stack_closed_form(spec.family, spec.variant, spec.form, N, Ms, **form_opts))


@pytest.mark.parametrize("family", ["gru", "lstm", "sru", "tlstm", "fastgrnn", "pru"])
def test_ihc_is_irc_plus_n2_plus_nm(family):
    for N, M in size_pairs(5):
        if (family, "irc") in SQUARE_ONLY:
            N = M
        irc = count(get(family, "irc").build(N, M))
        assert count(get(family, "ihc").build(N, M)) == irc + N * N + N * M
        assert count(get(family, "ihc").build(N, M, gamma_input="feedback")) == irc + 2 * N * N


# --------------------------------------------------------------------------------------------
# cells.md "What the published figures are, checked": the "ours" column, exactly
# --------------------------------------------------------------------------------------------
def built(family, variant, N, Ms, **kw):
    stack = RecurrentStack(get(family, variant), N, Ms, **kw)
    n = count(stack)
    assert count_with_duplicates(stack) == n
    assert count_unique_storage(stack) == n
    del stack
    return n


def reduction(base, new):
    return 100.0 * (base - new) / base


TABLE = [
    # (row, family, variant, N, hidden sizes, options, ours)
    ("GRU 2x650", "gru", "baseline", 650, [650, 650], {}, 5_073_900),
    ("IRC-GRU 2x650", "gru", "irc", 650, [650, 650], {}, 3_381_300),
    ("T-LSTM 2x650", "tlstm", "baseline", 650, [650, 650], {}, 5_073_900),
    ("IRC-T-LSTM 2x650", "tlstm", "irc", 650, [650, 650], {}, 2_537_600),
    ("FastGRNN 1x650", "fastgrnn", "baseline", 650, [650], {}, 1_691_302),
    ("FastGRNN 2x650", "fastgrnn", "baseline", 650, [650, 650], {}, 3_382_604),
    ("IRC-FastGRNN 1x650", "fastgrnn", "irc", 650, [650], {}, 1_268_151),
    ("IRC-FastGRNN 2x650", "fastgrnn", "irc", 650, [650, 650], {}, 2_536_302),
    ("SRU 3x1150", "sru", "baseline", 1150, [1150] * 3, {}, 11_916_300),
    ("IRC-SRU 3x1150", "sru", "irc", 1150, [1150] * 3, {}, 11_909_400),
    ("LSTM 400-1150-1150-400", "lstm", "baseline", 400, [1150, 1150, 400], {}, 20_200_800),
    ("IHC-LSTM 400-1150-1150-400", "lstm", "ihc", 400, [1150, 1150, 400], {}, 16_262_700),
    ("DRAW LSTM", "lstm", "baseline", 100, [800], {}, 2_883_200),
    ("DRAW IHC-LSTM", "lstm", "ihc", 100, [800], {}, 490_100),
    ("DRAW IHC-LSTM gamma on feedback", "lstm", "ihc", 100, [800], {"gamma_input": "feedback"}, 420_100),
    ("L2L LSTM", "lstm", "baseline", 20, [20], {}, 3_280),
    ("L2L IHC-LSTM", "lstm", "ihc", 20, [20], {}, 2_820),
]


@pytest.mark.parametrize("row,family,variant,N,Ms,opts,ours", TABLE, ids=[r[0] for r in TABLE])
def test_table_ii_ours_column(row, family, variant, N, Ms, opts, ours):
    assert built(family, variant, N, Ms, **opts) == ours
    # and the closed forms in this file agree with the table
    assert stack_closed_form(family, variant, "paper", N, Ms, **opts) == ours


REDUCTIONS = [
    # (row, baseline (family, variant, N, Ms, opts), regulated (...), percent, decimals)
    ("IRC-GRU", ("gru", "baseline", 650, [650, 650], {}), ("gru", "irc", 650, [650, 650], {}), 33.4, 1),
    ("IRC-T-LSTM", ("tlstm", "baseline", 650, [650, 650], {}), ("tlstm", "irc", 650, [650, 650], {}), 50.0, 1),
    ("IRC-FastGRNN 1", ("fastgrnn", "baseline", 650, [650], {}), ("fastgrnn", "irc", 650, [650], {}), 25.0, 1),
    ("IRC-FastGRNN 2", ("fastgrnn", "baseline", 650, [650, 650], {}),
     ("fastgrnn", "irc", 650, [650, 650], {}), 25.0, 1),
    ("DRAW IHC-LSTM", ("lstm", "baseline", 100, [800], {}), ("lstm", "ihc", 100, [800], {}), 83.0, 1),
    ("DRAW IHC-LSTM gamma on feedback", ("lstm", "baseline", 100, [800], {}),
     ("lstm", "ihc", 100, [800], {"gamma_input": "feedback"}), 85.4, 1),
    ("L2L IHC-LSTM", ("lstm", "baseline", 20, [20], {}), ("lstm", "ihc", 20, [20], {}), 14.0, 1),
    ("IHC-LSTM 400-1150-1150-400", ("lstm", "baseline", 400, [1150, 1150, 400], {}),
     ("lstm", "ihc", 400, [1150, 1150, 400], {}), 19.5, 1),
    ("IRC-SRU 3x1150", ("sru", "baseline", 1150, [1150] * 3, {}), ("sru", "irc", 1150, [1150] * 3, {}), 0.058, 3),
]


@pytest.mark.parametrize("row,base,new,percent,decimals", REDUCTIONS, ids=[r[0] for r in REDUCTIONS])
def test_table_ii_reductions(row, base, new, percent, decimals):
    fb, vb, Nb, Msb, ob = base
    fn, vn, Nn, Msn, on = new
    pct = reduction(built(fb, vb, Nb, Msb, **ob), built(fn, vn, Nn, Msn, **on))
    assert round(pct, decimals) == percent


def test_lstm_published_swap_explains_24_9m():
    """cells.md: the published 24.9M / 15.1M / 39.2% arise only if layer 3 is counted as 400→1150."""
    lstm = 2 * built("lstm", "baseline", 400, [1150]) + built("lstm", "baseline", 1150, [1150])
    ihc = 2 * built("lstm", "ihc", 400, [1150]) + built("lstm", "ihc", 1150, [1150])
    assert lstm == 24_853_800
    assert ihc == 15_099_450
    assert round(reduction(lstm, ihc), 1) == 39.2


def test_irc_tlstm_three_layers_would_be_3_8m():
    assert round(built("tlstm", "irc", 650, [650] * 3) / 1e6, 1) == 3.8
