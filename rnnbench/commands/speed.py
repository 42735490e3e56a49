"""`rnnbench speed`: time cells and backends, each variant against its baseline in the same run."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from rnnbench import envinfo
from rnnbench.commands import _options as opts
from rnnbench.commands._cases import make_cases
from rnnbench.commands._tables import (Ratios, case_label, finish_outputs, measure_cases,
                                       new_table, note_parts, print_plan, print_table, row_style,
                                       several_backends, short_note)
from rnnbench.commands.common import (cli_errors, device_option, dtype_option,
                                      form_for_backends, note, parse_backends, parse_folds,
                                      parse_int_list, parse_modes, require_positive)
from rnnbench.outputs import prepare
from rnnbench.results import IncrementalWriter, Row, fmt_si, fmt_time

# the quick look of a bare `rnnbench speed`: 18 cases in well under a minute on two CPUs; at the
# full sweep's sizes (B32 T128 N=M=512) a training step of an eager cell takes long enough that the
# 18 cases took 105 s, with the FLOP count and the warm-up calls as much as the samples
QUICK_MIN_RUN_TIME = 0.5
QUICK_SIZES = {"batch": 16, "seq_len": 64, "input_size": 256, "hidden_size": "256"}
SIZES = {"batch": 32, "seq_len": 128, "input_size": 512, "hidden_size": "512"}


def _size_option(name: str, flags: tuple[str, ...], what: str):
    return typer.Option(None, *flags, help=f"{what} [default: {SIZES[name]}; {QUICK_SIZES[name]} "
                                           "for the quick look]")


# -- the command -----------------------------------------------------------------------------------
def speed(
    device: str = opts.DEVICE,
    cell: str = opts.CELL,
    variant: str = opts.VARIANT,
    irc: bool = opts.IRC,
    ihc: bool = opts.IHC,
    form: Optional[str] = typer.Option(None, "--form", help=opts.FORM_NATIVE_HELP),
    backend: str = opts.BACKEND,
    mode: Optional[str] = typer.Option(None, "--mode", "-m",
                                       help="fwd, fwd+bwd, bwd (by difference), a comma list, or "
                                            "all [default: fwd,fwd+bwd; fwd+bwd for the quick "
                                            "look of a bare `rnnbench speed`]"),
    batch: Optional[int] = _size_option("batch", ("--batch", "-B"), "batch size B"),
    seq_len: Optional[int] = _size_option("seq_len", ("--seq-len", "-T"), "sequence length T"),
    input_size: Optional[int] = _size_option("input_size", ("--input-size", "-N"), "input width N"),
    hidden_size: Optional[str] = _size_option("hidden_size", ("--hidden-size", "-M"),
                                              "hidden width M, or one per layer: 1150,1150,400"),
    layers: Optional[int] = opts.LAYERS,
    dtype: str = opts.DTYPE,
    threads: Optional[int] = opts.THREADS,
    pin: Optional[str] = typer.Option(None, "--pin-cpus", help="keep the measuring process on "
                                      "these CPUs, e.g. 1 or 0,1 (Linux): steadier numbers on a "
                                      "shared machine, with --threads to match"),
    min_run_time: Optional[float] = typer.Option(
        None, "--min-run-time", help="seconds of timed samples per case at least [default: 1; "
                                     f"{QUICK_MIN_RUN_TIME} for the quick look]"),
    input_sets: int = typer.Option(4, "--input-sets", help="inputs rotated through while timing"),
    check: bool = typer.Option(True, "--check/--no-check",
                               help="verify each backend against eager before timing it"),
    fold: str = opts.FOLD,
    ihc_gamma: str = opts.IHC_GAMMA,
    pru_output_map: bool = opts.PRU_OUTPUT_MAP,
    csv: Optional[Path] = opts.CSV,
    json: Optional[Path] = typer.Option(None, "--json", help="write the rows as JSON (raw samples)"),
    markdown: Optional[Path] = opts.MARKDOWN,
    instructions: bool = typer.Option(False, "--instructions", help="also count each CPU case's "
                                      "instructions per call under valgrind (deterministic, slow)"),
    overwrite: bool = opts.OVERWRITE,
    quiet: bool = opts.QUIET,
    dry_run: bool = opts.DRY_RUN,
):
    """Time forward, forward+backward (a training step) or backward, with median, IQR and
    throughput; each variant against its baseline, each backend against eager.

    Without --cell and --mode it is a quick look (every cell, a training step, about a minute on
    two CPUs); it says how to ask for the full sweep."""
    from rnnbench.bench.dispatch import measure
    from rnnbench.bench.speed import SpeedSettings, busy_note, pinned_threads
    from rnnbench.devices import pinned_to, set_threads

    dev = device_option(device)
    dt = dtype_option(dtype)
    quick = mode is None and cell == "all"
    given = {"batch": batch, "seq_len": seq_len, "input_size": input_size,
             "hidden_size": hidden_size}
    # the quick look's smaller sizes only where no size was asked for: a size given is meant
    sizes = {k: v if v is not None else (QUICK_SIZES if quick and not any(
        x is not None for x in given.values()) else SIZES)[k] for k, v in given.items()}
    batch, seq_len, input_size, hidden_size = (sizes[k] for k in given)
    if quick and not dry_run:
        note(f"a quick look: every cell, a training step (fwd+bwd) only, B{batch} T{seq_len} "
             f"N{input_size} M{hidden_size}, {min_run_time or QUICK_MIN_RUN_TIME:g} s of samples "
             "per case; the full sweep: rnnbench speed --mode fwd,fwd+bwd --min-run-time 1 "
             "(B32 T128 N=M=512), or rnnbench run bench_configs/cpu.toml")
    mode = mode or ("fwd+bwd" if quick else "fwd,fwd+bwd")
    if min_run_time is None:
        min_run_time = QUICK_MIN_RUN_TIME if quick else 1.0
    require_positive(("--min-run-time", min_run_time), ("--input-sets", input_sets),
                     ("--threads", threads))
    prepare(json=json, csv=csv, markdown=markdown, overwrite=overwrite)
    backends = parse_backends(backend)
    form = form_for_backends(form, backends)
    pinned = parse_int_list(pin, "--pin-cpus", minimum=0) if pin else None
    # before any torch work, so that torch's worker threads start on those CPUs too
    with pinned_to(pinned):
        set_threads(threads if threads is not None else pinned_threads(pinned))
        cases = make_cases("speed", cell=cell, variant=variant, irc=irc, ihc=ihc, form=form,
                           backends=backends, modes=parse_modes(mode), device=str(dev),
                           dtype=dt, batch=batch, seq_len=seq_len, input_size=input_size,
                           hidden_size=hidden_size, layers=layers, ihc_gamma=ihc_gamma,
                           pru_output_map=pru_output_map, folds=parse_folds(fold))
        estimate = print_plan(cases, "speed", min_run_time=min_run_time, quiet=quiet,
                              dry_run=dry_run)
        if dry_run:
            return
        settings = SpeedSettings(min_run_time=min_run_time, input_sets=input_sets, check=check,
                                 pin_cpus=pinned)
        if dev.type == "cpu" and (busy := busy_note()):
            note(busy)
        env = envinfo.collect(str(dev))
        if json:  # the yardstick `compare --normalize` divides by, measured in this run's conditions
            from rnnbench.bench.reference import run_reference
            if ref := run_reference(str(dev), threads, warn=note):
                env["reference"] = ref
        writer = IncrementalWriter(env, envinfo.provenance(), json_path=json, csv_path=csv)
        counts = _count_instructions(cases) if instructions else {}
        rows = measure_cases(cases, lambda case: _with_count(measure(case, speed=settings), counts),
                             writer, lambda row: fmt_time(row.metrics.get("time_s_median")),
                             quiet=quiet, estimate_s=estimate)
        columns, cells = speed_table(rows)
        finish_outputs(rows, columns, cells, markdown)


def _count_instructions(cases) -> dict[str, float]:
    """Counted before any timing, in one valgrind process (torch imports once, slowly)."""
    from rnnbench.bench import instructions
    instructions.require()
    note(f"counting instructions of {len(cases)} cases under valgrind (about 20 s to start, "
         "then each case about 50x its normal time)")
    return instructions.count(cases)


def _with_count(row: Row, counts: dict[str, float]) -> Row:
    if row.status == "ok" and row.key in counts:
        row.metrics["instructions"] = counts[row.key]
    return row


def speed_table(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    vs_eager = several_backends(rows)
    counted = any("instructions" in r.metrics for r in rows)
    columns = ["cell", "backend", "mode", "dtype", "median", "IQR", "min", "samples", "tokens/s",
               "FLOP/s", "vs baseline"] + (["vs eager"] if vs_eager else []) + \
        (["instr/call"] if counted else []) + ["note"]
    table = new_table("Time per call (median of samples; IQR = q75 − q25)", rows, columns)
    times = Ratios(rows, "time_s_median")
    cells = []
    for r in rows:
        m = r.metrics
        parts = note_parts(r)
        if m.get("compile_time_s") is not None:
            parts.append(f"compile {fmt_time(m['compile_time_s'])}")
        note = "; ".join(parts)
        line = [case_label(r), r.backend, r.mode, r.dtype,
                fmt_time(m.get("time_s_median")) if r.status == "ok" else r.status,
                fmt_time(m.get("time_s_iqr")), fmt_time(m.get("time_s_min")),
                "" if m.get("n_samples") is None else f"{m['n_samples']}×{m.get('inner_repeats', '')}"
                .rstrip("×"),
                fmt_si(m.get("tokens_per_s")), fmt_si(m.get("flop_per_s"), "FLOP/s"),
                times.vs_baseline(r)]
        line += [times.vs_eager(r)] if vs_eager else []
        line += [fmt_si(m.get("instructions"))] if counted else []
        line += [note]
        noisy = any(w.startswith("noisy") or "noisy:" in w for w in r.warnings)
        table.add_row(*line[:-1], short_note(parts), style=row_style(r, warn=noisy))
        cells.append(line)
    print_table(table, "samples: n×calls per sample; vs baseline: time ÷ the baseline variant's "
                       "(same cell, backend, mode); FLOP/s: matrix products only "
                       "(torch.utils.flop_counter); notes in full: --json or --markdown.",
                drop=("FLOP/s", "samples", "min", "dtype", "tokens/s", "IQR", "mode"))
    return columns, cells


def register(app: typer.Typer) -> None:
    app.command("speed")(cli_errors(speed))
