"""`rnnbench task`: train cells on the PRU paper's synthetic tasks and report what each reaches."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import typer
from rich.table import Table

from rnnbench import envinfo, progress
from rnnbench.cells.registry import DEFAULT_CELL, get
from rnnbench.commands import _options as opts
from rnnbench.commands.common import (check_devices, cli_errors, device_option,
                                      hidden_sizes_option, out, parse_variants, require_positive,
                                      select_cells)
from rnnbench.errors import RnnbenchError
from rnnbench.outputs import prepare
from rnnbench.results import (IncrementalWriter, Row, atomic_write_text, fmt_count, fmt_time,
                              to_markdown)

# With TrainConfig's defaults (1200 steps, batch 32, Adam 5e-3) a GRU at M = 64 passed MSE 0.01 on
# the adding problem at T = 100 by step 500-600 for seeds 0-4 on a 2-core CPU: half the step budget,
# about 30 s of a run that takes under a minute when the machine is quiet (docs/tasks.md).
DEFAULT_HIDDEN = "64"
TASK_DEFAULTS = {"adding": {"seq_len": 100},
                 "memorization": {"targets": 5, "interfere": 20, "alphabet": 8},
                 "copy": {"targets": 5, "interfere": 20, "alphabet": 8}}
_A, _C = TASK_DEFAULTS["adding"], TASK_DEFAULTS["copy"]
# TrainConfig's defaults, repeated so that the help does not import torch (rnnbench.tasks does);
# tests/test_cli_fast.py checks that they match TrainConfig()
TRAIN_DEFAULTS = {"steps": 1200, "batch": 32, "lr": 5e-3, "clip": 1.0, "eval_every": 50,
                  "val_size": 1000, "seed": 0}
_D = SimpleNamespace(**TRAIN_DEFAULTS)
# the main names of rnnbench.backends.BACKENDS, eager first (an unknown name gets the whole list);
# the same test checks them
BACKEND_NAMES = ("eager", "compile", "native", "fused", "triton")


def task(
    name: Optional[str] = typer.Argument(None, metavar="TASK",
                                         help="adding, memorization (memorisation) or copy"),
    cell: str = typer.Option(DEFAULT_CELL, "--cell", "-c", help=opts.CELL_HELP),
    variant: str = typer.Option("baseline", "--variant", "-v",
                                help=opts.VARIANT_HELP + "; only what is named is trained (no "
                                     "baseline beside: each run is a model of its own)"),
    form: str = opts.FORM,
    hidden_size: str = typer.Option(DEFAULT_HIDDEN, "--hidden-size", "-M",
                                    help="hidden width M, or one per layer: 64,64"),
    layers: Optional[int] = typer.Option(None, "--layers", "-L", help="layers (repeats one M)"),
    matched_params: bool = typer.Option(False, "--matched-params",
                                        help="pick each cell's M so its recurrent parameter count "
                                             "is closest to the reference cell's at --hidden-size"),
    reference: str = typer.Option(DEFAULT_CELL, "--reference",
                                  help="the cell whose count --matched-params matches: gru, lstm/irc"),
    seq_len: Optional[int] = typer.Option(
        None, "--seq-len", "-T", help=f"adding: sequence length T (default {_A['seq_len']})"),
    targets: Optional[int] = typer.Option(
        None, "--targets", "-K", help=f"memorization/copy: symbols to recall K (default {_C['targets']})"),
    interfere: Optional[int] = typer.Option(
        None, "--interfere", help=f"memorization/copy: interfering steps L (default {_C['interfere']})"),
    alphabet: Optional[int] = typer.Option(
        None, "--alphabet", "-A", help=f"memorization/copy: alphabet size (default {_C['alphabet']})"),
    steps: Optional[int] = typer.Option(None, "--steps", help=f"training steps (default {_D.steps})"),
    batch: Optional[int] = typer.Option(None, "--batch", "-B", help=f"batch size (default {_D.batch})"),
    lr: Optional[float] = typer.Option(None, "--lr", help=f"Adam learning rate (default {_D.lr})"),
    clip: Optional[float] = typer.Option(None, "--clip", help=f"gradient-norm clip (default {_D.clip})"),
    eval_every: Optional[int] = typer.Option(
        None, "--eval-every", help=f"steps between validation points (default {_D.eval_every})"),
    val_size: Optional[int] = typer.Option(
        None, "--val-size", help=f"validation sequences, fixed per seed (default {_D.val_size})"),
    seed: Optional[int] = typer.Option(
        None, "--seed", help=f"seeds weights, data and validation set (default {_D.seed})"),
    stop_when_solved: Optional[bool] = typer.Option(
        None, "--stop-when-solved/--no-stop-when-solved",
        help="stop at the first validation point past the task's solve line"),
    device: Optional[str] = typer.Option(None, "--device", "-d",
                                         help="cpu or cuda (cuda:N); default: cpu, or the config's"),
    backend: str = typer.Option("eager", "--backend",
                                help=f"implementation to train: {', '.join(BACKEND_NAMES)} (or a variant of "
                                     "fused/triton)"),
    threads: Optional[int] = typer.Option(
        None, "--threads", help="CPU threads for torch (default 1: these small recurrent steps "
                                "run faster on one, and a busy machine slows two a lot)"),
    ihc_gamma: str = opts.IHC_GAMMA,
    pru_output_map: bool = opts.PRU_OUTPUT_MAP,
    config: Optional[Path] = typer.Option(None, "--config", "--suite",
                                          help="a task suite, e.g. bench_configs/tasks.toml; "
                                               "training flags given here override it"),
    verbose: bool = typer.Option(False, "--verbose", help="print every validation point"),
    resume: bool = typer.Option(False, "--resume", help="keep finished runs found in --json"),
    csv: Optional[Path] = opts.CSV,
    json: Optional[Path] = typer.Option(None, "--json", help="write the rows as JSON (with curves)"),
    markdown: Optional[Path] = opts.MARKDOWN,
    overwrite: bool = opts.OVERWRITE,
    quiet: bool = opts.QUIET,
    dry_run: bool = opts.DRY_RUN,
):
    """Train cells on the adding, memorisation or copy task; report final and best validation
    score, parameters and time per step, with the learning curve in the result file."""
    from rnnbench.tasks.train import load_suite

    overrides = {"steps": steps, "batch": batch, "lr": lr, "clip": clip, "eval_every": eval_every,
                 "val_size": val_size, "seed": seed, "device": device,
                 "stop_when_solved": stop_when_solved}
    require_positive(("--threads", threads), ("--lr", lr), ("--clip", clip))
    prepare(json=json, csv=csv, markdown=markdown, inputs=[config], overwrite=overwrite,
            resume=resume)
    if config is not None:
        if name is not None:
            raise RnnbenchError("give a task or --config, not both")
        meta, plan = load_suite(config, overrides)
        title = meta.get("title", str(config))
    else:
        if name is None:
            raise RnnbenchError("name a task (adding, memorization, copy) or give --config")
        plan = _plan_from_flags(name, cell, variant, form, hidden_size, layers, matched_params,
                                reference, seq_len, targets, interfere, alphabet, overrides,
                                backend, {"gamma_input": ihc_gamma, "output_map": pru_output_map})
        title = ""
    if device is not None:
        device_option(device)  # it overrides the config's devices
    else:
        check_devices((r.cfg.device for r in plan), what=str(config or "the task"))
    require_positive(("--threads", threads))
    if dry_run:
        for i, r in enumerate(plan, 1):
            print(f"{i:>4}  {r.task.label} {r.spec.display} M={','.join(map(str, r.hidden_sizes))} "
                  f"({r.cfg.steps} steps)")
        print(progress.plan_line(len(plan), None, "task") + " (dry run: nothing trained)")
        return
    progress.announce(progress.plan_line(len(plan), None, "task"), quiet=quiet)
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(threads or 1)
    try:
        rows = _train_all(plan, title, json, csv, resume, verbose, quiet)
    finally:
        torch.set_num_threads(before)  # a caller in the same process (tests) keeps its setting
    columns, cells = _print_tables(rows, title)
    if markdown:
        atomic_write_text(markdown, to_markdown(columns, cells))


def _plan_from_flags(name, cell, variant, form, hidden_size, layers, matched_params, reference,
                     seq_len, targets, interfere, alphabet, overrides, backend, options) -> list[Run]:
    from rnnbench.tasks.data import TaskSpec
    from rnnbench.tasks.train import TrainConfig, parse_cell, plan_runs

    task_name = TaskSpec.make(name).name
    given = {"seq_len": seq_len, "targets": targets, "interfere": interfere, "alphabet": alphabet}
    flag = {"seq_len": "--seq-len", "targets": "--targets", "interfere": "--interfere",
            "alphabet": "--alphabet"}
    for k, v in given.items():
        if v is not None and k not in TASK_DEFAULTS[task_name]:
            applies = "the adding problem" if k == "seq_len" else "memorization and copy"
            raise RnnbenchError(f"{flag[k]} applies to {applies}, not {task_name}")
    sizes = {k: (given[k] if given[k] is not None else v) for k, v in TASK_DEFAULTS[task_name].items()}
    spec_task = TaskSpec.make(task_name, **sizes)
    hs = hidden_sizes_option(hidden_size, layers)
    cfg = TrainConfig(**{k: v for k, v in overrides.items() if v is not None})
    specs, _ = select_cells(cell, parse_variants(variant), form)
    ref = get(*parse_cell(reference)) if matched_params else None
    return plan_runs(specs, spec_task, hs, cfg, matched_params=matched_params, reference=ref,
                     options=options, backend=backend)


def _train_all(plan: list[Run], title: str, json_path, csv_path, resume, verbose,
               quiet: bool = False) -> list[Row]:
    writer = IncrementalWriter(envinfo.collect(plan[0].cfg.device), envinfo.provenance(),
                               json_path=json_path, csv_path=csv_path, resume=resume)
    try:
        with progress.reporter(len(plan), "task", quiet=quiet) as p:
            return _train_rows(plan, writer, json_path, verbose, p)
    finally:
        writer.close()


def _train_rows(plan: list[Run], writer: IncrementalWriter, json_path, verbose,
                p: progress.Reporter) -> list[Row]:
    from rnnbench.tasks.train import execute, relabel, run_key

    done = {r.key: r for r in writer.result.results if r.status in ("ok", "unsupported")}
    trained: dict[tuple, Row] = {}
    rows = []
    for run in plan:
        what = (f"task {run.task.label} {run.spec.display}"
                f"{'' if run.spec.form == 'paper' else ' (' + run.spec.form + ')'} "
                f"M={','.join(map(str, run.hidden_sizes))}")
        if run.identity in trained:
            p.start(what)
            row = relabel(trained[run.identity], run)
        else:
            if run_key(run) in done:
                p.skip(what, f"done in {json_path}, kept")
                rows.append(done[run_key(run)])
                continue

            def on_eval(step, value, what=what, metric=run.task.metric):
                if verbose:
                    p.announce(f"{what} step {step}: {metric} {value:.4g}")

            p.start(what)
            row = execute(run, on_eval)
            trained[run.identity] = row
        m = row.metrics
        if row.status != "ok":
            p.done(what, f"{row.status}: {row.reason}")
            writer.add(row)
            rows.append(row)
            continue
        p.done(what, f"{row.labels['metric']} {m['val_final']:.4g} (best {m['val_best']:.4g}), "
                     f"{m['steps']} steps in {m['train_time_s']:.0f} s")
        writer.add(row)
        rows.append(row)
    return rows


def _print_tables(rows: list[Row], title: str) -> tuple[list[str], list[list[str]]]:
    columns = ["task", "group", "cell", "M", "params (recurrent)", "params (total)", "metric",
               "final", "best", "trivial", "solved at step", "time/step", "train time", "note"]
    groups: dict[tuple, list[Row]] = {}
    for r in rows:
        groups.setdefault((r.labels.get("group", ""), _task_label(r), r.labels.get("matched", "")),
                          []).append(r)
    cells = []
    for (group, task_label, matched), grp in groups.items():
        first = grp[0]
        metric = first.labels["metric"]
        from rnnbench.tasks.data import ADDING_TRIVIAL_MSE
        trivial = (ADDING_TRIVIAL_MSE if metric == "val_mse"
                   else 1.0 / int(first.labels.get("alphabet", 1)))
        line_to_beat = (f"trivial MSE 1/6 = {trivial:.4f} (always predict 1) is the line to beat"
                        if metric == "val_mse" else
                        f"chance accuracy 1/{first.labels.get('alphabet')} = {trivial:.3f}")
        how = {"params": f"matched parameter count (≈ {first.labels.get('reference')}'s "
                         f"{int(first.labels.get('reference_params', 0)):,} recurrent)",
               "hidden": "matched hidden size"}.get(matched, "")
        head = " · ".join(p for p in (title, group, task_label, how) if p)
        table = Table(title=f"{head}\n{metric}: {line_to_beat}; solved means "
                            f"{'<' if first.labels['better'] == 'lower' else '≥'} "
                            f"{first.labels['solved_at']}")
        shown = [i for i, c in enumerate(columns) if c not in ("task", "group", "metric")]
        for i in shown:
            table.add_column(columns[i], justify="left" if columns[i] in ("cell", "note") else "right")
        for r in grp:
            m = r.metrics
            cell_name = get(r.cell, r.variant, r.form).display + ("" if r.form == "paper"
                                                                 else f" ({r.form})")
            hs = r.hidden_size if not isinstance(r.hidden_size, list) else ",".join(map(str, r.hidden_size))
            if r.status != "ok":
                line = [first.labels.get("task", ""), group, cell_name, str(hs)] + [""] * 9 + [
                    f"{r.status}: {r.reason}"]
                table.add_row(*(line[i] for i in shown))
                cells.append(line)
                continue
            note = "; ".join(p for p in (
                "N→M input projection" if r.labels.get("input_projection") else "",
                "diverged" if r.warnings else "") if p)
            fmt = ".4g" if metric == "val_mse" else ".3f"
            line = [first.labels.get("task", ""), group, cell_name, str(hs),
                    fmt_count(m["params_recurrent"]), fmt_count(m["params"]), metric,
                    format(m["val_final"], fmt), format(m["val_best"], fmt), format(trivial, fmt),
                    "" if m.get("solved_step") is None else str(m["solved_step"]),
                    fmt_time(m["step_time_s_median"]), f"{m['train_time_s']:.0f} s", note]
            table.add_row(*(line[i] for i in shown))
            cells.append(line)
        out.print(table)
    return columns, cells


def _task_label(r: Row) -> str:
    lab = r.labels
    if lab.get("task") == "adding":
        return f"adding T={lab.get('T')}"
    return f"{lab.get('task')} K={lab.get('K')} L={lab.get('L')} alphabet={lab.get('alphabet')}"


def register(app: typer.Typer) -> None:
    app.command("task")(cli_errors(task))
