"""Scale-out: split a suite across workers, and merge their result files back into one.

Splitting needs no coordination: every worker computes the same assignment from the suite alone.
Cases are weighed by an estimated cost and dealt out greedily, heaviest first, each to the least
loaded shard (longest processing time first); equal costs are ordered by case key and equal loads
by shard number, so the split depends on the set of cases, not on the order of the TOML, the
machine or the Python version. A shard then runs its cases in suite order.

Merging keys rows by case key and machine. A merged file keeps schema rnnbench.results/1: every
row carries ``labels["machine"]`` (see :func:`machine_id`), ``env["machines"]`` maps each machine id
to the full environment it was measured in, and the top level of ``env`` keeps the fields that all
machines share, so a merge of shards from one kind of machine reads like a single run.
"""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache

from rnnbench.case import Case
from rnnbench.errors import IncompatibleResultsError, RnnbenchError
from rnnbench.results import ResultFile, Row, read_results

MODE_FACTOR = {"fwd": 1, "bwd": 2, "fwd+bwd": 3}  # backward is about twice the forward's products
# Per time step every backend pays launches and Python overhead regardless of size, which is what
# small cases (the on-chip regime, a CPU's B = 1) mostly cost; expressed in FLOP-equivalents.
STEP_OVERHEAD = 200_000
CASE_OVERHEAD = 50_000_000  # warm-up, correctness check, autorange: paid once per case


# -- cost ------------------------------------------------------------------------------------------
@lru_cache(maxsize=4096)
def _layer_params(cell: str, variant: str, form: str, n: int, m: int) -> int:
    """Parameters of one layer, counted from a cell built on the meta device (no memory, exact
    shapes): multiply-adds per step and batch element are about this many."""
    try:
        import contextlib

        import torch

        from rnnbench.cells.registry import get
        # a small cell is cheaper to build for real: the meta device's first use imports
        # torch._dynamo (about 1.5 s), which every fresh process of `rnnbench ab` would pay
        small = (n + m) * m <= 1 << 22
        with contextlib.nullcontext() if small else torch.device("meta"):
            cell_mod = get(cell, variant, form).build(n, m)
        return sum(p.numel() for p in cell_mod.parameters())
    except Exception:
        return 4 * (n + m) * m  # an LSTM-sized guess keeps the estimate defined for any case


def estimate_cost(case: Case) -> int:
    """Estimated work of a case in FLOP-equivalents (integers, so every worker sums alike)."""
    n, flops, steps = case.input_size, 0, 0
    for m in case.hidden_sizes:
        flops += 2 * case.batch * case.seq_len * _layer_params(case.cell, case.variant, case.form,
                                                               n, m)
        steps += case.seq_len
        n = m
    factor = MODE_FACTOR.get(case.mode, 3)
    return (flops + STEP_OVERHEAD * steps) * factor + CASE_OVERHEAD


# -- split -----------------------------------------------------------------------------------------
def assign(cases: list[Case], count: int) -> list[int]:
    """The shard (0-based) of each case, in the cases' order."""
    if count < 1:
        raise RnnbenchError(f"the number of shards must be at least 1, got {count}")
    costs = [estimate_cost(c) for c in cases]
    keys = [c.key for c in cases]
    order = sorted(range(len(cases)), key=lambda i: (-costs[i], keys[i]))
    loads = [0] * count
    shard = [0] * len(cases)
    for i in order:
        s = min(range(count), key=lambda j: (loads[j], j))
        shard[i] = s
        loads[s] += costs[i]
    return shard


def shard_cases(cases: list[Case], index: int, count: int) -> list[Case]:
    """The cases of shard `index` (1-based, as on the command line) of `count`, in suite order."""
    owner = assign(cases, count)
    return [c for c, s in zip(cases, owner) if s == index - 1]


def shard_loads(cases: list[Case], count: int) -> list[int]:
    loads = [0] * count
    for c, s in zip(cases, assign(cases, count)):
        loads[s] += estimate_cost(c)
    return loads


_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(spec: str, environ: dict | None = None) -> tuple[int, int]:
    """'I/N' (1 ≤ I ≤ N) or 'auto' (a SLURM job array) into (I, N), I 1-based."""
    if spec.strip().lower() == "auto":
        return shard_from_slurm(os.environ if environ is None else environ)
    m = _SPEC.match(spec)
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise RnnbenchError(f"--shard must be I/N with 1 <= I <= N (e.g. 3/8), or auto; got {spec!r}")
    return int(m.group(1)), int(m.group(2))


def shard_from_slurm(environ) -> tuple[int, int]:
    """A job array's task as a shard, whether the array starts at 0 or 1 (or anywhere, with a
    step): shard = (SLURM_ARRAY_TASK_ID − SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP + 1 of
    SLURM_ARRAY_TASK_COUNT. Without SLURM_ARRAY_TASK_MIN the array is taken to start at 0."""
    def num(name, default=None):
        raw = environ.get(name)
        if raw is None or raw == "":
            if default is None:
                raise RnnbenchError(
                    f"--shard auto needs a SLURM job array ({name} is not set); run under "
                    "sbatch --array=0-(N-1), or give --shard I/N")
            return default
        try:
            return int(raw)
        except ValueError:
            raise RnnbenchError(f"--shard auto: {name}={raw!r} is not an integer") from None

    task, count = num("SLURM_ARRAY_TASK_ID"), num("SLURM_ARRAY_TASK_COUNT")
    first, step = num("SLURM_ARRAY_TASK_MIN", 0), num("SLURM_ARRAY_TASK_STEP", 1) or 1
    offset = task - first
    if count < 1 or offset < 0 or offset % step or offset // step >= count:
        raise RnnbenchError(
            f"--shard auto: task {task} of an array of {count} starting at {first} (step {step}) "
            "is not one of its tasks; use a contiguous array such as --array=0-7, or --shard I/N")
    return offset // step + 1, count


# -- merge -----------------------------------------------------------------------------------------
def machine_id(env: dict) -> str:
    """Which kind of machine a result file was measured on: the measuring device's name (the CPU
    model, or the GPU model for a CUDA run) and the names of the GPUs present. Hosts of one kind
    share an id, so shards spread over a cluster merge into one set of rows."""
    if not env:
        return "unknown machine"
    if "machines" in env and len(env["machines"]) == 1:
        return next(iter(env["machines"]))
    name = str(env.get("device_name") or env.get("cpu") or "unknown device")
    gpus = env.get("gpus")
    if isinstance(gpus, list):
        names: dict[str, int] = {}
        for g in gpus:
            if isinstance(g, dict) and g.get("name"):
                names[g["name"]] = names.get(g["name"], 0) + 1
        others = [f"{k}" if v == 1 else f"{v}x {k}" for k, v in names.items()
                  if not (k == name and len(names) == 1)]
        if others:
            name += " + " + ", ".join(others)
    return name


def _row_machine(row: Row, rf: ResultFile, fallback: str) -> str:
    machines = rf.env.get("machines") if isinstance(rf.env, dict) else None
    if isinstance(machines, dict) and row.labels.get("machine") in machines:
        return row.labels["machine"]
    return fallback


def _canon(row: Row) -> str:
    # NaN != NaN, but a repeated NaN is a repeated result: compare serialised rows instead
    return json.dumps(row.to_dict(), sort_keys=True, default=str)


def _first_difference(a: Row, b: Row) -> str:
    da, db = a.to_dict(), b.to_dict()
    for k in sorted(set(da) | set(db)):
        va, vb = da.get(k), db.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            for kk in sorted(set(va) | set(vb)):
                if json.dumps(va.get(kk), default=str) != json.dumps(vb.get(kk), default=str):
                    return f"{k}.{kk}: {va.get(kk)!r} vs {vb.get(kk)!r}"
        elif json.dumps(va, default=str) != json.dumps(vb, default=str):
            return f"{k}: {va!r} vs {vb!r}"
    return "?"


class MergeReport:
    def __init__(self):
        self.duplicates = 0
        self.per_machine: dict[str, int] = {}


def read_inputs(paths) -> list[tuple[str, ResultFile]]:
    out = []
    for p in paths:
        try:
            out.append((str(p), read_results(p)))
        except IncompatibleResultsError as e:
            # merge has no verdict to give: exit 3 is compare's "cannot compare"
            raise RnnbenchError(str(e)) from None
    return out


def merge_results(inputs: list[tuple[str, ResultFile]], provenance: dict | None = None
                  ) -> tuple[ResultFile, MergeReport]:
    """One result file from many. Rows with the same case key on the same machine must agree
    exactly (then one is kept); if they differ, nothing is merged."""
    report = MergeReport()
    machines: dict[str, dict] = {}
    kept: dict[tuple[str, str], tuple[Row, str]] = {}
    order: list[tuple[str, str]] = []
    conflicts: list[str] = []
    n_conflicts = 0
    for path, rf in inputs:
        fallback = machine_id(rf.env)
        file_envs = rf.env.get("machines") if isinstance(rf.env.get("machines"), dict) else {
            fallback: rf.env}
        for mid, env in file_envs.items():
            machines.setdefault(mid, env)
        for row in rf.results:
            mid = _row_machine(row, rf, fallback)
            row = Row.from_dict(row.to_dict())
            row.labels["machine"] = mid
            ident = (row.key, mid)
            if ident not in kept:
                kept[ident] = (row, path)
                order.append(ident)
                continue
            first, first_path = kept[ident]
            if _canon(first) == _canon(row):
                report.duplicates += 1
                continue
            n_conflicts += 1
            if len(conflicts) < 3:
                conflicts.append(f"{row.key} on {mid!r} in {first_path} and {path} "
                                 f"({_first_difference(first, row)})")
    if n_conflicts:
        more = f" (and {n_conflicts - len(conflicts)} more)" if n_conflicts > len(conflicts) else ""
        raise RnnbenchError(f"{n_conflicts} conflicting result(s) for the same case on the same "
                            f"machine: " + "; ".join(conflicts) + more)
    rows = [kept[i][0] for i in order]
    for r in rows:
        m = r.labels["machine"]
        report.per_machine[m] = report.per_machine.get(m, 0) + 1
    envs = [machines[m] for m in report.per_machine] or list(machines.values())[:1]
    common = {k: v for k, v in (envs[0] if envs else {}).items()
              if k != "machines" and all(e.get(k) == v for e in envs[1:])}
    env = {**common, "machines": {m: machines[m] for m in report.per_machine}}
    prov = dict(provenance or {})
    prov["merged_from"] = [{"path": p, "provenance": rf.provenance, "rows": len(rf.results)}
                           for p, rf in inputs]
    return ResultFile(env, prov, rows), report
