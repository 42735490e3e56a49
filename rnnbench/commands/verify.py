"""`rnnbench verify`: every fused/Triton kernel against the eager reference on this device."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from rnnbench import envinfo, progress
from rnnbench.commands import _options as opts
from rnnbench.commands.common import (cli_errors, device_option, dtype_option, out,
                                      parse_choices, parse_one, parse_variants, select_cells)
from rnnbench.outputs import prepare
from rnnbench.results import ResultFile, to_markdown, write_outputs, atomic_write_text


def verify(
    device: str = opts.DEVICE,
    backend: str = typer.Option("fused,triton", "--backend", "-b",
                                help="fused, fused-torch, fused-cpp, triton, a comma list, or all"),
    cell: str = opts.CELL,
    variant: str = typer.Option("irc,ihc", "--variant", "-v",
                                help="irc, ihc, a comma list, or all (= irc,ihc): the fused "
                                     "kernels exist for IRC and IHC cells only"),
    dtype: str = opts.DTYPE,
    sizes: str = typer.Option("", "--sizes", help="small or gpu (default: gpu on cuda, else small)"),
    folds: str = typer.Option("auto,on,off", "--fold",
                              help="IRC paths to check: auto, on, off, a comma list, or all"),
    csv: Optional[Path] = opts.CSV,
    json: Optional[Path] = opts.JSON,
    markdown: Optional[Path] = opts.MARKDOWN,
    overwrite: bool = opts.OVERWRITE,
    quiet: bool = opts.QUIET,
    dry_run: bool = opts.DRY_RUN,
):
    """Check fused and Triton backends against eager: outputs, final states, every gradient.
    Exit 1 if any case fails."""
    from rnnbench.backends import BACKENDS
    from rnnbench.bench.verify import IMPLS, SIZES, verify_case, verify_cases

    dev = device_option(device)
    dtype = dtype_option(dtype)
    prepare(json=json, csv=csv, markdown=markdown, overwrite=overwrite)
    sizes = parse_one(sizes or ("gpu" if dev.type == "cuda" else "small"), "--sizes", tuple(SIZES))
    backends = parse_choices(backend, "--backend", tuple(IMPLS), noun="backend", known=BACKENDS,
                             why="verify checks fused and triton (fused-torch, fused-cpp: fused's two "
                                 "loops), on each --fold path, against eager")
    variants = parse_variants(variant, allowed=("irc", "ihc"),
                              why="the fused kernels exist for IRC and IHC cells only")
    fold_list = parse_choices(folds, "--fold", ("auto", "on", "off"), noun="fold path")
    specs, _ = select_cells(cell, variants)
    cases = verify_cases(specs, backends, dtype, str(dev), sizes, fold_list)
    if dry_run:
        for i, case in enumerate(cases, 1):
            print(f"{i:>4}  {case.key}")
        print(progress.plan_line(len(cases), None, "verify") + " (dry run: nothing checked)")
        return
    progress.announce(progress.plan_line(len(cases), None, "verify"), quiet=quiet)
    rows = []
    with progress.reporter(len(cases), "verify", quiet=quiet) as p:
        for case in cases:
            p.start(case.key)
            row = verify_case(case)
            p.done(case.key, {"ok": "pass", "failed": "FAIL"}.get(row.status, row.status))
            rows.append(row)
    columns = ["cell", "backend", "fold", "T×B×N×M", "output", "states", "gradients", "result"]
    table = Table(title=f"verify on {dev} ({dtype}): relative error against eager")
    for c in columns:
        table.add_column(c, justify="right" if c in ("output", "states", "gradients") else "left")
    cells_md = []
    for r in rows:
        m = r.metrics
        res = {"ok": "pass", "failed": "FAIL"}.get(r.status, r.status)
        line = [f"{r.cell}/{r.variant}", r.backend, r.labels.get("fold", "auto"),
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
