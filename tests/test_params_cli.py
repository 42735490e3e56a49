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
