"""`rnnbench list` and `rnnbench env`: what the zoo holds and what this machine is."""

from __future__ import annotations

import json as jsonlib

import typer
from rich.table import Table

from rnnbench import envinfo
from rnnbench.cells.registry import all_specs
from rnnbench.commands.common import cli_errors, out


def list_cells():
    """The cells, variants and forms, with one line of equations each."""
    table = Table(title="rnnbench cells (σ sigmoid, ⊙ elementwise; x ∈ R^N, h ∈ R^M)")
    for c in ("cell", "variant", "form", "N = M only", "equations"):
        table.add_column(c, overflow="fold")
    for s in all_specs():
        table.add_row(s.family, s.variant, s.form, "yes" if s.requires_square else "", s.equations)
    out.print(table)


def env(json: bool = typer.Option(False, "--json", help="print the environment as JSON")):
    """Python, torch, triton, CUDA/cuDNN, CPU, threads, and GPUs through NVML."""
    info = envinfo.collect("cpu")
    info["git"] = envinfo.git_info()
    if json:
        print(jsonlib.dumps(info, indent=1, default=str))
        return
    table = Table(title="rnnbench environment", show_header=False)
    table.add_column("what")
    table.add_column("value", overflow="fold")
    for k, v in info.items():
        if k == "gpus":
            continue
        table.add_row(k, "" if v is None else str(v))
    out.print(table)
    gpus = info["gpus"]
    if isinstance(gpus, str):
        out.print(f"GPU: none ({gpus})")
    else:
        for g in gpus:
            out.print(f"GPU {g['index']}: {g['name']}, driver {g['driver']}, "
                      f"{g['memory_total_bytes'] / 2**30:.1f} GiB")


def register(app: typer.Typer) -> None:
    app.command("list")(cli_errors(list_cells))
    app.command("env")(cli_errors(env))
