"""Timing a target's row and its reference in alternation (rnnbench/bench/timing.py's
measure_alternating, rnnbench/bench/speed.py's measure_speed_together, the groups of
rnnbench/targets.py and the sweep): the order of the samples, the property it exists for (a slow
spell of the machine falls on both sides alike), the grouping rules, and a real run end to end."""

from __future__ import annotations

import json
import random
import textwrap

import pytest
import torch
from typer.testing import CliRunner

from rnnbench.bench.speed import SpeedSettings, measure_speed_together
from rnnbench.bench.timing import Timer
from rnnbench.case import Case
from rnnbench.cli import app
from rnnbench.errors import RnnbenchError
from rnnbench.results import ResultFile, write_outputs
from rnnbench.sweep import run_suite
from rnnbench.suite import parse_suite
from rnnbench.targets import alternation_groups, evaluate, summary

runner = CliRunner()


class FakeMachine:
    """A clock the timed functions advance: each call costs its work divided by the machine's
    speed at that moment; the machine slows to ``slow`` of its speed from ``spell`` seconds on."""

    name = "fake"

    def __init__(self, spell: float = float("inf"), slow: float = 0.5):
        self.now, self.spell, self.slow, self._t0 = 0.0, spell, slow, 0.0

    def work(self, seconds: float) -> None:
        self.now += seconds / (self.slow if self.now >= self.spell else 1.0)

    def start(self) -> None:
        self._t0 = self.now

    def stop(self) -> float:
        return self.now - self._t0


def _timer(machine, **kw):
    kw = {"min_run_time": 0.5, "sample_time": 0.01, "warmup": 1, "warmup_time": 0.0,
          "min_samples": 5, **kw}
    return Timer(clock=machine, **kw)


def test_every_round_samples_each_job_once_in_a_drawn_order():
    machine, log = FakeMachine(), []

    def job(name, cost):
        def fn():
            log.append(name)
            machine.work(cost)
        return fn

    timer = _timer(machine, min_run_time=0.2)
    stats = timer.measure_alternating([(job("a", 1e-3), None, None), (job("b", 3e-3), None, None)],
                                      random.Random(1))
    inner = [s.inner for s in stats]
    # after each job's warm-up and autorange, samples are blocks of `inner` calls, a and b in turn
    sampled = log[-(stats[0].n * inner[0] + stats[1].n * inner[1]):]
    blocks, i = [], 0
    while i < len(sampled):
        name = sampled[i]
        n = inner[0] if name == "a" else inner[1]
        assert sampled[i:i + n] == [name] * n
        blocks.append(name)
        i += n
    rounds = [blocks[k:k + 2] for k in range(0, len(blocks), 2)]
    assert all(sorted(r) == ["a", "b"] for r in rounds), rounds
    assert {tuple(r) for r in rounds} == {("a", "b"), ("b", "a")}   # the order is drawn, not fixed
    for s in stats:   # both have their time and their samples
        assert s.n >= 5 and s.measure_time_s >= 0.2
        assert s.median == pytest.approx(1e-3 if s is stats[0] else 3e-3)


def test_a_slow_spell_falls_on_both_sides_alike():
    """Two equal functions; the machine halves its speed part-way. Timed one after the other, the
    second is judged twice as slow; timed in alternation, they come out equal. This is why a
    target's ratio is measured this way."""
    def pair(machine):
        return [(lambda: machine.work(1e-3), None, None), (lambda: machine.work(1e-3), None, None)]

    m = FakeMachine(spell=0.6)
    a_then_b = [_timer(m).measure(fn) for fn, _, _ in pair(m)]
    assert a_then_b[1].median / a_then_b[0].median == pytest.approx(2.0)

    m = FakeMachine(spell=0.6)
    together = _timer(m).measure_alternating(pair(m), random.Random(0))
    assert together[1].median / together[0].median == pytest.approx(1.0)


def test_a_fast_job_beside_a_slow_one_takes_samples_as_long_and_no_extra_rounds():
    machine = FakeMachine()
    timer = _timer(machine, min_run_time=0.3)
    fast, slow = timer.measure_alternating([(lambda: machine.work(1e-3), None, None),
                                            (lambda: machine.work(40e-3), None, None)],
                                           random.Random(0))
    assert fast.inner * 1e-3 == pytest.approx(slow.inner * 40e-3, rel=0.05)
    assert fast.n == slow.n                       # one sample of each a round
    # both reach 0.3 s together: the whole takes about twice that, not forty times
    assert machine.now < 2 * 0.3 + 0.3


def test_each_job_runs_in_its_own_context_and_input_rotation():
    seen = {"fwd": set(), "train": set()}
    inputs = [torch.zeros(1), torch.ones(1)]

    def fwd(x):
        seen["fwd"].add((torch.is_inference_mode_enabled(), float(x)))

    def train(x):
        seen["train"].add((torch.is_inference_mode_enabled(), torch.is_grad_enabled(), float(x)))

    with torch.no_grad():
        Timer(min_run_time=0.01, min_samples=3, warmup_time=0.0).measure_alternating(
            [(fwd, inputs, torch.inference_mode), (train, inputs, torch.enable_grad)],
            random.Random(0))
    assert seen["fwd"] == {(True, 0.0), (True, 1.0)}
    assert seen["train"] == {(False, True, 0.0), (False, True, 1.0)}


SUITE = """
[meta]
name = "g"
bench = ["speed"]

[axes]
cell = ["gru"]
variant = ["irc"]
backend = ["eager", "fused", "fused-torch"]
mode = ["fwd", "fwd+bwd", "bwd"]
batch = [2]
seq_len = [4]
input_equals_hidden = true
hidden_size = [8]

[[target]]
name = "fused beats eager"
where = { backend = "fused" }
than = { backend = "eager" }
speedup = 1.0

[[target]]
name = "the torch loop within 3x of eager"
where = { backend = "fused-torch", mode = "fwd" }
than = { backend = "eager" }
max_slowdown = 3

[[target]]
name = "a step under 1 s"
where = { backend = "fused-torch" }
max_time_per_step_s = 1.0
"""


def _suite(text=SUITE):
    return parse_suite(__import__("tomllib").loads(text), "g.toml")


def test_groups_join_rows_that_share_a_reference_and_leave_out_what_cannot_alternate():
    s = _suite()
    groups = alternation_groups(s.targets, s.cases)
    key = {(c.backend, c.mode): c.key for c in s.cases}
    as_sets = sorted((sorted(g) for g in groups), key=len)
    # fwd+bwd: fused with eager; fwd: fused and the torch loop both against eager, so one group
    assert as_sets == sorted([sorted([key["fused", "fwd+bwd"], key["eager", "fwd+bwd"]]),
                              sorted([key["fused", "fwd"], key["eager", "fwd"],
                                      key["fused-torch", "fwd"]])], key=len)
    # bwd (two measurements subtracted) and the per-step target (no reference) stay apart
    assert not any(key["fused", "bwd"] in g or key["fused-torch", "fwd+bwd"] in g for g in groups)


def test_no_group_without_the_reference_in_the_run():
    s = _suite()
    shard = [c for c in s.cases if c.backend != "eager"]   # a shard without the references
    assert alternation_groups(s.targets, shard) == []


class _Writer:
    def __init__(self, done=()):
        from rnnbench.results import ResultFile
        self.result = ResultFile({}, {}, list(done))
        self.added = []

    def done_keys(self):
        return {r.key for r in self.result.results}

    def add(self, row):
        self.added.append(row.key)

    def close(self):
        pass


def _fake_row(case):
    return case.row(metrics={"time_s_median": 1e-3})


def test_the_sweep_measures_a_group_once_when_it_reaches_its_first_member():
    s = _suite()
    groups = alternation_groups(s.targets, s.cases)
    calls = []

    def group(cases):
        calls.append([c.key for c in cases])
        return [_fake_row(c) for c in cases]

    w = _Writer()
    report = run_suite(s.cases, writer=w, measure=_fake_row, together=groups, measure_group=group)
    assert sorted(map(sorted, calls)) == sorted(map(sorted, groups))
    assert [r.key for r in report.rows] == [c.key for c in s.cases]   # the suite's order
    assert sorted(w.added) == sorted(c.key for c in s.cases) and report.measured == len(s.cases)


def test_a_resumed_group_measures_only_its_missing_members_and_one_alone():
    s = _suite()
    groups = alternation_groups(s.targets, s.cases)
    big = max(groups, key=len)
    done = [_fake_row(c) for c in s.cases if c.key in big[:2]]   # two of the three on disk
    calls, alone = [], []

    def group(cases):
        calls.append([c.key for c in cases])
        return [_fake_row(c) for c in cases]

    def one(case):
        alone.append(case.key)
        return _fake_row(case)

    report = run_suite(s.cases, writer=_Writer(done), measure=one, together=groups,
                       measure_group=group)
    assert big[2] in alone and not any(big[2] in c for c in calls)
    assert report.resumed == 2


def test_a_group_measure_that_breaks_makes_failed_rows_and_the_sweep_goes_on():
    s = _suite()
    groups = alternation_groups(s.targets, s.cases)

    def group(cases):
        raise RuntimeError("boom")

    report = run_suite(s.cases, writer=_Writer(), measure=_fake_row, together=groups,
                       measure_group=group)
    grouped = {k for g in groups for k in g}
    for r in report.rows:
        assert (r.status == "failed" and "boom" in r.reason) == (r.key in grouped)


def _case(backend, variant="irc", mode="fwd"):
    return Case(bench="speed", cell="gru", variant=variant, backend=backend, mode=mode, batch=2,
                seq_len=4, input_size=8, hidden_size=8)


def test_measure_speed_together_goes_on_without_a_case_it_cannot_build():
    settings = SpeedSettings(min_run_time=0.02, warmup_time=0.0, flops=False, reference=False)
    cases = [_case("eager"), _case("native"), _case("fused")]   # nn.GRU has no IRC form
    rows = measure_speed_together(cases, settings)
    assert [r.key for r in rows] == [c.key for c in cases]
    ok = [r for r in rows if r.status == "ok"]
    assert [r.backend for r in ok] == ["eager", "fused"]
    assert rows[1].status != "ok" and rows[1].reason
    assert ok[0].labels["alternated"] == ok[1].labels["alternated"]
    assert all(r.metrics["alternated_cases"] == 2 and r.metrics["n_samples"] >= 5 for r in ok)


def test_a_group_that_runs_out_of_memory_while_timed_is_every_members_row(monkeypatch):
    def oom(self, jobs, rng):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")

    monkeypatch.setattr(Timer, "measure_alternating", oom)
    settings = SpeedSettings(min_run_time=0.02, warmup_time=0.0, flops=False, reference=False)
    rows = measure_speed_together([_case("eager"), _case("fused")], settings)
    assert [r.status for r in rows] == ["oom", "oom"]
    assert all("out of memory" in r.reason for r in rows)


def test_measure_speed_together_refuses_what_is_not_one_measurement():
    with pytest.raises(RnnbenchError, match="alternation"):
        measure_speed_together([_case("eager"), _case("fused", mode="bwd")])


def test_run_times_targets_in_alternation_and_targets_says_so(tmp_path):
    suite = tmp_path / "g.toml"
    suite.write_text(SUITE + textwrap.dedent("""
        [settings.speed]
        min_run_time = 0.02
        """))
    out = tmp_path / "r.json"
    r = runner.invoke(app, ["run", str(suite), "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "5 cases of the targets are timed in alternation" in r.output
    rows = {row["key"]: row for row in json.loads(out.read_text())["results"]}
    s = _suite()
    for g in alternation_groups(s.targets, s.cases):
        ids = {rows[k]["labels"].get("alternated") for k in g}
        assert len(ids) == 1 and None not in ids
        assert all(rows[k]["metrics"]["alternated_cases"] == len(g) for k in g)
    lone = [k for k, row in rows.items() if row["mode"] == "bwd"]
    assert lone and all("alternated" not in rows[k]["labels"] for k in lone)
    r = runner.invoke(app, ["targets", str(suite), str(out)])
    # the bwd ratio is the one judged on rows timed apart, and the summary counts it
    assert "1 of 4 ratio(s) from rows timed apart" in r.output, r.output


def test_the_summary_counts_ratios_judged_on_rows_timed_apart():
    from rnnbench.results import Row

    def row(backend, t, group=None):
        return Row(bench="speed", cell="gru", variant="irc", backend=backend, mode="fwd", batch=2,
                   seq_len=4, input_size=8, hidden_size=8, layers=1,
                   metrics={"time_s_median": t}, labels={"alternated": group} if group else {})

    targets = _suite().targets[:1]
    together = evaluate(targets, [row("fused", 1.0, "g1"), row("eager", 2.0, "g1")])
    assert together[0].alternated and "timed apart" not in summary(together)
    apart = evaluate(targets, [row("fused", 1.0, "g1"), row("eager", 2.0, "g2")])
    assert not apart[0].alternated and "1 of 1 ratio(s) from rows timed apart" in summary(apart)
