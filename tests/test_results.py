"""The result schema: keys, JSON/CSV round trips, atomic incremental writing, readers' errors."""

import json

import pytest

from rnnbench.errors import IncompatibleResultsError, RnnbenchError
from rnnbench.results import (IncrementalWriter, ResultFile, Row, journal_path, read_results, to_csv,
                              write_outputs)


def _row(**kw):
    base = dict(bench="speed", cell="gru", variant="irc", backend="eager", mode="fwd+bwd",
                batch=32, seq_len=128, input_size=512, hidden_size=512, layers=1,
                metrics={"time_s_median": 0.0123, "samples_s": [0.012, 0.0123, 0.013]})
    base.update(kw)
    return Row(**base)


def test_key_follows_the_design_names():
    assert _row().key == "speed/gru/irc/eager/fwd+bwd/float32/B32-T128-N512-M512-L1"
    assert _row(hidden_size=[1150, 1150, 400], layers=3).key.endswith("M1150-1150-400-L3")
    # a uniform per-layer list is the same case as one size
    assert _row(hidden_size=[64, 64], layers=2).key == _row(hidden_size=64, layers=2).key


def test_json_and_csv_round_trip(tmp_path):
    rows = [_row(), _row(variant="baseline", status="unsupported", reason="no kernel",
                         metrics={}), _row(hidden_size=[8, 4], layers=2, warnings=["spread 12%"])]
    rf = ResultFile({"device": "cpu"}, {"argv": []}, rows)
    write_outputs(rf, json_path=tmp_path / "r.json", csv_path=tmp_path / "r.csv")
    back = read_results(tmp_path / "r.json")
    assert [r.to_dict() for r in back.results] == [r.to_dict() for r in rows]
    flat = read_results(tmp_path / "r.csv")
    assert [r.key for r in flat.results] == [r.key for r in rows]
    assert flat.results[0].metrics["time_s_median"] == 0.0123  # not rounded
    assert "samples_s" not in flat.results[0].metrics  # raw samples are JSON only
    assert flat.results[2].hidden_size == [8, 4] and flat.results[2].warnings == ["spread 12%"]
    assert "samples_s" not in to_csv(rows).splitlines()[0]


def test_incremental_writer_keeps_a_complete_file_and_resumes(tmp_path):
    path = tmp_path / "sweep.json"
    w = IncrementalWriter({}, {}, json_path=path)
    w.add(_row(batch=1))
    assert len(json.loads(path.read_text())["results"]) == 1
    w.add(_row(batch=2, status="oom", reason="CUDA out of memory"))
    w2 = IncrementalWriter({}, {}, json_path=path, resume=True)
    assert w2.done_keys() == {_row(batch=1).key}  # the oom case is retried
    w2.add(_row(batch=2))
    keys = [r["key"] for r in json.loads(path.read_text())["results"]]
    assert sorted(keys) == sorted({_row(batch=1).key, _row(batch=2).key})
    assert not list(tmp_path.glob(".*tmp"))


def test_readers_reject_what_they_cannot_read(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("{not json")
    with pytest.raises(RnnbenchError, match="not valid JSON"):
        read_results(p)
    p.write_text(json.dumps({"schema": "rnnbench.results/0", "results": []}))
    with pytest.raises(IncompatibleResultsError, match="schema"):
        read_results(p)
    p.write_text(json.dumps({"hello": 1}))
    with pytest.raises(RnnbenchError, match="not an rnnbench result file"):
        read_results(p)
    with pytest.raises(RnnbenchError, match="no such result file"):
        read_results(tmp_path / "missing.json")
    c = tmp_path / "x.csv"
    c.write_text("a,b\n1,2\n")
    with pytest.raises(RnnbenchError, match="not an rnnbench CSV"):
        read_results(c)


def test_unknown_status_is_refused():
    with pytest.raises(ValueError):
        _row(status="great")


def test_times_print_in_the_unit_they_round_into():
    from rnnbench.results import fmt_time
    assert fmt_time(0.9996) == "1 s"
    assert fmt_time(0.0123) == "12.3 ms"
    assert fmt_time(2.5e-6) == "2.5 µs"
    assert fmt_time(3e-10) == "0.3 ns"


def test_to_dataframe_is_the_flat_view_one_line_per_row():
    import pandas as pd
    from rnnbench.results import to_dataframe
    rows = [_row(), _row(variant="baseline", status="oom", reason="out of memory", metrics={}),
            _row(bench="params", backend="", mode="", hidden_size=[8, 4], layers=2,
                 metrics={"params": 1234}, labels={"options": "gamma_input=feedback"})]
    df = to_dataframe(rows)
    assert len(df) == 3 and list(df["key"]) == [r.key for r in rows]
    # the columns of the CSV file, in its order: case, metrics, status, then labels
    assert list(df.columns) == ["key", "bench", "cell", "variant", "form", "backend", "mode",
                                "dtype", "device", "batch", "seq_len", "input_size", "hidden_size",
                                "layers", "time_s_median", "status", "reason", "warnings", "params",
                                "label_options"]
    assert list(df.columns) == to_csv(rows).splitlines()[0].split(",")
    assert list(df["status"]) == ["ok", "oom", "ok"] and df["reason"][1] == "out of memory"
    assert df["hidden_size"][2] == "8-4"
    # numbers are numbers: a metric some rows lack is NaN there
    assert df["time_s_median"].dtype == "float64" and df["time_s_median"][0] == 0.0123
    assert df["time_s_median"][1:].isna().all()
    assert df.groupby("variant")["time_s_median"].median()["irc"] == 0.0123
    # exact keeps each value as it was: the CSV writer's view, an integer beside gaps stays one
    exact = to_dataframe(rows, exact=True)
    assert exact["params"][2] == 1234 and type(exact["params"][2]) is int
    assert pd.isna(exact["params"][0])


def test_to_dataframe_and_csv_hold_the_same_table():
    import io

    import pandas as pd
    from rnnbench.results import to_dataframe
    rows = [_row(batch=b, metrics={"time_s_median": 0.1 + b / 3, "n_samples": b}) for b in (1, 2)]
    rows.append(_row(batch=3, status="failed", reason="boom", metrics={}))
    numbers = ["batch", "hidden_size", "time_s_median", "n_samples"]
    back = pd.read_csv(io.StringIO(to_csv(rows)))
    assert list(back.columns) == list(to_dataframe(rows).columns)
    pd.testing.assert_frame_equal(back[numbers], to_dataframe(rows)[numbers])


def test_an_empty_result_has_a_readable_csv(tmp_path):
    from rnnbench.results import FLAT_COLUMNS, to_dataframe
    assert list(to_dataframe([]).columns) == list(FLAT_COLUMNS)
    write_outputs(ResultFile({}, {}, []), csv_path=tmp_path / "e.csv")
    assert read_results(tmp_path / "e.csv").results == []


def test_the_command_line_starts_without_pandas():
    import subprocess
    import sys
    code = "import sys, rnnbench.cli; sys.exit('pandas' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# -- the journal of a large sweep ------------------------------------------------------------------
def _jrow(i, t=1.0):
    return Row(bench="speed", cell="gru", variant="irc", backend="eager", mode="fwd+bwd", batch=i,
               seq_len=4, input_size=4, hidden_size=4, layers=1, metrics={"time_s_median": t})


def test_past_the_rewrite_threshold_rows_go_to_the_journal_and_only_its_owner_reads_them(
        tmp_path, monkeypatch):
    monkeypatch.setattr(IncrementalWriter, "REWRITE_BYTES", 0)       # every file counts as large
    monkeypatch.setattr(IncrementalWriter, "REWRITE_FACTOR", 10**9)  # and rewriting as too dear
    out = tmp_path / "r.json"
    w = IncrementalWriter({}, {}, json_path=out)
    for i in range(1, 5):
        w.add(_jrow(i))
    on_file = json.loads(out.read_text())["results"]
    assert [r["batch"] for r in on_file] == [1]                       # the first row rewrote it
    assert len(journal_path(out).read_text().splitlines()) == 3       # the rest were appended
    assert [r.batch for r in read_results(out, journal=True).results] == [1, 2, 3, 4]
    # a reader that does not own the run (compare, merge, params) sees the file alone (#13)
    assert [r.batch for r in read_results(out).results] == [1]
    w.add(_jrow(2, t=9.0))                                           # a retried case replaces
    assert [(r.batch, r.metrics["time_s_median"]) for r in read_results(out, journal=True).results] == \
        [(1, 1.0), (3, 1.0), (4, 1.0), (2, 9.0)]
    # resuming reads file and journal alike
    again = IncrementalWriter({}, {}, json_path=out, resume=True)
    assert len(again.done_keys()) == 4
    w.close()
    assert not journal_path(out).exists()
    assert [r["batch"] for r in json.loads(out.read_text())["results"]] == [1, 3, 4, 2]


def test_a_journal_line_cut_short_by_a_kill_is_skipped(tmp_path):
    out = tmp_path / "r.json"
    write_outputs(ResultFile({}, {}, [_jrow(1)]), json_path=out)
    journal_path(out).write_text(json.dumps(_jrow(2).to_dict()) + "\n" + '{"bench": "speed", "ce')
    assert [r.batch for r in read_results(out, journal=True).results] == [1, 2]


def test_small_files_are_rewritten_after_every_row(tmp_path):
    out = tmp_path / "r.json"
    w = IncrementalWriter({}, {}, json_path=out)
    for i in range(1, 4):
        w.add(_jrow(i))
        assert len(json.loads(out.read_text())["results"]) == i
    assert not journal_path(out).exists()


def test_a_csv_alone_is_written_after_every_row(tmp_path):
    out = tmp_path / "r.csv"
    w = IncrementalWriter({}, {}, csv_path=out)
    for i in range(1, 3):
        w.add(_jrow(i))
        assert [r.batch for r in read_results(out).results] == list(range(1, i + 1))


def test_closing_a_resumed_file_brings_its_csv_level_with_the_journal(tmp_path, monkeypatch):
    monkeypatch.setattr(IncrementalWriter, "REWRITE_BYTES", 0)
    monkeypatch.setattr(IncrementalWriter, "REWRITE_FACTOR", 10**9)
    js, cs = tmp_path / "r.json", tmp_path / "r.csv"
    w = IncrementalWriter({}, {}, json_path=js, csv_path=cs)
    w.add(_jrow(1))
    w.add(_jrow(2))                                   # journal only; the CSV has row 1
    assert len(read_results(cs).results) == 1
    again = IncrementalWriter({}, {}, json_path=js, csv_path=cs, resume=True)
    again.close()                                     # nothing new measured
    assert len(read_results(cs).results) == 2 and not journal_path(js).exists()
