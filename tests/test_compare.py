"""rnnbench compare: verdicts on synthetic result files with known changes, the exit codes, and the
Mann-Whitney U test against SciPy."""

from __future__ import annotations

import json
import math
import random

import pytest
from typer.testing import CliRunner

from rnnbench import compare as cmp
from rnnbench.cli import app
from rnnbench.results import ResultFile, Row, read_results, to_csv

runner = CliRunner()

CELLS = ("gru", "lstm", "sru")
VARIANTS = ("baseline", "irc")
SIZES = (64, 256)
SLOW_CASE = ("lstm", "irc", 256)


def speed_row(cell, variant, m, *, rng, scale=1.0, noise=0.02, n=15, device="cpu", dtype="float32",
              extra=None):
    """A timed row whose samples scatter by `noise` around a size-dependent true time."""
    true = scale * 1e-3 * (m / 64) * (1.3 if cell == "lstm" else 1.0)
    samples = [true * (1 + rng.uniform(-noise, noise)) for _ in range(n)]
    q1, q3 = cmp.quartiles(samples)
    metrics = {"time_s_median": sorted(samples)[n // 2], "time_s_iqr": q3 - q1,
               "time_s_min": min(samples), "samples_s": samples, "n_samples": n,
               "tokens_per_s": 32 * 16 / sorted(samples)[n // 2]}
    metrics.update(extra or {})
    return Row(bench="speed", cell=cell, variant=variant, backend="eager", mode="fwd+bwd",
               dtype=dtype, device=device, batch=32, seq_len=16, input_size=m, hidden_size=m,
               layers=1, metrics=metrics)


def make_file(seed, *, slow=None, slow_factor=1.2, scale=1.0, device="cpu", device_name="CPU A",
              dtype="float32", reference=1e-3, params_delta=0, saved_delta=0, peak_factor=1.0,
              noise=0.02):
    rng = random.Random(seed)
    rows = []
    for cell in CELLS:
        for variant in VARIANTS:
            rows.append(Row(bench="params", cell=cell, variant=variant, input_size=64, hidden_size=64,
                            layers=1, metrics={"params": 1000 + 10 * len(rows)
                                               + (params_delta if (cell, variant) == ("gru", "irc") else 0)}))
            for m in SIZES:
                f = slow_factor if (cell, variant, m) == slow else 1.0
                mem = {"saved_bytes": 4096 * m + (saved_delta if m == 64 else 0),
                       "peak_rss_bytes": int(2e8 * peak_factor)}
                rows.append(speed_row(cell, variant, m, rng=rng, scale=scale * f, device=device,
                                      dtype=dtype, extra=mem, noise=noise))
    env = {"device": device, "device_name": device_name}
    if reference is not None:
        env["reference"] = {"kind": "matmul-512", "time_s": reference}
    return ResultFile(env, {"argv": ["synthetic"]}, rows)


def write(tmp_path, name, rf):
    p = tmp_path / name
    p.write_text(rf.to_json() if name.endswith(".json") else to_csv(rf.results))
    return p


def run(*args):
    return runner.invoke(app, ["compare", *map(str, args)])


def flagged(report):
    return [(c.key, c.metric, c.verdict) for c in report.comparisons if c.verdict not in ("same",)]


# -- verdicts --------------------------------------------------------------------------------------
def test_a_known_slowdown_is_flagged_alone_and_exits_1(tmp_path):
    base, cur = make_file(1), make_file(2, slow=SLOW_CASE)
    report = cmp.compare_files(base, cur)
    slow_key = "speed/lstm/irc/eager/fwd+bwd/float32/B32-T16-N256-M256-L1"
    assert flagged(report) == [(slow_key, "time_s_median", "slower")]
    (c,) = report.regressions
    assert c.ratio == pytest.approx(1.2, rel=0.05)
    assert c.pvalue < 1e-4

    md = tmp_path / "report.md"
    res = run(write(tmp_path, "b.json", base), write(tmp_path, "c.json", cur), "--markdown", md)
    assert res.exit_code == 1, res.output
    assert "1 regression" in res.output
    text = md.read_text()
    assert slow_key in text.split("#### Regressions")[1].split("####")[0]


def test_a_regression_timed_on_a_busy_machine_says_so_and_still_fails():
    base, cur = make_file(1), make_file(2, slow=SLOW_CASE)
    slow_key = "speed/lstm/irc/eager/fwd+bwd/float32/B32-T16-N256-M256-L1"
    for r in cur.results:
        if r.key == slow_key:
            r.warnings.append("busy: other processes used 40% of this process's CPUs ...")
    (c,) = cmp.compare_files(base, cur).regressions
    assert c.key == slow_key and c.note.endswith("; current timed on a busy machine")
    quiet = cmp.compare_files(make_file(1), make_file(2, slow=SLOW_CASE)).regressions[0]
    assert "busy" not in quiet.note


def test_identical_files_exit_0(tmp_path):
    p = write(tmp_path, "b.json", make_file(1))
    res = run(p, p)
    assert res.exit_code == 0, res.output
    assert "no regression" in res.output


def test_noise_alone_is_not_a_regression(tmp_path):
    # 2% noise around the same times, measured twice: nothing may come out slower or faster
    res = run(write(tmp_path, "b.json", make_file(1)), write(tmp_path, "c.json", make_file(2)))
    assert res.exit_code == 0, res.output


def test_a_speedup_is_reported_but_passes():
    report = cmp.compare_files(make_file(1), make_file(2, slow=SLOW_CASE, slow_factor=0.7))
    assert [c.verdict for c in report.comparisons if c.kind == "time" and c.verdict != "same"] == ["faster"]
    assert report.regressions == []


def test_a_parameter_count_change_fails(tmp_path):
    res = run(write(tmp_path, "b.json", make_file(1)),
              write(tmp_path, "c.json", make_file(1, params_delta=-1)))
    assert res.exit_code == 1
    report = cmp.compare_files(make_file(1), make_file(1, params_delta=-1))
    assert flagged(report) == [("params/gru/irc/N64-M64-L1", "params", "changed")]


def test_saved_bytes_must_match_exactly_and_peak_memory_has_a_threshold():
    report = cmp.compare_files(make_file(1), make_file(1, saved_delta=4))
    assert {c.verdict for c in report.regressions} == {"changed"}
    assert {c.metric for c in report.regressions} == {"saved_bytes"}
    # +5% peak RSS is within the default 10%, +20% is not
    assert cmp.compare_files(make_file(1), make_file(1, peak_factor=1.05)).regressions == []
    # +20% is "more", but peak RSS gates only when asked: allocators and pages move it
    grown = cmp.compare_files(make_file(1), make_file(1, peak_factor=1.2))
    assert grown.regressions == []
    assert {c.verdict for c in grown.comparisons if c.metric == "peak_rss_bytes"} == {"more"}
    gated = cmp.compare_files(make_file(1), make_file(1, peak_factor=1.2),
                              cmp.Options(gate_memory=True)).regressions
    assert gated and {c.verdict for c in gated} == {"more"}


def test_slower_but_not_significant_is_not_a_regression():
    # 30% noise on 3 samples: a 20% slowdown cannot be told apart from chance
    base = make_file(1, noise=0.3)
    cur = make_file(2, noise=0.3, slow=SLOW_CASE)
    for rf in (base, cur):
        for r in rf.results:
            if "samples_s" in r.metrics:
                r.metrics["samples_s"] = r.metrics["samples_s"][:3]
    report = cmp.compare_files(base, cur)
    assert not [c for c in report.comparisons if c.verdict == "slower"]


def test_min_time_floor():
    opts = cmp.Options(min_time=1.0)  # every synthetic time is far below a second
    assert cmp.compare_files(make_file(1), make_file(2, slow=SLOW_CASE), opts).regressions == []


def test_time_fail_ratio_reports_without_failing(tmp_path):
    base = write(tmp_path, "b.json", make_file(1))
    slow = write(tmp_path, "c.json", make_file(2, slow=SLOW_CASE))
    res = run(base, slow, "--time-fail-ratio", "2.0")
    assert res.exit_code == 0, res.output
    assert "slower" in res.output
    very = write(tmp_path, "d.json", make_file(2, slow=SLOW_CASE, slow_factor=2.5))
    assert run(base, very, "--time-fail-ratio", "2.0").exit_code == 1


def test_time_stat_min_ignores_a_busy_machine():
    # every sample but the fastest is 50% slower, as when another job shares the CPU
    base, cur = make_file(1), make_file(1)
    row = next(r for r in cur.results if r.bench == "speed")
    fastest = min(row.metrics["samples_s"])
    row.metrics["samples_s"] = [v if v == fastest else v * 1.5 for v in row.metrics["samples_s"]]
    row.metrics["time_s_median"] *= 1.5
    by_median = cmp.compare_files(base, cur).regressions
    assert [(c.key, c.metric) for c in by_median] == [(row.key, "time_s_median")]
    assert cmp.compare_files(base, cur, cmp.Options(time_stat="min")).regressions == []


def test_a_time_that_is_not_positive_gets_no_verdict():
    # backward by difference (step - forward) can be negative within the noise
    base, cur = make_file(1), make_file(1)
    row = next(r for r in base.results if r.bench == "speed")
    row.metrics["time_s_median"] = -1e-5
    (c,) = [c for c in cmp.compare_files(base, cur).comparisons
            if c.key == row.key and c.kind == "time"]
    assert c.verdict == "same" and c.ratio is None and not c.regression


def test_csv_without_samples_uses_the_interquartile_ranges(tmp_path):
    base = write(tmp_path, "b.csv", make_file(1))
    slow = write(tmp_path, "c.csv", make_file(2, slow=SLOW_CASE))
    report = cmp.compare_files(read_results(base), read_results(slow))
    (c,) = report.regressions
    assert c.note.endswith("(IQRs apart)")
    assert run(base, slow).exit_code == 1
    # wide IQRs (30% noise) overlap even under a 20% slowdown
    wide_b = write(tmp_path, "wb.csv", make_file(1, noise=0.3))
    wide_c = write(tmp_path, "wc.csv", make_file(2, noise=0.3, slow=SLOW_CASE))
    assert run(wide_b, wide_c).exit_code == 0


def test_the_interquartile_range_comes_from_samples_quartiles_or_width():
    samples = {"time_s_median": 3.0, "samples_s": [1.0, 2.0, 3.0, 4.0, 5.0]}
    assert cmp._interval(samples, "time_s_median", 1.0) == (2.0, 4.0)
    quartiles = {"time_s_median": 3.0, "time_s_q25": 2.5, "time_s_q75": 3.9, "time_s_iqr": 1.4}
    assert cmp._interval(quartiles, "time_s_median", 2.0) == (1.25, 1.95)
    width = {"time_s_median": 3.0, "time_s_iqr": 1.0}
    assert cmp._interval(width, "time_s_median", 1.0) == (2.5, 3.5)
    assert cmp._interval({"time_s_median": 3.0}, "time_s_median", 1.0) is None


def test_rows_that_appear_disappear_or_fail():
    base = make_file(1)
    cur = make_file(1)
    dropped = cur.results.pop(1)
    cur.results.append(Row(bench="speed", cell="pru", variant="baseline", backend="eager", batch=32,
                           seq_len=16, input_size=64, hidden_size=64, layers=1,
                           metrics={"time_s_median": 1e-3}))
    cur.results[2] = Row(**{**cur.results[2].to_dict(), "metrics": {}, "status": "oom",
                            "reason": "out of memory", "key": ""})
    verdicts = {c.key: c.verdict for c in cmp.compare_files(base, cur).comparisons if c.kind == "row"}
    assert verdicts[dropped.key] == "missing"
    assert verdicts["speed/pru/baseline/eager/float32/B32-T16-N64-M64-L1"] == "new"
    assert verdicts[cur.results[2].key] == "failed"
    assert [c.verdict for c in cmp.compare_files(base, cur).regressions] == ["failed"]


def test_geometric_mean_per_backend_and_cell():
    base, cur = make_file(1, noise=0), make_file(1, noise=0, slow=SLOW_CASE)
    summary = {(s["by"], s["group"]): s for s in cmp.compare_files(base, cur).summary()}
    n = len(CELLS) * len(VARIANTS) * len(SIZES)
    assert summary[("backend", "eager")]["n"] == n
    assert summary[("backend", "eager")]["geomean_ratio"] == pytest.approx(1.2 ** (1 / n))
    assert summary[("cell", "lstm")]["geomean_ratio"] == pytest.approx(1.2 ** (1 / 4))
    assert summary[("cell", "gru")]["geomean_ratio"] == pytest.approx(1.0)


# -- comparability and normalisation ---------------------------------------------------------------
def test_different_devices_exit_3_unless_normalized(tmp_path):
    base = write(tmp_path, "b.json", make_file(1))
    # another machine, twice as slow on everything including its reference: the same code
    other = write(tmp_path, "c.json", make_file(2, scale=2.0, device_name="CPU B", reference=2e-3))
    res = run(base, other)
    assert res.exit_code == 3
    assert "different device" in res.output and "CPU A" in res.output and "CPU B" in res.output
    assert run(base, other, "--normalize").exit_code == 0
    # and a real slowdown still shows through the normalisation
    slow = write(tmp_path, "d.json", make_file(2, scale=2.0, device_name="CPU B", reference=2e-3,
                                               slow=SLOW_CASE))
    assert run(base, slow, "--normalize").exit_code == 1


def test_cpu_against_cuda_exits_3(tmp_path):
    res = run(write(tmp_path, "b.json", make_file(1)),
              write(tmp_path, "c.json", make_file(1, device="cuda", device_name="GPU")))
    assert res.exit_code == 3
    assert "cpu (CPU A)" in res.output and "cuda (GPU)" in res.output
    # normalised, the times compare; peak memory of two device kinds is not judged at all
    report = cmp.compare_files(make_file(1), make_file(1, device="cuda", peak_factor=3.0),
                               cmp.Options(normalize=True))
    assert report.regressions == []
    assert {c.verdict for c in report.comparisons if c.kind == "peak"} == {"skipped"}
    assert {c.verdict for c in report.comparisons if c.kind == "time"} == {"same"}


def test_per_row_reference_wins_over_the_file_reference():
    base = make_file(1, noise=0)
    cur = make_file(1, noise=0, scale=3.0, reference=None)
    for r in cur.results:
        if r.bench == "speed":
            r.metrics["reference_time_s"] = 3e-3
    report = cmp.compare_files(base, cur, cmp.Options(normalize=True))
    ratios = [c.ratio for c in report.comparisons if c.kind == "time"]
    assert ratios and all(r == pytest.approx(1.0) for r in ratios)


def test_normalized_minimum_uses_the_reference_minimum():
    base = make_file(1, noise=0)
    base.env["reference"]["time_s_min"] = 1e-3
    # a busy second machine: its reference median is inflated, its fastest matmul is not
    cur = make_file(2, noise=0, scale=2.0, device_name="CPU B", reference=5e-3)
    cur.env["reference"]["time_s_min"] = 2e-3
    by_min = cmp.compare_files(base, cur, cmp.Options(normalize=True, time_stat="min"))
    ratios = [c.ratio for c in by_min.comparisons if c.kind == "time"]
    assert ratios and all(r == pytest.approx(1.0) for r in ratios)
    assert {c.metric for c in by_min.comparisons if c.kind == "time"} == {"time_s_min"}
    by_median = cmp.compare_files(base, cur, cmp.Options(normalize=True))
    assert all(c.ratio == pytest.approx(0.4) for c in by_median.comparisons if c.kind == "time")


def test_normalize_without_a_reference_exits_2(tmp_path):
    res = run(write(tmp_path, "b.json", make_file(1)),
              write(tmp_path, "c.json", make_file(2, reference=None)), "--normalize")
    assert res.exit_code == 2
    assert "no reference time" in res.output


def test_params_only_files_need_no_reference_and_ignore_the_machine():
    def params_only(name):
        rf = make_file(1, reference=None, device_name=name)
        rf.results = [r for r in rf.results if r.bench == "params"]
        return rf
    for normalize in (False, True):
        report = cmp.compare_files(params_only("A"), params_only("B"), cmp.Options(normalize=normalize))
        assert report.regressions == [] and len(report.comparisons) == 6
        assert report.join_note is None


# -- files from several machines (rnnbench merge) --------------------------------------------------
def merged(*files):
    from rnnbench.shard import merge_results
    rf, _ = merge_results([(f"{i}.json", f) for i, f in enumerate(files)])
    return rf


def test_a_merged_file_is_compared_machine_by_machine(tmp_path):
    # before: one row per case survived ("the last row wins"), so machine A's slowdown was lost
    base = merged(make_file(1, device_name="CPU A"), make_file(2, device_name="CPU B"))
    cur = merged(make_file(3, device_name="CPU A", slow=SLOW_CASE), make_file(4, device_name="CPU B"))
    report = cmp.compare_files(base, cur)
    slow_key = "speed/lstm/irc/eager/fwd+bwd/float32/B32-T16-N256-M256-L1"
    assert flagged(report) == [(f"{slow_key} @ CPU A", "time_s_median", "slower")]
    timed = [c for c in report.comparisons if c.kind == "time"]
    assert len(timed) == 2 * len(CELLS) * len(VARIANTS) * len(SIZES)  # every case on each machine
    assert report.notes == [] and report.join_note is None
    # parameter counts do not depend on the machine: compared once per case, not once per machine
    assert len([c for c in report.comparisons if c.metric == "params"]) == len(CELLS) * len(VARIANTS)
    # a CSV of a merged file keeps each row's machine (label_machine)
    csv_report = cmp.compare_files(read_results(write(tmp_path, "b.csv", base)),
                                   read_results(write(tmp_path, "c.csv", cur)))
    assert flagged(csv_report) == [(f"{slow_key} @ CPU A", "time_s_median", "slower")]


def test_a_machine_only_one_file_has_is_left_out_with_a_note():
    base = merged(make_file(1, device_name="CPU A"), make_file(2, device_name="CPU B"))
    cur = make_file(3, device_name="CPU A", slow=SLOW_CASE)
    report = cmp.compare_files(base, cur)
    assert [c.verdict for c in report.regressions] == ["slower"]
    assert report.regressions[0].key.endswith("L1")  # one machine compared: no machine in the key
    assert not [c for c in report.comparisons if c.verdict == "missing"]
    assert report.notes == ["base: rows from CPU B are not compared; current has none from there"]
    assert report.join_note is None


def test_files_that_share_no_machine_are_joined_by_case_and_say_so_on_stderr(tmp_path):
    base = write(tmp_path, "b.json", make_file(1, device_name="CPU A"))
    other = write(tmp_path, "c.json", make_file(2, scale=2.0, device_name="CPU B", reference=2e-3))
    res = run(base, other, "--normalize", "--markdown", tmp_path / "r.md")
    assert res.exit_code == 0, res.output
    line = (f"rnnbench: note: {base} and {other} share no machine ({base}: CPU A; {other}: CPU B); "
            "rows are compared by case key alone")
    # and, since each side is one process, the caveat that points to `rnnbench ab`
    assert res.stderr.splitlines() == [line, f"rnnbench: note: {cmp.SINGLE_PROCESS_NOTE}"]
    assert "share no machine" not in res.stdout
    assert "share no machine" in (tmp_path / "r.md").read_text()
    # one machine against a merged file of two others: each of its rows against both
    cur = merged(make_file(2, scale=2.0, device_name="CPU B", reference=2e-3),
                 make_file(3, scale=3.0, device_name="CPU C", reference=3e-3))
    report = cmp.compare_files(make_file(1, device_name="CPU A"), cur, cmp.Options(normalize=True))
    assert report.join_note == ("base and current share no machine (base: CPU A; current: CPU B, "
                                "CPU C); rows are compared by case key alone")
    keys = {c.key for c in report.comparisons if c.kind == "time"}
    assert len(keys) == 2 * len(CELLS) * len(VARIANTS) * len(SIZES)
    assert any(k.endswith(" @ CPU A → CPU C") for k in keys) and report.regressions == []


def test_different_dtype_exits_3(tmp_path):
    res = run(write(tmp_path, "b.json", make_file(1)),
              write(tmp_path, "c.json", make_file(1, dtype="bfloat16")))
    assert res.exit_code == 3
    assert "different dtype" in res.output and "bfloat16" in res.output


def test_schema_version_mismatch_exits_3(tmp_path):
    old = json.loads(make_file(1).to_json())
    old["schema"] = "rnnbench.results/0"
    p = tmp_path / "old.json"
    p.write_text(json.dumps(old))
    res = run(p, write(tmp_path, "c.json", make_file(1)))
    assert res.exit_code == 3
    assert "schema" in res.output


def test_no_common_case_exits_3(tmp_path):
    other = make_file(1)
    for r in other.results:
        r.batch, r.key = 7, ""
        r.__post_init__()
    res = run(write(tmp_path, "b.json", make_file(1)), write(tmp_path, "c.json", other))
    assert res.exit_code == 3
    assert "share no case" in res.output


# -- bad usage -------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["--threshold", "five"], "--threshold"),
    (["--min-time", "soon"], "--min-time"),
    (["--alpha", "1.5"], "--alpha"),
    (["--time-fail-ratio", "0.5"], "--time-fail-ratio"),
    (["--time-stat", "max"], "--time-stat"),
])
def test_bad_options_exit_2_with_one_line(tmp_path, args, message):
    p = write(tmp_path, "b.json", make_file(1))
    res = run(p, p, *args)
    assert res.exit_code == 2
    assert message in res.output and len(res.output.strip().splitlines()) == 1


def test_unreadable_files_exit_2(tmp_path):
    good = write(tmp_path, "b.json", make_file(1))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    for args in ((tmp_path / "absent.json", good), (good, broken)):
        res = run(*args)
        assert res.exit_code == 2
        assert res.output.startswith("rnnbench: error:")


def test_parse_quantities():
    assert cmp.parse_percent("5%", "x") == pytest.approx(0.05)
    assert cmp.parse_percent("12.5", "x") == pytest.approx(0.125)
    assert cmp.parse_duration("10us", "x") == pytest.approx(1e-5)
    assert cmp.parse_duration("0.5ms", "x") == pytest.approx(5e-4)
    assert cmp.parse_duration("2e-3", "x") == pytest.approx(2e-3)


# -- the U test against SciPy ----------------------------------------------------------------------
def _samples(rng, n, shift, ties):
    if ties:
        return [float(rng.randint(0, 6) + shift) for _ in range(n)]
    return [rng.gauss(shift, 1.0) for _ in range(n)]


@pytest.mark.parametrize("n1, n2, ties", [(3, 4, False), (5, 8, False), (8, 20, False),
                                         (12, 15, False), (30, 25, False), (10, 10, True),
                                         (4, 6, True), (40, 40, True)])
@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_mann_whitney_matches_scipy(n1, n2, ties, alternative):
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(n1 * 100 + n2)
    for trial in range(5):
        x = _samples(rng, n1, 0.6 * trial / 4, ties)
        y = _samples(rng, n2, 0.0, ties)
        ours = cmp.mann_whitney_u(x, y, alternative)
        ref = stats.mannwhitneyu(x, y, alternative=alternative)
        assert ours.statistic == pytest.approx(float(ref.statistic))
        assert ours.pvalue == pytest.approx(float(ref.pvalue), rel=1e-9, abs=1e-12)
        for method in ("exact", "asymptotic"):
            if method == "exact" and ties:
                continue
            ref_m = stats.mannwhitneyu(x, y, alternative=alternative, method=method)
            assert cmp.mann_whitney_u(x, y, alternative, method).pvalue == pytest.approx(
                float(ref_m.pvalue), rel=1e-9, abs=1e-12)


def test_mann_whitney_by_hand():
    # x entirely above y, 3 against 3: U = 9, and only 1 of the C(6,3) = 20 orderings is as extreme
    res = cmp.mann_whitney_u([4, 5, 6], [1, 2, 3], "greater")
    assert res.statistic == 9 and res.pvalue == pytest.approx(1 / 20) and res.method == "exact"
    assert cmp.mann_whitney_u([4, 5, 6], [1, 2, 3], "two-sided").pvalue == pytest.approx(2 / 20)
    # all values equal: no evidence either way
    assert cmp.mann_whitney_u([1, 1, 1], [1, 1], "greater").pvalue == 1.0


def test_u_counts_are_the_mann_whitney_distribution():
    for m, n in ((1, 1), (2, 3), (4, 4), (5, 7)):
        counts = cmp._u_counts(m, n)
        assert sum(counts) == math.comb(m + n, m)
        assert list(counts) == list(reversed(counts))  # symmetric about mn/2


def test_reference_time_is_a_matmul_median():
    from rnnbench.bench.reference import reference_time
    ref = reference_time(min_run_time=0.01)
    assert ref["kind"] == "matmul-512" and 0 < ref["time_s_min"] <= ref["time_s"] < 5
    assert ref["samples"] >= 5


def test_peak_rss_within_its_noise_floor_is_the_same():
    """4 kB -> 238 kB and 0 B -> 28.7 kB are page noise, not growth (+5700%, +inf% before)."""
    for before, after in ((4_100, 238_000), (0, 28_700), (200_000_000, 209_000_000)):
        b, c = make_file(1), make_file(1)
        for rf, v in ((b, before), (c, after)):
            for r in rf.results:
                if "peak_rss_bytes" in r.metrics:
                    r.metrics["peak_rss_bytes"] = v
        verdicts = {x.verdict for x in cmp.compare_files(b, c, cmp.Options(gate_memory=True)).comparisons
                    if x.metric == "peak_rss_bytes"}
        assert verdicts == {"same"}, (before, after, verdicts)


def test_instruction_counts_gate_beyond_their_floor():
    b, c, d = make_file(1), make_file(1), make_file(1)
    for rf, n in ((b, 1_000_000), (c, 1_001_000), (d, 1_005_000)):
        for r in rf.results:
            r.metrics["instructions"] = n
    assert [x for x in cmp.compare_files(b, c).comparisons
            if x.metric == "instructions" and x.verdict != "same"] == []   # +0.1%
    more = [x for x in cmp.compare_files(b, d).regressions if x.metric == "instructions"]
    assert more and {x.verdict for x in more} == {"more"}                    # +0.5%
