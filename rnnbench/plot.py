"""Charts from a result file: one PNG per metric.

Times and throughput against hidden size (one line per cell and variant, with the interquartile
range of the raw samples as a band), grouped bars where a suite has one size only (with the IQR as
error bars), parameters and memory per variant as bars on a linear axis, and learning curves of
`task` rows. Every series has its own colour (Okabe-Ito, readable with colour-blindness) and its own
marker or hatch, so series stay apart in grey print too. Labels and units come from
rnnbench/metrics.py. matplotlib is an optional extra, imported only
here and only when a chart is drawn; pyplot is never used, so no global figure state or GUI backend.
"""

from __future__ import annotations

import io
import math
import statistics
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from rnnbench import metrics as registry
from rnnbench.errors import RnnbenchError
from rnnbench.results import Row, size_label

# what tells one series apart; fields that stay constant over the chart go to its title instead
SERIES_FIELDS = ("cell", "variant", "form", "backend", "mode", "dtype", "device", "batch", "seq_len",
                 "input_size", "layers", "options")
SIZE_FIELDS = ("batch", "seq_len", "input_size", "layers")
# Okabe & Ito's palette (black left out: it is the colour of the axes and the trivial line)
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7",
             "#999999")
# 9 markers against 8 colours: series i and j share both only when i ≡ j (mod 72)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<")
HATCHES = ("", "//", "..", "xx", "\\\\", "++", "oo", "--")


def style(i: int) -> dict:
    """Colour and marker of the i-th line series."""
    return {"color": OKABE_ITO[i % len(OKABE_ITO)], "marker": MARKERS[i % len(MARKERS)]}


def title_of(name: str) -> str:
    return registry.label(name)


def iqr(row: Row, name: str) -> tuple[float, float] | None:
    """The 25th and 75th percentiles of the raw samples behind a timed metric (type 7, as the
    timing harness computes them), or None without at least two samples."""
    key = registry.samples_key(name)
    xs = row.metrics.get(key) if key else None
    if not isinstance(xs, list):
        return None
    xs = [float(x) for x in xs if isinstance(x, (int, float)) and not isinstance(x, bool)
          and math.isfinite(x)]
    if len(xs) < 2:
        return None
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[2]


def _need_matplotlib():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise RnnbenchError("rnnbench plot needs matplotlib: pip install 'rnnbench[plot]'") from None
    return Figure


def line_metric(name: str) -> bool:
    return name != "reference_time_s" and (name.endswith("time_s_median") or name.endswith("_per_s"))


def bar_metric(name: str) -> bool:
    return name == "params" or name.endswith("saved_bytes") or (
        name.startswith("peak_") and name.endswith("_bytes"))


def _value(row: Row, name: str) -> float | None:
    v = row.metrics.get(name)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def _field(row: Row, f: str):
    if f == "options":
        return row.labels.get("options", "")
    v = getattr(row, f)
    return size_label(v) if f == "hidden_size" and v is not None else v


def _hidden_x(row: Row) -> float | None:
    hs = row.hidden_size
    if isinstance(hs, (list, tuple)):
        return float(max(hs)) if hs else None
    return None if hs is None else float(hs)


def spans_decades(values) -> bool:
    values = [v for v in values if v and v > 0]
    return bool(values) and max(values) / min(values) >= 10


# -- units -----------------------------------------------------------------------------------------
def _unit(name: str, values: list[float]) -> tuple[float, str]:
    """A divisor and unit that keep the axis numbers readable."""
    top = max(abs(v) for v in values) if values else 0
    if "time_s" in name:
        for div, unit in ((1, "s"), (1e-3, "ms"), (1e-6, "µs")):
            if top >= div:
                return div, unit
        return 1e-9, "ns"
    if name.endswith("bytes"):
        for div, unit in ((2 ** 30, "GiB"), (2 ** 20, "MiB"), (2 ** 10, "KiB")):
            if top >= div:
                return div, unit
        return 1, "bytes"
    if name.endswith("_per_s"):
        what = registry.unit(name) or name[: -len("_per_s")] + "/s"  # tokens/s, FLOP/s
        for div, pre in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if top >= div:
                return div, f"{pre}{what}"
        return 1, what
    if name == "params":
        for div, unit in ((1e6, "millions"), (1e3, "thousands")):
            if top >= div:
                return div, unit
        return 1, "count"
    return 1, ""


def _axis_label(name: str, unit: str) -> str:
    what = title_of(name)
    return f"{what} ({unit})" if unit else what


# -- grouping --------------------------------------------------------------------------------------
def _split_fields(rows: list[Row], exclude=()) -> tuple[list[str], dict]:
    """The fields that vary (they name the series) and the constant ones (they go to the title)."""
    varying, constant = [], {}
    for f in SERIES_FIELDS:
        if f in exclude:
            continue
        values = {_field(r, f) for r in rows}
        if len(values) > 1:
            varying.append(f)
        elif values and next(iter(values)) not in (None, ""):
            constant[f] = next(iter(values))
    return varying, constant


def _follows_x(rows: list[Row], f: str) -> bool:
    """A size that moves with the hidden size (N = M sweeps) is part of the x value, not a series."""
    seen: dict = {}
    for r in rows:
        x, v = _hidden_x(r), _field(r, f)
        if seen.setdefault(x, v) != v:
            return False
    return True


_SHORT = {"batch": "B", "seq_len": "T", "input_size": "N", "layers": "L"}


def _label(row: Row, fields: list[str]) -> str:
    parts = []
    if "cell" in fields or "variant" in fields:
        parts.append(f"{row.cell}/{row.variant}")
    for f in fields:
        if f in ("cell", "variant"):
            continue
        v = _field(row, f)
        parts.append(f"{_SHORT[f]}{v}" if f in _SHORT else str(v))
    return " ".join(p for p in parts if p) or row.cell


def _subtitle(constant: dict) -> str:
    parts = []
    if "cell" in constant or "variant" in constant:
        parts.append("/".join(str(constant[f]) for f in ("cell", "variant") if f in constant))
    for f, v in constant.items():
        if f in ("cell", "variant"):
            continue
        parts.append(f"{_SHORT[f]}{v}" if f in _SHORT else str(v))
    return ", ".join(parts)


# -- charts ----------------------------------------------------------------------------------------
@dataclass
class Chart:
    name: str    # file stem
    figure: object


def _log_y(ax) -> None:
    from matplotlib.ticker import LogFormatter

    class Plain(LogFormatter):
        # matplotlib chooses which ticks get a label; the label is a plain number (0.1, 20, 600),
        # which reads faster than 2×10¹ on an axis that already names its unit
        def __call__(self, x, pos=None):
            return f"{x:g}" if super().__call__(x, pos) else ""

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(Plain())
    ax.yaxis.set_minor_formatter(Plain(labelOnlyBase=False))


def _new_figure(Figure, title: str, subtitle: str):
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title + (f"\n{subtitle}" if subtitle else ""), fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    return fig, ax


def line_chart(Figure, rows: list[Row], name: str) -> Chart | None:
    pts = [(r, _hidden_x(r), _value(r, name)) for r in rows]
    # a backward time taken by difference can be zero or negative: there is no point to draw
    pts = [(r, x, v) for r, x, v in pts if x is not None and v is not None and v > 0]
    if not pts:
        return None
    used = [r for r, _, _ in pts]
    # constant sizes stay in the title; only those that change with M are folded into the x value
    follow = [f for f in SIZE_FIELDS if _follows_x(used, f) and len({_field(r, f) for r in used}) > 1]
    varying, constant = _split_fields(used, exclude=follow)
    div, unit = _unit(name, [v for _, _, v in pts])
    series: dict[str, list[tuple]] = defaultdict(list)
    for r, x, v in pts:
        band = iqr(r, name)
        series[_label(r, varying)].append((x, v / div) + (tuple(b / div for b in band) if band else ()))
    fig, ax = _new_figure(Figure, f"{title_of(name)} against hidden size", _subtitle(constant))
    banded = False
    for i, (label, xy) in enumerate(series.items()):
        xy.sort()
        st = style(i)
        ax.plot([p[0] for p in xy], [p[1] for p in xy], label=label, **st)
        spread = [p for p in xy if len(p) == 4]
        if len(spread) > 1:
            ax.fill_between([p[0] for p in spread], [p[2] for p in spread],
                            [p[3] for p in spread], color=st["color"], alpha=0.2, linewidth=0)
            banded = True
    if banded:
        ax.set_title(ax.get_title() + "\nbands: interquartile range of the samples", fontsize=11)
    xs = sorted({x for _, x, _ in pts})
    if spans_decades(xs):
        ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [f"{x:g}" for x in xs])
    if spans_decades([v for _, _, v in pts]):
        _log_y(ax)
    ax.set_xlabel("hidden size M (units)")
    ax.set_ylabel(_axis_label(name, unit))
    if len(series) > 1:
        ax.legend(fontsize=8, ncols=2 if len(series) > 8 else 1)
    return Chart(name, fig)


def bar_chart(Figure, rows: list[Row], name: str) -> Chart | None:
    pts = [(r, _value(r, name)) for r in rows]
    pts = [(r, v) for r, v in pts if v is not None]
    if not pts:
        return None
    used = [r for r, _ in pts]
    varying, constant = _split_fields(used + [], exclude=("variant",))
    if len({size_label(r.hidden_size) for r in used}) > 1:
        varying.append("hidden_size")
    else:
        constant["hidden_size"] = size_label(used[0].hidden_size) if used[0].hidden_size is not None else None
    groups: list[str] = []
    variants: list[str] = []
    values: dict[tuple[str, str], float] = {}
    spreads: dict[tuple[str, str], tuple[float, float]] = {}
    div, unit = _unit(name, [v for _, v in pts])
    for r, v in pts:
        g = " ".join(p for p in (f"M{_field(r, f)}" if f == "hidden_size" else
                                 (f"{_SHORT[f]}{_field(r, f)}" if f in _SHORT else str(_field(r, f) or ""))
                                 for f in varying) if p) or r.cell
        if (g, r.variant) in values:  # two cases alike in every plotted field: keep both bars
            g += f" [{r.labels.get('case') or r.key}]"
        if g not in groups:
            groups.append(g)
        if r.variant not in variants:
            variants.append(r.variant)
        values[(g, r.variant)] = v / div
        band = iqr(r, name)
        if band:
            spreads[(g, r.variant)] = (band[0] / div, band[1] / div)
    subtitle = _subtitle({k: v for k, v in constant.items() if k != "hidden_size" and v is not None})
    if constant.get("hidden_size"):
        subtitle = ", ".join(p for p in (subtitle, f"M{constant['hidden_size']}") if p)
    fig, ax = _new_figure(Figure, f"{title_of(name)} per variant", subtitle)
    width = 0.8 / len(variants)
    any_err = False
    for i, var in enumerate(variants):
        here = [(gi, g) for gi, g in enumerate(groups) if (g, var) in values]
        xs = [gi + (i - (len(variants) - 1) / 2) * width for gi, _ in here]
        ys = [values[(g, var)] for _, g in here]
        # error bars: the IQR of the samples, where the metric has samples
        bands = [spreads.get((g, var)) for _, g in here]
        yerr = None
        if any(b is not None for b in bands):
            yerr = [[max(0.0, y - b[0]) if b else 0.0 for y, b in zip(ys, bands)],
                    [max(0.0, b[1] - y) if b else 0.0 for y, b in zip(ys, bands)]]
            any_err = True
        ax.bar(xs, ys, width=width, label=var, color=OKABE_ITO[i % len(OKABE_ITO)],
               hatch=HATCHES[i % len(HATCHES)], edgecolor="black", linewidth=0.5, yerr=yerr,
               capsize=3 if yerr else 0)
    ax.set_xticks(range(len(groups)), groups, rotation=30 if len(groups) > 4 else 0, ha="right"
                  if len(groups) > 4 else "center")
    # bars start at zero on a linear axis: their lengths compare as the values do (a log axis
    # would make a 2x difference in memory look small)
    if any_err:
        ax.set_title(ax.get_title() + "\nerror bars: interquartile range of the samples",
                     fontsize=11)
    ax.set_xlabel(" ".join(varying) if varying else "cell")
    ax.set_ylabel(_axis_label(name, unit))
    ax.legend(title="variant", fontsize=8)
    return Chart(name, fig)


def curve_charts(Figure, rows: list[Row]) -> list[Chart]:
    """Learning curves: task rows carrying metrics curve_step and curve_value (equal-length lists)."""
    by_task: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        s, v = r.metrics.get("curve_step"), r.metrics.get("curve_value")
        if r.bench == "task" and isinstance(s, list) and isinstance(v, list) and s and len(s) == len(v):
            by_task[str(r.labels.get("task") or r.metrics.get("task") or "task")].append(r)
    charts = []
    for task, task_rows in by_task.items():
        varying, constant = _split_fields(task_rows)
        fig, ax = _new_figure(Figure, f"learning curve: {task}", _subtitle(constant))
        # rnnbench task names its validation metric in labels["metric"] (val_mse, val_accuracy)
        ylabel = next((str(r.labels["metric"]) for r in task_rows if r.labels.get("metric")), "value")
        values = []
        for i, r in enumerate(task_rows):
            ax.plot(r.metrics["curve_step"], r.metrics["curve_value"],
                    label=_label(r, varying or ["cell"]),
                    markevery=max(1, len(r.metrics["curve_step"]) // 8), **style(i))
            values += [v for v in r.metrics["curve_value"] if isinstance(v, (int, float))]
        if spans_decades([v for v in values if v > 0]) and min(values) > 0:
            _log_y(ax)
        trivial = {r.metrics.get("trivial") for r in task_rows} - {None}
        if len(trivial) == 1:  # the score of a model that ignores its input: the line to beat
            ax.axhline(trivial.pop(), color="grey", linestyle="--", linewidth=1, label="trivial")
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
        if len(task_rows) > 1:
            ax.legend(fontsize=8)
        charts.append(Chart("curve_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", task), fig))
    return charts


def plottable_metrics(rows: list[Row]) -> list[str]:
    names: list[str] = []
    for r in rows:
        for k, v in r.metrics.items():
            if (line_metric(k) or bar_metric(k)) and k not in names and _value(r, k) is not None:
                names.append(k)
    return names


def build_charts(rows: list[Row], metrics: list[str] | None = None) -> list[Chart]:
    """One chart per plottable metric (only those named, if any), plus one per task's curves."""
    Figure = _need_matplotlib()
    ok = [r for r in rows if r.status == "ok"]
    available = plottable_metrics(ok)
    if metrics:
        unknown = [m for m in metrics if m not in available and m != "curves"]
        if unknown:
            raise RnnbenchError(f"nothing to plot for {', '.join(unknown)}; this file has: "
                                f"{', '.join(available + ['curves']) or 'none'}")
    charts = []
    for name in available:
        if metrics and name not in metrics:
            continue
        # parameter counts repeat across benches; the params bench holds them once per case
        pool = [r for r in ok if r.bench == "params"] if name == "params" and any(
            r.bench == "params" for r in ok) else ok
        sizes = {_hidden_x(r) for r in pool if _value(r, name) is not None}
        # one hidden size only: a line chart would be a column of dots; bars group the cases
        as_lines = line_metric(name) and len(sizes) > 1
        chart = (line_chart if as_lines else bar_chart)(Figure, pool, name)
        if chart:
            charts.append(chart)
    if not metrics or "curves" in metrics:
        charts += curve_charts(Figure, ok)
    return charts


def _write_bytes(path: Path, data: bytes) -> None:
    from rnnbench.results import atomic_write_bytes  # atomic, with the user's umask

    atomic_write_bytes(path, data)


def write_charts(charts: list[Chart], out_dir: str | Path, *, dpi: int = 120) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for chart in charts:
        buf = io.BytesIO()
        chart.figure.savefig(buf, format="png", dpi=dpi)
        path = out_dir / f"{chart.name}.png"
        _write_bytes(path, buf.getvalue())
        written.append(path)
    return written
