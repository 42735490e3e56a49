"""rnnbench plot: one valid PNG per metric, labelled axes, log scales over decades, clear errors."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from rnnbench.cli import app
from rnnbench.results import ResultFile, Row, to_csv

pytest.importorskip("matplotlib")

from rnnbench import plot  # noqa: E402

runner = CliRunner()
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HIDDEN = (32, 128, 512, 2048)  # spans decades: the x axis must be logarithmic


def result_file() -> ResultFile:
    rows = []
    for cell in ("gru", "lstm"):
        for variant in ("baseline", "irc", "ihc"):
            rows.append(Row(bench="params", cell=cell, variant=variant, input_size=512, hidden_size=512,
                            layers=1, metrics={"params": 800_000 - 200_000 * ("irc" in variant)}))
            rows.append(Row(bench="memory", cell=cell, variant=variant, backend="eager", batch=32,
                            seq_len=64, input_size=512, hidden_size=512, layers=1,
                            metrics={"saved_bytes": 40_000_000 + 10_000_000 * (variant == "ihc"),
                                     "peak_rss_bytes": 300_000_000}))
            for m in HIDDEN:
                t = 1e-4 * (m / 32) ** 1.5
                rows.append(Row(bench="speed", cell=cell, variant=variant, backend="eager",
                                mode="fwd+bwd", batch=32, seq_len=64, input_size=m, hidden_size=m,
                                layers=1, metrics={"time_s_median": t, "tokens_per_s": 32 * 64 / t,
                                                   "samples_s": [t] * 5}))
            rows.append(Row(bench="task", cell=cell, variant=variant, batch=32, seq_len=64,
                            input_size=128, hidden_size=128, layers=1,
                            labels={"task": "copy", "metric": "loss"},  # as rnnbench task writes it
                            metrics={"curve_step": [0, 100, 200, 300],
                                     "curve_value": [2.3, 1.1, 0.4, 0.2]}))
    rows.append(Row(bench="speed", cell="sru", variant="baseline", status="failed", reason="boom"))
    return ResultFile({"device": "cpu"}, {}, rows)


def expected_files():
    return {"params.png", "saved_bytes.png", "peak_rss_bytes.png", "time_s_median.png",
            "tokens_per_s.png", "curve_copy.png"}


def test_plot_writes_one_valid_png_per_metric(tmp_path):
    src = tmp_path / "r.json"
    src.write_text(result_file().to_json())
    out = tmp_path / "charts"
    res = runner.invoke(app, ["plot", str(src), "--out", str(out)])
    assert res.exit_code == 0, res.output
    printed = res.output.split()
    assert {p.rsplit("/", 1)[-1] for p in printed} == expected_files()
    for p in printed:
        data = open(p, "rb").read()
        assert data[:8] == PNG_SIGNATURE
        assert len(data) > 10_000, p  # a chart, not an empty canvas
    assert sorted(f.name for f in out.iterdir()) == sorted(expected_files())  # no temporary files


def test_axes_are_labelled_with_units_and_logarithmic_over_decades():
    charts = {c.name: c.figure.axes[0] for c in plot.build_charts(result_file().results)}
    time = charts["time_s_median"]
    assert time.get_xscale() == "log" and time.get_yscale() == "log"
    assert time.get_xlabel().startswith("hidden size")
    assert time.get_ylabel() == "time per call (median) (ms)"  # 0.1 ms to 51 ms
    # one line per cell and variant, each through every hidden size
    lines = time.get_lines()
    assert len(lines) == 6 and all(len(line.get_xdata()) == len(HIDDEN) for line in lines)
    assert "tokens/s" in charts["tokens_per_s"].get_ylabel()
    assert charts["params"].get_ylabel() == "parameters (thousands)"
    assert charts["params"].get_yscale() == "linear"  # 600k to 800k does not span a decade
    assert charts["saved_bytes"].get_ylabel().endswith("(MiB)")
    assert len(charts["saved_bytes"].patches) == 6  # a bar per cell and variant
    assert charts["curve_copy"].get_ylabel() == "loss"
    assert charts["curve_copy"].get_xlabel() == "training step"


def test_bar_heights_are_the_values():
    (chart,) = plot.build_charts(result_file().results, ["params"])
    heights = sorted(p.get_height() for p in chart.figure.axes[0].patches)
    assert heights == pytest.approx(sorted([800.0, 600.0, 800.0] * 2))


def test_csv_plots_without_curves(tmp_path):
    src = tmp_path / "r.csv"
    src.write_text(to_csv(result_file().results))
    res = runner.invoke(app, ["plot", str(src), "--out", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    assert {p.rsplit("/", 1)[-1] for p in res.output.split()} == expected_files() - {"curve_copy.png"}


def test_metric_selection(tmp_path):
    src = tmp_path / "r.json"
    src.write_text(result_file().to_json())
    res = runner.invoke(app, ["plot", str(src), "--out", str(tmp_path), "-m", "params", "-m", "curves"])
    assert res.exit_code == 0, res.output
    assert {p.rsplit("/", 1)[-1] for p in res.output.split()} == {"params.png", "curve_copy.png"}
    # a comma list, as every other list flag takes it
    # the charts of the first call exist: replacing them takes --overwrite (#13)
    res = runner.invoke(app, ["plot", str(src), "--out", str(tmp_path), "-m", "params, curves"])
    assert res.exit_code == 2 and "exists: --overwrite replaces it" in res.output
    res = runner.invoke(app, ["plot", str(src), "--out", str(tmp_path), "-m", "params, curves",
                              "--overwrite"])
    assert {p.rsplit("/", 1)[-1] for p in res.output.split()} == {"params.png", "curve_copy.png"}
    res = runner.invoke(app, ["plot", str(src), "--out", str(tmp_path), "-m", "flops"])
    assert res.exit_code == 2
    assert "flops" in res.output and "time_s_median" in res.output


def test_nothing_to_plot_exits_2(tmp_path):
    rf = ResultFile({}, {}, [Row(bench="speed", cell="gru", variant="baseline", status="oom", reason="x"),
                             Row(bench="verify", cell="gru", variant="baseline",
                                 metrics={"max_abs_err": 0.0})])
    src = tmp_path / "empty.json"
    src.write_text(rf.to_json())
    res = runner.invoke(app, ["plot", str(src), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert res.output.startswith("rnnbench: error:") and "nothing to plot" in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_missing_matplotlib_is_one_line_exit_2(tmp_path, monkeypatch):
    src = tmp_path / "r.json"
    src.write_text(result_file().to_json())
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    res = runner.invoke(app, ["plot", str(src), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "pip install 'rnnbench[plot]'" in res.output
    assert len(res.output.strip().splitlines()) == 1
