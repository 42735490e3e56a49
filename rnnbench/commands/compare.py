"""`rnnbench compare BASE CURRENT`: regression verdicts between two result files.

Exit codes: 0 no regression, 1 regression, 2 bad usage or unreadable files, 3 files that cannot be
compared (different device, dtype or schema version).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from rnnbench import compare as cmp
from rnnbench import report_context
from rnnbench.commands.common import cli_errors, fit_table, note, out, parse_one
from rnnbench.errors import RnnbenchError
from rnnbench.outputs import prepare
from rnnbench.results import atomic_write_text, read_results
from rnnbench.validate import Rule, flag

STYLES = {"slower": "red", "changed": "red", "more": "red", "failed": "red", "faster": "green",
          "less": "green", "new": "cyan", "missing": "yellow", "skipped": "dim"}


def compare(
    base: Path = typer.Argument(..., help="baseline result file (JSON, or CSV without samples)"),
    current: Path = typer.Argument(..., help="result file to judge against the baseline"),
    threshold: str = typer.Option("5%", "--threshold",
                                  help="a time must be this much slower to be a regression"),
    min_time: str = typer.Option("1us", "--min-time",
                                 help="current times below this floor (raw, e.g. 10us, 1ms) are "
                                      "never regressions"),
    memory_threshold: str = typer.Option("10%", "--memory-threshold",
                                         help="peak memory must grow this much to be a regression"),
    alpha: float = typer.Option(0.05, "--alpha", help="significance level of the Mann-Whitney U test"),
    gate_memory: bool = typer.Option(False, "--gate-memory", help="peak RSS beyond its noise floor "
                                     "and --memory-threshold is a regression too"),
    normalize: bool = typer.Option(False, "--normalize",
                                   help="divide each time by the reference measured in the same run, "
                                        "so files from different machines compare as ratios"),
    time_fail_ratio: Optional[float] = typer.Option(
        None, "--time-fail-ratio",
        help="report slower times, but fail only when current/base exceeds this ratio (e.g. 2.0)"),
    time_stat: str = typer.Option("median", "--time-stat",
                                  help="median, or min (steadier on a busy shared machine); the "
                                       "significance test always uses the samples"),
    changes_only: bool = typer.Option(False, "--changes-only", help="hide comparisons that are the same"),
    markdown: Optional[Path] = typer.Option(None, "--markdown",
                                            help="write the report as Markdown (PR comment, job summary)"),
    title: str = typer.Option("rnnbench compare", "--title", help="heading of the Markdown report"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the --markdown file if it "
                                   "exists"),
):
    """Compare two result files: per metric base, current, ratio and verdict; exit 1 on a regression."""
    opts = cmp.Options(
        threshold=cmp.parse_percent(threshold, "--threshold"),
        min_time=cmp.parse_duration(min_time, "--min-time"),
        memory_threshold=cmp.parse_percent(memory_threshold, "--memory-threshold"),
        alpha=alpha, normalize=normalize, time_fail_ratio=time_fail_ratio, gate_memory=gate_memory,
        time_stat=parse_one(time_stat, "--time-stat", ("median", "min")))
    if not 0 < alpha < 1:  # false for NaN too
        raise RnnbenchError(f"--alpha must be between 0 and 1, got {alpha}")
    flag("--time-fail-ratio", time_fail_ratio, Rule("float", 1))
    for name, v in (("--threshold", opts.threshold), ("--min-time", opts.min_time),
                    ("--memory-threshold", opts.memory_threshold)):
        flag(name, v, Rule("float", 0))
    prepare(markdown=markdown, inputs=[base, current], overwrite=overwrite)
    rf_base, rf_current = read_results(base), read_results(current)
    report = cmp.compare_files(rf_base, rf_current, opts, names=(str(base), str(current)))
    sides = [(str(base), report_context.context(rf_base)),
             (str(current), report_context.context(rf_current))]
    diffs = report_context.differences(sides[0][1], sides[1][1])
    if report.join_note:
        note(f"note: {report.join_note}")

    shown = [c for c in report.comparisons if not changes_only or c.verdict != "same"]
    table = Table(title=f"{base} → {current}",
                  caption=("settings differ: " + "; ".join(diffs)) if diffs else None,
                  caption_style="bold yellow")
    for c in cmp.columns(opts):
        # a case key is one long token: folded where it must be; other cells wrap at words
        table.add_column(c, justify="right" if c in ("base", "current") or c.startswith("ratio") else "left",
                         overflow="fold" if c == "case" else "ellipsis")
    for c in shown:
        style = STYLES.get(c.verdict)
        table.add_row(*c.cells(), style=("bold " + style) if c.regression and style else style)
    if shown:
        out.print(fit_table(table, ["note"]))
    summary = report.summary()
    if summary:
        st = Table(title="Time ratio (current / base), geometric mean")
        for c in cmp.SUMMARY_COLUMNS:
            st.add_column(c, justify="right" if c not in ("by", "group") else "left")
        for s in summary:
            st.add_row(*cmp.summary_cells(s))
        out.print(st)
    for line in report.notes:
        out.print(f"note: {line}", highlight=False, markup=False)
    if report.caveat:
        note(f"note: {report.caveat}")
    if diffs:
        out.print("warning: " + report_context.warning_line(diffs), style="yellow",
                  highlight=False, markup=False)
    out.print(cmp.thresholds_line(opts), highlight=False, markup=False)
    out.print(cmp.headline(report), style="bold red" if report.regressions else "bold green",
              highlight=False, markup=False)
    if markdown:
        text = cmp.report_markdown(report, title=title, changes_only=changes_only)
        atomic_write_text(markdown, with_context(text, sides))
    if report.regressions:
        raise typer.Exit(1)


def with_context(markdown: str, sides) -> str:
    """The report with the context block (machine, torch, commit, date, settings of each side)
    right under its heading."""
    head, sep, rest = markdown.partition("\n")
    block = "#### Context\n\n" + report_context.markdown_block(sides)
    if head.startswith("#"):
        return f"{head}\n\n{block}{sep}{rest}"
    return block + "\n" + markdown


def register(app: typer.Typer) -> None:
    app.command("compare")(cli_errors(compare))
