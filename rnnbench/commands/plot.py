"""`rnnbench plot RESULTS`: PNG charts from a result file, one per metric."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from rnnbench import plot as plotting
from rnnbench.commands.common import cli_errors, split_list
from rnnbench.errors import RnnbenchError
from rnnbench.outputs import Output, check_outputs
from rnnbench.results import read_results
from rnnbench.validate import Rule, flag


def plot(
    results: Path = typer.Argument(..., help="result file (JSON; CSV has no learning curves)"),
    out_dir: Path = typer.Option(Path("rnnbench-plots"), "--out", "-o", help="directory for the PNG files"),
    metric: Optional[list[str]] = typer.Option(
        None, "--metric", "-m", help="plot only these metrics: a comma list, or repeat the flag; "
                                     "'curves' for learning curves"),
    dpi: int = typer.Option(120, "--dpi", help="resolution of the PNG files (1 to 1200)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace PNG files that exist"),
):
    """Chart a result file: time or throughput against hidden size, parameters and memory per
    variant, learning curves of task rows. Prints the files written."""
    # a figure is a few inches wide: past 1200 dpi it is a picture too large to draw or store
    flag("--dpi", dpi, Rule("int", 1, 1200))
    check_outputs([Output("--out", out_dir, "dir")], inputs=[results])
    metrics = [m for text in metric or () for m in split_list(text, "--metric")]
    rf = read_results(results)
    charts = plotting.build_charts(rf.results, list(dict.fromkeys(metrics)) or None)
    if not charts:
        raise RnnbenchError(
            f"{results} has nothing to plot: no ok rows with times, throughput, parameters, memory "
            "or learning curves")
    check_outputs([Output("--out", out_dir / f"{c.name}.png", "png") for c in charts],
                  inputs=[results], overwrite=overwrite)
    for path in plotting.write_charts(charts, out_dir, dpi=dpi):
        print(path)


def register(app: typer.Typer) -> None:
    app.command("plot")(cli_errors(plot))
