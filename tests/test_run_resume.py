"""`rnnbench run`: rows on disk as they finish, interruption and resume, OOM and failures recorded
while the sweep goes on. A fake measure function stands in for rnnbench.bench.dispatch: nothing is
timed here."""

import json
from dataclasses import dataclass

import pytest
import torch
from typer.testing import CliRunner

from rnnbench.cli import app
from rnnbench.errors import DeviceError
from rnnbench.results import IncrementalWriter, read_results
from rnnbench.suite import load_suite, run_suite

from sweep_helpers import FAKE_REF, fake_time, ok_row

runner = CliRunner()

SUITE = """
[meta]
name = "tiny"
bench = ["speed", "memory"]

[axes]
cell = ["gru", "sru"]
variant = ["baseline", "irc"]
batch = [1, 2]
seq_len = [4]
input_equals_hidden = true
hidden_size = [8]
"""
N_CASES = 2 * 2 * 2 * 2


def run(*args):
    return runner.invoke(app, ["run", *map(str, args)])


def disk_rows(path):
    return json.loads(path.read_text())["results"]


def test_interrupted_sweep_resumes_to_every_row_exactly_once(dispatch, suite, tmp_path):
    out = tmp_path / "r.json"
    keys = [c.key for c in load_suite(suite).cases]
    assert len(keys) == N_CASES
    stop_at = 5
    seen, on_disk = [], []

    def interrupted(case):
        # the file must be complete JSON holding every finished row whenever a case starts;
        # recorded, not asserted, because the sweep turns exceptions into failed rows
        try:
            on_disk.append([r["key"] for r in disk_rows(out)] if out.exists() else [])
        except Exception as e:
            on_disk.append(e)
        seen.append(case.key)
        if len(seen) == stop_at + 1:
            raise KeyboardInterrupt
        return ok_row(case)

    dispatch.measure = interrupted
    r = run(suite, "--json", out)
    assert r.exit_code == 130 and "interrupted" in r.stderr
    assert on_disk == [keys[:i] for i in range(stop_at + 1)]
    assert [row["key"] for row in disk_rows(out)] == keys[:stop_at]

    again = []
    dispatch.measure = lambda case: (again.append(case.key), ok_row(case))[1]
    r = run(suite, "--json", out, "--resume")
    assert r.exit_code == 0, r.output
    assert again == keys[stop_at:]  # the interrupted case and everything after it, once each
    final = read_results(out)
    assert [row.key for row in final.results] == keys
    assert all(row.metrics["time_s_median"] == fake_time(row.key) for row in final.results)
    assert final.provenance["resumed_from"]["suite"]["shard_cases"] == N_CASES
    assert final.env["reference"] == FAKE_REF  # for compare --normalize


def test_oom_and_failures_are_rows_and_the_sweep_goes_on(suite, tmp_path):
    cases = load_suite(suite).cases
    bad = {cases[1].key: "oom-row", cases[2].key: "cuda-oom", cases[3].key: "crash",
           cases[4].key: "unsupported"}

    def measure(case):
        what = bad.get(case.key)
        if what == "oom-row":  # what dispatch itself returns
            return case.row(status="oom", reason="CUDA out of memory")
        if what == "cuda-oom":  # the guard, should dispatch ever raise one
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if what == "crash":
            raise ValueError("kernel returned garbage")
        if what == "unsupported":
            return case.row(status="unsupported", reason="no kernel")
        return ok_row(case)

    w = IncrementalWriter({}, {}, json_path=tmp_path / "r.json")
    report = run_suite(cases, writer=w, measure=measure)
    statuses = [row.status for row in report.rows]
    assert statuses == ["ok", "oom", "oom", "failed", "unsupported"] + ["ok"] * (N_CASES - 5)
    assert report.rows[2].reason.startswith("OutOfMemoryError: CUDA out of memory")
    assert report.rows[3].reason == "ValueError: kernel returned garbage"
    assert len(read_results(tmp_path / "r.json").results) == N_CASES

    # a resume retries the oom and failed cases, and keeps ok and unsupported ones
    retried = []
    w2 = IncrementalWriter({}, {}, json_path=tmp_path / "r.json", resume=True)
    report = run_suite(cases, writer=w2, measure=lambda c: (retried.append(c.key), ok_row(c))[1])
    assert retried == [cases[1].key, cases[2].key, cases[3].key]
    assert report.measured == 3 and report.resumed == N_CASES - 3
    rows = read_results(tmp_path / "r.json").results
    assert sorted(r.key for r in rows) == sorted(c.key for c in cases)
    assert [r.status for r in rows].count("unsupported") == 1


def test_a_whole_run_error_from_measure_stops_the_sweep(dispatch, suite, tmp_path):
    def no_gpu(case):
        raise DeviceError("no CUDA device")
    dispatch.measure = no_gpu
    r = run(suite, "--json", tmp_path / "r.json")
    assert r.exit_code == 2 and r.stderr.strip().endswith("no CUDA device")


def test_summary_counts_and_csv(dispatch, suite, tmp_path):
    dispatch.measure = lambda c: c.row(status="oom", reason="big") if c.batch == 2 else ok_row(c)
    r = run(suite, "--json", tmp_path / "r.json", "--csv", tmp_path / "r.csv")
    assert r.exit_code == 0, r.output
    assert f"{N_CASES} cases: {N_CASES // 2} ok, {N_CASES // 2} oom" in r.stdout
    assert f"oom: {load_suite(suite).cases[-1].key}: big" in r.stderr
    csv_rows = read_results(tmp_path / "r.csv").results
    assert sorted(r.key for r in csv_rows) == sorted(c.key for c in load_suite(suite).cases)


def test_existing_output_needs_resume_or_overwrite(dispatch, suite, tmp_path):
    out = tmp_path / "r.json"
    # --resume on a file that does not exist yet just starts: job scripts can always pass it
    assert run(suite, "--json", out, "--resume").exit_code == 0
    r = run(suite, "--json", out)
    assert r.exit_code == 2 and "exists: --resume continues it, --overwrite replaces it" in r.stderr
    calls = []
    dispatch.measure = lambda c: (calls.append(c), ok_row(c))[1]
    assert run(suite, "--json", out, "--overwrite").exit_code == 0 and len(calls) == N_CASES
    assert len(read_results(out).results) == N_CASES


def test_default_path_and_resume_of_the_newest(dispatch, suite, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dispatch.measure = lambda c: (_ for _ in ()).throw(KeyboardInterrupt) if c.batch == 2 else ok_row(c)
    assert run(suite).exit_code == 130
    made = list((tmp_path / "results").glob("tiny-*.json"))
    assert len(made) == 1 and len(disk_rows(made[0])) == 2  # cases alternate bench inside batch
    dispatch.measure = ok_row
    r = run(suite, "--resume")
    assert r.exit_code == 0, r.output
    assert list((tmp_path / "results").glob("tiny-*.json")) == made
    assert len(disk_rows(made[0])) == N_CASES


def test_resume_on_another_kind_of_machine_is_refused(dispatch, suite, tmp_path):
    out = tmp_path / "r.json"
    out.write_text(json.dumps({"schema": "rnnbench.results/1", "results": [],
                               "env": {"device_name": "NVIDIA A100-SXM4-80GB", "gpus": []},
                               "provenance": {}}))
    r = run(suite, "--json", out, "--resume")
    assert r.exit_code == 2 and "was measured on 'NVIDIA A100-SXM4-80GB'" in r.stderr


def test_settings_reach_the_measure_function(dispatch, suite, tmp_path):
    @dataclass
    class Speed:
        min_run_time: float = 1.0

    got = []

    def measure(case, *, speed: Speed | None = None):
        got.append(speed)
        return ok_row(case)

    dispatch.measure = measure
    suite.write_text(suite.read_text() + "\n[settings.speed]\nmin_run_time = 0.25\n")
    assert run(suite, "--json", tmp_path / "a.json").exit_code == 0
    assert got == [Speed(0.25)] * N_CASES
    suite.write_text(suite.read_text().replace("min_run_time", "min_runtime"))
    r = run(suite, "--json", tmp_path / "b.json")
    assert r.exit_code == 2 and "[settings.speed]: unknown key 'min_runtime'" in r.stderr
    assert not (tmp_path / "b.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_suite_on_a_cpu_machine_says_so(dispatch, suite, tmp_path):
    r = run(suite, "--device", "cuda", "--json", tmp_path / "r.json")
    assert r.exit_code == 2 and "torch sees no CUDA device" in r.stderr and "--device cpu" in r.stderr
    r = run(suite, "--device", "tpu", "--json", tmp_path / "r.json")
    assert r.exit_code == 2 and "unknown device 'tpu'" in r.stderr
