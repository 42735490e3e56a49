"""What the tables of `speed` and `memory` share: the title with the case's sizes, each variant as
a ratio to its baseline and each backend to eager (measured in the same run), row styles, progress
lines, and the Markdown copy with the exit code."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from rnnbench.case import Case
from rnnbench.cells.registry import get
from rnnbench.commands.common import fit_table, note, out
from rnnbench.errors import RnnbenchError
from rnnbench.results import IncrementalWriter, Row, atomic_write_text, fmt_time, to_markdown

TEXT_COLUMNS = ("cell", "backend", "mode", "dtype", "note")


def case_label(row: Row) -> str:
    try:
        name = get(row.cell, row.variant, row.form).display
    except RnnbenchError:
        name = f"{row.cell}/{row.variant}"
    return (name + (" (canonical)" if row.form == "canonical" else "")
            + (f" (fold {row.labels['fold']})" if row.labels.get("fold") else ""))


def _group(row: Row, *drop: str) -> tuple:
    fields = {"cell": row.cell, "variant": row.variant, "form": row.form, "backend": row.backend,
              "mode": row.mode, "dtype": row.dtype, "device": row.device,
              "options": row.labels.get("options", "")}
    return tuple(v for k, v in fields.items() if k not in drop)


def baseline_key(row: Row) -> tuple:
    """Rows that share it differ only in variant (and the variant's form and options)."""
    return _group(row, "variant", "form", "options")


def eager_key(row: Row) -> tuple:
    return _group(row, "backend")


def ratio(value, ref) -> str:
    if value is None or ref is None or not ref or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value / ref:.2f}×"


class Ratios:
    """One metric of each row against the same metric of its baseline and of its eager row."""

    def __init__(self, rows: list[Row], metric: str):
        self.metric = metric
        self.base: dict[tuple, float] = {}
        self.eager: dict[tuple, float] = {}
        for r in rows:
            v = r.metrics.get(metric)
            if r.status != "ok" or v is None:
                continue
            if r.variant == "baseline":
                self.base[baseline_key(r)] = v
            if r.backend == "eager":
                self.eager[eager_key(r)] = v

    def vs_baseline(self, row: Row) -> str:
        if row.variant == "baseline" or row.status != "ok":
            return ""
        return ratio(row.metrics.get(self.metric), self.base.get(baseline_key(row)))

    def vs_eager(self, row: Row) -> str:
        if row.backend == "eager" or row.status != "ok":
            return ""
        return ratio(row.metrics.get(self.metric), self.eager.get(eager_key(row)))


def several_backends(rows: list[Row]) -> bool:
    """Whether a 'vs eager' column says anything."""
    return len({r.backend for r in rows}) > 1


def new_table(title: str, rows: list[Row], columns: list[str]) -> Table:
    first = rows[0] if rows else None
    if first is not None:
        title += (f" — {first.device}, B={first.batch} T={first.seq_len} N={first.input_size} "
                  f"M={first.hidden_size} L={first.layers}")
    table = Table(title=title)
    for c in columns:
        # a number and its unit stay on one line ("12.3 ms", not "12.3" over "ms")
        table.add_column(c, justify="left" if c in TEXT_COLUMNS else "right",
                         no_wrap=c not in TEXT_COLUMNS)
    return table


def note_parts(row: Row) -> list[str]:
    """The warnings of an ok row, or why a row is not ok."""
    return list(row.warnings) if row.status == "ok" else [f"{row.status}: {row.reason}"]


def row_note(row: Row) -> str:
    return "; ".join(note_parts(row))


_TAG = re.compile(r"^([A-Za-z][\w +-]{0,24}):\s")


def short_note(parts: list[str], limit: int = 40) -> str:
    """A note that fits in about two lines of a table: each warning by its tag ('noisy', 'busy'),
    why a row is not ok cut at a word (the status column already names it); the whole text is in
    the JSON and the Markdown."""
    out_parts = []
    for part in parts:
        tag = _TAG.match(part)
        if tag and tag.group(1) in ("unsupported", "failed", "oom"):
            out_parts.append(part[tag.end():])
        else:
            out_parts.append(tag.group(1) if tag else part)
    return shorten(", ".join(dict.fromkeys(out_parts)), limit)


def shorten(text: str, limit: int) -> str:
    """``text`` cut at the last word boundary before ``limit`` characters, with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[:limit - 1].rsplit(" ", 1)[0].rstrip(",;:")
    return cut + "…"


def row_style(row: Row, warn: bool = False) -> str | None:
    if row.status in ("failed", "oom"):
        return "red"
    if row.status == "unsupported":
        return "dim"
    return "yellow" if warn else None


def print_table(table: Table, footnote: str, drop: tuple[str, ...] = ()) -> None:
    """The table, fitted to the width (columns in ``drop`` go first, then the note's tail), and
    its footnote wrapped at words."""
    out.print(fit_table(table, drop))
    out.print(footnote, highlight=False, markup=False)


def case_text(case: Case) -> str:
    """'speed gru/irc eager fwd+bwd': what a progress line says of a case (the dtype when not
    float32, the sizes when they are not the run's common ones are in the table)."""
    return (f"{case.bench} {case.cell}/{case.variant}"
            f"{' (canonical)' if case.form == 'canonical' else ''} {case.backend}"
            f"{'' if case.fold == 'auto' else ' fold=' + case.fold} {case.mode}"
            f"{'' if case.dtype == 'float32' else ' ' + case.dtype}")


# FLOP-equivalents per second a 2-core CPU gets through in the eager cells, and a GPU; estimates
# only need the right order of magnitude, and the ETA corrects itself from the first cases
_RATE = {"cpu": 5e10, "cuda": 1e12}


def estimate_seconds(case: Case, min_run_time: float = 1.0) -> float:
    """A rough wall time for measuring ``case``: the timed samples (at least min_run_time, and at
    least 5 calls), warm-up, the FLOP count and the check, and the build."""
    from rnnbench.shard import CASE_OVERHEAD, estimate_cost

    call = max(0, estimate_cost(case) - CASE_OVERHEAD) / _RATE.get(case.device.split(":")[0], 5e10)
    if case.bench == "memory":
        return 4.0 + 3 * call  # a fresh process for the peak RSS: mostly importing torch
    if case.bench == "task":
        return 30.0
    return max(min_run_time, 5 * call) + 6 * call + 0.5


def print_plan(cases: list[Case], what: str, *, min_run_time: float = 1.0, quiet: bool = False,
               dry_run: bool = False) -> float:
    """Say how many cases and about how long, before measuring; with ``dry_run``, list them
    (on stdout: the list is the output). Returns the estimate in seconds."""
    from rnnbench import progress

    total = sum(estimate_seconds(c, min_run_time) for c in cases)
    if dry_run:
        for i, c in enumerate(cases, 1):
            print(f"{i:>4}  {case_text(c)}  ~{progress.fmt_duration(estimate_seconds(c, min_run_time))}")
        print(progress.plan_line(len(cases), total, what) + " (dry run: nothing measured)")
    else:
        progress.announce(progress.plan_line(len(cases), total, what), quiet=quiet)
    return total


def result_extras(row: Row) -> str:
    """Retries and compiles, said in the case's progress line."""
    m, parts = row.metrics, []
    if m.get("busy_retries"):
        n = m["busy_retries"]
        parts.append(f"{n} busy retr{'y' if n == 1 else 'ies'}")
    if m.get("compile_time_s") is not None:
        parts.append(f"compiled in {fmt_time(m['compile_time_s'])}")
    return f" ({', '.join(parts)})" if parts else ""


def measure_cases(cases: list[Case], measure: Callable[[Case], Row], writer: IncrementalWriter,
                  result: Callable[[Row], str], *, quiet: bool = False,
                  estimate_s: float | None = None) -> list[Row]:
    """Measure each case with progress on stderr (a line ending in ``result(row)``, or the status
    of a row that is not ok); every row is written as it finishes."""
    from rnnbench import progress

    rows = []
    try:
        with progress.reporter(len(cases), cases[0].bench if cases else "", quiet=quiet,
                               estimate_s=estimate_s) as p:
            for case in cases:
                desc = case_text(case)
                if case.backend == "compile":
                    p.announce(f"{desc}: torch.compile first (timed apart from the samples)")
                p.start(desc)
                row = measure(case)
                p.done(desc, (result(row) if row.status == "ok" else row.status)
                       + result_extras(row))
                writer.add(row)
                rows.append(row)
    finally:
        writer.close()
    return rows


def finish_outputs(rows: list[Row], columns: list[str], cells: list[list[str]],
                   markdown: Optional[Path]) -> None:
    if markdown:
        atomic_write_text(markdown, to_markdown(columns, cells))
    failed = [r for r in rows if r.status == "failed"]
    if failed:
        note(f"{len(failed)} case(s) failed; the reasons are in the table")
        raise typer.Exit(1)
