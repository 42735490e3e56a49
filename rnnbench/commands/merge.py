"""`rnnbench merge OUT.json FILES...`: shard and machine result files into one."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from rnnbench import envinfo
from rnnbench.commands.common import cli_errors, out
from rnnbench.errors import RnnbenchError
from rnnbench.outputs import prepare
from rnnbench.results import write_outputs
from rnnbench.shard import merge_results, read_inputs


def merge(
    output: Path = typer.Argument(..., help="the merged JSON file to write"),
    files: list[Path] = typer.Argument(..., help="result files (JSON, or CSV without environment)"),
    csv: Optional[Path] = typer.Option(None, "--csv", help="also write the merged rows as CSV"),
    force: bool = typer.Option(False, "--overwrite", "--force", help="replace OUTPUT (and --csv) "
                               "if it exists"),
):
    """Merge result files into one: rows keyed by case and machine, repeats checked."""
    if output.suffix.lower() != ".json":
        raise RnnbenchError(f"the merged file must be .json (got {output}); add --csv for a CSV copy")
    resolved = {f.resolve() for f in files}
    if output.resolve() in resolved:
        raise RnnbenchError(f"{output} is both the output and an input; write the merge elsewhere")
    if output.exists() and not force:
        # the output comes first: `merge a.json b.json` must not overwrite a.json by accident
        raise RnnbenchError(f"{output} exists: --force replaces it (the output is the first argument)")
    prepare(json=output, csv=csv, inputs=files, overwrite=force, overwrite_flag="--force")
    merged, report = merge_results(read_inputs(files), envinfo.provenance())
    write_outputs(merged, json_path=output, csv_path=csv)
    table = Table()
    table.add_column("machine")
    table.add_column("rows", justify="right")
    for machine, n in report.per_machine.items():
        table.add_row(machine, str(n))
    out.print(table)
    dup = f", {report.duplicates} identical repeat(s) kept once" if report.duplicates else ""
    out.print(f"merged {len(files)} file(s) into {output}: {len(merged.results)} rows{dup}",
              highlight=False)


def register(app: typer.Typer) -> None:
    app.command("merge")(cli_errors(merge))
