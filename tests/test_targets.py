"""Performance targets in suites (rnnbench/targets.py, `rnnbench targets`): parsing, every verdict
computed by hand on made-up rows, the CLI's exit codes, and the shipped target suites."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rnnbench.cli import app
from rnnbench.errors import ConfigError
from rnnbench.results import ResultFile, Row, write_outputs
from rnnbench.suite import load_suite, parse_suite
from rnnbench.targets import evaluate, parse_targets

runner = CliRunner()
CONFIGS = Path(__file__).resolve().parents[1] / "bench_configs"

SUITE = """
[meta]
name = "t"
bench = ["speed"]

[axes]
cell = ["gru"]
variant = ["irc"]
backend = ["eager", "fused"]
batch = [2]
seq_len = [4]
input_equals_hidden = true
hidden_size = [8]

[[target]]
name = "fused 1.5x"
where = { backend = "fused" }
than = { backend = "eager" }
speedup = 1.5

[[target]]
name = "eager within 2x of fused"
where = { backend = "eager" }
than = { backend = "fused" }
max_slowdown = 2

[[target]]
name = "fast steps"
where = { backend = ["fused"], hidden_size = 8 }
max_time_per_step_s = 0.01
"""


def _row(backend, t, *, status="ok", warnings=(), seq_len=4):
    return Row(bench="speed", cell="gru", variant="irc", backend=backend, mode="fwd+bwd", batch=2,
               seq_len=seq_len, input_size=8, hidden_size=8, layers=1,
               metrics={"time_s_median": t} if t is not None else {}, status=status,
               warnings=list(warnings))


def _targets():
    return parse_suite(__import__("tomllib").loads(SUITE), "t.toml").targets


def test_verdicts_by_hand():
    t = _targets()
    checks = evaluate(t, [_row("eager", 0.030), _row("fused", 0.018)])
    got = {(c.target, c.verdict): c.measured for c in checks}
    assert got[("fused 1.5x", "pass")] == pytest.approx(0.030 / 0.018)       # 1.67 ≥ 1.5
    assert got[("eager within 2x of fused", "pass")] == pytest.approx(0.030 / 0.018)
    assert got[("fast steps", "pass")] == pytest.approx(0.018 / 4)            # 4.5 ms ≤ 10 ms

    checks = evaluate(t, [_row("eager", 0.030), _row("fused", 0.025)])
    assert [c.verdict for c in checks] == ["miss", "pass", "pass"]            # 1.2 < 1.5
    checks = evaluate(t, [_row("eager", 0.090), _row("fused", 0.041)])
    assert [c.verdict for c in checks] == ["pass", "miss", "miss"]            # 2.2 > 2; 10.25 ms


def test_missing_rows_references_and_failed_rows():
    t = _targets()
    checks = evaluate(t, [_row("fused", 0.01)])
    assert checks[0].verdict == "missing" and "no reference row" in checks[0].reason
    assert checks[1].verdict == "missing" and "no result row matches" in checks[1].reason
    checks = evaluate(t, [_row("eager", None, status="unsupported"), _row("fused", 0.01)])
    assert checks[0].verdict == "missing" and "reference row is unsupported" in checks[0].reason
    assert checks[1].verdict == "missing" and "the row is unsupported" in checks[1].reason


def test_busy_rows_are_marked_not_hidden():
    t = _targets()[:1]
    checks = evaluate(t, [_row("eager", 0.03, warnings=["busy: other processes used 40% ..."]),
                          _row("fused", 0.01)])
    assert checks[0].verdict == "pass" and checks[0].busy


@pytest.mark.parametrize("entry,msg", [
    ('name = "x"\nwhere = { backend = "fused" }', "exactly one of"),
    ('name = "x"\nwhere = { backend = "fused" }\nspeedup = 2', "needs than"),
    ('name = "x"\nwhere = { backend = "fused" }\nspeedup = 2\nthan = {}', "changes no field"),
    ('name = "x"\nwhere = { backend = "fused" }\nspeedup = -1\nthan = { backend = "eager" }',
     "speedup = -1: must be positive"),
    # the bounds follow the settings' rule (rnnbench/validate.py): inf and nan are no bounds
    ('name = "x"\nwhere = { backend = "fused" }\nspeedup = inf\nthan = { backend = "eager" }',
     "speedup = inf: must be a finite number > 0"),
    ('name = "x"\nwhere = { backend = "fused" }\nmax_time_per_step_s = nan', "must be a finite"),
    ('name = "x"\nwhere = { colour = "red" }\nmax_time_per_step_s = 1', "unknown case field 'colour'"),
    ('name = "x"\nwhere = { batch = "two" }\nmax_time_per_step_s = 1', "positive integer"),
    ('name = "x"\nwhere = { backend = "fused" }\nmax_time_per_step_s = 1\nthan = { backend = "eager" }',
     "than is for"),
    ('where = { backend = "fused" }\nmax_time_per_step_s = 1', "needs a name"),
    ('name = "x"\nwhere = { backend = "fused" }\nmax_time_per_step_s = 1\nspeed = 3', "unknown key"),
])
def test_bad_targets_name_the_problem(entry, msg):
    import tomllib
    raw = tomllib.loads("[[target]]\n" + entry)["target"]
    with pytest.raises(ConfigError, match=msg):
        parse_targets(raw, "s.toml")


def test_a_target_matching_no_case_is_noted():
    text = SUITE.replace('where = { backend = ["fused"], hidden_size = 8 }',
                         'where = { backend = ["fused"], hidden_size = 9 }')
    s = parse_suite(__import__("tomllib").loads(text), "t.toml")
    assert any("'fast steps' matches no speed case" in n for n in s.notes)


def test_cli_exit_codes(tmp_path):
    suite = tmp_path / "t.toml"
    suite.write_text(SUITE)
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    write_outputs(ResultFile({}, {}, [_row("eager", 0.03), _row("fused", 0.018)]), json_path=good)
    write_outputs(ResultFile({}, {}, [_row("eager", 0.03), _row("fused", 0.025)]), json_path=bad)
    r = runner.invoke(app, ["targets", str(suite), str(good)])
    assert r.exit_code == 0, r.output
    assert "3 check(s): 3 pass, 0 miss, 0 missing" in r.output
    r = runner.invoke(app, ["targets", str(suite), str(bad)])
    assert r.exit_code == 1 and "1 miss" in r.output
    r = runner.invoke(app, ["targets", str(CONFIGS / "quick.toml"), str(good)])
    assert r.exit_code == 2 and "declares no [[target]]" in r.output
    r = runner.invoke(app, ["targets", str(suite), str(tmp_path / "none.json")])
    assert r.exit_code == 2 and "no such result file" in r.output


@pytest.mark.parametrize("name", ["targets_cpu.toml", "targets_gpu.toml"])
def test_shipped_target_suites_judge_their_own_cases(name):
    s = load_suite(CONFIGS / name)
    assert s.targets
    assert not [n for n in s.notes if "matches no speed case" in n]
    # every relative target finds its reference among the suite's own cases
    keys = {c.key for c in s.cases}
    for t in s.targets:
        for c in s.cases:
            if t.matches(c.row()) and t.than:
                assert t.reference_key(c.row()) in keys, (t.name, c.key)


def test_run_then_targets_end_to_end(tmp_path):
    """A real (tiny) run: the verdicts come from measured rows; the check is that every target is
    judged (pass or miss), none left missing."""
    suite = tmp_path / "t.toml"
    suite.write_text(SUITE + textwrap.dedent("""
        [settings.speed]
        min_run_time = 0.02
        """))
    out = tmp_path / "r.json"
    r = runner.invoke(app, ["run", str(suite), "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "Targets" in r.output and "3 check(s)" in r.output   # run shows them, exit 0 regardless
    r = runner.invoke(app, ["targets", str(suite), str(out)])
    assert r.exit_code in (0, 1), r.output
    assert "0 missing" in r.output


def test_each_file_is_judged_on_its_own(tmp_path):
    """A fast row of one run must not meet a slow reference of another."""
    suite = tmp_path / "t.toml"
    suite.write_text(SUITE)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    write_outputs(ResultFile({}, {}, [_row("eager", 0.030), _row("fused", 0.018)]), json_path=a)
    write_outputs(ResultFile({}, {}, [_row("eager", 0.100), _row("fused", 0.090)]), json_path=b)
    r = runner.invoke(app, ["targets", str(suite), str(a), str(b)])
    assert "1.667×" in r.output and "1.111×" in r.output and "5.556×" not in r.output
    assert r.exit_code == 1                      # b's 1.11× misses 1.5×


def test_machines_of_a_merged_file_are_judged_apart():
    t = _targets()[:1]
    rows = [_row("eager", 0.030), _row("fused", 0.018), _row("eager", 0.100), _row("fused", 0.090)]
    for r, m in zip(rows, ["m1", "m1", "m2", "m2"]):
        r.labels["machine"] = m
    assert [round(c.measured, 3) for c in evaluate(t, rows)] == [1.667, 1.111]


def test_reference_without_the_rows_cell_options():
    """IHC rows carry gamma_input=feedback; their baseline reference takes no such option."""
    t = parse_targets([{"name": "ihc vs baseline", "where": {"variant": "ihc"},
                        "than": {"variant": "baseline"}, "max_slowdown": 2}], "s.toml")
    ihc = Row(bench="speed", cell="gru", variant="ihc", backend="eager", mode="fwd+bwd", batch=2,
              seq_len=4, input_size=8, hidden_size=8, layers=1, metrics={"time_s_median": 0.03},
              labels={"options": "gamma_input=feedback"})
    base = Row(bench="speed", cell="gru", variant="baseline", backend="eager", mode="fwd+bwd",
               batch=2, seq_len=4, input_size=8, hidden_size=8, layers=1,
               metrics={"time_s_median": 0.02})
    (c,) = evaluate(t, [ihc, base])
    assert c.verdict == "pass" and c.measured == pytest.approx(1.5)


def test_rows_missing_what_a_target_needs_are_missing_not_crashes():
    t = _targets()
    no_len = _row("fused", 0.01, seq_len=None)
    checks = evaluate(t, [_row("eager", 0.03), no_len])
    assert checks[-1].verdict == "missing" and "no sequence length" in checks[-1].reason
    no_metric = _row("fused", None)
    checks = evaluate(t, [_row("eager", 0.03), no_metric])
    assert checks[0].verdict == "missing" and "has no time_s_median" in checks[0].reason
    stringy = _row("eager", 0.03)
    stringy.warnings = "busy: other processes used 40%"
    assert evaluate(t[:1], [stringy, _row("fused", 0.01)])[0].busy


def test_per_layer_hidden_sizes_can_be_selected():
    t = parse_targets([{"name": "deep", "where": {"hidden_size": [[8, 16]]},
                        "max_time_per_step_s": 1.0}], "s.toml")
    deep = Row(bench="speed", cell="gru", variant="irc", backend="eager", mode="fwd+bwd", batch=2,
               seq_len=4, input_size=8, hidden_size=[8, 16], layers=2,
               metrics={"time_s_median": 0.4})
    assert [c.verdict for c in evaluate(t, [deep, _row("eager", 0.4)])] == ["pass"]
    with pytest.raises(ConfigError, match="metric must be a measured metric"):
        parse_targets([{"name": "x", "where": {}, "max_time_per_step_s": 1, "metric": "time_s_medain"}],
                      "s.toml")


def test_a_reference_the_suite_never_measures_is_noted():
    text = SUITE.replace('than = { backend = "eager" }', 'than = { backend = "compile" }')
    s = parse_suite(__import__("tomllib").loads(text), "t.toml")
    assert any("'fused 1.5x': no reference case in the suite" in n for n in s.notes)


def test_a_rate_target_reads_its_direction_from_the_metric_registry():
    """flop_per_s is better higher: speedup 0.8 asks for at least 0.8x the reference's rate."""
    def row(backend, rate):
        return Row(bench="speed", cell="lstm", variant="irc", form="paper", backend=backend,
                   mode="fwd", dtype="float32", device="cpu", batch=32, seq_len=128,
                   input_size=256, hidden_size=[256], layers=1,
                   metrics={"flop_per_s": rate, "time_s_median": 1.0})
    (t,) = parse_targets([{"name": "rate", "where": {"backend": "fused"},
                           "than": {"backend": "eager"}, "speedup": 0.8, "metric": "flop_per_s"}],
                         "s.toml")
    for rate, verdict in ((85.0, "pass"), (75.0, "miss")):
        (c,) = evaluate([t], [row("fused", rate), row("eager", 100.0)])
        assert c.verdict == verdict and c.measured == pytest.approx(rate / 100)
