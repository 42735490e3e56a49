"""compare says when the two files were measured differently, and its Markdown opens with the
context of both sides."""

from __future__ import annotations

from typer.testing import CliRunner

from rnnbench import report_context
from rnnbench.cli import app
from rnnbench.results import ResultFile, Row

runner = CliRunner()


def _file(path, *, threads: int, cpu: str, torch: str, min_run_time: float, commit: str):
    rows = [Row("params", "gru", "baseline", input_size=8, hidden_size=8, layers=1,
                metrics={"params": 456})]
    env = {"cpu": cpu, "device": "cpu", "device_name": cpu, "torch": torch, "python": "3.11.7",
           "threads": threads}
    prov = {"commit": commit, "dirty": False, "time": "2026-12-03T01:00:00+00:00",
            "argv": ["rnnbench", "run", "s.toml"],
            "suite": {"settings": {"speed": {"min_run_time": min_run_time, "pin_cpus": [1]}}}}
    path.write_text(ResultFile(env, prov, rows).to_json())
    return path


def test_context_reads_settings_from_the_suite_and_the_environment(tmp_path):
    from rnnbench.results import read_results
    ctx = report_context.context(read_results(_file(
        tmp_path / "a.json", threads=2, cpu="AMD EPYC", torch="2.13.0+cpu", min_run_time=0.5,
        commit="0123456789abcdef")))
    assert ctx["threads"] == "2" and ctx["min_run_time"] == "0.5" and ctx["pin_cpus"] == "1"
    assert ctx["machine"] == "AMD EPYC" and ctx["commit"] == "0123456789ab"
    assert ctx["command"] == "rnnbench run s.toml"


def test_differences_skip_fields_one_side_lacks():
    a = {"threads": "1", "torch": "2.13.0", "machine": ""}
    b = {"threads": "2", "torch": "2.13.0", "machine": "Xeon"}
    assert report_context.differences(a, b) == ["threads: 1 → 2"]


def test_compare_warns_in_the_table_and_in_the_markdown(tmp_path):
    a = _file(tmp_path / "a.json", threads=1, cpu="AMD EPYC", torch="2.13.0+cpu",
              min_run_time=1.0, commit="aaaaaaaaaaaa")
    b = _file(tmp_path / "b.json", threads=2, cpu="Intel Xeon", torch="2.13.0+cpu",
              min_run_time=0.1, commit="bbbbbbbbbbbb")
    md = tmp_path / "r.md"
    r = runner.invoke(app, ["compare", str(a), str(b), "--markdown", str(md)])
    assert r.exit_code == 0, r.output
    assert "settings differ" in r.stdout and "threads: 1 → 2" in r.stdout
    assert "machine: AMD EPYC → Intel Xeon" in r.stdout and "min_run_time: 1.0 → 0.1" in r.stdout
    text = md.read_text()
    lines = text.splitlines()
    assert lines[0].startswith("###") and lines[2] == "#### Context"
    block = text[:text.index("**no regression")]
    for want in ("| torch | `2.13.0+cpu` | `2.13.0+cpu` |", "| commit | `aaaaaaaaaaaa` |",
                 "| date |", "| threads | `1` | `2` |", "**Warning:**"):
        assert want in block, want


def test_compare_of_alike_files_warns_of_nothing(tmp_path):
    kw = dict(threads=1, cpu="AMD EPYC", torch="2.13.0+cpu", min_run_time=1.0, commit="a" * 12)
    a, b = _file(tmp_path / "a.json", **kw), _file(tmp_path / "b.json", **kw)
    md = tmp_path / "r.md"
    r = runner.invoke(app, ["compare", str(a), str(b), "--markdown", str(md)])
    assert r.exit_code == 0 and "settings differ" not in r.stdout and "warning" not in r.stdout
    assert "#### Context" in md.read_text() and "Warning" not in md.read_text()
