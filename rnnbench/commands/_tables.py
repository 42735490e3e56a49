"""What the tables of `speed` and `memory` share: the title with the case's sizes, each variant as
a ratio to its baseline and each backend to eager (measured in the same run), row styles, progress
lines, and the Markdown copy with the exit code."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from rnnbench.case import Case
from rnnbench.cells.registry import get
from rnnbench.commands.common import err, out
from rnnbench.errors import RnnbenchError
from rnnbench.results import IncrementalWriter, Row, atomic_write_text, to_markdown

TEXT_COLUMNS = ("cell", "backend", "mode", "dtype", "note")


def case_label(row: Row) -> str:
    try:
        name = get(row.cell, row.variant, row.form).display
    except RnnbenchError:
        name = f"{row.cell}/{row.variant}"
    return name + (" (canonical)" if row.form == "canonical" else "")


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
        table.add_column(c, justify="left" if c in TEXT_COLUMNS else "right",
                         overflow="fold" if c == "note" else None)
    return table


def row_note(row: Row) -> str:
    return "; ".join(row.warnings) if row.status == "ok" else f"{row.status}: {row.reason}"


def row_style(row: Row, warn: bool = False) -> str | None:
    if row.status in ("failed", "oom"):
        return "red"
    if row.status == "unsupported":
        return "dim"
    return "yellow" if warn else None


def print_table(table: Table, footnote: str) -> None:
    out.print(table)
    out.print(footnote, highlight=False, markup=False)


def measure_cases(cases: list[Case], measure: Callable[[Case], Row], writer: IncrementalWriter,
                  result: Callable[[Row], str]) -> list[Row]:
    """Measure each case with a progress line on stderr ending in ``result(row)`` (or the status of
    a row that is not ok); every row is written as it finishes."""
    rows = []
    try:
        for i, case in enumerate(cases, 1):
            err.print(f"[{i}/{len(cases)}] {case.bench} {case.cell}/{case.variant}"
                      f"{' (canonical)' if case.form == 'canonical' else ''} {case.backend} "
                      f"{case.mode} {case.dtype} …", highlight=False, markup=False, end="")
            row = measure(case)
            err.print(" " + (result(row) if row.status == "ok" else row.status), highlight=False,
                      markup=False)
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
        err.print(f"{len(failed)} case(s) failed; the reasons are in the table", highlight=False)
        raise typer.Exit(1)
