"""The README's tour runs top to bottom as written, at small sizes: every command in its order, in
one directory, so a step that needs a file (compare's base.json) finds it made by an earlier step."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rnnbench.cli import app

ROOT = Path(__file__).resolve().parent.parent

# What makes each command small; the commands themselves are the README's.
TINY_SIZES = ["-B", "2", "-T", "3", "-N", "8", "-M", "8"]
SMALL = {
    "speed": TINY_SIZES + ["--min-run-time", "0.01", "--input-sets", "1", "--cell", "gru"],
    "memory": TINY_SIZES + ["--no-rss"],
    "verify": ["--cell", "gru", "--fold", "auto"],
    "task": ["--steps", "20", "--eval-every", "10", "--val-size", "20", "-M", "8", "--seq-len",
             "10"],
}
TINY_SUITE = """
[meta]
name = "quick"
bench = ["speed", "memory"]
[axes]
cell = ["gru"]
variant = ["baseline", "irc"]
backend = ["eager"]
mode = ["fwd+bwd"]
batch = [2]
seq_len = [3]
input_size = [8]
hidden_size = [8]
[settings.speed]
min_run_time = 0.01
input_sets = 1
[settings.memory]
rss = false
"""


def tour_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## A short tour\s+```bash\n(.*?)```", text, re.S)
    assert block, "README has no tour"
    cmds = []
    for line in block.group(1).splitlines():
        line = line.split(" #", 1)[0].strip()
        if line:
            cmds.append(shlex.split(line))
    return cmds


def smaller(cmd: list[str]) -> list[str]:
    name = cmd[1]
    if name == "speed" and "--cell" in cmd:
        extra = [a for a in SMALL["speed"] if a not in ("--cell", "gru")]
        return cmd + extra
    return cmd + SMALL.get(name, [])


@pytest.mark.slow
def test_readme_tour_runs_top_to_bottom(tmp_path, monkeypatch):
    cmds = tour_commands()
    assert [c[0] for c in cmds] == ["rnnbench"] * len(cmds)
    made = {p for c in cmds for p in c if p.endswith((".json", ".csv"))}
    assert {"base.json", "quick.json"} <= made  # compare's inputs come from the tour itself
    # the suites are the repository's, except quick.toml, which shrinks to two cases
    (tmp_path / "bench_configs").mkdir()
    for f in (ROOT / "bench_configs").glob("*.toml"):
        (tmp_path / "bench_configs" / f.name).write_text(f.read_text(encoding="utf-8"))
    (tmp_path / "bench_configs" / "quick.toml").write_text(TINY_SUITE)
    import torch

    # in this process, one command after another in one directory: starting Python and torch
    # afresh for each of 16 commands would take most of the test's time
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    threads = torch.get_num_threads()
    for cmd in cmds:
        r = runner.invoke(app, smaller(cmd)[1:])
        torch.set_num_threads(threads)  # a command's --threads must not leak into the next
        line = " ".join(cmd)
        assert not isinstance(r.exception, Exception) or isinstance(r.exception, SystemExit), (
            line, r.exception)
        if "--device" in cmd and "cuda" in cmd and not torch.cuda.is_available():
            # the tour promises one clear error without a GPU
            assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1, (line, r.stderr)
        elif cmd[1] == "compare":
            assert r.exit_code in (0, 1), (line, r.stderr)  # 1: a noisy tiny timing regressed
            assert "→" in r.stdout
        elif cmd[1] == "plot" and r.exit_code == 2 and "matplotlib" in r.stderr:
            continue
        else:
            assert r.exit_code == 0, (line, r.stdout[-2000:], r.stderr[-2000:])
