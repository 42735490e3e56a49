"""`rnnbench run SUITE.toml`: sweep a suite (or a shard of it), writing every row as it finishes."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from rnnbench import envinfo, metrics, progress
from rnnbench.case import Case
from rnnbench.commands import _options as opts
from rnnbench.commands._cases import ordered_cases, selected_cases
from rnnbench.commands._tables import case_text, print_plan, result_extras, short_note
from rnnbench.commands.common import check_devices, cli_errors, fit_table, note, out
from rnnbench.errors import RnnbenchError
from rnnbench.outputs import Output, check_outputs, hold_locks
from rnnbench.results import (IncrementalWriter, ResultFile, Row,
                              journal_path, read_results, size_label, write_outputs)
from rnnbench.shard import machine_id

RESULTS_DIR = Path("results")
_STAMP = "%Y%m%d-%H%M%S"


def shard_tag(shard: tuple[int, int] | None) -> str:
    return f"-shard{shard[0]}of{shard[1]}" if shard else ""


def default_json_path(name: str, shard, *, resume: bool) -> Path:
    """results/<suite>[-shardIofN]-<UTC time>.json; with --resume, the newest such file (or the
    file an interrupted --rounds run was going to pool into: its <stem>.rounds folder)."""
    stem = name + shard_tag(shard)
    if resume and RESULTS_DIR.is_dir():
        pattern = re.compile(re.escape(stem) + r"-\d{8}-\d{6}\.(json|rounds)")
        found = sorted(p.with_suffix(".json") for p in RESULTS_DIR.iterdir()
                       if pattern.fullmatch(p.name))
        if found:
            return found[-1]
    return RESULTS_DIR / f"{stem}-{datetime.now(timezone.utc).strftime(_STAMP)}.json"


def _prepare_output(json_path: Path, resume: bool, overwrite: bool, env: dict) -> None:
    if not json_path.exists():
        if journal_path(json_path).exists() and not resume:
            if not overwrite:
                raise RnnbenchError(f"{journal_path(json_path)} holds rows of an earlier run: "
                                    "--resume continues it, --overwrite replaces it")
            journal_path(json_path).unlink()
        return
    if overwrite and not resume:
        journal_path(json_path).unlink(missing_ok=True)
    if not resume and not overwrite:
        raise RnnbenchError(f"{json_path} exists: --resume continues it, --overwrite replaces it")
    if resume:
        old = read_results(json_path)
        had, now = machine_id(old.env), machine_id(env)
        if old.env and had != now:
            raise RnnbenchError(f"{json_path} was measured on {had!r}, this machine is {now!r}: "
                                "write to another --json and `rnnbench merge` the files")


def run(
    suite: Path = typer.Argument(..., help="a suite TOML such as bench_configs/quick.toml, or a "
                                          "parameter table such as bench_configs/paper_table2.toml"),
    json: Optional[Path] = typer.Option(None, "--json", help="result file "
                                        "[default: results/<suite>[-shardIofN]-<time>.json]"),
    csv: Optional[Path] = typer.Option(None, "--csv", help="also write the rows as CSV"),
    resume: bool = typer.Option(False, "--resume", help="keep the rows already in the JSON file "
                                "(status ok or unsupported) and measure the rest; without --json, "
                                "the newest results/<suite>-*.json"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing --json file"),
    shard: Optional[str] = typer.Option(None, "--shard", help="I/N: run the I-th of N balanced "
                                        "parts (1-based); auto: from a SLURM job array"),
    device: Optional[str] = typer.Option(None, "--device", help="run every case on this device "
                                         "(cpu, cuda, cuda:N, mps)"),
    rounds: int = typer.Option(1, "--rounds", help="measure the suite this many times, each pass "
                               "in a fresh process, and pool the samples (steadier medians on "
                               "shared machines)"),
    bench: Optional[str] = typer.Option(None, "--bench", help="only the cases of these benches "
                                        "(comma list: speed, memory, ...)"),
    shuffle: Optional[int] = typer.Option(None, "--shuffle", help="measure the cases in an order "
                                          "shuffled with this seed (rnnbench ab uses it)"),
    quiet: bool = opts.QUIET,
    dry_run: bool = opts.DRY_RUN,
):
    """Run a suite: every case measured once, each row written as it finishes."""
    # torch-heavy: imported when a suite runs, not when the CLI starts
    from rnnbench.suite import default_measure, is_params_table, measure_kwargs, read_toml

    if rounds < 1:
        raise RnnbenchError(f"--rounds must be at least 1, got {rounds}")
    data = read_toml(suite)
    if is_params_table(data):
        if shard:
            raise RnnbenchError(f"{suite} is a parameter table: it runs in a moment, so it has no "
                                "shards; drop --shard")
        _run_params(suite, json, csv, overwrite or resume)  # recounting is resuming
        return
    s, where, cases = selected_cases(data, suite, device, shard)
    cases = ordered_cases(cases, bench, shuffle)
    if dry_run:
        print_plan(cases, s.name, min_run_time=_min_run_time(s.settings), dry_run=True)
        return
    env = envinfo.collect(check_devices(c.device for c in cases) if cases else "cpu")
    measure = default_measure()
    measure_kwargs(measure, s.settings, f"{suite}: [settings]")  # a typo fails before any work

    json_path = json or default_json_path(s.name, where, resume=resume)
    # the JSON's own rules (--resume, journals) are _prepare_output's; the rest are every command's
    check_outputs([Output("--json", json_path, "json"), Output("--csv", csv, "csv")],
                  inputs=[suite], overwrite=overwrite or resume, resumable=[json_path])
    hold_locks([json_path, csv])
    _prepare_output(json_path, resume, overwrite, env)
    if rounds > 1:
        _run_rounds(suite, s, where, json_path, csv, rounds, resume=resume, overwrite=overwrite,
                    shard=shard, device=device, quiet=quiet)
        return
    _measure_suite(s, suite, where, cases, env, measure, json_path, csv, resume=resume, quiet=quiet)


def _measure_suite(s, suite: Path, where, cases: list[Case], env: dict, measure, json_path: Path,
                   csv: Path | None, *, resume: bool, quiet: bool) -> None:
    """One pass over the cases, each row written as it finishes, with progress, the summary
    and the suite's targets."""
    from rnnbench.bench.speed import pinned_threads
    from rnnbench.devices import pinned_to, set_threads
    from rnnbench.sweep import default_measure_group, run_suite
    from rnnbench.targets import alternation_groups

    # pinned before any torch work (the run's yardstick starts torch's worker threads), and for
    # this run only
    speed_settings = s.settings.get("speed") if isinstance(s.settings.get("speed"), dict) else {}
    pin = speed_settings.get("pin_cpus")
    threads = speed_settings.get("threads")
    with pinned_to(pin):
        set_threads(threads if threads is not None else pinned_threads(pin))
        if any(c.bench == "speed" for c in cases):
            from rnnbench.bench.reference import run_reference
            ref = run_reference(env["device"], threads, warn=note)
            if ref:
                env["reference"] = ref
        prov = envinfo.provenance()
        prov["suite"] = {"path": str(suite), "name": s.name, "cases": len(s.cases),
                         "shard": f"{where[0]}/{where[1]}" if where else None,
                         "shard_cases": len(cases), "settings": s.settings}
        writer = IncrementalWriter(env, prov, json_path=json_path, csv_path=csv, resume=resume)
        if where:
            note(f"shard {where[0]}/{where[1]}: {len(cases)} of {len(s.cases)} cases")

        estimate = print_plan(cases, s.name, min_run_time=_min_run_time(s.settings), quiet=quiet)
        with progress.reporter(len(cases), s.name, quiet=quiet, estimate_s=estimate) as p:
            started_at: dict[str, float] = {}
            last_done = [0.0]

            def started(case: Case) -> None:
                started_at[case.key] = time.monotonic()
                if case.backend == "compile":
                    p.announce(f"{case_text(case)}: torch.compile first (timed apart)")
                p.start(case_text(case))

            def finished(case: Case, row: Row) -> None:
                t0 = started_at.pop(case.key, None)
                if t0 is None:
                    p.skip(case_text(case), "already in the file")
                    return
                # cases timed together finish together: the first takes the group's time, so
                # the ETA's mean per case stays right
                now = time.monotonic()
                seconds, last_done[0] = now - max(t0, last_done[0]), now
                p.done(case_text(case), _result_text(row) + result_extras(row), seconds=seconds)
                if row.status in ("oom", "failed"):
                    p.announce(f"{row.status}: {case.key}: {row.reason}")

            groups = alternation_groups(s.targets, cases) if s.targets else []
            if groups:
                p.announce(f"{sum(map(len, groups))} cases of the targets are timed in alternation "
                           f"with their references, in {len(groups)} group(s)")
            report = run_suite(cases, writer=writer, measure=measure, settings=s.settings,
                               on_start=started, on_done=finished, together=groups,
                               measure_group=default_measure_group())
        print_summary(report.rows, title=f"{s.name}" + (f", shard {where[0]}/{where[1]}" if where else ""))
        resumed = f", {report.resumed} already in the file" if report.resumed else ""
        out.print(f"{report.measured} measured{resumed}; written to {json_path}"
                  + (f" and {csv}" if csv else ""), highlight=False)
        if s.targets:
            _print_targets(s, writer.result.results, suite, json_path, sharded=bool(where))


def _min_run_time(settings: dict) -> float:
    speed = settings.get("speed") if isinstance(settings.get("speed"), dict) else {}
    value = speed.get("min_run_time", 1.0)
    return value if isinstance(value, (int, float)) and value > 0 else 1.0


def _result_text(row: Row) -> str:
    """The headline of a finished case: its time, saved bytes or parameter count."""
    if row.status != "ok":
        return row.status
    for name in ("time_s_median", "saved_bytes", "val_final", "params"):
        if row.metrics.get(name) is not None:
            return metrics.fmt(name, row.metrics[name])
    return "ok"


def _run_rounds(suite: Path, s, where, json_path: Path, csv: Path | None, rounds: int, *,
                resume: bool, overwrite: bool, shard: str | None, device: str | None,
                quiet: bool = False) -> None:
    """Each round is a plain `rnnbench run` of the suite in a fresh process, into its own file under
    <json stem>.rounds/ (so an interrupted round resumes like any run); then the rounds are pooled
    into the --json file."""
    import shutil
    import subprocess
    import sys

    from rnnbench.rounds import pool

    rdir = json_path.with_name(json_path.stem + ".rounds")
    if json_path.exists() and resume and "rounds" not in read_results(json_path).env:
        raise RnnbenchError(f"{json_path} was written by a run without --rounds: resume it without "
                            "--rounds, or start the rounds in another --json")
    if rdir.exists() and not (resume or overwrite):
        raise RnnbenchError(f"{rdir} holds rounds of an earlier run: --resume continues them, "
                            "--overwrite starts again")
    if overwrite and rdir.exists():
        shutil.rmtree(rdir)
    rdir.mkdir(parents=True, exist_ok=True)
    files = [rdir / f"round-{k}.json" for k in range(1, rounds + 1)]
    for k, f in enumerate(files, 1):
        cmd = [sys.executable, "-m", "rnnbench.cli", "run", str(suite), "--json", str(f)]
        cmd += ["--resume"] if f.exists() else []
        cmd += ["--shard", shard] if shard else []
        cmd += ["--device", device] if device else []
        cmd += ["--quiet"] if quiet else []
        progress.announce(f"round {k}/{rounds}, a fresh process: {f}", quiet=quiet)
        # the round's own table would repeat on stdout R times; its progress stays on stderr
        child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        try:
            code = child.wait()
        except KeyboardInterrupt:
            # Ctrl-C reached the child too: let it write what it finished before we stop
            child.wait()
            raise
        if code != 0:
            raise RnnbenchError(f"round {k} stopped with exit code {code}; its rows are in {f} "
                                "(--resume continues)")
    parts = [read_results(f) for f in files]
    env = {**parts[0].env, "rounds": rounds}
    prov = envinfo.provenance()
    prov["suite"] = {"path": str(suite), "name": s.name, "cases": len(s.cases),
                     "shard": f"{where[0]}/{where[1]}" if where else None, "settings": s.settings}
    prov["rounds"] = [{"file": str(f), **p.provenance} for f, p in zip(files, parts)]
    rows = pool([p.results for p in parts])
    write_outputs(ResultFile(env, prov, rows), json_path=json_path, csv_path=csv)
    print_summary(rows, title=f"{s.name}, {rounds} rounds pooled")
    out.print(f"{len(rows)} rows pooled from {rounds} rounds; written to {json_path}"
              + (f" and {csv}" if csv else ""), highlight=False)
    if s.targets:
        _print_targets(s, rows, suite, json_path, sharded=bool(where))


def _print_targets(s, rows: list[Row], suite: Path, json_path: Path, *, sharded: bool) -> None:
    """What the suite's [[target]]s say of this run; the exit code stays the run's own, since
    `rnnbench targets` is the gate for CI."""
    from rnnbench import targets as tg
    if sharded:
        note(f"this suite declares targets: judge them on the merged file with "
             f"`rnnbench targets {suite} MERGED.json`")
        return
    checks = tg.evaluate(s.targets, rows)
    out.print(tg.table(s.targets, checks))
    out.print(tg.summary(checks) + f" (exit code: `rnnbench targets {suite} {json_path}`)",
              highlight=False)


def _run_params(path: Path, json: Path | None, csv: Path | None, overwrite: bool) -> None:
    from rnnbench.bench import published
    meta, table = published.load(path)
    rows = published.evaluate(table)
    json_path = json or default_json_path(path.stem, None, resume=False)
    if json_path.exists() and not overwrite:
        raise RnnbenchError(f"{json_path} exists: --overwrite replaces it")
    check_outputs([Output("--json", json_path, "json"), Output("--csv", csv, "csv")],
                  inputs=[path], overwrite=overwrite)
    hold_locks([json_path, csv])
    prov = envinfo.provenance()
    prov["suite"] = {"path": str(path), "name": path.stem, "cases": len(rows)}
    write_outputs(ResultFile(envinfo.collect("cpu"), prov, rows), json_path=json_path,
                  csv_path=csv)
    print_summary(rows, title=meta.get("title", path.stem))
    out.print(f"{len(rows)} rows; written to {json_path}" + (f" and {csv}" if csv else ""),
              highlight=False)


# -- the summary table -----------------------------------------------------------------------------
PREFERRED_METRICS = ("time_s_median", "tokens_per_s", "saved_bytes", "peak_allocated_bytes",
                     "peak_rss_bytes", "params", "reduction_pct", "agrees_params")


def _fmt_metric(name: str, v) -> str:
    """A value in its metric's unit, as the metric registry declares it."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    return metrics.fmt(name, v)


def _metric_columns(rows: list[Row]) -> list[str]:
    seen: list[str] = []
    for r in rows:
        for k, v in r.metrics.items():
            if isinstance(v, (int, float)) and k not in seen:
                seen.append(k)
    preferred = [m for m in PREFERRED_METRICS if m in seen]
    return (preferred or seen)[:5]


def case_fields(row: Row) -> dict[str, str]:
    cell = f"{row.cell}/{row.variant}" + ("" if row.form == "paper" else f" ({row.form})")
    if row.labels.get("options"):
        cell += f" [{row.labels['options']}]"
    if row.labels.get("id"):  # a parameter-table row: its id says which reading it is
        cell = f"{row.labels['id']}: {cell}"
    sizes = " ".join(f"{t}{v}" for t, v in (("B", row.batch), ("T", row.seq_len),
                                             ("N", row.input_size),
                                             ("M", None if row.hidden_size is None
                                              else size_label(row.hidden_size)),
                                             ("L", row.layers)) if v is not None)
    return {"cell": cell, "bench": row.bench, "backend": row.backend, "mode": row.mode,
            "dtype": row.dtype, "device": row.device, "sizes": sizes}


STATUS_STYLE = {"ok": None, "unsupported": "dim", "oom": "yellow", "failed": "red"}
FULL_TABLE_ROWS = 60  # beyond this a row per case is a log, not a summary


def print_summary(rows: list[Row], title: str) -> None:
    if not rows:
        out.print(f"{title}: no cases")
        return
    if len(rows) > FULL_TABLE_ROWS:
        _print_grouped(rows, title)
    else:
        _print_rows(rows, title)
    counts = {s: sum(r.status == s for r in rows) for s in STATUS_STYLE}
    out.print(f"{len(rows)} cases: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n),
              highlight=False)


def _print_grouped(rows: list[Row], title: str) -> None:
    """Status counts per cell and backend: where a large sweep failed, at a glance."""
    groups: dict[tuple[str, str], dict[str, int]] = {}
    for r in rows:
        g = groups.setdefault((case_fields(r)["cell"], r.backend), dict.fromkeys(STATUS_STYLE, 0))
        g[r.status] += 1
    table = Table(title=f"{title}: {len(rows)} cases by cell and backend",
                  caption="`rnnbench compare` or `rnnbench plot` for the numbers")
    for c in ("cell", "backend", *STATUS_STYLE):
        table.add_column(c, justify="left" if c in ("cell", "backend") else "right")
    for (cell, backend), n in groups.items():
        bad = "red" if n["failed"] else "yellow" if n["oom"] else None
        table.add_row(cell, backend, *[str(n[s]) if n[s] else "" for s in STATUS_STYLE], style=bad)
    out.print(table)


def _print_rows(rows: list[Row], title: str) -> None:
    fields = [case_fields(r) for r in rows]
    # a column with one value says nothing per row: it goes in the caption instead
    varying = [k for k in fields[0] if len({f[k] for f in fields}) > 1 or k == "cell"]
    same = [f"{k} {fields[0][k]}" for k in fields[0] if k not in varying and fields[0][k]]
    shown = _metric_columns(rows)
    table = Table(title=title, caption=", ".join(same) or None)
    for k in varying:
        table.add_column(k)
    table.add_column("status")
    for m in shown:
        # the registry's label; a number and its unit stay on one line
        table.add_column(metrics.label(m), justify="right", no_wrap=True)
    table.add_column("note")
    for r, f in zip(rows, fields):
        table.add_row(*[f[k] for k in varying], r.status,
                      *[_fmt_metric(m, r.metrics.get(m)) for m in shown],
                      short_note([r.reason] if r.reason else r.warnings),
                      style=STATUS_STYLE.get(r.status))
    # the last metrics go first, then the columns that say least per row
    out.print(fit_table(table, [metrics.label(m) for m in reversed(shown[1:])]
                        + ["dtype", "device", "mode", "bench"]))


def register(app: typer.Typer) -> None:
    app.command("run")(cli_errors(run))
