"""`rnnbench ab SUITE --base PATH --head PATH`: two versions of code, interleaved in one job,
judged from paired rounds. Exit codes as `compare`: 0 no regression, 1 regression, 2 bad input,
3 not comparable."""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from rnnbench import ab as A
from rnnbench import progress
from rnnbench.commands.common import cli_errors, fit_table, out
from rnnbench.errors import RnnbenchError

STYLES = {"slower": "red", "changed": "red", "more": "red", "failed": "red", "faster": "green",
          "less": "green", "new": "cyan", "missing": "yellow", "unsure": "yellow"}


def ab(
    suite: Path = typer.Argument(..., help="the suite both sides run (the head's copy of it)"),
    base: Path = typer.Option(..., "--base", help="folder put first on the base's Python path: a "
                              "git worktree of another revision, or a folder with a cell module"),
    head: Path = typer.Option(Path("."), "--head", help="the same for the head [default: .]"),
    rounds: Optional[int] = typer.Option(
        None, "--rounds", help="rounds; each starts base and head as fresh processes in random "
        f"order (alternate: one process for both) [default: {A.DEFAULT_ROUNDS['processes']}; "
        f"{A.DEFAULT_ROUNDS['alternate']} in alternate mode]"),
    seed: Optional[int] = typer.Option(None, "--seed", help="seed of the order of sides and cases "
                                       "[default: drawn, and recorded]"),
    threshold: str = typer.Option("1%", "--threshold", help="a slowdown must be significantly "
                                  "larger than this to fail the job"),
    resolution: str = typer.Option("5%", "--resolution", help="a timed case whose interval "
                                   "cannot rule out a slowdown this large is 'unsure', not 'same'"),
    alpha: float = typer.Option(0.05, "--alpha", help="false-alarm rate of the whole job "
                                "(Holm-corrected over its timed cases)"),
    threads: int = typer.Option(1, "--threads", help="torch threads in each process"),
    pin: str = typer.Option("auto", "--pin", help="CPUs each process is pinned to: auto (the last "
                            "one; the last two with --duet), none, or a comma list"),
    mode: str = typer.Option("auto", "--mode", help="processes (a fresh process per side and "
                             "round), duet (both sides at once, each on its own CPU, which swap at "
                             "random), alternate (both cells in one process, sampled in turn; "
                             "sides that differ only in user cell modules), auto (alternate where "
                             "it can, else processes)"),
    normalize: bool = typer.Option(True, "--normalize/--raw", help="divide each time by its case's "
                                   "own yardstick (a fixed matmul timed around it)"),
    time_stat: str = typer.Option("median", "--time-stat", help="median or min of each process"),
    instructions: bool = typer.Option(False, "--instructions", help="also count each speed case's "
                                      "instructions under valgrind (deterministic; no rounds)"),
    instructions_threshold: str = typer.Option("0.2%", "--instructions-threshold",
                                               help="instruction counts fail beyond this growth"),
    gate_memory: bool = typer.Option(False, "--gate-memory", help="peak RSS beyond its noise floor "
                                     "(max(1 MiB, 5%)) fails the job too"),
    workdir: Optional[Path] = typer.Option(None, "--workdir", help="where each process's result "
                                           "file and log go [default: beside --json, or results/]"),
    json: Optional[Path] = typer.Option(None, "--json", help="write the verdicts as JSON"),
    csv: Optional[Path] = typer.Option(None, "--csv", help="write the verdicts as CSV"),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="write the report as Markdown"),
    resume: bool = typer.Option(False, "--resume", help="keep the finished processes' files in "
                                "--workdir and run the rest (same --seed)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace output files that exist"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress lines"),
):
    """A/B two versions of code on one machine: interleaved fresh processes, paired verdicts."""
    from rnnbench.compare import parse_percent

    opts = A.Options(threshold=parse_percent(threshold, "--threshold"), alpha=alpha,
                     resolution=parse_percent(resolution, "--resolution"),
                     instructions_threshold=parse_percent(instructions_threshold,
                                                          "--instructions-threshold"),
                     gate_memory=gate_memory, normalize=normalize, time_stat=time_stat)
    if mode not in A.MODES:
        raise RnnbenchError(f"--mode must be one of {', '.join(A.MODES)}, got {mode!r}")
    for name, p in (("--base", base), ("--head", head)):
        if not p.is_dir():
            raise RnnbenchError(f"{name} {p}: not a folder")
    if not suite.is_file():
        raise RnnbenchError(f"no such suite file: {suite}")
    cases = _suite_cases(suite, head.resolve())
    mode = A.choose_mode(mode, base, head, cases)
    rounds = A.DEFAULT_ROUNDS[mode] if rounds is None else rounds
    _check_settings(rounds, alpha, threads, time_stat, opts)
    if mode == "alternate":
        opts.normalize = False  # the sides share each moment of the process: nothing to cancel
    from rnnbench.outputs import prepare
    prepare(json=json, csv=csv, markdown=markdown, inputs=[suite], overwrite=overwrite)
    if instructions:
        from rnnbench.bench.instructions import require
        require()
    timed = sum(c.bench == "speed" for c in cases)
    warn = A.power_note(rounds, timed, alpha)
    if warn:
        raise RnnbenchError(warn)
    plan = _plan(suite, base, head, rounds, seed, threads, pin, mode, workdir, json,
                 opts.normalize, time_stat, resume)
    progress.announce(f"ab: {len(cases)} cases ({timed} timed) x {rounds} rounds, mode {mode}, "
                      f"seed {plan.seed}, CPU {plan.cpus or 'not pinned'}, {threads} thread(s); "
                      f"files in {plan.workdir}", quiet=quiet)
    t0 = time.monotonic()
    with progress.reporter(A.steps(plan), "ab", quiet=quiet) as p:
        files = A.run_rounds(plan, resume=resume, progress=p)
    notes = A.check_sides(files, plan)
    counts = None
    if instructions:
        counts = A.count_sides(plan, [c for c in cases if c.bench == "speed"],
                               say=lambda text: progress.announce(text, quiet=quiet))
    verdicts = A.judge(files, opts, counts)
    wall = time.monotonic() - t0
    _print(verdicts, plan, opts, notes, wall)
    _write(plan, opts, verdicts, files, notes, wall, json, csv, markdown)
    if any(v.regression for v in verdicts):
        raise typer.Exit(1)


def _check_settings(rounds, alpha, threads, time_stat, opts) -> None:
    if rounds < 2:
        raise RnnbenchError(f"--rounds must be at least 2 (pairs are the evidence), got {rounds}")
    if not (isinstance(alpha, float) and 0 < alpha < 1):
        raise RnnbenchError(f"--alpha must be between 0 and 1, got {alpha}")
    if threads < 1:
        raise RnnbenchError(f"--threads must be at least 1, got {threads}")
    if time_stat not in ("median", "min"):
        raise RnnbenchError(f"--time-stat must be median or min, got {time_stat!r}")
    for name, v in (("--threshold", opts.threshold), ("--resolution", opts.resolution),
                    ("--instructions-threshold", opts.instructions_threshold)):
        if not math.isfinite(v) or v < 0:
            raise RnnbenchError(f"{name} must be a finite percentage >= 0, got {v}")


def _plan(suite, base, head, rounds, seed, threads, pin, mode, workdir, json, normalize,
          time_stat, resume):
    import os
    import random

    duet = mode == "duet"
    cpus = _parse_pin(pin, duet)
    if duet and (not cpus or len(cpus) < 2):
        raise RnnbenchError("--duet needs two CPUs to pin the sides to (--pin with two or more)")
    if workdir is None:
        stem = (json.with_suffix("") if json else Path("results") /
                f"ab-{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}")
        workdir = Path(str(stem) + ".ab")
    if workdir.exists() and any(workdir.iterdir()) and not resume:
        raise RnnbenchError(f"{workdir} holds files of an earlier job: --resume continues it (with "
                            "the same --seed), or choose another --workdir")
    workdir.mkdir(parents=True, exist_ok=True)
    if seed is None:
        seed = _recorded_seed(workdir) if resume else random.SystemRandom().randrange(2 ** 31)
    plan = A.Plan(suite=suite.resolve(), base=base.resolve(), head=head.resolve(),
                  workdir=workdir.resolve(), rounds=rounds, seed=seed, threads=threads, cpus=cpus,
                  mode=mode, normalize=normalize, time_stat=time_stat)
    plan.schedule = A.make_schedule(rounds, seed, cpus, duet)
    (workdir / "plan.json").write_text(
        __import__("json").dumps({"seed": seed, "rounds": rounds, "schedule": plan.schedule},
                                 indent=1), encoding="utf-8")
    if not hasattr(os, "sched_setaffinity") and cpus:
        raise RnnbenchError("--pin needs Linux (os.sched_setaffinity); use --pin none")
    return plan


def _recorded_seed(workdir: Path) -> int:
    import json as _json
    try:
        return int(_json.loads((workdir / "plan.json").read_text(encoding="utf-8"))["seed"])
    except (OSError, ValueError, KeyError, TypeError):
        raise RnnbenchError(f"--resume: {workdir}/plan.json does not say the job's seed; pass "
                            "--seed") from None


def _parse_pin(pin: str, duet: bool) -> list[int] | None:
    import os

    from rnnbench.commands.common import parse_int_list

    text = pin.strip().lower()
    if text == "none":
        return None
    if text == "auto":
        return A.default_cpus(duet)
    cpus = parse_int_list(text, "--pin", minimum=0)
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(cpus)
    bad = [c for c in cpus if c not in allowed]
    if bad:
        raise RnnbenchError(f"--pin {pin}: CPU {bad[0]} is not one this process may use "
                            f"({', '.join(map(str, sorted(allowed)))})")
    return cpus


def _suite_cases(suite: Path, head: Path):
    import sys

    from rnnbench.suite import parse_suite, read_toml
    # the head's cell modules import as they will in the head's processes
    sys.path.insert(0, str(head))
    s = parse_suite(read_toml(suite), suite)
    if not s.cases:
        raise RnnbenchError(f"{suite} has no cases")
    return s.cases


# -- showing ---------------------------------------------------------------------------------------
COLUMNS = ["case", "metric", "base", "head", "ratio", "interval", "rounds", "verdict", "note"]


def _cells(v) -> list[str]:
    from rnnbench import metrics as M
    name = v.metric.split(" ")[0]
    fmt = (lambda x: M.fmt(name, x)) if v.metric else (lambda x: "")
    interval = "" if v.low is None else (
        "too few rounds" if v.low <= 0 or math.isinf(v.high) else f"[{v.low:.3f}, {v.high:.3f}]")
    return [v.key, v.metric, fmt(v.base), fmt(v.head),
            "" if v.ratio is None else f"{v.ratio:.4f}", interval, str(v.rounds or ""),
            v.verdict.upper() if v.regression else v.verdict, v.note]


def _print(verdicts, plan, opts, notes, wall) -> None:
    shown = [v for v in verdicts if v.comparison in ("statistical", "instructions", "row")
             or v.verdict != "same"]
    table = Table(title=f"ab: {plan.base} → {plan.head}")
    for c in COLUMNS:
        table.add_column(c, justify="right" if c in ("base", "head", "ratio", "rounds") else "left",
                         overflow="fold")
    for v in shown:
        style = STYLES.get(v.verdict)
        table.add_row(*_cells(v), style=("bold " + style) if v.regression and style else style)
    if shown:
        out.print(fit_table(table, ["note", "rounds", "base", "head", "metric"]))
    hidden = len(verdicts) - len(shown)
    if hidden:
        out.print(f"{hidden} exact or memory comparisons are the same (--json has them)",
                  highlight=False)
    for n in notes:
        out.print(f"note: {n}", highlight=False, markup=False)
    out.print(_meaning(plan, opts), highlight=False, markup=False)
    out.print(f"{A.headline(verdicts)}; {plan.rounds} rounds in {wall:.0f} s",
              style="bold red" if any(v.regression for v in verdicts) else "bold green",
              highlight=False, markup=False)


def _meaning(plan, opts) -> str:
    what = "time ÷ its yardstick" if opts.normalize else "time"
    return (f"ratio: head/base of the per-round {what} ({opts.time_stat} of each process), "
            f"Hodges-Lehmann; interval: {opts.confidence * 100:g}% Wilcoxon signed-rank; slower "
            f"means significantly above +{opts.threshold * 100:g}% with the false-alarm rate "
            f"{opts.alpha:g} for the whole job (Holm)")


def _write(plan, opts, verdicts, files, notes, wall, json_path, csv_path, md_path) -> None:
    from rnnbench import envinfo
    from rnnbench.results import atomic_write_text

    env = files["head"][0].env
    prov = {**envinfo.provenance(), "notes": notes,
            "sides": {s: {"commit": files[s][0].provenance.get("commit"),
                          "dirty": files[s][0].provenance.get("dirty")} for s in A.SIDES}}
    if json_path:
        atomic_write_text(json_path, A.to_json(plan, opts, verdicts, env, prov, wall))
    if csv_path:
        import csv as _csv
        import io
        buf = io.StringIO()
        fields = [f for f in verdicts[0].to_dict() if f != "round_ratios"] if verdicts else []
        w = _csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for v in verdicts:
            w.writerow(v.to_dict())
        atomic_write_text(csv_path, buf.getvalue())
    if md_path:
        atomic_write_text(md_path, _markdown(plan, opts, verdicts, env, prov, wall))


def _markdown(plan, opts, verdicts, env, prov, wall) -> str:
    from rnnbench.results import to_markdown
    regs = [v for v in verdicts if v.regression]
    sides = prov["sides"]
    lines = ["### rnnbench ab", "",
             f"**{A.headline(verdicts)}**", "",
             f"- machine: {env.get('cpu') or env.get('device_name')}; torch {env.get('torch')}; "
             f"python {env.get('python')}",
             f"- base: `{plan.base}` ({(sides['base']['commit'] or 'no commit')[:12]}); head: "
             f"`{plan.head}` ({(sides['head']['commit'] or 'no commit')[:12]})",
             f"- {plan.rounds} rounds ({plan.mode}), seed {plan.seed}, {plan.threads} thread(s), "
             f"CPU {plan.cpus or 'not pinned'}; "
             f"{wall:.0f} s; {prov.get('time')}",
             f"- {_meaning(plan, opts)}", ""]
    if regs:
        lines += ["#### Regressions", "", to_markdown(COLUMNS, [_cells(v) for v in regs]), ""]
    lines += ["<details><summary>All comparisons</summary>", "",
              to_markdown(COLUMNS, [_cells(v) for v in verdicts]), "</details>", ""]
    lines += [f"- note: {n}" for n in prov.get("notes", [])]
    return "\n".join(lines).rstrip() + "\n"


def register(app: typer.Typer) -> None:
    app.command("ab")(cli_errors(ab))
