"""`rnnbench speed` and `rnnbench memory` from the outside: exit codes, one-line errors, the table's
ratios, and CSV, JSON and Markdown files that hold the same rows."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from rnnbench.backends import BACKENDS, Backend, Runnable
from rnnbench.cli import app
from rnnbench.results import read_results

TINY = ["-B", "2", "-T", "3", "-N", "4", "-M", "4", "--min-run-time", "0.01", "--input-sets", "2"]


@pytest.fixture
def cli():
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(app, list(args))

    return invoke


def one_line_error(result, text):
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("rnnbench: error:"), result.output
    assert text in lines[0]
    assert "Traceback" not in result.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("command", ["speed", "memory"])
def test_cuda_without_a_gpu_is_one_line_and_exit_2(cli, command):
    one_line_error(cli(command, "--device", "cuda", "--cell", "gru", *TINY[:8]),
                   "--device cuda was asked for but no CUDA GPU is available")


@pytest.mark.parametrize("args, text", [
    (["--cell", "grux"], "unknown cell 'grux'"),
    (["--cell", "sru", "-N", "4", "-M", "6"], "needs input size N equal to hidden size M"),
    (["--cell", "tlstm", "--irc", "-N", "4", "-M", "6"], "tlstm/irc needs input size N equal"),
    (["--dtype", "float8"], "unknown dtype 'float8'"),
    (["--backend", "cudnn"], "unknown backend 'cudnn'"),
    (["--mode", "backward"], "unknown mode 'backward'"),
    (["--batch", "0"], "--batch must be positive"),
    (["--hidden-size", "4,x"], "--hidden-size must be integers"),
    (["--threads", "0"], "--threads must be positive"),
    (["--variant", "highway"], "unknown variant 'highway'"),
    (["--device", "tpu"], "unknown device 'tpu'"),
])
def test_bad_input_is_one_line_and_exit_2(cli, args, text):
    one_line_error(cli("speed", "--cell", "gru", *TINY[:8], *args), text)


def test_impossible_sizes_in_cell_all_are_unsupported_rows(cli, tmp_path):
    out = tmp_path / "m.json"
    r = cli("memory", "--cell", "all", "--variant", "baseline", "--no-rss", "-B", "2", "-T", "2",
            "-N", "4", "-M", "6", "--json", str(out))
    assert r.exit_code == 0, r.output
    rows = {x.cell: x for x in read_results(out).results}
    assert rows["sru"].status == "unsupported" and "N equal to hidden size M" in rows["sru"].reason
    assert rows["gru"].status == "ok" and rows["tlstm"].status == "ok"


def test_speed_files_hold_the_same_rows(cli, tmp_path):
    paths = {k: tmp_path / f"s.{k}" for k in ("json", "csv", "md")}
    r = cli("speed", "--cell", "gru", "--irc", "--mode", "fwd,bwd", *TINY,
            "--json", str(paths["json"]), "--csv", str(paths["csv"]), "--markdown", str(paths["md"]))
    assert r.exit_code == 0, r.output
    js, cs = read_results(paths["json"]), read_results(paths["csv"])
    assert [x.key for x in js.results] == [x.key for x in cs.results]
    assert len(js.results) == 4
    assert js.env["device"] == "cpu" and js.provenance["argv"]
    for a, b in zip(js.results, cs.results):
        assert (a.status, a.cell, a.variant, a.mode, a.batch, a.seq_len) == \
               (b.status, b.cell, b.variant, b.mode, b.batch, b.seq_len)
        # a metric without a value (None: e.g. CPU shares this machine cannot read) has no CSV cell
        scalars = {k: v for k, v in a.metrics.items()
                   if v is not None and not isinstance(v, (list, dict))}
        assert scalars == b.metrics            # floats written with repr: read back exactly
        assert "samples_s" not in b.metrics    # raw samples only in JSON
    fwd = js.results[0]
    assert fwd.mode == "fwd" and len(fwd.metrics["samples_s"]) == fwd.metrics["n_samples"]
    assert fwd.metrics["tokens_per_s"] == pytest.approx(2 * 3 / fwd.metrics["time_s_median"])
    md = paths["md"].read_text()
    assert md.startswith("| cell | backend | mode |") and md.count("\n") == 2 + 4


def test_table_shows_ratio_to_the_baseline(cli, tmp_path):
    out = tmp_path / "s.json"
    r = cli("speed", "--cell", "lstm", "--ihc", "--mode", "fwd", *TINY, "--json", str(out))
    assert r.exit_code == 0, r.output
    base, ihc = read_results(out).results
    want = ihc.metrics["time_s_median"] / base.metrics["time_s_median"]
    line = next(ln for ln in r.stdout.splitlines() if "IHC-LSTM" in ln)
    assert f"{want:.2f}×" in line


def test_native_beside_eager_and_unsupported_reason(cli, tmp_path):
    out = tmp_path / "s.json"
    r = cli("speed", "--cell", "gru", "--form", "canonical", "--irc", "--backend", "eager,native",
            "--mode", "fwd", *TINY, "--json", str(out))
    assert r.exit_code == 0, r.output
    rows = {(x.variant, x.backend): x for x in read_results(out).results}
    assert rows["baseline", "native"].status == "ok"
    assert rows["baseline", "native"].metrics["verify_rel_err"] < 1e-3
    assert rows["irc", "native"].status == "unsupported"
    # the table's note is the reason's start (the status column says unsupported); JSON has it all
    assert "vs eager" in r.stdout and "native is torch.nn.GRU/LSTM" in r.stdout
    assert rows["irc", "native"].reason.startswith("native is torch.nn.GRU/LSTM")


def test_a_failed_case_exits_1_and_is_kept(cli, tmp_path, monkeypatch):
    def builder(stack, case):
        def forward(x):
            raise ValueError("kernel exploded")
        return Runnable(case.backend, forward, stack, stack)

    monkeypatch.setitem(BACKENDS, "boom", Backend("boom", builder, "test"))
    out = tmp_path / "s.json"
    r = cli("speed", "--cell", "gru", "--variant", "baseline", "--backend", "eager,boom",
            "--mode", "fwd", *TINY, "--json", str(out))
    assert r.exit_code == 1
    rows = read_results(out).results
    assert [x.status for x in rows] == ["ok", "failed"]
    assert rows[1].reason == "ValueError: kernel exploded"


def test_memory_command_files_and_table(cli, tmp_path):
    js, cs = tmp_path / "m.json", tmp_path / "m.csv"
    r = cli("memory", "--cell", "gru", "--irc", "--no-rss", "-B", "2", "-T", "3", "-N", "4", "-M",
            "4", "--json", str(js), "--csv", str(cs))
    assert r.exit_code == 0, r.output
    a, b = read_results(js).results, read_results(cs).results
    assert [x.metrics for x in a] == [x.metrics for x in b]
    # GRU: 5·T·B·M float32 (derived in test_memory.py)
    assert a[0].metrics["saved_bytes"] == 5 * 3 * 2 * 4 * 4
    ratio = a[1].metrics["saved_bytes"] / a[0].metrics["saved_bytes"]
    line = next(ln for ln in r.stdout.splitlines() if "IRC-GRU" in ln)
    assert f"{ratio:.2f}×" in line
    assert json.loads(js.read_text())["schema"] == "rnnbench.results/1"


def test_progress_goes_to_stderr_and_tables_to_stdout(tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["speed", "--cell", "gru", "--variant", "baseline", "--mode", "fwd",
                            *TINY])
    assert r.exit_code == 0
    assert "[1/1] speed gru/baseline eager fwd" in r.stderr
    assert "Time per call" in r.stdout and "[1/1]" not in r.stdout


def test_cell_all_with_the_canonical_form_leaves_out_cells_without_one(cli, tmp_path):
    out = tmp_path / "m.json"
    r = cli("memory", "--cell", "all", "--form", "canonical", "--variant", "baseline", "--no-rss",
            "-B", "2", "-T", "2", "-N", "4", "-M", "4", "--json", str(out))
    assert r.exit_code == 0, r.output
    assert "tlstm, pru have no canonical form; left out" in r.stderr
    rows = read_results(out).results
    assert [x.cell for x in rows] == ["gru", "lstm", "sru", "fastgrnn"]
    assert {x.form for x in rows} == {"canonical"}
    # naming such a cell is still an error
    one_line_error(cli("memory", "--cell", "pru", "--form", "canonical", "--variant", "baseline",
                       "--no-rss"), "has no 'canonical' form")


# -- one parser for every command's lists, variants, dtypes and devices ----------------------------
@pytest.mark.parametrize("args", [
    ["speed", *TINY[:8]], ["memory", "--no-rss"], ["params"], ["verify"], ["task", "adding"]])
def test_an_unknown_variant_reads_alike_in_every_command(cli, args):
    one_line_error(cli(*args, "--cell", "gru", "--variant", "irc,highway"),
                   "unknown variant 'highway'; choose from ")


@pytest.mark.parametrize("command", ["speed", "memory", "verify"])
def test_dtype_and_device_read_alike_in_every_command(cli, command):
    one_line_error(cli(command, "--cell", "gru", "--dtype", "float8"),
                   "unknown dtype 'float8'; choose from float32, bfloat16, float16, float64")
    one_line_error(cli(command, "--cell", "gru", "-d", "tpu"), "unknown device 'tpu'")


def test_a_variant_list_keeps_the_baseline_beside_for_the_ratio(cli, tmp_path):
    out = tmp_path / "m.json"
    r = cli("memory", "--cell", "gru", "--variant", "ihc, irc", "--no-rss", "-B", "2", "-T", "2",
            "-N", "4", "-M", "4", "--json", str(out))
    assert r.exit_code == 0, r.output
    assert [x.variant for x in read_results(out).results] == ["baseline", "ihc", "irc"]


def test_verify_names_why_a_variant_or_backend_is_not_checked(cli):
    one_line_error(cli("verify", "--variant", "baseline"),
                   "--variant baseline: the fused kernels exist for IRC and IHC cells only; "
                   "choose from irc, ihc, all (comma lists allowed)")
    one_line_error(cli("verify", "--backend", "eager"), "--backend eager: verify checks fused and triton")
    one_line_error(cli("verify", "--fold", "on,maybe"), "unknown fold path 'maybe'")


def test_the_parsers():
    from rnnbench.commands import common
    from rnnbench.errors import RnnbenchError

    assert common.split_list(" a, b,,a ", "--x") == ["a", "b"]
    assert common.parse_choices("ALL", "--mode", ("fwd", "bwd"), noun="mode") == ["fwd", "bwd"]
    assert common.parse_choices("bwd,fwd,bwd", "--mode", ("fwd", "bwd"), noun="mode") == ["bwd", "fwd"]
    assert common.parse_modes("fwd+bwd") == ["fwd+bwd"]
    assert common.parse_backends("Eager, native,eager") == ["eager", "native"]
    assert common.parse_variants("all") == ["baseline", "irc", "ihc"]
    assert common.parse_variants("ihc,baseline") == ["ihc", "baseline"]  # trained as named
    assert common.parse_variants("ihc", baseline_beside=True) == ["baseline", "ihc"]
    assert common.parse_variants("all", irc=True, baseline_beside=True) == ["baseline", "irc"]
    assert common.parse_variants("all", allowed=("irc", "ihc")) == ["irc", "ihc"]
    assert common.parse_cells("all") == ("all", False)
    assert common.parse_cells("gru, lstm") == (["gru", "lstm"], True)
    assert common.dtype_option("bf16") == "bfloat16"
    assert str(common.device_option("CPU")) == "cpu"
    assert common.parse_one("Min", "--time-stat", ("median", "min")) == "min"
    assert common.parse_int_list("1150,1150,400", "-M") == [1150, 1150, 400]  # repeats kept
    common.require_positive(("--batch", 1), ("--layers", None))
    for call, message in [
        (lambda: common.split_list(" , ", "--cell"), "--cell needs at least one value, got ' , '"),
        (lambda: common.parse_modes("fwd,back"), "unknown mode 'back'; choose from fwd, fwd+bwd, "
                                                 "bwd, all (comma lists allowed)"),
        (lambda: common.parse_one("max", "--time-stat", ("median", "min")),
         "--time-stat must be one of median, min, got 'max'"),
        (lambda: common.require_positive(("--batch", 0)), "--batch must be positive, got 0"),
        (lambda: common.check_devices(["cpu", "tpu"], what="s.toml"), "s.toml: unknown device 'tpu'"),
    ]:
        with pytest.raises(RnnbenchError) as e:
            call()
        assert str(e.value).startswith(message), str(e.value)


def test_a_bare_speed_is_a_quick_look_at_smaller_sizes_unless_a_size_is_given(tmp_path, monkeypatch):
    """Bare `rnnbench speed`: every cell, a training step, at the quick look's sizes (the full
    sweep's took 105 s for 18 cases); any size given, or a mode, means the sizes asked for."""
    from sweep_helpers import fake_dispatch, ok_row

    from rnnbench.commands.speed import QUICK_SIZES, SIZES
    fake_dispatch(monkeypatch).measure = lambda case, **settings: ok_row(case)
    runner = CliRunner()
    for i, (args, want) in enumerate((([], QUICK_SIZES), (["-B", "8"], {**SIZES, "batch": 8}),
                                      (["--mode", "fwd+bwd"], SIZES))):
        out = tmp_path / f"s{i}.json"
        r = runner.invoke(app, ["speed", *args, "--json", str(out), "--quiet"])
        assert r.exit_code == 0, r.output
        rows = read_results(out).results
        assert len(rows) == 18 and {row.mode for row in rows} == {"fwd+bwd"}
        assert {(row.batch, row.seq_len, row.input_size, str(row.hidden_size).strip("[]"))
                for row in rows} == {(want["batch"], want["seq_len"], want["input_size"],
                                      want["hidden_size"])}
        if not args:
            assert "the full sweep" in r.output
