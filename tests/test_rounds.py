"""`rnnbench run --rounds R`: each round a fresh process, samples pooled (rnnbench/rounds.py).
Pooled statistics are checked against values computed by hand from the rounds' raw samples."""

from __future__ import annotations

import json
import statistics

import pytest
from typer.testing import CliRunner

from rnnbench.cli import app
from rnnbench.results import Row
from rnnbench.rounds import pool

runner = CliRunner()


def _speed(samples, *, status="ok", warnings=(), **metrics):
    m = {"time_s_median": statistics.median(samples) if samples else None,
         "samples_s": list(samples), "inner_repeats": 1, "flops": 1000.0}
    m.update(metrics)
    return Row(bench="speed", cell="gru", variant="irc", backend="eager", mode="fwd+bwd", batch=2,
               seq_len=5, input_size=4, hidden_size=4, layers=1, metrics=m, status=status,
               warnings=list(warnings), reason="" if status == "ok" else "boom")


def test_pooled_statistics_by_hand():
    a = _speed([1.0, 1.1, 1.2], reference_time_s=2e-3, others_cpu_frac=0.01, host_drift=0.02,
               busy_retries=1)
    b = _speed([3.0, 1.05, 1.15, 1.25], reference_time_s=4e-3, others_cpu_frac=0.2, host_drift=0.3,
               busy_retries=0, warnings=["busy: other processes used 20% of ..."])
    (row,) = pool([[a], [b]])
    m = row.metrics
    # all seven samples: 1.0 1.05 1.1 1.15 1.2 1.25 3.0 -> median 1.15; q25 = 1.075, q75 = 1.225
    assert m["time_s_median"] == pytest.approx(1.15)
    assert m["time_s_q25"] == pytest.approx(1.075) and m["time_s_q75"] == pytest.approx(1.225)
    assert m["time_s_min"] == 1.0 and m["n_samples"] == 7 and m["rounds"] == 2
    assert m["round_medians_s"] == [pytest.approx(1.1), pytest.approx(1.2)]
    assert m["tokens_per_s"] == pytest.approx(10 / 1.15) and m["flop_per_s"] == pytest.approx(1000 / 1.15)
    assert m["others_cpu_frac"] == 0.2 and m["host_drift"] == 0.3 and m["busy_retries"] == 1
    assert m["reference_time_s"] == pytest.approx(3e-3)
    # the pooled IQR, 0.15, is 13% of the pooled median: noisy by the pooled samples themselves
    assert row.warnings == ["noisy: IQR is 13% of the median (over 10%); is the machine busy?",
                            "round 2: busy: other processes used 20% of ..."]


def test_a_slow_process_moves_the_pooled_median_little():
    """Four rounds at ~1.0 and one stuck at 2.0: the pooled median stays near 1.0."""
    steady = [_speed([1.0 + 0.01 * i for i in range(5)]) for _ in range(4)]
    stuck = _speed([2.0 + 0.01 * i for i in range(5)])
    (row,) = pool([[r] for r in steady] + [[stuck]])
    assert row.metrics["time_s_median"] < 1.05


def test_a_failure_in_any_round_is_the_result():
    ok, bad = _speed([1.0, 1.1]), _speed([], status="failed")
    (row,) = pool([[ok], [bad]])
    assert row.status == "failed" and row.reason == "boom (round 2)"


def test_memory_rows_keep_the_first_round_and_the_largest_peak():
    mem = [Row(bench="memory", cell="gru", variant="irc", backend="eager", mode="fwd+bwd", batch=2,
               seq_len=5, input_size=4, hidden_size=4, layers=1,
               metrics={"saved_bytes": 640, "peak_rss_bytes": p}) for p in (100, 300, 200)]
    (row,) = pool([[m] for m in mem])
    assert row.metrics == {"saved_bytes": 640, "peak_rss_bytes": 300, "rounds": 3}


def test_backward_by_difference_pools_both_measurements():
    def bwd(total, part):
        return Row(bench="speed", cell="gru", variant="irc", backend="eager", mode="bwd", batch=2,
                   seq_len=5, input_size=4, hidden_size=4, layers=1,
                   metrics={"time_s_median": statistics.median(total) - statistics.median(part),
                            "samples_s_fwd_bwd": total, "samples_s_fwd_grad": part})
    (row,) = pool([[bwd([3.0, 3.2], [1.0, 1.2])], [bwd([3.4], [1.4])]])
    assert row.metrics["time_s_median"] == pytest.approx(3.2 - 1.2)
    assert row.metrics["time_s_fwd_bwd_median"] == pytest.approx(3.2)


SUITE = """
[meta]
name = "tiny"
bench = ["speed"]

[axes]
cell = ["gru"]
variant = ["baseline", "irc"]
batch = [2]
seq_len = [3]
input_equals_hidden = true
hidden_size = [4]

[settings.speed]
min_run_time = 0.01
flops = false
"""


def test_run_rounds_end_to_end(tmp_path):
    suite = tmp_path / "tiny.toml"
    suite.write_text(SUITE)
    out = tmp_path / "r.json"
    r = runner.invoke(app, ["run", str(suite), "--json", str(out), "--rounds", "2"])
    assert r.exit_code == 0, r.output
    rounds = [json.loads((tmp_path / "r.rounds" / f"round-{k}.json").read_text())["results"]
              for k in (1, 2)]
    pooled = json.loads(out.read_text())
    assert pooled["env"]["rounds"] == 2 and len(pooled["provenance"]["rounds"]) == 2
    for row in pooled["results"]:
        per_round = [next(x for x in rr if x["key"] == row["key"]) for rr in rounds]
        samples = [s for x in per_round for s in x["metrics"]["samples_s"]]
        assert row["metrics"]["n_samples"] == len(samples)
        assert row["metrics"]["time_s_median"] == pytest.approx(statistics.median(samples))
    # a second call resumes both rounds (nothing left to measure) and pools again
    r = runner.invoke(app, ["run", str(suite), "--json", str(out), "--rounds", "2", "--resume"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["run", str(suite), "--json", str(out), "--rounds", "0"])
    assert r.exit_code == 2 and "--rounds must be at least 1" in r.output
    # leftover rounds are continued only when asked: never pooled into a fresh run by accident
    out.unlink()
    r = runner.invoke(app, ["run", str(suite), "--json", str(out), "--rounds", "2"])
    assert r.exit_code == 2 and "holds rounds of an earlier run" in r.output
    # a single run's file is not resumed as rounds (its rows would be thrown away)
    single = tmp_path / "single.json"
    assert runner.invoke(app, ["run", str(suite), "--json", str(single)]).exit_code == 0
    r = runner.invoke(app, ["run", str(suite), "--json", str(single), "--rounds", "2", "--resume"])
    assert r.exit_code == 2 and "written by a run without --rounds" in r.output


def test_rates_are_dropped_when_the_pooled_backward_is_not_positive():
    def bwd(total, part, **extra):
        return Row(bench="speed", cell="gru", variant="irc", backend="eager", mode="bwd", batch=2,
                   seq_len=5, input_size=4, hidden_size=4, layers=1,
                   metrics={"time_s_median": 0.1, "tokens_per_s": 100.0, "flops": 10.0,
                            "flop_per_s": 100.0, "samples_s_fwd_bwd": total,
                            "samples_s_fwd_grad": part, **extra})
    # step and forward overlap within their noise: the pooled difference is not positive
    (row,) = pool([[bwd([1.0, 1.1], [1.05, 1.2], others_cpu_frac_fwd_bwd=0.01)],
                   [bwd([1.0], [1.1], others_cpu_frac_fwd_bwd=0.3)]])
    assert row.metrics["time_s_median"] <= 0
    assert row.metrics["tokens_per_s"] is None and row.metrics["flop_per_s"] is None
    assert row.metrics["others_cpu_frac_fwd_bwd"] == 0.3
