"""`rnnbench ab`: two versions of code measured in one job on one machine, interleaved, judged from
paired rounds (rnnbench/paired.py). The running half lives here; the verdicts in :func:`judge`.

Why this shape: measured one after the other, base and head meet different machine states, and a
virtual machine changes speed by tens of percent between processes with nothing else running
(docs/measurements-2026-11-23-cpu.md), so two sequential runs read drift as a code change. Here
each round starts base and head as fresh processes, back to back, in an order drawn at random,
each pinned to the same CPU with one thread and each shuffling its cases; the per-round ratio
head/base cancels whatever the machine did between rounds, and the rounds are the samples.

Each side is a directory put first on its processes' Python path: a worktree of another revision
(its `rnnbench/` is the code measured) or a folder holding a user's cell module. Each process is a
plain `rnnbench run` of the head's suite and writes an ordinary result file, so this parent never
imports the base's code; the files stay in the work folder for `compare`, `plot` or a second look.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rnnbench import metrics as M
from rnnbench import paired
from rnnbench.errors import IncompatibleResultsError, RnnbenchError
from rnnbench.results import ResultFile, Row, case_key, journal_path, read_results

SIDES = ("base", "head")
MODES = ("auto", "processes", "duet", "alternate")
#: rounds when --rounds is not given. Measured (docs/measurements-2026-12-03-cpu.md): with 10
#: rounds, alternate mode caught a plant of +4.4% in 17 of 20 jobs at the 1% threshold; most rounds
#: agree within 2%, but about one in ten is off by 5-13%, and ten pairs leave the signed-rank
#: interval too wide to clear 1% then. An alternate round is one process of a few seconds, so 20
#: rounds cost under two minutes; a round of the other modes is two processes of a whole suite,
#: where 10 keeps a default job of quick.toml within ten minutes on 2 vCPUs.
DEFAULT_ROUNDS = {"processes": 10, "duet": 10, "alternate": 20}


@dataclass
class Plan:
    suite: Path
    base: Path
    head: Path
    workdir: Path
    rounds: int = 10
    seed: int = 0
    threads: int = 1
    cpus: list[int] | None = None     # each process pinned to these (None: not pinned)
    mode: str = "processes"           # processes | duet | alternate (see choose_mode)
    normalize: bool = True            # divide each time by the case's own yardstick
    time_stat: str = "median"
    schedule: list[dict] = field(default_factory=list)

    def side_path(self, side: str) -> Path:
        """The side's folder as its processes see it: a link of the same length for both sides
        (work/sides/base, work/sides/head). Where the code lives changes the lengths of the
        paths and module names a process holds, hence its heap layout, hence the slots of
        CPython's address-keyed caches: 0.1-0.4% of a tiny case's instructions, on identical code."""
        link = self.workdir / "sides" / side
        if not link.is_symlink():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(self.base if side == "base" else self.head, target_is_directory=True)
        return link

    @property
    def duet(self) -> bool:
        return self.mode == "duet"


def choose_mode(mode: str, base: Path, head: Path, cases) -> str:
    """auto: alternate in one process when the sides can share it (neither holds an rnnbench/ of
    its own and every timed case is a user cell), else a fresh process per side and round."""
    shareable = not (base / "rnnbench").is_dir() and not (head / "rnnbench").is_dir() and all(
        ":" in c.cell for c in cases if c.bench == "speed")
    if mode == "auto":
        return "alternate" if shareable else "processes"
    if mode == "alternate" and not shareable:
        raise RnnbenchError("--mode alternate needs sides that differ only in user cell modules "
                            "(no rnnbench/ folder in either, every timed case a module:Class cell)")
    return mode


def make_schedule(rounds: int, seed: int, cpus: list[int] | None, duet: bool = False) -> list[dict]:
    """Per round: the order of the sides, each process's case-shuffle seed and CPUs. Drawn from
    one seed, so a job can be repeated exactly, and recorded in the result."""
    rng = random.Random(seed)
    out = []
    for k in range(1, rounds + 1):
        order = list(SIDES)
        rng.shuffle(order)
        entry = {"round": k, "order": order,
                 "shuffle": {s: rng.randrange(2 ** 31) for s in SIDES}}
        if duet and cpus and len(cpus) >= 2:
            pair = rng.sample(cpus, 2)  # which side gets which CPU, at random too
            entry["cpus"] = {order[0]: [pair[0]], order[1]: [pair[1]]}
        else:
            entry["cpus"] = {s: cpus for s in SIDES}
        out.append(entry)
    return out


def default_cpus(duet: bool) -> list[int] | None:
    """The CPUs a job pins to: the last allowed one (CPU 0 takes most interrupts), or the last two
    for a duet. None where affinity cannot be set."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    return allowed[-2:] if duet and len(allowed) >= 2 else allowed[-1:]


# -- the processes ---------------------------------------------------------------------------------
def round_file(workdir: Path, k: int, side: str) -> Path:
    return workdir / f"round-{k:03d}-{side}.json"


def complete(path: Path) -> bool:
    """A side's file of an earlier, interrupted job that finished: kept on --resume."""
    if not path.exists() or journal_path(path).exists():
        return False
    try:
        read_results(path)
    except RnnbenchError:
        return False
    return True


def child_command(plan: Plan, k: int, side: str, entry: dict) -> list[str]:
    cmd = [sys.executable, "-m", "rnnbench.cli", "run", str(plan.suite),
           "--json", str(round_file(plan.workdir, k, side)), "--overwrite",
           "--shuffle", str(entry["shuffle"][side])]
    if k > 1:
        # counts, bytes and memory are the same in every round: measured once, in the first
        cmd += ["--bench", "speed"]
    return cmd


def child_env(plan: Plan, side: str, k: int = 1) -> dict:
    env = dict(os.environ)
    if k > 1:
        env["RNNBENCH_NO_FLOPS"] = "1"  # an exact count: the first round has it
    extra = [str(plan.side_path(side))]
    if env.get("PYTHONPATH"):
        extra += [str(Path(p).resolve()) for p in env["PYTHONPATH"].split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(extra)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(plan.threads)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _spawn(cmd: list[str], env: dict, cpus: list[int] | None, log: Path, cwd: Path
           ) -> subprocess.Popen:
    def pin():  # in the child before exec: torch's threads are born on these CPUs
        os.sched_setaffinity(0, set(cpus))

    with open(log, "w", encoding="utf-8") as fh:
        # the work folder as working directory: `python -m` puts it first on sys.path, and it
        # holds no package that could shadow a side's code
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=fh,
                                stdin=subprocess.DEVNULL, preexec_fn=pin if cpus else None)


def start(plan: Plan, k: int, side: str, entry: dict) -> tuple[subprocess.Popen, Path]:
    log = round_file(plan.workdir, k, side).with_suffix(".log")
    proc = _spawn(child_command(plan, k, side, entry), child_env(plan, side, k),
                  entry["cpus"].get(side), log, plan.workdir)
    return proc, log


def _last_line(log: Path) -> str:
    try:
        lines = [ln.strip() for ln in log.read_text(encoding="utf-8", errors="replace").splitlines()
                 if ln.strip()]
    except OSError:
        return ""
    errors = [ln for ln in lines if "error" in ln.lower()]
    return (errors or lines or [""])[-1]


def wait(proc: subprocess.Popen, log: Path, k: int, side: str) -> None:
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        proc.wait()
        raise
    if code != 0:
        raise RnnbenchError(f"round {k}, {side}: `rnnbench run` exited with {code}: "
                            f"{_last_line(log) or 'no message'} (log: {log})")


def _alternate(plan: Plan, k: int, entry: dict) -> None:
    """One process times both sides' cells in turn (rnnbench/ab_alternate.py)."""
    log = plan.workdir / f"round-{k:03d}.log"
    cmd = [sys.executable, "-m", "rnnbench.ab_alternate", str(plan.suite),
           str(plan.side_path("base")), str(plan.side_path("head")),
           str(round_file(plan.workdir, k, "base")),
           str(round_file(plan.workdir, k, "head")), str(entry["shuffle"]["head"])]
    proc = _spawn(cmd, alternate_env(plan), entry["cpus"].get("head"), log, plan.workdir)
    wait(proc, log, k, "base and head")


def alternate_env(plan: Plan) -> dict:
    """The alternating process runs this rnnbench (neither side holds one), so its root goes last
    on the path: a checkout used without `pip install -e` (cwd on sys.path) must work there too."""
    env = child_env(plan, "head")
    paths = env["PYTHONPATH"].split(os.pathsep)[1:]  # the sides: put on the path by the child
    paths.append(str(Path(__file__).resolve().parent.parent))
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


class _Silent:
    """A progress reporter that says nothing (rnnbench.progress.Reporter's interface)."""

    def start(self, desc): pass
    def done(self, desc, result="", seconds=None): pass
    def skip(self, desc, why): pass
    def announce(self, text): pass


def steps(plan: Plan) -> int:
    """Processes a job starts: the progress bar's total."""
    return plan.rounds * (1 if plan.mode == "alternate" else 2)


def run_rounds(plan: Plan, *, resume: bool, progress=None) -> dict[str, list[ResultFile]]:
    """Every round of the plan; each side's result files, round by round. ``progress`` is a
    rnnbench.progress Reporter with a step per process."""
    p = progress or _Silent()
    files: dict[str, list[ResultFile]] = {s: [] for s in SIDES}
    for entry in plan.schedule:
        k = entry["round"]
        where = f"round {k}/{plan.rounds}"
        todo = [s for s in entry["order"]
                if not (resume and complete(round_file(plan.workdir, k, s)))]
        if plan.mode == "alternate":
            if todo:
                p.start(f"{where}: base and head in one process")
                _alternate(plan, k, entry)
                p.done(f"{where}: base and head in one process", "done")
            else:
                p.skip(f"{where}", "already in the work folder")
        elif plan.duet and len(todo) == 2:
            desc = (f"{where}: base (CPU {entry['cpus']['base']}) and head "
                    f"(CPU {entry['cpus']['head']}) at once")
            p.start(desc)
            procs = [(start(plan, k, s, entry), s) for s in todo]
            for (proc, log), s in procs:
                wait(proc, log, k, s)
            p.done(desc, "done")
            p.done(desc, "done")  # two processes: two steps
        else:
            for s in entry["order"]:
                desc = f"{where}: {s}" + (" (first)" if s == entry["order"][0] else " (second)")
                if s not in todo:
                    p.skip(desc, "already in the work folder")
                    continue
                p.start(desc)
                proc, log = start(plan, k, s, entry)
                wait(proc, log, k, s)
                p.done(desc, "done")
        for s in SIDES:
            files[s].append(read_results(round_file(plan.workdir, k, s)))
    return files


def count_sides(plan: Plan, cases, say=lambda text: None) -> dict[str, dict[str, float]]:
    """Instructions per call of every CPU speed case, for each side. A count does not depend on
    what else the machine does, so the two sides run at once and one count each is enough."""
    from concurrent.futures import ThreadPoolExecutor

    from rnnbench.bench import instructions

    instructions.require()
    say(f"instructions: {len(cases)} cases per side under valgrind, both sides at once")
    with ThreadPoolExecutor(2) as pool:
        jobs = {s: pool.submit(instructions.count, cases, path_first=plan.side_path(s),
                               workdir=plan.workdir / f"callgrind-{s}") for s in SIDES}
        return {s: job.result() for s, job in jobs.items()}


def check_sides(files: dict[str, list[ResultFile]], plan: Plan) -> list[str]:
    """Each side ran the code it was meant to: notes for the report; an error when both sides ran
    the very same files although different folders were given (the path did not take effect)."""
    notes = []
    src = {s: {f.provenance.get("source") for f in files[s]} - {None} for s in SIDES}
    commits = {s: {f.provenance.get("commit") for f in files[s]} - {None} for s in SIDES}
    for s in SIDES:
        if len(commits[s]) > 1:
            notes.append(f"{s}: its processes report {len(commits[s])} commits; did the folder "
                         "change during the job?")
    if plan.base.resolve() != plan.head.resolve():
        if src["base"] and src["base"] == src["head"] and \
                (plan.base / "rnnbench").is_dir() != (plan.head / "rnnbench").is_dir():
            raise IncompatibleResultsError(
                f"base and head both ran rnnbench from {next(iter(src['base']))}: the side that "
                "holds an rnnbench/ folder did not take effect")
    return notes


# -- the verdicts ----------------------------------------------------------------------------------
@dataclass
class Verdict:
    key: str
    cell: str
    backend: str
    metric: str
    comparison: str            # exact, statistical, threshold, row
    base: float | None = None  # median over rounds (statistical), the value (others)
    head: float | None = None
    ratio: float | None = None
    low: float | None = None
    high: float | None = None
    rounds: int = 0
    verdict: str = "same"      # slower faster same changed more less failed new missing unsure
    regression: bool = False
    p: float | None = None
    note: str = ""
    round_ratios: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Options:
    # a slowdown smaller than this does not fail a job; 2% left half the 5% plants unseen on a busy
    # machine, 1% none of the A/A jobs flagged (docs/measurements-2026-12-03-cpu.md)
    threshold: float = 0.01
    alpha: float = 0.05              # family-wise: over every judged case of the job
    confidence: float = 0.95         # of the intervals shown
    # a timed case is "same" only if its interval rules out a slowdown this large, else "unsure"
    resolution: float = 0.05
    instructions_threshold: float = 0.002
    gate_memory: bool = False        # peak RSS gates only when asked (metrics.py says why)
    normalize: bool = True
    time_stat: str = "median"


def _value(row: Row, name: str, normalize: bool) -> float | None:
    v = M.number(row.metrics.get(name))
    if v is None:
        return None
    if normalize:
        ref = M.number(row.metrics.get("reference_time_s_min" if name.endswith("_min")
                                       else "reference_time_s"))
        if ref is None or ref <= 0:
            return None
        v = v / ref
    return v


def _timed_metric(row: Row, stat: str) -> str:
    name = f"time_s_{stat}"
    return name if name in row.metrics else "time_s_median"


def _by_key(files: list[ResultFile]) -> list[dict[str, Row]]:
    return [{case_key(r): r for r in f.results} for f in files]


def judge(files: dict[str, list[ResultFile]], opts: Options,
          instructions: dict[str, dict[str, float]] | None = None) -> list[Verdict]:
    """Every case's verdicts: paired times, exact counts, memory within its floor, instruction
    counts; the slowdowns Holm-corrected together."""
    rounds = {s: _by_key(files[s]) for s in SIDES}
    first_b, first_h = rounds["base"][0], rounds["head"][0]
    keys = list(dict.fromkeys(list(first_h) + list(first_b)))
    out: list[Verdict] = []
    for key in keys:
        b, h = first_b.get(key), first_h.get(key)
        row = h or b
        make = lambda **kw: Verdict(key=key, cell=row.cell, backend=row.backend, **kw)  # noqa: E731
        if b is None or h is None:
            if (h or b).status == "ok":
                out.append(make(metric="", comparison="row", verdict="new" if b is None else "missing"))
            continue
        if b.status != "ok" or h.status != "ok":
            if b.status == "ok":
                out.append(make(metric="", comparison="row", verdict="failed", regression=True,
                                note=f"head {h.status}: {h.reason}"))
            elif h.status == "ok":
                out.append(make(metric="", comparison="row", verdict="new", note=f"base {b.status}"))
            continue
        if b.bench == "speed":
            out.append(_paired_time(key, row, rounds, opts, make))
        out += _fixed(b, h, opts, make)
        if instructions and key in instructions.get("base", {}) and key in instructions.get("head", {}):
            out.append(_instructions(instructions["base"][key], instructions["head"][key], opts, make))
    _holm(out, opts)
    return out


def _paired_time(key: str, row: Row, rounds, opts: Options, make) -> Verdict:
    name = _timed_metric(row, opts.time_stat)
    pairs, vb, vh, failed = [], [], [], []
    for k, (rb, rh) in enumerate(zip(rounds["base"], rounds["head"]), 1):
        b, h = rb.get(key), rh.get(key)
        if b is None or h is None or b.status != "ok" or h.status != "ok":
            failed.append(k)
            continue
        xb, xh = _value(b, name, opts.normalize), _value(h, name, opts.normalize)
        if xb is not None and xh is not None:
            pairs.append((xb, xh))
            vb.append(M.number(b.metrics.get(name)))
            vh.append(M.number(h.metrics.get(name)))
    v = make(metric=name + (" (normalised)" if opts.normalize else ""), comparison=M.STATISTICAL)
    est = paired.estimate(pairs, threshold=opts.threshold, confidence=opts.confidence)
    if est is None:
        v.verdict, v.note = "unsure", "no round gave both sides a time"
        return v
    import statistics
    v.base, v.head = statistics.median(vb), statistics.median(vh)
    v.ratio, v.low, v.high, v.rounds = est.ratio, est.low, est.high, est.n
    v.round_ratios = est.round_ratios
    v._p_slower, v._p_faster = est.p_slower, est.p_faster  # judged in _holm, with every other case
    if failed:
        v.note = f"rounds {', '.join(map(str, failed))} failed on a side"
    return v


def _fixed(b: Row, h: Row, opts: Options, make) -> list[Verdict]:
    """Metrics measured once per side: exact counts and memory."""
    out = []
    for name in list(b.metrics) + [n for n in h.metrics if n not in b.metrics]:
        m = M.lookup(name)
        if m is None or m.comparison not in (M.EXACT, M.THRESHOLD) or M.is_timed(name):
            continue
        xb, xh = M.number(b.metrics.get(name)), M.number(h.metrics.get(name))
        if xb is None and xh is None:
            continue
        v = make(metric=name, comparison=m.comparison, base=xb, head=xh, rounds=1)
        if xb is None or xh is None:
            v.verdict = "new" if xb is None else "missing"
        elif m.comparison == M.EXACT:
            v.ratio = xh / xb if xb else None
            if xb != xh:
                v.verdict, v.regression = "changed", m.gates
                v.note = f"{xh - xb:+,} (must match exactly)"
        else:
            v.ratio = xh / xb if xb else None
            if m.within_floor(xb, xh):
                v.note = "within the noise floor" if xb != xh else ""
            else:
                v.verdict = "more" if xh > xb else "less"
                gates = opts.gate_memory if name == "peak_rss_bytes" else m.gates
                v.regression = v.verdict == "more" and gates
                v.note = f"{(xh / xb - 1) * 100:+.1f}%" if xb else ""
                if v.verdict == "more" and not gates:
                    v.note += " (does not gate; --gate-memory makes it)"
        out.append(v)
    return out


def _instructions(nb: float, nh: float, opts: Options, make) -> Verdict:
    v = make(metric="instructions", comparison="instructions", base=nb, head=nh, rounds=1,
             ratio=nh / nb if nb else None)
    if v.ratio is None:
        return v
    change = f"{(v.ratio - 1) * 100:+.2f}%"
    if v.ratio > 1 + opts.instructions_threshold:
        v.verdict, v.regression, v.note = "more", True, change
    elif v.ratio < 1 / (1 + opts.instructions_threshold):
        v.verdict, v.note = "less", change
    else:
        v.note = f"{change}, within {opts.instructions_threshold * 100:g}%"
    return v


def _holm(verdicts: list[Verdict], opts: Options) -> None:
    """Slower and faster verdicts of the timed cases, the family-wise error held at alpha."""
    timed = [v for v in verdicts if hasattr(v, "_p_slower")]
    if not timed:
        return
    slower = paired.holm([v._p_slower for v in timed], opts.alpha)
    faster = paired.holm([v._p_faster for v in timed], opts.alpha)
    m = len(timed)
    for v, s, f in zip(timed, slower, faster):
        v.p = v._p_slower
        change = f"{(v.ratio - 1) * 100:+.1f}%"
        if s:
            v.verdict, v.regression = "slower", True
            v.note = _join(v.note, f"{change}, above +{opts.threshold * 100:g}% (p={v._p_slower:.2g}, "
                                   f"Holm over {m})")
        elif f:
            v.verdict = "faster"
            v.note = _join(v.note, f"{change} (p={v._p_faster:.2g}, Holm over {m})")
        elif v.low > 1 + opts.threshold or v.high < 1 / (1 + opts.threshold):
            # the interval lies beyond the threshold but the job-wide test cannot call it: that
            # is not "same" (a quick.toml job showed [1.088, 1.419] under that word)
            v.verdict = "unsure"
            v.note = _join(v.note, f"{change}, not significant after Holm over {m} cases")
        elif v.high > 1 + opts.resolution:
            # "same" would claim more than the job saw: its interval still holds a slowdown the
            # job should be able to catch (a busy CPU, or too few rounds)
            v.verdict = "unsure"
            v.note = _join(v.note, f"the interval reaches {(v.high - 1) * 100:+.0f}%: too noisy to "
                                   f"rule out a +{opts.resolution * 100:g}% slowdown (a busy CPU? "
                                   "more --rounds?)")
        del v._p_slower, v._p_faster


def _join(a: str, b: str) -> str:
    return f"{a}; {b}" if a else b


def power_note(rounds: int, judged: int, alpha: float) -> str | None:
    """Too few rounds can never reject at the corrected level: say so before the job runs."""
    need = alpha / max(judged, 1)
    if paired.min_p_value(rounds) > need:
        import math
        k = math.ceil(math.log2(1 / need))
        return (f"{rounds} rounds cannot show a slowdown among {judged} timed cases at alpha "
                f"{alpha:g} (the smallest p-value {rounds} rounds give is {paired.min_p_value(rounds):.2g}); "
                f"use at least --rounds {k}")
    return None


def headline(verdicts: list[Verdict]) -> str:
    regs = [v for v in verdicts if v.regression]
    counts: dict[str, int] = {}
    for v in verdicts:
        counts[v.verdict] = counts.get(v.verdict, 0) + 1
    seen = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    lead = f"{len(regs)} regression{'s' if len(regs) != 1 else ''}" if regs else "no regression"
    return f"{lead} ({len(verdicts)} comparisons: {seen or 'nothing compared'})"


def to_json(plan: Plan, opts: Options, verdicts: list[Verdict], env: dict, prov: dict,
            wall_s: float) -> str:
    return json.dumps({
        "schema": "rnnbench.ab/1", "env": env, "provenance": prov,
        "plan": {"suite": str(plan.suite), "base": str(plan.base), "head": str(plan.head),
                 "workdir": str(plan.workdir), "rounds": plan.rounds, "seed": plan.seed,
                 "threads": plan.threads, "cpus": plan.cpus, "mode": plan.mode,
                 "schedule": plan.schedule},
        "options": asdict(opts), "wall_s": wall_s,
        "regressions": sum(v.regression for v in verdicts),
        "verdicts": [v.to_dict() for v in verdicts],
    }, indent=1, default=str)
