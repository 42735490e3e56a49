"""`rnnbench targets SUITE RESULTS...`: judge the performance targets a suite declares."""

from __future__ import annotations

from pathlib import Path

import typer

from rnnbench.commands.common import cli_errors, out
from rnnbench.errors import RnnbenchError


def targets(
    suite: Path = typer.Argument(..., help="the suite TOML whose [[target]] entries to judge"),
    results: list[Path] = typer.Argument(..., help="result files of that suite (JSON or CSV)"),
):
    """Check a suite's [[target]]s on its results: exit 0 when all pass, 1 when any misses or
    cannot be judged."""
    from rnnbench import targets as tg
    from rnnbench.results import read_results
    from rnnbench.suite import load_suite

    s = load_suite(suite)
    if not s.targets:
        raise RnnbenchError(f"{suite} declares no [[target]]")
    # each file on its own: a reference measured in another run would make the ratio meaningless
    checks = [c for f in results for c in tg.evaluate(s.targets, read_results(f).results)]
    out.print(tg.table(s.targets, checks))
    out.print(tg.summary(checks), highlight=False)
    if any(c.verdict != "pass" for c in checks):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("targets")(cli_errors(targets))
