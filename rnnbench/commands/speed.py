"""`rnnbench speed`: time cells and backends, each variant against its baseline in the same run."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from rnnbench import envinfo
from rnnbench.backends import parse_backends
from rnnbench.bench.dispatch import measure
from rnnbench.bench.params import applicable_options, changed_options
from rnnbench.bench.speed import MODES, SpeedSettings, busy_note
from rnnbench.case import Case
from rnnbench.cells.registry import families, get, select
from rnnbench.commands import _options as opts
from rnnbench.commands.common import choose_variants, cli_errors, err, hidden_sizes_option, out
from rnnbench.devices import dtype_name, parse_dtype, resolve_device, set_threads
from rnnbench.errors import RnnbenchError, UnknownCellError
from rnnbench.results import IncrementalWriter, Row, atomic_write_text, fmt_si, fmt_time, to_markdown
from rnnbench.runner import layer_sizes


# -- shared with `rnnbench memory` -----------------------------------------------------------------
def parse_modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    if modes == ["all"]:
        return list(MODES)
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise RnnbenchError(f"unknown mode {', '.join(bad) or text!r}; choose from "
                            f"{', '.join(MODES)}, all (comma lists allowed)")
    return list(dict.fromkeys(modes))


def parse_cells(text: str) -> tuple[list[str] | str, bool]:
    """('all', False) or (the named cells, True): named cells must fit the sizes or stop the run."""
    names = [c.strip() for c in text.split(",") if c.strip()]
    if not names or names == ["all"]:
        return "all", False
    return names, True


def make_cases(bench: str, *, cell: str, variant: str, irc: bool, ihc: bool, form: str,
               backends: list[str], modes: list[str], device: str, dtype: str, batch: int,
               seq_len: int, input_size: int, hidden_size: str, layers: int | None,
               ihc_gamma: str, pru_output_map: bool) -> list[Case]:
    for what, v in (("--batch", batch), ("--seq-len", seq_len), ("--input-size", input_size)):
        if v <= 0:
            raise RnnbenchError(f"{what} must be positive, got {v}")
    hs = hidden_sizes_option(hidden_size, layers)
    cells, explicit = parse_cells(cell)
    variants = choose_variants(variant, irc, ihc)
    if not explicit and form != "paper" and "baseline" in variants:
        # 'all' means every cell that has this form; naming a cell without it stays an error
        have, lack = [], []
        for fam in families():
            try:
                get(fam, "baseline", form)
                have.append(fam)
            except UnknownCellError:
                lack.append(fam)
        if lack:
            err.print(f"note: {', '.join(lack)} have no {form} form; left out", highlight=False,
                      markup=False)
        cells = have
    specs = select(cells, variants, form)
    sizes = layer_sizes(input_size, hs)
    cases = []
    for spec in specs:
        if explicit:
            # asked for by name: sizes it cannot take are the user's mistake, not a result
            for n, m in sizes:
                spec.check_sizes(n, m)
        opts = applicable_options(spec, {"gamma_input": ihc_gamma, "output_map": pru_output_map})
        options = tuple(sorted(changed_options(spec, opts).items()))
        for backend in backends:
            for mode in modes:
                cases.append(Case(bench=bench, cell=spec.family, variant=spec.variant,
                                  form=spec.form, backend=backend, mode=mode, dtype=dtype,
                                  device=device, batch=batch, seq_len=seq_len,
                                  input_size=input_size,
                                  hidden_size=hs[0] if len(set(hs)) == 1 else tuple(hs),
                                  layers=len(hs), options=options))
    return cases


def case_label(row: Row) -> str:
    try:
        name = get(row.cell, row.variant, row.form).display
    except RnnbenchError:
        name = f"{row.cell}/{row.variant}"
    return name + (" (canonical)" if row.form == "canonical" else "")


def _group(row: Row, *drop: str) -> tuple:
    fields = {"cell": row.cell, "variant": row.variant, "form": row.form, "backend": row.backend,
              "mode": row.mode, "dtype": row.dtype, "device": row.device,
              "options": row.labels.get("options", "")}
    return tuple(v for k, v in fields.items() if k not in drop)


def reference_index(rows: list[Row], metric: str) -> tuple[dict, dict]:
    """Values of ``metric`` of each baseline (by cell/backend/mode) and each eager row."""
    base, eager = {}, {}
    for r in rows:
        v = r.metrics.get(metric)
        if r.status != "ok" or v is None:
            continue
        if r.variant == "baseline":
            base[_group(r, "variant", "form", "options")] = v
        if r.backend == "eager":
            eager[_group(r, "backend")] = v
    return base, eager


def ratio(value, ref) -> str:
    if value is None or ref is None or not ref or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value / ref:.2f}×"


def progress_line(i: int, n: int, case: Case) -> None:
    err.print(f"[{i}/{n}] {case.bench} {case.cell}/{case.variant}"
              f"{' (canonical)' if case.form == 'canonical' else ''} {case.backend} {case.mode} "
              f"{case.dtype} …", highlight=False, markup=False, end="")


def finish_outputs(rows: list[Row], columns: list[str], cells: list[list[str]],
                   markdown: Optional[Path]) -> None:
    if markdown:
        atomic_write_text(markdown, to_markdown(columns, cells))
    failed = [r for r in rows if r.status == "failed"]
    if failed:
        err.print(f"{len(failed)} case(s) failed; the reasons are in the table", highlight=False)
        raise typer.Exit(1)


# -- the command -----------------------------------------------------------------------------------
def speed(
    device: str = typer.Option("cpu", "--device", "-d", help="cpu or cuda (cuda:N)"),
    cell: str = typer.Option("all", "--cell", "-c",
                             help="gru, lstm, sru, tlstm, fastgrnn, pru, a comma list, or all"),
    variant: str = typer.Option("all", "--variant", "-v", help="baseline, irc, ihc, or all"),
    irc: bool = typer.Option(False, "--irc", help="shorthand: baseline and IRC"),
    ihc: bool = typer.Option(False, "--ihc", help="shorthand: baseline and IHC"),
    form: str = typer.Option("paper", "--form", help="paper or canonical (baselines only); "
                             "native needs canonical"),
    backend: str = typer.Option("eager", "--backend", "-b",
                                help="eager, compile, native, fused, triton: a comma list, or all"),
    mode: str = typer.Option("fwd,fwd+bwd", "--mode", "-m",
                             help="fwd, fwd+bwd, bwd (by difference): a comma list, or all"),
    batch: int = opts.BATCH,
    seq_len: int = opts.SEQ_LEN,
    input_size: int = opts.INPUT_SIZE,
    hidden_size: str = opts.HIDDEN_SIZE,
    layers: Optional[int] = opts.LAYERS,
    dtype: str = opts.DTYPE,
    threads: Optional[int] = opts.THREADS,
    min_run_time: float = typer.Option(1.0, "--min-run-time",
                                       help="seconds of timed samples per case at least"),
    input_sets: int = typer.Option(4, "--input-sets", help="inputs rotated through while timing"),
    check: bool = typer.Option(True, "--check/--no-check",
                               help="verify each backend against eager before timing it"),
    ihc_gamma: str = typer.Option("h", "--ihc-gamma", help="IHC gate input: h or feedback"),
    pru_output_map: bool = typer.Option(True, "--pru-output-map/--no-pru-output-map"),
    csv: Optional[Path] = typer.Option(None, "--csv", help="write the rows as CSV"),
    json: Optional[Path] = typer.Option(None, "--json", help="write the rows as JSON (raw samples)"),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="write the table as Markdown"),
):
    """Time forward, forward+backward (a training step) or backward, with median, IQR and
    throughput; each variant against its baseline, each backend against eager."""
    dev = resolve_device(device)
    dt = dtype_name(parse_dtype(dtype))
    if min_run_time <= 0:
        raise RnnbenchError(f"--min-run-time must be positive, got {min_run_time}")
    if input_sets <= 0:
        raise RnnbenchError(f"--input-sets must be positive, got {input_sets}")
    set_threads(threads)
    cases = make_cases("speed", cell=cell, variant=variant, irc=irc, ihc=ihc, form=form,
                       backends=parse_backends(backend), modes=parse_modes(mode), device=str(dev),
                       dtype=dt, batch=batch, seq_len=seq_len, input_size=input_size,
                       hidden_size=hidden_size, layers=layers, ihc_gamma=ihc_gamma,
                       pru_output_map=pru_output_map)
    settings = SpeedSettings(min_run_time=min_run_time, input_sets=input_sets, check=check)
    if dev.type == "cpu" and (busy := busy_note()):
        err.print(f"note: {busy}", highlight=False, markup=False)
    env = envinfo.collect(str(dev))
    if json:  # the yardstick `compare --normalize` divides by, measured in this run's conditions
        from rnnbench.commands.run import measure_reference
        if ref := measure_reference(str(dev), threads):
            env["reference"] = ref
    writer = IncrementalWriter(env, envinfo.provenance(), json_path=json, csv_path=csv)
    rows = []
    for i, case in enumerate(cases, 1):
        progress_line(i, len(cases), case)
        row = measure(case, speed=settings)
        err.print(" " + (fmt_time(row.metrics.get("time_s_median")) if row.status == "ok"
                         else row.status), highlight=False, markup=False)
        writer.add(row)
        rows.append(row)
    columns, cells = speed_table(rows)
    finish_outputs(rows, columns, cells, markdown)


def speed_table(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    several_backends = len({r.backend for r in rows}) > 1
    columns = ["cell", "backend", "mode", "dtype", "median", "IQR", "min", "samples", "tokens/s",
               "FLOP/s", "vs baseline"] + (["vs eager"] if several_backends else []) + ["note"]
    first = rows[0] if rows else None
    title = "Time per call (median of samples; IQR = q75 − q25)"
    if first is not None:
        title += (f" — {first.device}, B={first.batch} T={first.seq_len} N={first.input_size} "
                  f"M={first.hidden_size} L={first.layers}")
    table = Table(title=title)
    for c in columns:
        table.add_column(c, justify="left" if c in ("cell", "backend", "mode", "dtype", "note")
                         else "right", overflow="fold" if c == "note" else None)
    base, eager = reference_index(rows, "time_s_median")
    cells = []
    for r in rows:
        m = r.metrics
        t = m.get("time_s_median")
        note = "; ".join(r.warnings)
        if r.status != "ok":
            note = f"{r.status}: {r.reason}"
        if m.get("compile_time_s") is not None:
            note = (note + "; " if note else "") + f"compile {fmt_time(m['compile_time_s'])}"
        vs_base = "" if r.variant == "baseline" or r.status != "ok" else ratio(
            t, base.get(_group(r, "variant", "form", "options")))
        vs_eager = "" if r.backend == "eager" or r.status != "ok" else ratio(
            t, eager.get(_group(r, "backend")))
        line = [case_label(r), r.backend, r.mode, r.dtype,
                fmt_time(t) if r.status == "ok" else r.status,
                fmt_time(m.get("time_s_iqr")), fmt_time(m.get("time_s_min")),
                "" if m.get("n_samples") is None else f"{m['n_samples']}×{m.get('inner_repeats', '')}"
                .rstrip("×"),
                fmt_si(m.get("tokens_per_s")), fmt_si(m.get("flop_per_s"), "FLOP/s"), vs_base]
        line += [vs_eager] if several_backends else []
        line += [note]
        noisy = any(w.startswith("noisy") or "noisy:" in w for w in r.warnings)
        style = "red" if r.status in ("failed", "oom") else "dim" if r.status == "unsupported" \
            else "yellow" if noisy else None
        table.add_row(*line, style=style)
        cells.append(line)
    out.print(table)
    out.print("samples: n×calls per sample; vs baseline: time ÷ the baseline variant's (same cell, "
              "backend, mode); FLOP/s: matrix products only (torch.utils.flop_counter).",
              highlight=False, markup=False)
    return columns, cells


def register(app: typer.Typer) -> None:
    app.command("speed")(cli_errors(speed))
