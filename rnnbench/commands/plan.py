"""`rnnbench plan SUITE.toml`: the cases a run would measure, with their estimated cost, and how a
split into shards balances, without measuring anything."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from rnnbench.commands.common import cli_errors, out
from rnnbench.commands._cases import selected_cases
from rnnbench.shard import estimate_cost, shard_loads


def plan(
    suite: Path = typer.Argument(..., help="a suite TOML such as bench_configs/gpu.toml"),
    shard: Optional[str] = typer.Option(None, "--shard", help="I/N or auto: only that shard's cases"),
    device: Optional[str] = typer.Option(None, "--device", help="as `run --device`"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="counts and shard loads only"),
):
    """List a suite's cases (key, estimated cost) and their count, without running them."""
    from rnnbench.suite import is_params_table, read_toml

    data = read_toml(suite)
    if is_params_table(data):
        from rnnbench.bench import published
        _, rows = published.load(suite)
        out.print(f"{suite}: a parameter table of {len(rows)} rows, counted in a moment by "
                  f"`rnnbench run {suite}`; nothing to plan", highlight=False)
        return
    s, where, cases = selected_cases(data, suite, device, shard)
    costs = [estimate_cost(c) for c in cases]
    if not quiet:
        table = Table(title=f"{s.name}" + (f", shard {where[0]}/{where[1]}" if where else ""))
        table.add_column("#", justify="right")
        table.add_column("key", overflow="fold")
        table.add_column("est. cost (GFLOP-eq.)", justify="right")
        for i, (c, cost) in enumerate(zip(cases, costs), 1):
            table.add_row(str(i), c.key, f"{cost / 1e9:.3g}")
        out.print(table)
    total = sum(estimate_cost(c) for c in s.cases)
    line = f"{len(cases)} cases"
    if where:
        line += (f" of {len(s.cases)} in shard {where[0]}/{where[1]}, "
                 f"{100 * sum(costs) / total if total else 0:.1f}% of the estimated work")
        loads = shard_loads(s.cases, where[1])
        mean = total / where[1]
        line += f"; heaviest shard {max(loads) / mean:.2f}× the mean" if mean else ""
    line += f"; estimated cost {sum(costs) / 1e12:,.4g} TFLOP-equivalents"
    out.print(line, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("plan")(cli_errors(plan))
