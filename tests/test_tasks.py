"""`rnnbench task`: the data generators, matched sizes, training, determinism, the CLI and suites."""

import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from rnnbench.cells.registry import get, select
from rnnbench.cli import app
from rnnbench.errors import RnnbenchError
from rnnbench.results import read_results
from rnnbench.tasks import (ADDING_TRIVIAL_MSE, TaskModel, TaskSpec, TrainConfig, adding_batch,
                            load_suite, match_hidden_size, plan_runs, recurrent_params,
                            symbol_batch, train)
from rnnbench.tasks.data import generator
from rnnbench.tasks.train import execute, relabel

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(autouse=True)
def _one_thread():
    # as the command runs (its --threads default): two threads on a busy 2-core machine are slower
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# -- the adding problem ---------------------------------------------------------------------------
@pytest.mark.parametrize("T", [2, 7, 100])
def test_adding_has_exactly_one_marker_in_each_half(T):
    x, y = adding_batch(T, 500, gen())
    assert x.shape == (T, 500, 2) and y.shape == (500,)
    u, m = x[..., 0], x[..., 1]
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    half = T // 2
    assert (m[:half].sum(0) == 1).all() and (m[half:].sum(0) == 1).all()
    assert ((u >= 0) & (u < 1)).all()
    # the target read independently from the marked positions
    for b in range(0, 500, 37):
        marked = [t for t in range(T) if m[t, b] == 1]
        assert len(marked) == 2 and marked[0] < half <= marked[1]
        assert y[b].item() == pytest.approx(u[marked[0], b].item() + u[marked[1], b].item())


def test_adding_markers_cover_both_halves():
    # not always the same two places: every position of each half is drawn
    x, _ = adding_batch(10, 2000, gen(3))
    assert (x[..., 1].sum(1) > 0).all()


def test_predicting_one_scores_a_sixth_on_generated_data():
    _, y = adding_batch(20, 40000, gen(1))
    # (U1 + U2 - 1)^2 has standard deviation sqrt(7/180) ≈ 0.197; 40000 samples give ±0.001
    assert ((y - 1) ** 2).mean().item() == pytest.approx(1 / 6, abs=0.005)
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)  # so 1 is the best constant
    assert ADDING_TRIVIAL_MSE == pytest.approx(1 / 6)


# -- memorisation and copy ------------------------------------------------------------------------
@pytest.mark.parametrize("interfering", [True, False])
def test_symbol_sequences_show_targets_filler_then_go(interfering):
    K, L, A, B = 4, 9, 6, 300
    x, want = symbol_batch(K, L, A, B, gen(2), interfering=interfering)
    assert x.shape == (2 * K + L, B, A + 2) and want.shape == (K, B)
    assert (x.sum(-1) == 1).all()  # one-hot at every step
    sym = x.argmax(-1)
    assert torch.equal(sym[:K], want)
    assert ((want >= 0) & (want < A)).all()
    blank, go = A, A + 1
    assert (sym[K + L:] == go).all()
    middle = sym[K:K + L]
    if interfering:
        assert (middle < A).all()                       # symbols from the alphabet, never blank
        assert len(middle.unique()) == A                # and all of it, not one fixed symbol
    else:
        assert (middle == blank).all()


def test_task_sizes_and_scores():
    mem = TaskSpec.make("memorisation", targets=3, interfere=10, alphabet=5)
    assert mem.name == "memorization" and mem.total_len == 16 and mem.input_size == 7
    assert mem.output_size == 5 and mem.trivial == pytest.approx(0.2) and not mem.lower_is_better
    add = TaskSpec.make("adding", seq_len=30)
    assert add.total_len == 30 and add.input_size == 2 and add.metric == "val_mse"
    assert add.solved(0.009) and not add.solved(0.011)


@pytest.mark.parametrize("bad", [dict(name="adding", seq_len=1), dict(name="copy", alphabet=1),
                                 dict(name="copy", targets=0), dict(name="sorting")])
def test_bad_task_sizes_are_user_errors(bad):
    with pytest.raises(RnnbenchError):
        TaskSpec.make(**bad)


def test_data_streams_are_fixed_by_the_seed_and_differ_between_streams():
    a = adding_batch(10, 8, generator(5, "train"))
    b = adding_batch(10, 8, generator(5, "train"))
    c = adding_batch(10, 8, generator(5, "validation"))
    d = adding_batch(10, 8, generator(6, "train"))
    assert torch.equal(a[0], b[0])
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[0], d[0])


# -- the model and matched sizes ------------------------------------------------------------------
def test_only_cells_that_need_n_equal_m_get_an_input_projection():
    task = TaskSpec.make("adding")
    gru = TaskModel(get("gru"), task, [16])
    assert gru.projection is None
    c = gru.param_counts()
    # cells.md: GRU 3NM + 3M² + 3M at N = 2, M = 16; readout 16 → 1 with a bias
    assert c["params_recurrent"] == 3 * 2 * 16 + 3 * 16 ** 2 + 3 * 16
    assert c["params_readout"] == 17 and c["params_projection"] == 0
    assert c["params"] == c["params_recurrent"] + 17
    sru = TaskModel(get("sru", "irc"), task, [16])
    c = sru.param_counts()
    # IRC-SRU runs at N = M = 16 behind a learned 2 → 16 projection: 3NM + 2N, and 2·16 + 16
    assert c["params_recurrent"] == 3 * 16 * 16 + 2 * 16
    assert c["params_projection"] == 2 * 16 + 16
    assert c["params"] == c["params_recurrent"] + c["params_projection"] + 17
    y = sru(adding_batch(5, 3, gen())[0])
    assert y.shape == (3,)


def test_recurrent_params_follow_the_papers_counts():
    # written out from cells.md: IRC-GRU 4NM + N; T-LSTM 6NM + 3M; square SRU 3M² + 4M (N = M)
    assert recurrent_params(get("gru", "irc"), 2, 50) == 4 * 2 * 50 + 2
    assert recurrent_params(get("tlstm"), 10, 7) == 6 * 10 * 7 + 3 * 7
    assert recurrent_params(get("sru"), 2, 20) == 3 * 20 * 20 + 4 * 20
    assert recurrent_params(get("gru"), 2, 8, layers=2) == (3 * 2 * 8 + 3 * 64 + 24) + (3 * 64 * 2 + 24)


def test_match_hidden_size_picks_the_closest_count():
    target = 3 * 2 * 64 + 3 * 64 ** 2 + 3 * 64          # GRU, N = 2, M = 64: 12,864
    assert match_hidden_size(get("gru"), 2, target) == 64
    # IRC-GRU 8M + 2: M = 1608 gives 12,866 (off 2), 1607 gives 12,858 (off 6)
    assert match_hidden_size(get("gru", "irc"), 2, target) == 1608
    # SRU at N = M, 3M² + 4M: 65 gives 12,935 (off 71), 64 gives 12,544 (off 320)
    assert match_hidden_size(get("sru"), 2, target) == 65
    # LSTM 4NM + 4M² + 4M = 4M² + 12M: brute force over M from the formula
    best = min(range(1, 200), key=lambda m: (abs(4 * m * m + 12 * m - target), m))
    assert match_hidden_size(get("lstm"), 2, target) == best


def test_matched_params_plan_labels_the_reference_and_the_gap():
    task = TaskSpec.make("adding", seq_len=10)
    runs = plan_runs(select(["gru", "lstm"], ["baseline", "irc"]), task, [32], TrainConfig(),
                     matched_params=True, reference=get("gru"))
    target = 3 * 2 * 32 + 3 * 32 ** 2 + 3 * 32
    by = {r.spec.name: r for r in runs}
    assert by["gru"].hidden_sizes == (32,)
    assert by["gru/irc"].hidden_sizes == (round((target - 2) / 8),)
    for r in runs:
        lab = dict(r.labels)
        assert lab["matched"] == "params" and lab["reference_params"] == str(target)
        got = recurrent_params(r.spec, 2, r.hidden_sizes[0])
        off = 100 * (got - target) / target
        assert float(lab["matched_off_pct"]) == pytest.approx(off, abs=0.01)
        assert abs(got - target) / target < 0.05


# -- training -------------------------------------------------------------------------------------
def test_a_small_gru_beats_the_trivial_adding_baseline():
    task = TaskSpec.make("adding", seq_len=20)
    cfg = TrainConfig(steps=250, batch=32, lr=1e-2, eval_every=50, val_size=500, seed=0)
    res = train(get("gru"), task, [16], cfg)
    assert res.curve_step == [0, 50, 100, 150, 200, 250]
    assert res.curve_value[0] > ADDING_TRIVIAL_MSE       # it starts above the line...
    assert res.final < 0.5 * ADDING_TRIVIAL_MSE           # ...and ends well below it
    assert len(res.step_times) == 250 and all(t > 0 for t in res.step_times)


def test_a_small_gru_learns_to_copy_above_chance():
    task = TaskSpec.make("copy", targets=2, interfere=3, alphabet=4)
    res = train(get("gru"), task, [24], TrainConfig(steps=200, lr=1e-2, eval_every=100,
                                                    val_size=400, seed=1))
    assert abs(res.curve_value[0] - 0.25) < 0.15         # chance is 1/alphabet
    assert res.final > 0.6


def test_same_seed_same_result_and_another_seed_differs():
    task = TaskSpec.make("adding", seq_len=12)
    torch.manual_seed(123)  # the global RNG must not matter: every stream comes from the seed
    cfg = TrainConfig(steps=30, eval_every=10, val_size=100, seed=7)
    a = train(get("lstm", "irc"), task, [8], cfg)
    torch.manual_seed(456)
    b = train(get("lstm", "irc"), task, [8], cfg)
    c = train(get("lstm", "irc"), task, [8], TrainConfig(steps=30, eval_every=10, val_size=100, seed=8))
    assert a.curve_value == b.curve_value and a.train_loss_last == b.train_loss_last
    assert a.curve_value != c.curve_value


def test_native_backend_trains_torch_gru_from_the_same_start_as_eager():
    # torch.nn.GRU holding the canonical GRU's weights computes the same function, so the two
    # curves agree until rounding differences grow; their recurrent counts are torch's 3NM+3M²+6M
    task = TaskSpec.make("adding", seq_len=15)
    cfg = TrainConfig(steps=20, eval_every=10, val_size=200, seed=3)
    spec = get("gru", "baseline", "canonical")
    eager = train(spec, task, [12], cfg)
    native = train(spec, task, [12], cfg, backend="native")
    assert native.counts["params_recurrent"] == eager.counts["params_recurrent"] == 3 * 2 * 12 + 3 * 144 + 72
    assert native.curve_value == pytest.approx(eager.curve_value, rel=1e-3)
    assert native.curve_value[0] == pytest.approx(eager.curve_value[0], rel=1e-5)


def test_a_backend_that_cannot_run_a_cell_gives_an_unsupported_row(tmp_path):
    j = tmp_path / "u.json"
    r = run("task", "adding", "-T", 5, "-M", 4, "--steps", 2, "--val-size", 10, "--cell", "sru,gru",
            "--form", "canonical", "--backend", "native", "--json", j)
    assert r.exit_code == 0, r.output
    rows = {x.cell: x for x in read_results(j).results}
    assert rows["sru"].status == "unsupported" and "native" in rows["sru"].reason
    assert rows["gru"].status == "ok" and rows["gru"].backend == "native"


def test_stop_when_solved_stops_at_the_first_point_past_the_line():
    task = TaskSpec.make("copy", targets=1, interfere=0, alphabet=2)
    res = train(get("gru"), task, [16], TrainConfig(steps=400, lr=2e-2, eval_every=20, val_size=200,
                                                    stop_when_solved=True))
    assert res.solved_step is not None and res.solved_step < 400
    assert res.curve_step[-1] == res.solved_step == res.steps_done
    assert res.final >= 0.99 and all(v < 0.99 for v in res.curve_value[:-1])


def test_a_reused_row_keeps_the_numbers_and_takes_the_new_labels():
    task = TaskSpec.make("adding", seq_len=5)
    cfg = TrainConfig(steps=3, eval_every=3, val_size=20)
    hidden, = plan_runs([get("gru")], task, [4], cfg, group="g")
    matched, = plan_runs([get("gru")], task, [4], cfg, matched_params=True, reference=get("gru"),
                         group="g")
    assert hidden.identity == matched.identity
    row = execute(hidden)
    again = relabel(row, matched)
    assert again.metrics == row.metrics and again.key != row.key
    assert again.labels["matched"] == "params" and row.labels["matched"] == "hidden"


# -- the command ----------------------------------------------------------------------------------
def test_cli_writes_curves_and_the_metric_name_in_the_shared_schema(tmp_path):
    j, c = tmp_path / "t.json", tmp_path / "t.csv"
    r = run("task", "adding", "-T", 10, "-M", 8, "--steps", 20, "--eval-every", 10, "--val-size", 50,
            "--cell", "gru,sru", "--variant", "baseline,irc", "--json", j, "--csv", c)
    assert r.exit_code == 0, r.output
    assert "0.1667" in r.output and "line to beat" in r.output
    data = json.loads(j.read_text())
    assert data["schema"] == "rnnbench.results/1" and data["env"]["threads"] == 1
    rows = read_results(j).results
    assert [(x.cell, x.variant) for x in rows] == [("gru", "baseline"), ("gru", "irc"),
                                                   ("sru", "baseline"), ("sru", "irc")]
    for row in rows:
        m = row.metrics
        assert row.bench == "task" and row.seq_len == 10 and row.input_size == 2
        assert row.labels["metric"] == "val_mse" and "metric_name" not in m
        assert m["curve_step"] == [0, 10, 20] and all(isinstance(s, int) for s in m["curve_step"])
        assert len(m["curve_value"]) == 3 and all(isinstance(v, float) for v in m["curve_value"])
        assert m["val_final"] == m["curve_value"][-1] and m["val_best"] == min(m["curve_value"])
        assert m["steps"] == 20 and m["step_time_s_median"] > 0
        assert m["params"] == m["params_recurrent"] + m["params_projection"] + m["params_readout"]
        assert ("input_projection" in row.labels) == (row.cell == "sru")
    from_csv = {x.key: x.metrics["val_final"] for x in read_results(c).results}
    assert from_csv == {x.key: x.metrics["val_final"] for x in rows}


def test_cli_memorization_reports_accuracy(tmp_path):
    j = tmp_path / "m.json"
    r = run("task", "memorisation", "-K", 2, "--interfere", 3, "-A", 4, "-M", 8, "--steps", 5,
            "--eval-every", 5, "--val-size", 40, "--json", j)
    assert r.exit_code == 0, r.output
    row, = read_results(j).results
    assert row.labels["metric"] == "val_accuracy" and row.labels["better"] == "higher"
    assert row.seq_len == 2 + 3 + 2 and row.input_size == 6
    assert 0 <= row.metrics["val_final"] <= 1 and row.metrics["trivial"] == 0.25


@pytest.mark.parametrize("args", [
    ["task", "sorting"],
    ["task"],
    ["task", "adding", "--targets", "3"],
    ["task", "copy", "-T", "50"],
    ["task", "adding", "--cell", "rnn"],
    ["task", "adding", "--variant", "irk"],
    ["task", "adding", "--steps", "0"],
    ["task", "adding", "--lr", "-1"],
    ["task", "adding", "-M", "0"],
    ["task", "adding", "--device", "tpu"],
    ["task", "adding", "--backend", "nope"],
    ["task", "adding", "--config", "bench_configs/tasks.toml"],
    ["task", "adding", "--matched-params", "--reference", "nope"],
])
def test_bad_input_is_one_line_and_exit_2(args):
    r = run(*args)
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("rnnbench: error:"), r.output


# -- suites ---------------------------------------------------------------------------------------
PAPER_CELLS = {(s.family, s.variant) for s in select("all", "all")}


@pytest.mark.parametrize("name", ["tasks.toml", "tasks_gpu.toml"])
def test_suites_compare_every_cell_at_matched_size_and_matched_count(name):
    meta, plan = load_suite(ROOT / "bench_configs" / name)
    assert meta["bench"] == "task"
    for matched in ("hidden", "params"):
        tasks = {r.task for r in plan if dict(r.labels)["matched"] == matched}
        assert tasks
        for task in tasks:
            have = {(r.spec.family, r.spec.variant) for r in plan
                    if r.task == task and dict(r.labels)["matched"] == matched}
            assert have == PAPER_CELLS, (task, matched)
    assert {r.cfg.device for r in plan} == {"cuda" if "gpu" in name else "cpu"}


def _suite(tmp_path, body):
    p = tmp_path / "s.toml"
    p.write_text('[meta]\nbench = "task"\n' + body)
    return p


@pytest.mark.parametrize("body, says", [
    ('[[runs]]\nid = "a"\ntask = "adding"\nhidden_size = 8\nsteps = "many"\n', "steps must be int"),
    ('[[runs]]\nid = "a"\ntask = "adding"\nhidden_size = 8\nwidth = 3\n', "unknown key(s) width"),
    ('[[runs]]\nid = "a"\ntask = "adding"\n', "missing 'hidden_size'"),
    ('[[runs]]\nid = "a"\ntask = "adding"\nhidden_size = 8\ntargets = 3\n', "memorization and copy"),
    ('[[runs]]\nid = "a"\ntask = "adding"\nhidden_size = 8\n[[runs]]\nid = "a"\ntask = "copy"\n'
     'hidden_size = 8\n', "unique"),
    ('[[runs]]\nid = "a"\ntask = "adding"\nhidden_size = [8, -1]\n', "positive"),
    ('[[runs]]\nid = "a"\ntask = "adding"\nhidden_size = 8\ncell = "rnn"\n', "unknown cell"),
    ('[[runs]\n', "not valid TOML"),
    ('', "at least one [[runs]]"),
])
def test_malformed_suites_are_one_line_and_exit_2(tmp_path, body, says):
    r = run("task", "--config", _suite(tmp_path, body))
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and says in lines[0], r.output


def test_suite_without_task_meta_is_refused(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text('[meta]\nbench = "params"\n[[runs]]\nid = "a"\ntask = "adding"\nhidden_size = 8\n')
    r = run("task", "--config", p)
    assert r.exit_code == 2 and 'bench = "task"' in r.output


def test_suite_runs_trains_the_reference_once_and_resumes(tmp_path):
    p = _suite(tmp_path, '[defaults]\nsteps = 4\neval_every = 2\nval_size = 20\nhidden_size = 6\n'
               'task = "adding"\nseq_len = 6\n'
               '[[runs]]\nid = "h"\ncell = ["gru", "fastgrnn"]\n'
               '[[runs]]\nid = "p"\ncell = ["gru", "fastgrnn"]\nmatched_params = true\n')
    j = tmp_path / "r.json"
    r = run("task", "--config", p, "--json", j, "--steps", 6)
    assert r.exit_code == 0, r.output
    rows = read_results(j).results
    assert len(rows) == 4 and len({x.key for x in rows}) == 4
    assert all(x.metrics["steps"] == 6 for x in rows)    # the command line overrides the file
    gru = [x for x in rows if x.cell == "gru"]
    assert gru[0].metrics["curve_value"] == gru[1].metrics["curve_value"]
    assert "reused" in gru[1].labels and "reused" not in gru[0].labels
    fast = {x.labels["matched"]: x.hidden_size for x in rows if x.cell == "fastgrnn"}
    # FastGRNN 2NM + 2M² + 2M + 2 nearest GRU's 3NM + 3M² + 3M at N = 2, M = 6 (162)
    want = min(range(1, 50), key=lambda m: (abs(2 * 2 * m + 2 * m * m + 2 * m + 2 - 162), m))
    assert fast == {"hidden": 6, "params": want}
    again = run("task", "--config", p, "--json", j, "--steps", 6, "--resume")
    assert again.exit_code == 0 and again.output.count("kept") == 4, again.output
    assert [x.metrics for x in read_results(j).results] == [x.metrics for x in rows]


def test_step_time_is_a_median_of_positive_samples(tmp_path):
    j = tmp_path / "t.json"
    r = run("task", "adding", "-T", 4, "-M", 4, "--steps", 9, "--eval-every", 9, "--val-size", 10,
            "--json", j)
    assert r.exit_code == 0, r.output
    m = read_results(j).results[0].metrics
    samples = m["step_samples_s"]
    assert len(samples) == 9 and m["step_time_s_median"] == sorted(samples)[4]
    assert 0 < m["step_time_s_min"] == min(samples)
    assert m["step_time_s_q25"] <= m["step_time_s_median"] <= m["step_time_s_q75"]
    assert m["train_time_s"] >= 9 * m["step_time_s_min"] and math.isfinite(m["step_time_s_iqr"])
