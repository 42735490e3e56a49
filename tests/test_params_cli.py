"""`rnnbench params`, `list` and `env` through Typer's runner: output, files, exit codes."""

import csv
import json

import pytest
from typer.testing import CliRunner

from rnnbench.cli import app
from rnnbench.results import read_results

runner = CliRunner()


def run(*args):
    return runner.invoke(app, list(args))


def test_gru_irc_side_by_side():
    r = run("params", "--cell", "gru", "--irc", "-N", "650", "-M", "650", "--layers", "2")
    assert r.exit_code == 0, r.output
    # 2 layers of 650: 3NM+3M²+3M per layer, and 4NM+N for IRC (cells.md), written out here
    assert "5,073,900" in r.output and "3,381,300" in r.output
    assert "−33.4%" in r.output
    assert "IHC" not in r.output


def test_paper_table_reproduces_every_published_figure_through_some_reading(tmp_path):
    out = tmp_path / "t.json"
    r = run("params", "--config", "bench_configs/paper_table2.toml", "--json", str(out))
    assert r.exit_code == 0, r.output
    rows = {row.labels["id"]: row for row in read_results(out).results}
    assert rows["draw-ihc-lstm-gamma-feedback"].metrics["agrees_reduction"] == 1
    assert round(rows["draw-ihc-lstm-gamma-feedback"].metrics["reduction_pct"], 1) == 85.4
    assert round(rows["l2l-ihc-lstm"].metrics["reduction_pct"], 1) == 14.0
    assert rows["draw-ihc-lstm"].metrics["agrees_reduction"] == 0  # eq. 53 as printed gives 83.0%
    # every published figure is matched by at least one row of its configuration
    published = {}
    for row in rows.values():
        if "agrees_params" in row.metrics:
            fig = (row.labels["section"], row.variant, row.labels["published"])
            published[fig] = published.get(fig, False) or bool(row.metrics["agrees_params"])
    unmatched = [f for f, ok in published.items() if not ok]
    assert unmatched == [("PTB, 3 layers, (1150, 1150)", "baseline", "12.0M"),
                         ("PTB, 3 layers, (1150, 1150)", "irc", "12.0M")]  # the paper rounds 11.9M up


def test_csv_and_json_hold_the_same_rows(tmp_path):
    j, c = tmp_path / "p.json", tmp_path / "p.csv"
    r = run("params", "--cell", "all", "--variant", "all", "-N", "16", "-M", "16", "--json", str(j),
            "--csv", str(c))
    assert r.exit_code == 0, r.output
    from_json = {row.key: row.metrics["params"] for row in read_results(j).results}
    with open(c) as f:
        from_csv = {rec["key"]: int(rec["params"]) for rec in csv.DictReader(f)}
    assert from_json == from_csv and len(from_json) == 18
    assert json.loads(j.read_text())["schema"] == "rnnbench.results/1"


def test_cell_and_variant_lists(tmp_path):
    out = tmp_path / "p.json"
    r = run("params", "--cell", "lstm,gru", "--variant", "ihc,irc", "-N", "8", "-M", "8",
            "--json", str(out))
    assert r.exit_code == 0, r.output
    rows = [(x.cell, x.variant) for x in read_results(out).results]
    # the baseline comes first, for the reduction against it
    assert rows == [("lstm", "baseline"), ("lstm", "ihc"), ("lstm", "irc"),
                    ("gru", "baseline"), ("gru", "ihc"), ("gru", "irc")]
    assert "−35.3%" in r.stdout  # IRC-GRU at N = M = 8: 264 against 408


def test_cell_all_with_the_canonical_form_leaves_out_cells_without_one(tmp_path):
    out = tmp_path / "p.json"
    r = run("params", "--cell", "all", "--form", "canonical", "--variant", "baseline", "-N", "8",
            "-M", "8", "--json", str(out))
    assert r.exit_code == 0, r.output
    assert "tlstm, pru have no canonical form; left out" in r.stderr
    assert [x.cell for x in read_results(out).results] == ["gru", "lstm", "sru", "fastgrnn"]


def test_detail_lists_every_tensor_with_its_symbol():
    r = run("params", "--cell", "lstm", "--ihc", "-N", "100", "-M", "800", "--detail")
    assert r.exit_code == 0
    for symbol in ("U_V", "W_G", "Γ", "b_G", "W_{F,I,O,A}"):
        assert symbol in r.output
    assert "100×800" in r.output


def test_canonical_form_counts_two_biases():
    r = run("params", "--cell", "gru", "--variant", "baseline", "--form", "canonical", "-N", "8", "-M", "8")
    assert r.exit_code == 0, r.output
    assert "432" in r.output  # 3NM + 3M² + 6M at N = M = 8


@pytest.mark.parametrize("args, message", [
    (("params", "--cell", "nope"), "unknown cell 'nope'"),
    (("params", "--cell", "gru", "-M", "0"), "must be positive"),
    (("params", "--cell", "gru", "-M", "abc"), "must be integers"),
    (("params", "--cell", "sru", "-N", "4", "-M", "5"), "N=4, M=5"),
    (("params", "--cell", "gru", "--variant", "odd"), "unknown variant"),
    (("params", "--cell", "gru", "-M", "8,8", "--layers", "3"), "does not match"),
    (("params", "--cell", "tlstm", "--irc", "-N", "4", "-M", "6"), "tlstm/irc needs input size N equal"),
    (("params", "--config", "does-not-exist.toml"), "no such config file"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    r = run(*args)
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0], r.output
    assert "Traceback" not in r.output


def test_malformed_config_is_rejected(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[meta]\nbench = "params"\n[[rows]]\nid = "a"\ncell = "gru"\ninput_size = 8\n'
                   'hidden_size = [8]\ncolour = "red"\n')
    r = run("params", "--config", str(bad))
    assert r.exit_code == 2 and "unknown key(s) colour" in r.output
    bad.write_text("[meta\n")
    r = run("params", "--config", str(bad))
    assert r.exit_code == 2 and "not valid TOML" in r.output


def test_list_shows_all_cells():
    r = run("list")
    assert r.exit_code == 0
    for fam in ("gru", "lstm", "sru", "tlstm", "fastgrnn", "pru"):
        assert fam in r.output
    assert r.output.count("ihc") == 6


def test_env_without_gpu_says_so_and_exits_0():
    r = run("env", "--json")
    assert r.exit_code == 0
    info = json.loads(r.output)
    assert info["torch"] and info["python"]
    import torch
    if not torch.cuda.is_available():
        assert isinstance(info["gpus"], str)
        r = run("env")
        assert r.exit_code == 0 and "GPU: none" in r.output


# -- counts from the closed forms (rnnbench/bench/param_forms.py) ----------------------------------
def test_closed_forms_give_the_measured_count_of_every_cell(tmp_path, monkeypatch):
    """A first `params` measures (meta device) and keeps each cell's fitted form; the second
    answers from the forms alone. Both must agree for every cell and variant, across layers of
    different widths, N ≠ M, and the options that change a count."""
    from rnnbench.bench import param_forms
    calls = []
    from_forms = param_forms.counts_from_cache
    monkeypatch.setattr(param_forms, "counts_from_cache",
                        lambda *a, **k: calls.append(r := from_forms(*a, **k)) or r)
    for i, args in enumerate((["--cell", "gru,lstm,fastgrnn,pru", "-N", "37", "-M", "23,41"],
                              ["--cell", "all", "-N", "64", "-M", "64", "--layers", "3"],
                              ["--cell", "all", "-N", "19", "-M", "19", "--ihc-gamma", "feedback",
                               "--no-pru-output-map"])):
        monkeypatch.setenv("RNNBENCH_CACHE_DIR", str(tmp_path / f"cache{i}"))
        files = []
        for k in range(2):
            out = tmp_path / f"p{len(calls)}.json"
            r = run("params", "--variant", "all", *args, "--json", str(out))
            assert r.exit_code == 0, r.output
            files.append({row.key: row.metrics["params"] for row in read_results(out).results})
        assert calls[-2] is None and calls[-1] is not None   # measured, then from the forms
        assert files[0] == files[1] and len(files[0]) >= 12


def test_closed_form_fit_is_exact_or_refuses():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from rnnbench.bench.param_forms import evaluate, fit

    @settings(max_examples=60, deadline=None)
    @given(st.lists(st.integers(-50, 10**6), min_size=6, max_size=6), st.booleans())
    def recovers(coefs, square):
        if square:  # with N = M, N·M, M² and N² are one term, as are N and M
            coefs = [0, coefs[1], 0, 0, coefs[4], coefs[5]]
        got = fit(lambda n, m: evaluate(coefs, n, m), square)
        assert got == coefs
    recovers()
    assert fit(lambda n, m: n * m * m, False) is None        # not of degree two
    assert fit(lambda n, m: n * m // 3, False) is None       # not a polynomial


def test_params_at_a_million_answers_from_the_forms_without_torch(tmp_path):
    """`params --cell gru -N 1000000 -M 1000000`: the count the equations give (GRU, eqs. 1-3:
    W 3M×N, U 3M×M, b 3M), and once the forms are kept no torch import at all (the CLI itself
    imports none: tests/test_cli_fast.py), which is what makes it answer within a second."""
    import os
    import subprocess
    import sys
    env = {**os.environ, "RNNBENCH_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "200"}
    cmd = [sys.executable, "-X", "importtime", "-m", "rnnbench.cli", "params", "--cell", "gru",
           "-N", "1000000", "-M", "1000000"]
    n, m = 10**6, 10**6
    for first in (True, False):
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert res.returncode == 0, res.stderr[-2000:]
        assert f"{3 * m * n + 3 * m * m + 3 * m:,}" in res.stdout
        # -X importtime: "import time: self | cumulative |   torch" (indented by depth)
        imported_torch = any(line.split("|")[-1].strip() == "torch"
                             for line in res.stderr.splitlines() if line.startswith("import time:"))
        assert imported_torch == first


def test_one_measured_call_gives_forms_for_every_cell_at_its_defaults(tmp_path, monkeypatch):
    """The first `params` fits every cell of the zoo at its default options, so a later call for
    other cells (options given as the defaults are, as the CLI gives them) needs no measuring."""
    from rnnbench.bench import param_forms
    monkeypatch.setenv("RNNBENCH_CACHE_DIR", str(tmp_path / "cache"))
    calls = []
    from_forms = param_forms.counts_from_cache
    monkeypatch.setattr(param_forms, "counts_from_cache",
                        lambda *a, **k: calls.append(r := from_forms(*a, **k)) or r)
    for cell in ("gru", "lstm", "pru", "sru"):
        assert run("params", "--cell", cell, "--variant", "all", "-N", "16", "-M", "16").exit_code == 0
    assert calls[0] is None and all(c is not None for c in calls[1:])
