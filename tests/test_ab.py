"""`rnnbench ab` end to end (real processes, tiny user cells), its verdict logic on synthetic result
files, and users' own cells (`--cell module:Class`) on every command."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rnnbench import ab as A
from rnnbench.results import ResultFile, Row

REPO = Path(__file__).resolve().parent.parent

CELL = '''
import torch
from torch import nn

class Cell(nn.Module):
    """h' = tanh(W x + sum of {products} equal products U h / {products})."""
    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.w = nn.Linear(input_size, hidden_size)
        self.u = nn.Parameter(torch.randn(hidden_size, hidden_size) / hidden_size ** 0.5)
    def forward(self, x, h):
        acc = self.w(x)
        for _ in range({products}):
            acc = acc + h @ self.u / {products}
        return torch.tanh(acc)
'''

SUITE = """
[meta]
name = "abtiny"
bench = ["speed"]
[axes]
cell = ["abcell:Cell"]
mode = ["fwd"]
batch = [4]
seq_len = [8]
input_equals_hidden = true
hidden_size = [32]
[settings.speed]
min_run_time = 0.15
"""


def side(tmp_path: Path, name: str, products: int) -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / "abcell.py").write_text(CELL.format(products=products))
    return d


def rnnbench(*args, cwd, env=None):
    return subprocess.run([sys.executable, "-m", "rnnbench.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, env={**os.environ, **(env or {})},
                          timeout=600)


@pytest.fixture
def job(tmp_path):
    suite = tmp_path / "abtiny.toml"
    suite.write_text(SUITE)
    return suite


# -- end to end ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_a_raises_no_false_alarm_and_writes_every_output(tmp_path, job):
    """Identical code on both sides, both modes a user cell can take: exit 0, no regression."""
    same = side(tmp_path, "same", 4)
    for mode, rounds in (("alternate", 6), ("processes", 5)):
        out = tmp_path / mode
        res = rnnbench("ab", job, "--base", same, "--head", same, "--rounds", rounds, "--seed", 7,
                       "--mode", mode, "--json", out.with_suffix(".json"), "--markdown",
                       out.with_suffix(".md"), "--csv", out.with_suffix(".csv"), cwd=tmp_path)
        assert res.returncode == 0, res.stdout + res.stderr
        data = json.loads(out.with_suffix(".json").read_text())
        assert data["regressions"] == 0
        timed = [v for v in data["verdicts"] if v["comparison"] == "statistical"]
        assert len(timed) == 1 and timed[0]["rounds"] == rounds
        assert timed[0]["low"] <= timed[0]["ratio"] <= timed[0]["high"]
        # the order used is in the file, drawn from the seed
        assert data["plan"]["schedule"] == A.make_schedule(rounds, 7, data["plan"]["cpus"],
                                                           mode == "duet")
        assert "no regression" in out.with_suffix(".md").read_text()
        assert "round" in res.stderr  # progress: which round and side
        # every process left an ordinary result file
        assert len(list(Path(data["plan"]["workdir"]).glob("round-*-base.json"))) == rounds


@pytest.mark.slow
def test_a_gross_plant_is_caught(tmp_path, job):
    """Four times the recurrent work on the head: a regression, exit 1."""
    res = rnnbench("ab", job, "--base", side(tmp_path, "base", 2), "--head",
                   side(tmp_path, "head", 8), "--rounds", 6, "--json", tmp_path / "ab.json",
                   cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    slower = [v for v in json.loads((tmp_path / "ab.json").read_text())["verdicts"]
              if v["verdict"] == "slower"]
    assert len(slower) == 1 and slower[0]["regression"] and slower[0]["low"] > 1.02


@pytest.mark.parametrize("args, says", [
    (["--rounds", "1"], "--rounds must be at least 2"),
    (["--rounds", "3"], "use at least --rounds 5"),
    (["--base", "nowhere"], "--base nowhere: not a folder"),
    (["--alpha", "nan"], "--alpha must be between 0 and 1"),
    (["--mode", "sideways"], "--mode must be one of"),
    (["--threshold", "-3%"], "--threshold must be a percentage"),
])
def test_bad_settings_are_one_line_and_exit_2(tmp_path, job, args, says):
    same = side(tmp_path, "same", 1)
    base = ["--base", same] if "--base" not in args else []
    res = rnnbench("ab", job, *base, "--head", same, *args, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], res.stderr
    assert not (tmp_path / "results").exists()  # nothing measured, nothing written


def test_an_output_aimed_at_the_suite_is_refused(tmp_path, job):
    same = side(tmp_path, "same", 1)
    before = job.read_bytes()
    res = rnnbench("ab", job, "--base", same, "--head", same, "--markdown", job, cwd=tmp_path)
    assert res.returncode == 2 and "input of this command" in res.stderr
    assert job.read_bytes() == before


def test_instructions_without_valgrind_say_how_to_install(tmp_path, job):
    same = side(tmp_path, "same", 1)
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "python3").symlink_to(sys.executable)
    res = rnnbench("ab", job, "--base", same, "--head", same, "--instructions", cwd=tmp_path,
                   env={"PATH": str(bare)})
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "rnnbench: error: valgrind is not installed; on Debian or Ubuntu: apt-get install valgrind "
        "(instruction counts need callgrind)"]


@pytest.mark.slow
@pytest.mark.skipif(not __import__("shutil").which("valgrind"), reason="needs valgrind")
def test_instruction_counts_repeat_and_see_a_small_plant(tmp_path):
    """As `ab --instructions` counts: one valgrind process per side, each side's folder at a path of
    the same length. Two copies of the same code count alike within 0.1%; one product more in 40
    (a few tenths of a percent of the step) is seen."""
    from concurrent.futures import ThreadPoolExecutor

    from rnnbench.bench import instructions
    from rnnbench.case import Case
    sides = {}
    for name, k in (("same_a", 40), ("same_b", 40), ("plus_1", 41)):
        sides[name] = tmp_path / name
        sides[name].mkdir()
        (sides[name] / "abcell.py").write_text(CELL.format(products=k))
    case = Case(bench="speed", cell="abcell:Cell", mode="fwd", batch=4, seq_len=4, input_size=16,
                hidden_size=16)
    with ThreadPoolExecutor(3) as pool:
        jobs = {name: pool.submit(instructions.count, [case], path_first=folder,
                                  workdir=tmp_path / f"work-{name}") for name, folder in sides.items()}
        a, b, c = (jobs[name].result()[case.key] for name in ("same_a", "same_b", "plus_1"))
    assert abs(b / a - 1) < 0.001
    assert c / a - 1 > 0.002


# -- the verdicts, on synthetic result files -------------------------------------------------------
def _row(median=None, cell="gru", **metrics) -> Row:
    m = dict(metrics)
    if median is not None:
        m.update(time_s_median=median, reference_time_s=1.0)
    return Row(bench="speed" if median is not None else "memory", cell=cell, variant="irc",
               form="paper", backend="eager", mode="fwd", dtype="float32", device="cpu", batch=1,
               seq_len=1, input_size=1, hidden_size=[1], layers=1, metrics=m)


def _files(values: list[float], **metrics) -> list[ResultFile]:
    return [ResultFile({}, {}, [_row(v), _row(**metrics)]) for v in values]


def test_judge_pairs_rounds_and_cancels_drift():
    base = [1.0, 2.0, 1.5, 3.0, 1.2, 2.2, 1.1, 2.8]          # the machine's speed wanders 3x
    files = {"base": _files(base, saved_bytes=100), "head": _files([1.08 * b for b in base],
                                                                  saved_bytes=100)}
    (timed,) = [v for v in A.judge(files, A.Options()) if v.comparison == "statistical"]
    assert timed.ratio == pytest.approx(1.08) and timed.verdict == "slower" and timed.regression


def test_judge_flags_exact_changes_and_keeps_rss_within_its_floor():
    files = {"base": _files([1.0] * 6, saved_bytes=100, peak_rss_bytes=4_100),
             "head": _files([1.0] * 6, saved_bytes=104, peak_rss_bytes=238_000)}
    by_metric = {v.metric: v for v in A.judge(files, A.Options())}
    assert by_metric["saved_bytes"].verdict == "changed" and by_metric["saved_bytes"].regression
    assert by_metric["peak_rss_bytes"].verdict == "same"
    assert by_metric["time_s_median (normalised)"].verdict == "same"


def test_holm_spreads_alpha_over_the_timed_cases():
    # one case 5% slower in every one of 6 rounds gives p = 1/64 alone; among 4 cases Holm needs
    # p <= 0.05/4, so it is reported but does not fail the job
    def files(slowdown):
        return [ResultFile({}, {}, [_row((1 + r / 100) * (slowdown if i == 0 else 1.0), cell=f"c{i}")
                                    for i in range(4)]) for r in range(6)]
    verdicts = A.judge({"base": files(1.0), "head": files(1.05)}, A.Options(threshold=0.0))
    (slow,) = [v for v in verdicts if v.cell == "c0"]
    assert slow.p == pytest.approx(1 / 64) and slow.verdict == "unsure" and not slow.regression
    assert "not significant after Holm over 4 cases" in slow.note
    # alone, the same evidence fails the job
    (alone,) = A.judge({"base": [ResultFile({}, {}, f.results[:1]) for f in files(1.0)],
                        "head": [ResultFile({}, {}, f.results[:1]) for f in files(1.05)]},
                       A.Options(threshold=0.0))
    assert alone.regression


def test_the_alternating_process_finds_this_rnnbench_after_the_sides(tmp_path, monkeypatch):
    """Neither side holds an rnnbench in alternate mode: the child runs the parent's, whose root
    goes last on its path, so a checkout used without `pip install -e` (the package found only
    through the working directory) works too; the sides are put on the path by the child itself."""
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "elsewhere"))
    plan = A.Plan(suite=tmp_path / "s.toml", base=side(tmp_path, "b", 1), head=side(tmp_path, "h", 1),
                  workdir=tmp_path / "work")
    paths = A.alternate_env(plan)["PYTHONPATH"].split(os.pathsep)
    assert paths[-1] == str(REPO)
    assert str(tmp_path / "elsewhere") in paths
    assert not any(p.endswith(("sides/base", "sides/head")) for p in paths)


def test_schedule_is_random_but_reproducible():
    a = A.make_schedule(20, 3, [1], False)
    assert a == A.make_schedule(20, 3, [1], False) and a != A.make_schedule(20, 4, [1], False)
    firsts = [e["order"][0] for e in a]
    assert 0 < firsts.count("base") < 20  # both sides go first sometimes
    duet = A.make_schedule(10, 3, [0, 1], True)
    assert all(sorted(e["cpus"]["base"] + e["cpus"]["head"]) == [0, 1] for e in duet)


# -- users' own cells --------------------------------------------------------------------------------
def test_a_user_cell_runs_on_every_command(tmp_path):
    (tmp_path / "mycells.py").write_text(textwrap.dedent('''
        import torch
        from torch import nn

        class Elman(nn.Module):
            def __init__(self, input_size, hidden_size):
                super().__init__()
                self.w = nn.Linear(input_size, hidden_size)
                self.u = nn.Linear(hidden_size, hidden_size, bias=False)
            def forward(self, x, h):
                return torch.tanh(self.w(x) + self.u(h))

        class WithCellState(nn.Module):
            def __init__(self, input_size, hidden_size):
                super().__init__()
                self.w = nn.Linear(input_size + hidden_size, 2 * hidden_size)
                self.m = hidden_size
            def init_state(self, batch, device, dtype):
                return (torch.zeros(batch, self.m, device=device, dtype=dtype),
                        torch.ones(batch, self.m, device=device, dtype=dtype))
            def forward(self, x, state):
                h, c = state
                a, b = self.w(torch.cat([x, h], 1)).chunk(2, 1)
                c = c * torch.sigmoid(a)
                return torch.tanh(c + b), c
    '''))
    res = rnnbench("params", "--cell", "mycells:Elman", "-N", 8, "-M", 16, "--json",
                   tmp_path / "p.json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    (row,) = json.loads((tmp_path / "p.json").read_text())["results"]
    assert row["metrics"]["params"] == 8 * 16 + 16 + 16 * 16  # counted from the module
    for cell in ("mycells:Elman", "mycells:WithCellState"):
        res = rnnbench("speed", "--cell", cell, "-N", 8, "-M", 16, "-B", 2, "-T", 5,
                       "--min-run-time", "0.02", "--mode", "fwd+bwd", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        res = rnnbench("memory", "--cell", cell, "-N", 8, "-M", 16, "-B", 2, "-T", 5, "--no-rss",
                       cwd=tmp_path)
        assert res.returncode == 0, res.stderr


def test_the_eager_runner_steps_a_user_cell_as_a_plain_loop_would(tmp_path, monkeypatch):
    import torch

    from rnnbench.cells.registry import get
    from rnnbench.runner import RecurrentStack
    (tmp_path / "loopcell.py").write_text(CELL.format(products=3))
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = get("loopcell:Cell")
    torch.manual_seed(0)
    stack = RecurrentStack(spec, 5, 7)
    x = torch.randn(6, 3, 5)
    out, _ = stack(x)
    user = stack.layers[0].user
    h = torch.zeros(3, 7)
    for t in range(6):
        h = torch.tanh(x[t] @ user.w.weight.T + user.w.bias + 3 * (h @ user.u) / 3)
        assert torch.allclose(out[t], h, atol=1e-6)


@pytest.mark.parametrize("source, cell, says", [
    (None, "nomodule:Cell", "cannot import 'nomodule'"),
    ("X = 1\n", "badcells:Missing", "has no 'Missing'"),
    ("class NotModule:\n    pass\n", "badcells:NotModule", "not a torch.nn.Module subclass"),
    ("import torch\nclass Wrong(torch.nn.Module):\n    def __init__(self, n, m):\n"
     "        super().__init__()\n    def forward(self, x, h):\n        return x\n",
     "badcells:Wrong", "must have shape (batch, hidden_size)"),
    ("raise RuntimeError('boom')\n", "badcells:Any", "importing 'badcells' failed: RuntimeError: boom"),
    (None, "not a cell:name", "package.module:Class"),
])
def test_a_broken_user_cell_is_one_line_and_exit_2(tmp_path, source, cell, says):
    if source:
        (tmp_path / "badcells.py").write_text(source)
    res = rnnbench("speed", "--cell", cell, "-N", 4, "-M", 4, cwd=tmp_path)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], res.stderr


def test_a_user_cell_in_a_suite(tmp_path, job):
    side(tmp_path, "cells", 2)
    res = rnnbench("run", job, "--json", tmp_path / "r.json", cwd=tmp_path,
                   env={"PYTHONPATH": str(tmp_path / "cells")})
    assert res.returncode == 0, res.stderr
    (row,) = json.loads((tmp_path / "r.json").read_text())["results"]
    assert row["cell"] == "abcell:Cell" and row["status"] == "ok"
    bad = tmp_path / "bad.toml"
    bad.write_text(SUITE.replace("abcell:Cell", "abcell:Nope"))
    res = rnnbench("plan", bad, cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / "cells")})
    assert res.returncode == 2 and "has no 'Nope'" in res.stderr


def test_a_noisy_job_says_unsure_instead_of_same():
    """Rounds scattered by ±20% cannot rule out a 5% slowdown: the verdict says so (exit 0)."""
    base = [1.0] * 10
    head = [1.2, 0.8, 1.15, 0.85, 1.1, 0.9, 1.2, 0.82, 1.05, 0.95]
    files = {"base": _files(base), "head": [ResultFile({}, {}, [_row(h)]) for h in head]}
    (timed,) = [v for v in A.judge(files, A.Options()) if v.comparison == "statistical"]
    assert timed.verdict == "unsure" and not timed.regression and timed.high > 1.05
    steady = {"base": _files(base), "head": [ResultFile({}, {}, [_row(1.0 + d)])
                                             for d in (0.004, -0.003, 0.002, -0.001, 0.0)] * 2}
    (quiet,) = [v for v in A.judge(steady, A.Options()) if v.comparison == "statistical"]
    assert quiet.verdict == "same"
