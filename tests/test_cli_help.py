"""Help, version and usage errors: what a user sees before any measuring."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

import rnnbench
from rnnbench.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ("speed", "memory", "run", "verify", "task", "params", "compare", "plot", "plan",
            "targets", "merge", "list", "env")


def _cli(*args, **env):
    """The console script's entry point in a subprocess whose stderr is a pipe (as in CI)."""
    return subprocess.run([sys.executable, "-m", "rnnbench.cli", *args], capture_output=True,
                          text=True, timeout=120, cwd=ROOT, env={**os.environ, **env})


def test_version_names_the_package_and_the_commit():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0
    assert r.stdout.startswith(f"rnnbench {rnnbench.__version__}")
    git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if git.returncode == 0:  # a checkout: the commit is there
        assert git.stdout.strip()[:12] in r.stdout


def test_completion_options_are_offered():
    r = runner.invoke(app, ["--help"])
    assert "--install-completion" in r.stdout and "--show-completion" in r.stdout


def test_markup_in_help_shows_as_written():
    targets = runner.invoke(app, ["targets", "--help"]).stdout
    assert "[[target]]" in targets and "[]s" not in targets
    task = runner.invoke(app, ["task", "--help"]).stdout
    assert "[TASK]" in task and "[[TASK]]" not in task


def test_help_points_at_no_source_file():
    for c in COMMANDS:
        text = runner.invoke(app, [c, "--help"]).stdout
        assert not re.search(r"\b[\w/]+\.py\b|rnnbench/|docs/", text), (c, text)


def test_usage_errors_off_a_terminal_are_one_line_exit_2():
    for args in (["speed", "--bogus"], ["speed", "--batch", "x"], ["nosuch"], ["targets"]):
        r = _cli(*args)
        assert r.returncode == 2, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in r.stderr, lines


def test_native_with_the_paper_form_is_refused_in_one_line():
    r = _cli("speed", "--cell", "gru", "--backend", "native", "--form", "paper", "--dry-run")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "rnnbench: error: --backend native computes the canonical form (torch.nn.GRU/LSTM), "
        "not the paper's: use --form canonical"]


def test_native_without_a_form_measures_the_canonical_form_and_says_so():
    r = _cli("speed", "--cell", "gru,lstm", "--variant", "baseline", "--backend", "native",
             "--mode", "fwd", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "measuring --form canonical" in r.stderr
    assert "gru/baseline (canonical) native fwd" in r.stdout
    assert "lstm/baseline (canonical) native fwd" in r.stdout
