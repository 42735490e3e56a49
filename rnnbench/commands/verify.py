"""`rnnbench verify`: every fused/Triton kernel against the eager reference on this device."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from rnnbench import envinfo
from rnnbench.bench.verify import SIZES, verify_case, verify_cases
from rnnbench.cells.registry import select
from rnnbench.commands.common import cli_errors, err, out
from rnnbench.devices import dtype_name, parse_dtype, resolve_device
from rnnbench.errors import RnnbenchError
from rnnbench.results import ResultFile, to_markdown, write_outputs, atomic_write_text


def verify(
    device: str = typer.Option("cpu", "--device", help="cpu or cuda"),
    backend: str = typer.Option("fused,triton", "--backend", help="fused, triton, or both"),
    cell: str = typer.Option("all", "--cell", "-c", help="a family, a comma list, or all"),
    variant: str = typer.Option("irc,ihc", "--variant", "-v", help="irc, ihc, or both"),
    dtype: str = typer.Option("float32", "--dtype", help="float32, bfloat16, float16, float64"),
    sizes: str = typer.Option("", "--sizes", help="small or gpu (default: gpu on cuda, else small)"),
    folds: str = typer.Option("auto,on,off", "--fold", help="IRC paths to check: auto, on, off"),
    csv: Optional[Path] = typer.Option(None, "--csv"),
    json: Optional[Path] = typer.Option(None, "--json"),
    markdown: Optional[Path] = typer.Option(None, "--markdown"),
):
    """Check fused and Triton backends against eager: outputs, final states, every gradient.
    Exit 1 if any case fails."""
    dev = resolve_device(device)
    dtype = dtype_name(parse_dtype(dtype))
    sizes = sizes or ("gpu" if dev.type == "cuda" else "small")
    if sizes not in SIZES:
        raise RnnbenchError(f"--sizes must be one of {', '.join(SIZES)}")
    backends = [b.strip() for b in backend.split(",") if b.strip()]
    if not backends or set(backends) - {"fused", "triton"}:
        raise RnnbenchError("--backend takes fused and/or triton")
    variants = [v.strip() for v in variant.split(",") if v.strip()]
    if not variants or set(variants) - {"irc", "ihc"}:
        raise RnnbenchError("--variant takes irc and/or ihc (the fused kernels cover those)")
    fold_list = [f.strip() for f in folds.split(",") if f.strip()]
    if not fold_list or set(fold_list) - {"auto", "on", "off"}:
        raise RnnbenchError("--fold takes auto, on, off")
    cells = "all" if cell == "all" else [c.strip() for c in cell.split(",")]
    specs = select(cells, variants)
    cases = verify_cases(specs, backends, dtype, str(dev), sizes, fold_list)
    rows = []
    for i, case in enumerate(cases, 1):
        err.print(f"[{i}/{len(cases)}] {case.key}", highlight=False)
        rows.append(verify_case(case))
    columns = ["cell", "backend", "fold", "T×B×N×M", "output", "states", "gradients", "result"]
    table = Table(title=f"verify on {dev} ({dtype}): relative error against eager")
    for c in columns:
        table.add_column(c, justify="right" if c in ("output", "states", "gradients") else "left")
    cells_md = []
    for r in rows:
        m = r.metrics
        res = {"ok": "pass", "failed": "FAIL"}.get(r.status, r.status)
        line = [f"{r.cell}/{r.variant}", r.backend, r.mode.removeprefix("fold="),
                f"{r.seq_len}×{r.batch}×{r.input_size}×{r.hidden_size}",
                *(f"{m[k]:.1e}" if k in m else "" for k in ("out_rel_err", "state_rel_err",
                                                             "grad_rel_err")),
                res if r.status == "ok" else f"{res}: {r.reason}"]
        table.add_row(*line, style={"failed": "red", "unsupported": "dim"}.get(r.status))
        cells_md.append(line)
    out.print(table)
    n_fail = sum(r.status == "failed" for r in rows)
    n_ok = sum(r.status == "ok" for r in rows)
    out.print(f"{n_ok} passed, {n_fail} failed, {len(rows) - n_ok - n_fail} unsupported")
    if markdown:
        atomic_write_text(markdown, to_markdown(columns, cells_md))
    if csv or json:
        write_outputs(ResultFile(envinfo.collect(str(dev)), envinfo.provenance(), rows),
                      json_path=json, csv_path=csv)
    if n_fail:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("verify")(cli_errors(verify))
