"""Progress off a terminal: one plain line per case with an ETA, announcements, --quiet, --dry-run."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from rnnbench import progress

ROOT = Path(__file__).resolve().parent.parent
TINY = ("-B", "2", "-T", "3", "-N", "4", "-M", "4", "--min-run-time", "0.01", "--input-sets", "1")
LINE = re.compile(r"^\[(\d+)/(\d+)\] (.+) … (.+?)( \(eta \d+(m\d\ds)?s?\))?$")


def test_reporter_writes_one_line_per_case_with_an_eta():
    buf = io.StringIO()  # not a terminal: plain lines
    with progress.reporter(3, "speed", stream=buf) as p:
        for i, desc in enumerate(("speed gru/baseline eager fwd", "speed gru/irc eager fwd",
                                  "speed gru/ihc eager fwd")):
            p.start(desc)
            if i == 1:
                p.announce("retrying: the machine is busy")
            p.done(desc, "207 ms", seconds=50.0)
    lines = buf.getvalue().splitlines()
    assert lines == ["[1/3] speed gru/baseline eager fwd … 207 ms (eta 1m40s)",
                     "retrying: the machine is busy",
                     "[2/3] speed gru/irc eager fwd … 207 ms (eta 50s)",
                     "[3/3] speed gru/ihc eager fwd … 207 ms"]


def test_reporter_eta_before_any_case_comes_from_the_estimate():
    rep = progress.Reporter(10, "run", estimate_s=600.0, stream=io.StringIO())
    assert 590 < rep.eta_s() <= 600


def test_quiet_reporter_says_nothing():
    buf = io.StringIO()
    with progress.reporter(2, "speed", quiet=True, stream=buf) as p:
        p.start("a")
        p.announce("news")
        p.done("a", "1 ms")
        p.skip("b", "kept")
    assert buf.getvalue() == ""


def test_fmt_duration():
    assert [progress.fmt_duration(s) for s in (0.4, 59, 100, 3600 + 5 * 60)] == \
        ["0s", "59s", "1m40s", "1h05m"]


def _speed(*args):
    return subprocess.run([sys.executable, "-m", "rnnbench.cli", "speed", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "100"})


def test_speed_progress_lines_when_piped(tmp_path):
    out = tmp_path / "s.json"
    r = _speed("--cell", "gru", "--irc", "--mode", "fwd", *TINY, "--json", str(out))
    assert r.returncode == 0, r.stderr
    err = r.stderr.splitlines()
    assert any(re.fullmatch(r"speed: 2 cases, about \d+s", ln) for ln in err), err
    cases = [m for m in map(LINE.match, err) if m]
    assert [(m[1], m[2], m[3]) for m in cases] == [("1", "2", "speed gru/baseline eager fwd"),
                                                   ("2", "2", "speed gru/irc eager fwd")]
    assert re.fullmatch(r"[\d.]+ [µnm]?s( \(.*\))?", cases[0][4]), cases[0][4]
    assert "[1/2]" not in r.stdout  # progress stays off stdout


def test_quiet_and_dry_run(tmp_path):
    out = tmp_path / "s.json"
    r = _speed("--cell", "gru", "--irc", "--mode", "fwd", *TINY, "--quiet", "--json", str(out))
    assert r.returncode == 0 and not any(LINE.match(ln) for ln in r.stderr.splitlines())
    assert "Time per call" in r.stdout
    dry = tmp_path / "dry.json"
    r = _speed("--cell", "gru,lstm", "--irc", "--mode", "fwd,fwd+bwd", *TINY, "--dry-run",
               "--json", str(dry))
    assert r.returncode == 0, r.stderr
    listed = [ln for ln in r.stdout.splitlines() if re.match(r"\s+\d+  speed ", ln)]
    assert len(listed) == 8 and "8 cases" in r.stdout and "dry run" in r.stdout
    assert not dry.exists()


def test_run_progress_lines_when_piped(tmp_path):
    suite = tmp_path / "tiny.toml"
    suite.write_text("""
[meta]
name = "tiny"
bench = ["speed", "memory"]
[axes]
cell = ["gru"]
variant = ["baseline", "irc"]
backend = ["eager"]
mode = ["fwd"]
batch = [2]
seq_len = [3]
input_size = [4]
hidden_size = [4]
[settings.speed]
min_run_time = 0.01
input_sets = 1
[settings.memory]
rss = false
""")
    out = tmp_path / "r.json"
    r = subprocess.run([sys.executable, "-m", "rnnbench.cli", "run", str(suite), "--json", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    cases = [m for m in map(LINE.match, r.stderr.splitlines()) if m]
    assert len(cases) == 4 and [m[1] for m in cases] == ["1", "2", "3", "4"], r.stderr
    assert {m[3].split()[0] for m in cases} == {"speed", "memory"}
    assert json.loads(out.read_text())["results"]
