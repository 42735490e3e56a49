"""Shards cover a suite exactly once and balance its estimated work; `--shard auto` reads a SLURM
job array; `rnnbench merge` joins shard files back into what one run would have written, keeps
machines apart, and refuses conflicting repeats."""

import json
import random
import shutil

import pytest
from typer.testing import CliRunner

from rnnbench.cli import app
from rnnbench.errors import RnnbenchError
from rnnbench.results import read_results
from rnnbench.shard import assign, estimate_cost, parse_shard, shard_cases, shard_loads
from rnnbench.suite import load_suite, parse_suite


runner = CliRunner()
SLURM = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN",
         "SLURM_ARRAY_TASK_STEP")


def random_suite(rng: random.Random):
    def some(values, most=3):
        return rng.sample(values, rng.randint(1, min(most, len(values))))
    data = {"meta": {"bench": some(["speed", "memory"])},
            "axes": {"cell": some(["gru", "lstm", "sru", "tlstm", "fastgrnn", "pru"], 4),
                     "variant": some(["baseline", "irc", "ihc"]),
                     "mode": some(["fwd", "fwd+bwd", "bwd"], 2),
                     "dtype": some(["float32", "bfloat16"], 2),
                     "batch": some([1, 4, 16, 64], 2),
                     "seq_len": some([8, 64, 512], 2),
                     "input_equals_hidden": True,
                     "hidden_size": some([16, 64, 256, 1024]),
                     "layers": some([1, 2], 2)}}
    keys = list(data["axes"])
    rng.shuffle(keys)  # any nesting order
    data["axes"] = {k: data["axes"][k] for k in keys}
    return parse_suite(data, "random.toml").cases


@pytest.mark.parametrize("seed", range(12))
def test_shards_cover_every_case_once_and_balance(seed):
    rng = random.Random(seed)
    cases = random_suite(rng)
    keys = [c.key for c in cases]
    position = {k: i for i, k in enumerate(keys)}
    costs = {c.key: estimate_cost(c) for c in cases}
    total, biggest = sum(costs.values()), max(costs.values())
    shuffled = cases[:]
    rng.shuffle(shuffled)
    for n in range(1, 17):
        parts = [shard_cases(cases, i, n) for i in range(1, n + 1)]
        got = [c.key for part in parts for c in part]
        assert sorted(got) == sorted(keys) and len(set(got)) == len(keys)
        for part in parts:  # each shard runs its cases in suite order
            pos = [position[c.key] for c in part]
            assert pos == sorted(pos)
        loads = [sum(costs[c.key] for c in part) for part in parts]
        assert loads == shard_loads(cases, n)
        # greedy list scheduling never ends more than one case above the mean
        assert max(loads) <= total / n + biggest
        if len(cases) >= n:
            assert min(len(p) for p in parts) >= 1
        # the split depends on the set of cases, not their order in the TOML
        by_key = dict(zip(keys, assign(cases, n)))
        assert dict(zip([c.key for c in shuffled], assign(shuffled, n))) == by_key


def test_equal_cases_are_dealt_evenly():
    cases = parse_suite({"meta": {"bench": "speed"},
                         "axes": {"cell": "gru", "backend": ["eager", "compile", "fused", "triton"],
                                  "dtype": ["float32", "bfloat16", "float16"], "batch": 8,
                                  "seq_len": 8, "input_equals_hidden": True, "hidden_size": 32}}).cases
    assert len({estimate_cost(c) for c in cases}) == 1  # neither backend nor dtype is costed
    assert [len(shard_cases(cases, i, 4)) for i in range(1, 5)] == [3, 3, 3, 3]
    assert sorted(len(shard_cases(cases, i, 5)) for i in range(1, 6)) == [2, 2, 2, 3, 3]


def test_cost_grows_with_the_products_of_the_case():
    def case(**kw):
        axes = {"cell": "gru", "batch": 1, "seq_len": 1, "input_size": 12, "hidden_size": 20,
                "mode": "fwd", **kw}
        return parse_suite({"meta": {"bench": "speed"}, "axes": axes}).cases[0]
    # one more batch row costs one more pass over the weights: 2 FLOPs per parameter, and a GRU
    # layer has 3NM + 3M² + 3M parameters
    P = 3 * 12 * 20 + 3 * 20 * 20 + 3 * 20
    assert estimate_cost(case(batch=2)) - estimate_cost(case()) == 2 * P
    fwd = estimate_cost(case(batch=9)) - estimate_cost(case(batch=1))
    train = estimate_cost(case(batch=9, mode="fwd+bwd")) - estimate_cost(case(batch=1, mode="fwd+bwd"))
    assert train == 3 * fwd
    assert estimate_cost(case(seq_len=100)) > estimate_cost(case(seq_len=10))
    assert estimate_cost(case(hidden_size=40)) > estimate_cost(case())


@pytest.mark.parametrize("spec, want", [("1/1", (1, 1)), ("3/8", (3, 8)), (" 8 / 8 ", (8, 8))])
def test_shard_spec(spec, want):
    assert parse_shard(spec, environ={}) == want


@pytest.mark.parametrize("spec", ["0/4", "5/4", "3", "a/b", "", "-1/4", "1/0", "2/4/8"])
def test_bad_shard_spec(spec):
    with pytest.raises(RnnbenchError, match=r"--shard must be I/N with 1 <= I <= N"):
        parse_shard(spec, environ={})


@pytest.mark.parametrize("env, want", [
    ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0"}, (1, 4)),
    ({"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1"}, (4, 4)),
    ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"}, (4, 4)),  # no MIN: from 0
    ({"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1",
      "SLURM_ARRAY_TASK_STEP": "2"}, (4, 4)),  # --array=1-7:2
])
def test_shard_auto_reads_the_slurm_array(monkeypatch, env, want):
    for k in SLURM:
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert parse_shard("auto") == want


@pytest.mark.parametrize("env, message", [
    ({}, "SLURM_ARRAY_TASK_ID is not set"),
    ({"SLURM_ARRAY_TASK_ID": "2"}, "SLURM_ARRAY_TASK_COUNT is not set"),
    ({"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1"},
     "task 5 of an array of 4 starting at 1"),
    ({"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "4"},
     "SLURM_ARRAY_TASK_ID='x' is not an integer"),
])
def test_shard_auto_without_a_usable_array(monkeypatch, env, message):
    for k in SLURM:
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(RnnbenchError, match="--shard auto") as e:
        parse_shard("auto")
    assert message in str(e.value)


# -- through the CLI -------------------------------------------------------------------------------
N_CASES = 3 * 2 * 2 * 2 * 2 * 2  # cell × variant × batch × seq_len × size × bench = 96
SUITE = """
[meta]
name = "tiny"
bench = ["speed", "memory"]
[axes]
cell = ["gru", "lstm", "sru"]
variant = ["baseline", "ihc"]
batch = [1, 16]
seq_len = [4, 64]
input_equals_hidden = true
hidden_size = [8, 128]
"""


def cli(*args):
    return runner.invoke(app, list(map(str, args)))


def test_plan_shard_auto_and_bad_specs_through_the_cli(suite, monkeypatch):
    for k in SLURM:
        monkeypatch.delenv(k, raising=False)
    r = cli("plan", suite, "--shard", "auto")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "SLURM_ARRAY_TASK_ID" in r.stderr
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "0")
    r = cli("plan", suite, "--shard", "auto", "-q")
    n = len(shard_cases(load_suite(suite).cases, 2, 3))
    assert r.exit_code == 0 and f"{n} cases of {N_CASES} in shard 2/3" in r.stdout
    for bad in ("0/3", "x"):
        for cmd in ("plan", "run"):
            r = cli(cmd, suite, "--shard", bad)
            assert r.exit_code == 2 and r.stderr.strip() == ("rnnbench: error: --shard must be "
                                                             f"I/N with 1 <= I <= N (e.g. 3/8), "
                                                             f"or auto; got {bad!r}")


def run_shards(suite, tmp_path, n):
    paths = []
    for i in range(1, n + 1):
        p = tmp_path / f"shard{i}.json"
        r = cli("run", suite, "--shard", f"{i}/{n}", "--json", p)
        assert r.exit_code == 0, r.output
        paths.append(p)
    return paths


def test_merged_shards_equal_one_unsharded_run(dispatch, suite, tmp_path):
    whole = tmp_path / "whole.json"
    r = cli("run", suite, "--json", whole)
    assert r.exit_code == 0, r.output
    # too many rows for one line each: the summary counts statuses per cell and backend
    assert f"{N_CASES} cases by cell and backend" in r.stdout
    assert f"{N_CASES} cases: {N_CASES} ok" in r.stdout
    assert "sru/ihc" in r.stdout and load_suite(suite).cases[0].key not in r.stdout
    shards = run_shards(suite, tmp_path, 5)
    per_shard = [[r.key for r in read_results(p).results] for p in shards]
    assert sum(map(len, per_shard)) == N_CASES == len({k for s in per_shard for k in s})
    merged = tmp_path / "merged.json"
    r = cli("merge", merged, *shards)
    assert r.exit_code == 0, r.output
    want = {(row.key, row.status, json.dumps(row.metrics)) for row in read_results(whole).results}
    m = read_results(merged)
    assert {(row.key, row.status, json.dumps(row.metrics)) for row in m.results} == want
    assert len(m.results) == N_CASES
    one_env = read_results(whole).env
    assert m.env["device_name"] == one_env["device_name"] and len(m.env["machines"]) == 1
    assert {row.labels["machine"] for row in m.results} == set(m.env["machines"])
    assert [p["path"] for p in m.provenance["merged_from"]] == list(map(str, shards))


def test_identical_repeats_kept_once_and_conflicts_refused(dispatch, suite, tmp_path):
    a, b = run_shards(suite, tmp_path, 2)
    copy = tmp_path / "copy.json"
    shutil.copy(a, copy)
    r = cli("merge", tmp_path / "m.json", a, copy, b)
    n_a, n_b = len(read_results(a).results), len(read_results(b).results)
    assert r.exit_code == 0 and len(read_results(tmp_path / "m.json").results) == n_a + n_b
    assert f"{n_a} identical repeat(s) kept once" in r.stdout

    data = json.loads(copy.read_text())
    row = data["results"][3]
    row["metrics"]["time_s_median"] *= 2
    copy.write_text(json.dumps(data))
    r = cli("merge", tmp_path / "m2.json", a, copy)
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "1 conflicting result(s)" in r.stderr and row["key"] in r.stderr
    assert f"in {a} and {copy}" in r.stderr and "metrics.time_s_median" in r.stderr
    assert not (tmp_path / "m2.json").exists()


def test_rows_from_different_machines_stay_distinct(dispatch, suite, tmp_path):
    cpu = tmp_path / "cpu.json"
    assert cli("run", suite, "--json", cpu).exit_code == 0
    data = json.loads(cpu.read_text())
    data["env"] = {**data["env"], "device": "cuda", "device_name": "NVIDIA H100 80GB HBM3",
                   "gpus": [{"index": 0, "name": "NVIDIA H100 80GB HBM3"}]}
    h100 = tmp_path / "h100.json"
    h100.write_text(json.dumps(data))
    m = tmp_path / "m.json"
    r = cli("merge", m, cpu, h100)
    assert r.exit_code == 0, r.output
    merged = read_results(m)
    assert len(merged.results) == 2 * N_CASES
    assert set(merged.env["machines"]) == {read_results(cpu).env["device_name"], "NVIDIA H100 80GB HBM3"}
    assert "device_name" not in merged.env  # not one machine's any more
    assert merged.env["torch"] == read_results(cpu).env["torch"]  # what they share stays on top
    assert {r.labels["machine"] for r in merged.results if r.key == merged.results[0].key} == set(
        merged.env["machines"])
    # a merged file merges again with its machines intact, its rows repeats of the originals
    again = tmp_path / "again.json"
    r = cli("merge", again, m, h100)
    assert r.exit_code == 0 and f"{N_CASES} identical repeat(s)" in r.stdout
    assert [x.to_dict() for x in read_results(again).results] == [x.to_dict() for x in merged.results]


def test_merge_refuses_bad_inputs_and_outputs(dispatch, suite, tmp_path):
    (a,) = run_shards(suite, tmp_path, 1)
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"schema": "rnnbench.results/0", "env": {}, "results": []}))
    r = cli("merge", tmp_path / "m.json", a, old)
    assert r.exit_code == 2 and "schema 'rnnbench.results/0'" in r.stderr  # not compare's 3
    r = cli("merge", a, a)
    assert r.exit_code == 2 and "both the output and an input" in r.stderr
    r = cli("merge", tmp_path / "shard1.json", tmp_path / "missing.json")
    assert r.exit_code == 2 and "exists: --force replaces it" in r.stderr
    r = cli("merge", tmp_path / "m.csv", a)
    assert r.exit_code == 2 and "must be .json" in r.stderr
    r = cli("merge", tmp_path / "m.json", tmp_path / "missing.json")
    assert r.exit_code == 2 and "no such result file" in r.stderr
    assert not (tmp_path / "m.json").exists()
    assert cli("merge", tmp_path / "m.json", a).exit_code == 0
    assert cli("merge", tmp_path / "m.json", a, "--force").exit_code == 0


def test_an_empty_shard_still_writes_a_file(dispatch, suite, tmp_path):
    p = tmp_path / "tiny-empty.json"
    suite.write_text(suite.read_text().replace('["gru", "lstm", "sru"]', '"gru"')
                     .replace("[1, 16]", "1").replace("[4, 64]", "4").replace("[8, 128]", "8")
                     .replace('["baseline", "ihc"]', '"baseline"'))
    r = cli("run", suite, "--shard", "3/3", "--json", p)
    assert r.exit_code == 0, r.output
    assert read_results(p).results == [] and "no cases" in r.stdout
