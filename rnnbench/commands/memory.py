"""`rnnbench memory`: what a training step keeps and peaks at, each variant against its baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from rnnbench import envinfo
from rnnbench.commands import _options as opts
from rnnbench.commands._cases import make_cases
from rnnbench.commands._tables import (Ratios, case_label, finish_outputs, measure_cases,
                                       new_table, note_parts, print_plan, print_table, row_note, row_style,
                                       several_backends, short_note)
from rnnbench.commands.common import (cli_errors, device_option, dtype_option,
                                      form_for_backends, parse_backends, parse_folds, require_positive)
from rnnbench.outputs import prepare
from rnnbench.results import IncrementalWriter, Row


def fmt_bytes(n) -> str:
    if n is None:
        return ""
    for div, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(n) >= div:
            return f"{n / div:.3g} {unit}"
    return f"{n:.0f} B"


def memory(
    device: str = opts.DEVICE,
    cell: str = opts.CELL,
    variant: str = opts.VARIANT,
    irc: bool = opts.IRC,
    ihc: bool = opts.IHC,
    form: Optional[str] = typer.Option(None, "--form", help=opts.FORM_NATIVE_HELP),
    backend: str = opts.BACKEND,
    batch: int = opts.BATCH,
    seq_len: int = opts.SEQ_LEN,
    input_size: int = opts.INPUT_SIZE,
    hidden_size: str = opts.HIDDEN_SIZE,
    layers: Optional[int] = opts.LAYERS,
    dtype: str = opts.DTYPE,
    threads: Optional[int] = opts.THREADS,
    rss: bool = typer.Option(True, "--rss/--no-rss",
                             help="CPU: peak resident memory of a step, in a fresh subprocess"),
    check: bool = typer.Option(True, "--check/--no-check",
                               help="verify each backend against eager before measuring it"),
    fold: str = opts.FOLD,
    ihc_gamma: str = opts.IHC_GAMMA,
    pru_output_map: bool = opts.PRU_OUTPUT_MAP,
    csv: Optional[Path] = opts.CSV,
    json: Optional[Path] = opts.JSON,
    markdown: Optional[Path] = opts.MARKDOWN,
    overwrite: bool = opts.OVERWRITE,
    quiet: bool = opts.QUIET,
    dry_run: bool = opts.DRY_RUN,
):
    """Bytes saved for backward (exact), parameter bytes, and the peak memory of a training step
    (CUDA: allocated and reserved; CPU: resident, in a fresh process), against the baseline."""
    from rnnbench.bench.dispatch import measure
    from rnnbench.bench.memory import MemorySettings
    from rnnbench.devices import set_threads

    dev = device_option(device)
    dt = dtype_option(dtype)
    require_positive(("--threads", threads))
    prepare(json=json, csv=csv, markdown=markdown, overwrite=overwrite)
    backends = parse_backends(backend)
    form = form_for_backends(form, backends)
    n_threads = set_threads(threads)
    cases = make_cases("memory", cell=cell, variant=variant, irc=irc, ihc=ihc, form=form,
                       backends=backends, modes=["fwd+bwd"], device=str(dev),
                       dtype=dt, batch=batch, seq_len=seq_len, input_size=input_size,
                       hidden_size=hidden_size, layers=layers, ihc_gamma=ihc_gamma,
                       pru_output_map=pru_output_map, folds=parse_folds(fold))
    estimate = print_plan(cases, "memory", quiet=quiet, dry_run=dry_run)
    if dry_run:
        return
    settings = MemorySettings(rss=rss, check=check, threads=n_threads)
    writer = IncrementalWriter(envinfo.collect(str(dev)), envinfo.provenance(), json_path=json,
                               csv_path=csv)
    rows = measure_cases(cases, lambda case: measure(case, memory=settings), writer,
                         lambda row: fmt_bytes(row.metrics.get("saved_bytes")) + " saved",
                         quiet=quiet, estimate_s=estimate)
    columns, cells = memory_table(rows)
    finish_outputs(rows, columns, cells, markdown)


def memory_table(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    cuda = any(r.device.startswith("cuda") for r in rows)
    peak_metric = "peak_allocated_bytes" if cuda else "peak_rss_bytes"
    vs_eager = several_backends(rows)
    # the second "vs baseline" keeps a trailing space: Rich needs distinct column names
    columns = ["cell", "backend", "dtype", "saved for backward", "vs baseline", "per token",
               "params", "peak allocated" if cuda else "peak RSS", "vs baseline "] + (
        ["peak reserved"] if cuda else []) + (["saved vs eager"] if vs_eager else []) + ["note"]
    table = new_table("Memory of one training step (over the memory held before it)", rows, columns)
    saved, peak = Ratios(rows, "saved_bytes"), Ratios(rows, peak_metric)
    cells = []
    for r in rows:
        m = r.metrics
        line = [case_label(r), r.backend, r.dtype,
                fmt_bytes(m.get("saved_bytes")) if r.status == "ok" else r.status,
                saved.vs_baseline(r), fmt_bytes(m.get("saved_bytes_per_token")),
                fmt_bytes(m.get("param_bytes")), fmt_bytes(m.get(peak_metric)),
                peak.vs_baseline(r)]
        if cuda:
            line.append(fmt_bytes(m.get("peak_reserved_bytes")))
        if vs_eager:
            line.append(saved.vs_eager(r))
        line.append(row_note(r))
        table.add_row(*line[:-1], short_note(note_parts(r)), style=row_style(r))
        cells.append(line)
    print_table(table, "saved for backward: distinct storages autograd keeps (parameters and the "
                       "input left out), exact; peak: one step over the baseline before it"
                       + ("" if cuda else ", measured in a fresh process") + ".",
                drop=("per token", "params", "dtype", "peak reserved", "saved vs eager",
                      "vs baseline "))
    return [c.strip() for c in columns], cells


def register(app: typer.Typer) -> None:
    app.command("memory")(cli_errors(memory))
