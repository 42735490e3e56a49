"""Every bad input through the real command line (issue #13): exit code 2, exactly one line on
stderr, no traceback, and no file changed: every file in the working folder keeps its bytes and
its modification time, and no new file appears.

The inputs are grouped by what used to go wrong; CATEGORY_COUNTS at the bottom is the table the
closing note of #13 reports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rnnbench.cli import app
from rnnbench.results import ResultFile, Row, journal_path, read_results, to_csv

runner = CliRunner()

SUITE = """
[meta]
name = "tiny"
bench = "speed"

[axes]
cell = ["gru"]
variant = ["baseline", "irc"]
batch = [2]
seq_len = [3]
input_equals_hidden = true
hidden_size = [4, 6]

[settings.speed]
min_run_time = 0.01
input_sets = 2
check = false
reference = false
busy_retries = 0
"""

PARAMS_TABLE = """
[meta]
bench = "params"
title = "t"

[[rows]]
id = "a"
section = "s"
cell = "gru"
input_size = 4
hidden_size = [4]
"""


def rows(n=3):
    return [Row(bench="speed", cell="gru", variant=v, backend="eager", mode="fwd+bwd", batch=2,
                seq_len=3, input_size=m, hidden_size=m, layers=1,
                metrics={"time_s_median": 1e-3 * (i + 1), "time_s_samples": [1e-3, 2e-3]})
            for i, (v, m) in enumerate([(v, m) for m in (4, 6) for v in ("baseline", "irc")][:n])]


def result_json(n=3) -> str:
    return ResultFile({"device": "cpu", "cpu": "x", "dtype": "float32"}, {}, rows(n)).to_json()


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A folder with a suite, a parameter table, two result files (JSON, CSV), a Markdown file, a
    sub-folder and a text file; the commands run inside it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.toml").write_text(textwrap.dedent(SUITE))
    (tmp_path / "table.toml").write_text(textwrap.dedent(PARAMS_TABLE))
    (tmp_path / "base.json").write_text(result_json())
    (tmp_path / "cur.json").write_text(result_json())
    (tmp_path / "base.csv").write_text(to_csv(rows()))
    (tmp_path / "old.md").write_text("# old\n")
    (tmp_path / "notes.txt").write_text("notes\n")
    (tmp_path / "sub").mkdir()
    old = time.time() - 1000  # an mtime no write in this test could reproduce by chance
    for p in tmp_path.rglob("*"):
        os.utime(p, (old, old))
    return tmp_path


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.is_dir() or p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


def refused(root: Path, *args, contains: str = "") -> str:
    """Run the command; it must fail with exit 2 and one line, having changed nothing."""
    before = snapshot(root)
    r = runner.invoke(app, [str(a) for a in args])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.exit_code == 2, (args, r.exit_code, r.output)
    assert len(lines) == 1, (args, r.stderr)
    assert lines[0].startswith("rnnbench: error:"), (args, r.stderr)
    assert "Traceback" not in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert snapshot(root) == before, (args, "a file changed")
    assert contains in lines[0], (args, lines[0])
    return lines[0]


# -- 1. outputs aimed at inputs, or at each other --------------------------------------------------
OUTPUT_IS_INPUT = [
    (["compare", "base.json", "cur.json", "--markdown", "base.json"], "input"),
    (["compare", "base.json", "cur.json", "--markdown", "cur.json", "--overwrite"], "input"),
    (["run", "tiny.toml", "--csv", "tiny.toml", "--json", "new.json"], ""),
    (["run", "tiny.toml", "--json", "tiny.toml"], ""),
    (["merge", "m.json", "base.json", "cur.json", "--csv", "base.json"], ""),
    (["merge", "base.json", "base.json", "cur.json"], "input"),
    (["params", "--cell", "gru", "--json", "x.json", "--csv", "x.json"], ""),
    (["params", "--cell", "gru", "--csv", "p.csv", "--markdown", "p.csv"], ""),
    (["params", "--config", "table.toml", "--json", "table.toml", "--overwrite"], ""),
    (["run", "table.toml", "--json", "table.toml", "--overwrite"], ""),
    (["run", "tiny.toml", "--csv", "link.csv", "--json", "n.json", "--overwrite"], "input"),
    (["compare", "base.json", "cur.json", "--markdown", "hard.md", "--overwrite"], "input"),
    (["plot", "base.json", "--out", "base.json"], "input"),
]


@pytest.mark.parametrize("args,text", OUTPUT_IS_INPUT)
def test_an_output_never_overwrites_an_input_or_another_output(work, args, text):
    (work / "link.csv").symlink_to(work / "tiny.toml")
    os.link(work / "base.json", work / "hard.md")
    refused(work, *args, contains=text)


# -- 2. an existing file replaced only with --overwrite --------------------------------------------
TINY = ["--cell", "gru", "-B", "2", "-T", "3", "-N", "4", "-M", "4", "--min-run-time", "0.01",
        "--input-sets", "2", "--variant", "baseline"]
EXISTING = [
    ["speed", *TINY, "--json", "cur.json"],
    ["speed", *TINY, "--csv", "base.csv"],
    ["speed", *TINY, "--markdown", "old.md"],
    ["memory", "--cell", "gru", "-B", "2", "-T", "3", "-N", "4", "-M", "4", "--no-rss",
     "--json", "cur.json"],
    ["params", "--cell", "gru", "--json", "cur.json"],
    ["params", "--cell", "gru", "--csv", "base.csv"],
    ["params", "--cell", "gru", "--markdown", "old.md"],
    ["params", "--config", "table.toml", "--json", "cur.json"],
    ["verify", "--cell", "gru", "--json", "cur.json"],
    ["task", "adding", "--steps", "2", "--json", "cur.json"],
    ["task", "adding", "--steps", "2", "--markdown", "old.md"],
    ["compare", "base.json", "cur.json", "--markdown", "old.md"],
    ["run", "tiny.toml", "--json", "cur.json"],
    ["run", "tiny.toml", "--json", "new.json", "--csv", "base.csv"],
    ["run", "table.toml", "--json", "cur.json"],
    ["merge", "cur.json", "base.json"],
]


@pytest.mark.parametrize("args", EXISTING, ids=lambda a: " ".join(a[:1] + a[-2:]))
def test_an_existing_output_is_replaced_only_with_overwrite(work, args):
    refused(work, *args, contains="exists")


def test_with_overwrite_params_replaces_the_file(work):
    r = runner.invoke(app, ["params", "--cell", "gru", "--json", "cur.json", "--overwrite"])
    assert r.exit_code == 0, r.output
    assert {x.bench for x in read_results(work / "cur.json").results} == {"params"}
    assert oct((work / "cur.json").stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def test_charts_are_written_with_the_users_umask(work):
    r = runner.invoke(app, ["plot", "base.json", "--out", "charts"])
    assert r.exit_code == 0, r.output
    pngs = list((work / "charts").glob("*.png"))
    assert pngs and all(p.stat().st_mode & 0o777 == 0o666 & ~_umask() for p in pngs)


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


# -- 3. an extension that contradicts the format ---------------------------------------------------
EXTENSIONS = [
    ["run", "tiny.toml", "--json", "x.csv"],
    ["run", "tiny.toml", "--json", "x.json", "--csv", "x.md"],
    ["speed", *TINY, "--json", "x.csv"],
    ["params", "--cell", "gru", "--csv", "x.json"],
    ["params", "--cell", "gru", "--markdown", "x.json"],
    ["params", "--cell", "gru", "--json", "x.toml"],
    ["compare", "base.json", "cur.json", "--markdown", "x.csv"],
    ["merge", "m.csv", "base.json"],
    ["memory", "--cell", "gru", "--json", "x.md"],
]


@pytest.mark.parametrize("args", EXTENSIONS, ids=lambda a: " ".join(a[-2:]))
def test_an_extension_that_contradicts_the_format_is_refused(work, args):
    refused(work, *args)


# -- 4. outputs that cannot be written -------------------------------------------------------------
UNWRITABLE = [
    (["params", "--cell", "gru", "--json", "notes.txt/x.json"], "not a directory"),
    (["params", "--cell", "gru", "--json", "sub"], "directory"),
    (["compare", "base.json", "cur.json", "--markdown", "sub"], "directory"),
    (["run", "tiny.toml", "--json", "notes.txt/deeper/x.json"], "not a directory"),
    (["speed", *TINY, "--csv", "notes.txt/x.csv"], "not a directory"),
    (["plot", "base.json", "--out", "notes.txt/charts"], "not a directory"),
    (["merge", "sub", "base.json"], ""),
]


@pytest.mark.parametrize("args,text", UNWRITABLE, ids=lambda a: " ".join(a[-2:]) if isinstance(a, list) else a)
def test_an_output_that_cannot_be_written_is_refused_before_any_work(work, args, text):
    refused(work, *args, contains=text)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused(work):
    (work / "ro").mkdir()
    (work / "ro").chmod(0o555)
    try:
        refused(work, "params", "--cell", "gru", "--json", "ro/x.json", contains="read-only")
    finally:
        (work / "ro").chmod(0o755)


# -- 5. inputs that are not what they claim --------------------------------------------------------
def _mutated_json(**change):
    d = json.loads(result_json())
    path, value = change["path"], change["value"]
    target = d
    for k in path[:-1]:
        target = target[k]
    target[path[-1]] = value
    return json.dumps(d)


BAD_RESULT_FILES = [
    ("bad.json", b"\xff\xfe{not utf-8", "not UTF-8"),
    ("bad.json", b'{"schema": "rnnbench.results/1", "results": [', "not valid JSON"),
    ("bad.json", b"[]", "not an rnnbench result file"),
    ("bad.json", _mutated_json(path=["results", 1, "metrics", "time_s_median"], value="fast").encode(),
     'results[1].metrics.time_s_median: expected a number, got "fast"'),
    ("bad.json", _mutated_json(path=["results", 0, "hidden_size"], value=["4", 4]).encode(),
     "results[0].hidden_size"),
    ("bad.json", _mutated_json(path=["results", 0, "hidden_size"], value=[]).encode(),
     "results[0].hidden_size"),
    ("bad.json", _mutated_json(path=["env"], value=[1, 2]).encode(), "env: expected a table"),
    ("bad.json", _mutated_json(path=["results", 0, "labels"], value=["a"]).encode(),
     "results[0].labels"),
    ("bad.json", _mutated_json(path=["results", 0, "labels"], value={"options": 3}).encode(),
     "results[0].labels.options"),
    ("bad.json", _mutated_json(path=["results", 2, "status"], value="great").encode(),
     "results[2].status"),
    ("bad.json", _mutated_json(path=["results", 0, "batch"], value=-2).encode(), "results[0].batch"),
    ("bad.json", _mutated_json(path=["results", 0, "warnings"], value="w").encode(),
     "results[0].warnings"),
    ("bad.json", _mutated_json(path=["results", 0, "metrics"], value=[1]).encode(),
     "results[0].metrics"),
    ("bad.json", _mutated_json(path=["results", 0], value="row").encode(), "results[0]"),
    ("bad.json", _mutated_json(path=["results"], value={"a": 1}).encode(), "results"),
    ("bad.json", _mutated_json(path=["results", 0, "cell"], value=7).encode(), "results[0].cell"),
    ("bad.json", _mutated_json(path=["results", 0, "metrics", "time_s_samples"],
                               value=["x"]).encode(), "time_s_samples"),
    ("bad.csv", b"key,bench,cell,variant,time_s_median\nk,speed,gru,baseline,fast\n",
     'line 2, column metrics.time_s_median: expected a number, got "fast"'),
    ("bad.csv", b"key,bench,cell,variant,batch\nk,speed,gru,baseline,two\n", "batch"),
    ("bad.csv", b"key,bench,cell,variant\nk,speed,gru,baseline,extra,cells\n", "cells for"),
    ("bad.csv", b"a,b\n1,2\n", "not an rnnbench CSV"),
    ("bad.csv", b"key,bench,cell,variant\n\xff,speed,gru,baseline\n", "not UTF-8"),
]


@pytest.mark.parametrize("name,content,text", BAD_RESULT_FILES,
                         ids=[f"{i}-{t[:20]}" for i, (_, _, t) in enumerate(BAD_RESULT_FILES)])
@pytest.mark.parametrize("command", ["compare", "merge", "plot", "targets"])
def test_a_result_file_with_wrong_contents_is_one_line_naming_file_and_field(work, name, content,
                                                                             text, command):
    bad = work / name
    bad.write_bytes(content)
    os.utime(bad, (1e9, 1e9))
    args = {"compare": ["compare", name, "cur.json"], "merge": ["merge", "m.json", "base.json", name],
            "plot": ["plot", name, "--out", "charts"],
            "targets": ["targets", "tiny.toml", name]}[command]
    if command == "targets":
        # a suite with a target, so that the result file is what fails
        (work / "tiny.toml").write_text(textwrap.dedent(SUITE) + textwrap.dedent("""
            [[target]]
            name = "irc no slower"
            where = { variant = "irc" }
            than = { variant = "baseline" }
            speedup = 0.5
            """))
        os.utime(work / "tiny.toml", (1e9, 1e9))
    line = refused(work, *args, contains=text)
    assert name in line


BAD_SUITES = [
    (b"\xff\xfe[meta]\n", "not UTF-8"),
    (b"[meta\nname = 1", "not valid TOML"),
    (SUITE.replace("min_run_time = 0.01", "min_run_time = -1").encode(),
     "[settings.speed] min_run_time = -1: must be positive"),
    (SUITE.replace("min_run_time = 0.01", "min_run_time = nan").encode(), "min_run_time = nan"),
    (SUITE.replace("min_run_time = 0.01", "min_run_time = inf").encode(), "min_run_time = inf"),
    (SUITE.replace("min_run_time = 0.01", "min_run_time = 0").encode(), "min_run_time = 0"),
    (SUITE.replace("input_sets = 2", "input_sets = 0").encode(), "input_sets = 0"),
    (SUITE.replace("input_sets = 2", 'threads = "two"').encode(), 'threads = "two"'),
    (SUITE.replace("input_sets = 2", "threads = 0").encode(), "threads = 0"),
    (SUITE.replace("input_sets = 2", "pin_cpus = [-1]").encode(), "pin_cpus"),
    (SUITE.replace("input_sets = 2", "warmup = -3").encode(), "warmup = -3"),
    (SUITE.replace("check = false", "check = 1").encode(), "check"),
    (SUITE.replace("[settings.speed]\nmin_run_time = 0.01", "[settings]\nmin_run_time = -1\n"
                   "[settings.speed]").encode(), "[settings] min_run_time = -1"),
    (SUITE.replace("hidden_size = [4, 6]", 'hidden_size = ["4"]').encode(), "hidden_size"),
    (SUITE.replace("batch = [2]", "batch = [0]").encode(), "batch"),
    (SUITE.replace("batch = [2]", "batch = [2.5]").encode(), "batch"),
    (SUITE.replace('cell = ["gru"]', 'cell = ["gru2"]').encode(), "gru2"),
    (SUITE.replace("[axes]", "[axes]\nbogus = 1").encode(), "bogus"),
    (SUITE.replace("busy_retries = 0", "busy_retries = 0\nmin_run_tme = 1").encode(), "min_run_tme"),
]


@pytest.mark.parametrize("content,text", BAD_SUITES, ids=[t[:24] for _, t in BAD_SUITES])
@pytest.mark.parametrize("command", ["run", "plan"])
def test_a_bad_suite_is_refused_alike_by_plan_and_run(work, content, text, command):
    (work / "bad.toml").write_bytes(content)
    os.utime(work / "bad.toml", (1e9, 1e9))
    line = refused(work, command, "bad.toml", *(["--json", "r.json"] if command == "run" else []),
                   contains=text)
    assert "bad.toml" in line


OTHER_INPUTS = [
    (["run", "sub"], "directory"),
    (["run", "missing.toml"], "no such"),
    (["params", "--config", "bad.toml"], "not UTF-8"),
    (["task", "--config", "bad.toml"], "not UTF-8"),
    (["compare", "sub", "cur.json"], "directory"),
    (["compare", "x.json.journal", "cur.json"], "journal"),
    (["compare", "gone.json", "cur.json"], "gone.json.journal"),
    (["merge", "m.json", "base.json", "gone.json"], "recovers"),
]


@pytest.mark.parametrize("args,text", OTHER_INPUTS, ids=lambda a: " ".join(a) if isinstance(a, list) else a)
def test_other_unreadable_inputs(work, args, text):
    (work / "bad.toml").write_bytes(b"\xff[meta]")
    (work / "x.json.journal").write_text(json.dumps(rows(1)[0].to_dict()) + "\n")
    (work / "gone.json.journal").write_text(json.dumps(rows(1)[0].to_dict()) + "\n")
    for p in work.iterdir():
        os.utime(p, (1e9, 1e9))
    refused(work, *args, contains=text)


# -- 6. settings on the command line: NaN, infinity, zero, negative, out of range ------------------
BAD_FLAGS = [
    (["speed", *TINY, "--min-run-time", "nan"], "--min-run-time"),
    (["speed", *TINY, "--min-run-time", "-1"], "--min-run-time"),
    (["speed", *TINY, "--min-run-time", "inf"], "--min-run-time"),
    (["speed", *TINY, "--min-run-time", "0"], "--min-run-time"),
    (["speed", *TINY, "--input-sets", "0"], "--input-sets"),
    (["speed", *TINY, "--threads", "0"], "--threads"),
    (["memory", "--cell", "gru", "--threads", "-2"], "--threads"),
    (["compare", "base.json", "cur.json", "--time-fail-ratio", "nan"], "--time-fail-ratio"),
    (["compare", "base.json", "cur.json", "--time-fail-ratio", "0.5"], "--time-fail-ratio"),
    (["compare", "base.json", "cur.json", "--time-fail-ratio", "inf"], "--time-fail-ratio"),
    (["compare", "base.json", "cur.json", "--alpha", "nan"], "--alpha"),
    (["compare", "base.json", "cur.json", "--threshold", "1e999%"], "--threshold"),
    (["plot", "base.json", "--dpi", "100000"], "--dpi"),
    (["plot", "base.json", "--dpi", "0"], "--dpi"),
    (["task", "adding", "--lr", "nan"], "--lr"),
    (["task", "adding", "--clip", "-1"], "--clip"),
    (["params", "--cell", "gru", "-N", "0"], "--input-size"),
    (["run", "tiny.toml", "--rounds", "0"], "--rounds"),
]


@pytest.mark.timeout(60)  # --min-run-time nan used to time forever
@pytest.mark.parametrize("args,text", BAD_FLAGS, ids=lambda a: " ".join(a[-2:]) if isinstance(a, list) else a)
def test_a_bad_setting_on_the_command_line_is_refused_at_once(work, args, text):
    refused(work, *args, contains=text)


# -- 7. no exception type reaches the user as a traceback ------------------------------------------
def test_an_unexpected_exception_is_one_line_and_debug_shows_the_traceback(work, monkeypatch):
    def boom(*a, **k):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("rnnbench.commands.compare.read_results", boom)
    monkeypatch.setenv("RNNBENCH_DEBUG", "0")  # and so restored when the test ends: --debug sets it
    line = refused(work, "compare", "base.json", "cur.json")
    assert "ZeroDivisionError" in line and "--debug" in line
    r = runner.invoke(app, ["--debug", "compare", "base.json", "cur.json"])
    assert r.exit_code == 2 and "Traceback" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("rnnbench: error:")


def test_an_os_error_while_writing_is_one_line(work, monkeypatch):
    import rnnbench.results as results

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(results.os, "replace", full)
    line = refused(work, "params", "--cell", "gru", "--json", "p.json")
    assert "No space left on device" in line


USAGE_MISTAKES = [
    (["plot", "base.json", "--dpi", "abc"], "--dpi"),
    (["speed", "--threads", "two"], "--threads"),
    (["params", "--bogus"], "--bogus"),
]


def test_usage_mistakes_click_catches_are_one_line_too(work):
    """Through the console script's main(), where Click's own checks (a flag's type, an unknown
    flag) end as one line instead of a usage block."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    script = ("import sys, rnnbench.cli as c\n"
              "for args in %r:\n"
              "    sys.argv = ['rnnbench', *args]\n"
              "    try:\n"
              "        c.main()\n"
              "    except SystemExit as e:\n"
              "        print('exit', e.code, file=sys.stderr)\n") % [a for a, _ in USAGE_MISTAKES]
    before = snapshot(work)
    r = subprocess.run([sys.executable, "-c", script], cwd=work, env=env, capture_output=True,
                       text=True, timeout=240)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2 * len(USAGE_MISTAKES), r.stderr
    for (_, flag), line, code in zip(USAGE_MISTAKES, lines[::2], lines[1::2]):
        assert line.startswith("rnnbench: error:") and flag in line, line
        assert code == "exit 2"
    assert snapshot(work) == before


# -- journals: read by their owner only; a lone one recovered -------------------------------------
def test_a_stale_journal_is_neither_buried_nor_read_as_results(work):
    rows_ = rows(2)
    (work / "x.json.journal").write_text("".join(json.dumps(r.to_dict()) + "\n" for r in rows_))
    os.utime(work / "x.json.journal", (1e9, 1e9))
    refused(work, "params", "--cell", "gru", "--json", "x.json", contains="x.json.journal")
    refused(work, "merge", "m.json", "x.json", contains="recovers")
    r = runner.invoke(app, ["params", "--cell", "gru", "--json", "x.json", "--overwrite"])
    assert r.exit_code == 0 and not (work / "x.json.journal").exists()
    assert {x.bench for x in read_results(work / "x.json").results} == {"params"}


def test_a_lone_journal_is_recovered_by_resuming_its_run(work, dispatch):
    (work / "plain.toml").write_text(textwrap.dedent(SUITE).split("[settings.speed]")[0])
    r = runner.invoke(app, ["run", "plain.toml", "--json", "r.json"])
    assert r.exit_code == 0, r.output
    whole = read_results(work / "r.json").results
    # a killed large sweep whose JSON file was then lost: only its journal is left
    (work / "r.json.journal").write_text("".join(json.dumps(x.to_dict()) + "\n" for x in whole[:3]))
    (work / "r.json").unlink()
    refused(work, "compare", "r.json", "cur.json", contains="r.json.journal")
    r = runner.invoke(app, ["run", "plain.toml", "--json", "r.json", "--resume"])
    assert r.exit_code == 0, r.output
    assert "1 measured, 3 already in the file" in r.stdout
    back = read_results(work / "r.json").results
    assert sorted(x.key for x in back) == sorted(x.key for x in whole)
    assert not (work / "r.json.journal").exists()


# -- 8. params never allocates ---------------------------------------------------------------------
def test_params_at_a_million_wide_counts_without_allocating(work):
    r = runner.invoke(app, ["params", "--cell", "gru", "-N", "1000000", "-M", "1000000",
                            "--json", "p.json"])
    assert r.exit_code == 0, r.output
    n = 10**6
    got = {x.variant: x.metrics["params"] for x in read_results(work / "p.json").results}
    # eq. of the paper's GRU: W (3M×N), U (3M×M), b (3M); IRC: W_I,R (2M×N), U (3M×M), b, θ_α (M)
    assert got["baseline"] == 3 * n * n + 3 * n * n + 3 * n


# -- 9. two writers of one file --------------------------------------------------------------------
def test_two_shards_into_one_json_lose_no_row(tmp_path):
    """Two real processes sent to the same --json at once: every row the file holds is complete,
    every process that reported success has all its rows in it, and one that did not refused in
    one line."""
    (tmp_path / "tiny.toml").write_text(textwrap.dedent(SUITE))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmd = [sys.executable, "-m", "rnnbench.cli", "run", "tiny.toml", "--json", "same.json"]
    procs = [subprocess.Popen(cmd + ["--shard", f"{i}/2"], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in (1, 2)]
    results = [(p.wait(timeout=240), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes in ([0, 0], [0, 2]), results
    on_file = read_results(tmp_path / "same.json").results
    for code, _, stderr in results:
        if code == 2:
            errors = [ln for ln in stderr.splitlines() if ln.startswith("rnnbench: error")]
            assert len(errors) == 1 and "Traceback" not in stderr, stderr
            assert "another rnnbench process" in errors[0] or "exists" in errors[0]
    if codes == [0, 0]:  # one after the other: the second resumed nothing, so it must have
        pytest.fail("both shards wrote one file without --resume: " + str(results))
    assert len(on_file) == 2 and all(r.status == "ok" for r in on_file)


def test_a_file_locked_by_another_process_is_refused_at_once_and_left_alone(work):
    """The writers' lock from another process (a small one holding it, without torch), then
    `params --overwrite` and `run --resume` aimed at that file: both refuse in one line."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; from rnnbench.outputs "
         "import acquire, release; acquire(Path('cur.json')); print('held', flush=True); "
         "sys.stdin.read(); release(Path('cur.json'))"],
        cwd=work, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        lock = {p.name for p in work.iterdir()} - {"cur.json"}
        for args in (["params", "--cell", "gru", "--json", "cur.json", "--overwrite"],
                     ["run", "tiny.toml", "--json", "cur.json", "--resume"]):
            before = snapshot(work)
            r = runner.invoke(app, args)
            assert r.exit_code == 2 and r.stderr.count("\n") == 1, r.output
            assert "another rnnbench process" in r.stderr
            assert snapshot(work) == before
    finally:
        holder.communicate("", timeout=60)
    assert lock and not any(p.name.endswith(".lock") for p in work.iterdir())  # released, removed


# how many inputs of each category the tests above drive through the CLI (for the closing note)
CATEGORY_COUNTS = {
    "output aimed at an input or another output": len(OUTPUT_IS_INPUT),
    "existing output without --overwrite": len(EXISTING),
    "extension contradicting the format": len(EXTENSIONS),
    "output that cannot be written (+1 read-only folder, skipped as root)": len(UNWRITABLE) + 1,
    "result file with wrong encoding, syntax or types (x4 commands)": len(BAD_RESULT_FILES),
    "bad suite: encoding, syntax, settings, axes (x2: plan and run)": len(BAD_SUITES),
    "other unreadable inputs (folder, missing, journal)": len(OTHER_INPUTS),
    "stale or lone journals (refused, explained, recovered)": 3,
    "bad flag values (NaN, inf, zero, negative, range)": len(BAD_FLAGS),
    "unexpected exceptions (catch-all, --debug, OSError on write)": 2,
    "usage mistakes Click catches (flag types, unknown flags)": len(USAGE_MISTAKES),
    "file locked by another writer (params, run --resume) and two shards into one file": 3,
}
