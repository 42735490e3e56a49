"""`rnnbench memory`: what a training step keeps and peaks at, each variant against its baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from rnnbench import envinfo
from rnnbench.backends import parse_backends
from rnnbench.bench.dispatch import measure
from rnnbench.bench.memory import MemorySettings
from rnnbench.commands import _options as opts
from rnnbench.commands.common import cli_errors, err, out
from rnnbench.commands.speed import (_group, case_label, finish_outputs, make_cases, progress_line,
                                     ratio, reference_index)
from rnnbench.devices import dtype_name, parse_dtype, resolve_device, set_threads
from rnnbench.results import IncrementalWriter, Row


def fmt_bytes(n) -> str:
    if n is None:
        return ""
    for div, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(n) >= div:
            return f"{n / div:.3g} {unit}"
    return f"{n:.0f} B"


def memory(
    device: str = typer.Option("cpu", "--device", "-d", help="cpu or cuda (cuda:N)"),
    cell: str = typer.Option("all", "--cell", "-c",
                             help="gru, lstm, sru, tlstm, fastgrnn, pru, a comma list, or all"),
    variant: str = typer.Option("all", "--variant", "-v", help="baseline, irc, ihc, or all"),
    irc: bool = typer.Option(False, "--irc", help="shorthand: baseline and IRC"),
    ihc: bool = typer.Option(False, "--ihc", help="shorthand: baseline and IHC"),
    form: str = typer.Option("paper", "--form", help="paper or canonical (baselines only)"),
    backend: str = typer.Option("eager", "--backend", "-b",
                                help="eager, compile, native, fused, triton: a comma list, or all"),
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
    ihc_gamma: str = typer.Option("h", "--ihc-gamma", help="IHC gate input: h or feedback"),
    pru_output_map: bool = typer.Option(True, "--pru-output-map/--no-pru-output-map"),
    csv: Optional[Path] = typer.Option(None, "--csv", help="write the rows as CSV"),
    json: Optional[Path] = typer.Option(None, "--json", help="write the rows as JSON"),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="write the table as Markdown"),
):
    """Bytes saved for backward (exact), parameter bytes, and the peak memory of a training step
    (CUDA: allocated and reserved; CPU: resident, in a fresh process), against the baseline."""
    dev = resolve_device(device)
    dt = dtype_name(parse_dtype(dtype))
    n_threads = set_threads(threads)
    cases = make_cases("memory", cell=cell, variant=variant, irc=irc, ihc=ihc, form=form,
                       backends=parse_backends(backend), modes=["fwd+bwd"], device=str(dev),
                       dtype=dt, batch=batch, seq_len=seq_len, input_size=input_size,
                       hidden_size=hidden_size, layers=layers, ihc_gamma=ihc_gamma,
                       pru_output_map=pru_output_map)
    settings = MemorySettings(rss=rss, check=check, threads=n_threads)
    writer = IncrementalWriter(envinfo.collect(str(dev)), envinfo.provenance(), json_path=json,
                               csv_path=csv)
    rows = []
    for i, case in enumerate(cases, 1):
        progress_line(i, len(cases), case)
        row = measure(case, memory=settings)
        err.print(" " + (fmt_bytes(row.metrics.get("saved_bytes")) + " saved" if row.status == "ok"
                         else row.status), highlight=False, markup=False)
        writer.add(row)
        rows.append(row)
    columns, cells = memory_table(rows)
    finish_outputs(rows, columns, cells, markdown)


def memory_table(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    cuda = any(r.device.startswith("cuda") for r in rows)
    peak_metric = "peak_allocated_bytes" if cuda else "peak_rss_bytes"
    several_backends = len({r.backend for r in rows}) > 1
    columns = ["cell", "backend", "dtype", "saved for backward", "vs baseline", "per token",
               "params", "peak allocated" if cuda else "peak RSS", "vs baseline "] + (
        ["peak reserved"] if cuda else []) + (["saved vs eager"] if several_backends else []) + ["note"]
    first = rows[0] if rows else None
    title = "Memory of one training step (over the memory held before it)"
    if first is not None:
        title += (f" — {first.device}, B={first.batch} T={first.seq_len} N={first.input_size} "
                  f"M={first.hidden_size} L={first.layers}")
    table = Table(title=title)
    for c in columns:
        table.add_column(c, justify="left" if c in ("cell", "backend", "dtype", "note") else "right",
                         overflow="fold" if c == "note" else None)
    saved_base, saved_eager = reference_index(rows, "saved_bytes")
    peak_base, _ = reference_index(rows, peak_metric)
    cells = []
    for r in rows:
        m = r.metrics
        key = _group(r, "variant", "form", "options")
        not_base = r.variant != "baseline" and r.status == "ok"
        note = "; ".join(r.warnings) if r.status == "ok" else f"{r.status}: {r.reason}"
        line = [case_label(r), r.backend, r.dtype,
                fmt_bytes(m.get("saved_bytes")) if r.status == "ok" else r.status,
                ratio(m.get("saved_bytes"), saved_base.get(key)) if not_base else "",
                fmt_bytes(m.get("saved_bytes_per_token")), fmt_bytes(m.get("param_bytes")),
                fmt_bytes(m.get(peak_metric)),
                ratio(m.get(peak_metric), peak_base.get(key)) if not_base else ""]
        if cuda:
            line.append(fmt_bytes(m.get("peak_reserved_bytes")))
        if several_backends:
            line.append("" if r.backend == "eager" or r.status != "ok" else
                        ratio(m.get("saved_bytes"), saved_eager.get(_group(r, "backend"))))
        line.append(note)
        style = "red" if r.status in ("failed", "oom") else "dim" if r.status == "unsupported" else None
        table.add_row(*line, style=style)
        cells.append(line)
    out.print(table)
    out.print("saved for backward: distinct storages autograd keeps (parameters and the input left "
              "out), exact; peak: one step over the baseline before it"
              + ("" if cuda else ", measured in a fresh process") + ".", highlight=False, markup=False)
    return [c.strip() for c in columns], cells


def register(app: typer.Typer) -> None:
    app.command("memory")(cli_errors(memory))
