"""Regression verdicts between two result files: pure functions, no printing.

A time is a regression only when it is slower than the relative threshold, the current time is above
the absolute floor, and the difference is significant given the samples: a one-sided Mann-Whitney U
test where both rows keep raw samples (JSON), non-overlapping interquartile ranges otherwise (CSV).
Counts that the code fixes (parameters, saved-for-backward bytes) must match exactly; peak memory
may move within its own threshold, because allocators and RSS are not deterministic.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache

from rnnbench import metrics as M
from rnnbench.errors import IncompatibleResultsError, RnnbenchError
from rnnbench.results import ResultFile, Row, case_key, fmt_count, fmt_si, fmt_time, to_markdown

VERDICTS = ("slower", "faster", "same", "changed", "more", "less", "failed", "new", "missing",
            "skipped")


# -- what a metric is ------------------------------------------------------------------------------
def metric_kind(name: str) -> str | None:
    """'time', 'exact', 'peak', 'instructions', or None for metrics that are not judged on their
    own (dispersion, sample lists, throughput derived from the time, the reference): what
    rnnbench/metrics.py declares, in the shape the verdicts below take."""
    m = M.lookup(name)
    if m is None or m.comparison == M.INFO:
        return None
    if m.comparison == M.STATISTICAL:
        # one time per row is judged: its median (--time-stat min swaps it for the minimum)
        return "time" if m.statistic == "median" and name.startswith("time_s") else None
    if m.comparison == M.EXACT:
        return "exact"
    return "instructions" if name == "instructions" else "peak"


def _samples_key(name: str) -> str:
    return M.samples_key(name) or name


def _fmt(kind: str, name: str, v) -> str:
    if v is None:
        return ""
    if kind == "time":
        return fmt_time(v)
    if kind == "exact":
        return fmt_count(v) + (" B" if name.endswith("bytes") else "")
    if kind == "instructions":
        return fmt_si(v)
    return fmt_si(v, "B")


# -- the significance tests ------------------------------------------------------------------------
@dataclass(frozen=True)
class MannWhitney:
    statistic: float  # U of the first sample, as scipy.stats.mannwhitneyu reports it
    pvalue: float
    method: str


def _ranks(values: list[float]) -> tuple[list[float], list[int]]:
    """Average ranks (1-based) and the sizes of the tie groups."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    ties = []
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        ties.append(j - i + 1)
        i = j + 1
    return ranks, ties


@lru_cache(maxsize=64)
def _u_counts(m: int, n: int) -> tuple[int, ...]:
    """How many of the C(m+n, m) orderings give each U = 0..mn: the coefficients of the Gaussian
    binomial prod_{i=1..m} (1 - q^(n+i)) / (1 - q^i), built in exact integers."""
    size = m * n + 1
    c = [1] + [0] * (size - 1)
    for i in range(1, m + 1):
        k = n + i
        for u in range(size - 1, k - 1, -1):
            c[u] -= c[u - k]
        # dividing by (1 - q^i) is a running sum with stride i; truncating at q^size is exact
        # because the final product is a polynomial of degree mn
        for u in range(i, size):
            c[u] += c[u - i]
    return tuple(c)


def _normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


def mann_whitney_u(x, y, alternative: str = "two-sided", method: str = "auto") -> MannWhitney:
    """The Mann-Whitney U test of x against y, as scipy.stats.mannwhitneyu computes it (continuity
    correction on): 'greater' tests whether x tends to be larger. method 'auto' is exact for small
    samples without ties and the tie-corrected normal approximation otherwise."""
    x, y = [float(v) for v in x], [float(v) for v in y]
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError("both samples must be non-empty")
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"unknown alternative {alternative!r}")
    ranks, ties = _ranks(x + y)
    u1 = sum(ranks[:n1]) - n1 * (n1 + 1) / 2
    u2 = n1 * n2 - u1
    u, factor = {"greater": (u1, 1), "less": (u2, 1), "two-sided": (max(u1, u2), 2)}[alternative]
    if method == "auto":
        method = "asymptotic" if (n1 > 8 and n2 > 8) or any(t > 1 for t in ties) else "exact"
    if method == "exact":
        counts = _u_counts(min(n1, n2), max(n1, n2))
        p = sum(counts[math.ceil(u):]) / math.comb(n1 + n2, n1)
    elif method == "asymptotic":
        n = n1 + n2
        tie_term = sum(t ** 3 - t for t in ties)
        var = n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1)))
        if var <= 0:  # every value equal: nothing tells the samples apart
            p = 1.0
        else:
            p = _normal_sf((u - n1 * n2 / 2 - 0.5) / math.sqrt(var))
    else:
        raise ValueError(f"unknown method {method!r}")
    return MannWhitney(u1, min(1.0, max(0.0, p * factor)), method)


def quartiles(values) -> tuple[float, float]:
    q = statistics.quantiles(sorted(values), n=4, method="inclusive")
    return q[0], q[2]


def _interval(metrics: dict, name: str, scale: float) -> tuple[float, float] | None:
    """The interquartile range of a time: from the raw samples, from the quartiles (time_s_q25,
    time_s_q75), or centred on the median when only its width (time_s_iqr) survives."""
    samples = metrics.get(_samples_key(name))
    if isinstance(samples, list) and len(samples) >= 2:
        q1, q3 = quartiles(samples)
        return q1 / scale, q3 / scale
    base = name[: -len("_median")]
    q25, q75 = metrics.get(base + "_q25"), metrics.get(base + "_q75")
    if isinstance(q25, (int, float)) and isinstance(q75, (int, float)):
        return q25 / scale, q75 / scale
    iqr = metrics.get(base + "_iqr")
    if isinstance(iqr, (int, float)) and not math.isnan(iqr):
        med = metrics[name]
        return (med - iqr / 2) / scale, (med + iqr / 2) / scale
    return None


# -- options and results ---------------------------------------------------------------------------
@dataclass
class Options:
    threshold: float = 0.05          # relative: a time must be this much slower to count
    min_time: float = 1e-6           # seconds, raw: shorter current times are never regressions
    memory_threshold: float = 0.10   # relative, for peak memory, beyond its noise floor
    gate_memory: bool = False        # peak RSS gates only when asked (rnnbench/metrics.py)
    alpha: float = 0.05              # significance level of the one-sided test
    normalize: bool = False          # divide every time by its file's (or row's) reference
    time_fail_ratio: float | None = None  # report slower times, fail only beyond this ratio
    # the minimum moves least when a shared machine is busy; the median describes a typical call
    time_stat: str = "median"


@dataclass
class Comparison:
    key: str
    cell: str
    backend: str
    metric: str          # "" for a whole row (new, missing, failed)
    kind: str            # time, exact, peak, row
    base: float | None = None
    current: float | None = None
    ratio: float | None = None
    verdict: str = "same"
    regression: bool = False
    note: str = ""
    pvalue: float | None = None

    def cells(self) -> list[str]:
        ratio = "" if self.ratio is None else f"{self.ratio:.3f}"
        return [self.key, self.metric, _fmt(self.kind, self.metric, self.base),
                _fmt(self.kind, self.metric, self.current), ratio,
                self.verdict.upper() if self.regression else self.verdict, self.note]


COLUMNS = ["case", "metric", "base", "current", "ratio", "verdict", "note"]


def columns(opts: Options) -> list[str]:
    """With --normalize the ratio is of normalised times, so it no longer equals current / base."""
    return [c if c != "ratio" or not opts.normalize else "ratio (normalised)" for c in COLUMNS]


@dataclass
class Report:
    comparisons: list[Comparison]
    options: Options
    base_name: str = "base"
    current_name: str = "current"
    notes: list[str] = field(default_factory=list)
    # set when the files share no machine and rows were joined on their case alone: the command
    # prints it on stderr, because every verdict then compares two machines
    join_note: str | None = None
    # set when both files timed each case in one process: what such verdicts cannot tell
    caveat: str | None = None

    @property
    def regressions(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.regression]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for c in self.comparisons:
            out[c.verdict] += 1
        return dict(out)

    def summary(self) -> list[dict]:
        return geomean_summary(self.comparisons)


# -- joining and checking --------------------------------------------------------------------------
def _device_dependent(row: Row) -> bool:
    return any(metric_kind(k) in ("time", "peak") for k in row.metrics)


def _row_env(row: Row, rf: ResultFile) -> dict:
    """The environment a row was measured in: a merged file keeps one per machine."""
    machines = rf.env.get("machines")
    if isinstance(machines, dict) and row.labels.get("machine") in machines:
        return {**rf.env, **machines[row.labels["machine"]]}
    return rf.env


def _device_name(row: Row, env: dict) -> str | None:
    """The machine behind a row's device, when the file's environment describes that device."""
    env_dev = str(env.get("device") or "")
    if env_dev and env_dev.split(":")[0] == row.device.split(":")[0]:
        return env.get("device_name") or None
    return None


def _describe(device: str, name: str | None) -> str:
    return f"{device} ({name})" if name else device


def _machine(row: Row, rf: ResultFile) -> str | None:
    """The machine a row was measured on, named as `rnnbench merge` names it: ``labels["machine"]``
    in a merged file, else the file's environment (shard.machine_id). None for parameter counts,
    which no machine changes, and where the file does not say (a CSV of a single run)."""
    if row.bench == "params":
        return None
    if row.labels.get("machine"):
        return str(row.labels["machine"])
    if rf.env.get("device_name") or rf.env.get("cpu"):
        from rnnbench.shard import machine_id
        return machine_id(rf.env)
    return None


Index = dict[tuple[str, str | None], Row]  # (case key, machine) -> row


def _index(rf: ResultFile, with_device: bool, label: str, notes: list[str]) -> Index:
    rows: Index = {}
    repeated = []
    for r in rf.results:
        k = (case_key(r) + (f"@{r.device}" if with_device else ""), _machine(r, rf))
        # a merged file holds a parameter count once per machine, the same each time
        if k in rows and (rows[k].status, rows[k].metrics) != (r.status, r.metrics):
            repeated.append(k[0])
        rows[k] = r
    if repeated:
        notes.append(f"{label}: {len(repeated)} case(s) appear more than once on one machine "
                     f"(first: {repeated[0]}); the last row of each is compared")
    return rows


def _join(rows_b: Index, rows_c: Index, names: tuple[str, str], notes: list[str]
          ) -> tuple[list[tuple[str, Row | None, Row | None]], str | None]:
    """Pair the rows of the two files: (the key shown, base row, current row), None on the side
    that lacks the case. Files that share a machine pair a case only with the same case on the same
    machine, and rows from a machine the other file lacks are left out (a note says so). Files that
    share none pair every row of a case with every row of it in the other file, and the second
    value is the line that says so."""
    ms_b = {m for _, m in rows_b if m is not None}
    ms_c = {m for _, m in rows_c if m is not None}
    shared = ms_b & ms_c
    join_note = None
    if shared:
        for label, ms, other in ((names[0], ms_b, names[1]), (names[1], ms_c, names[0])):
            if ms - shared:
                notes.append(f"{label}: rows from {', '.join(sorted(ms - shared))} are not "
                             f"compared; {other} has none from there")
        rows_b = {k: r for k, r in rows_b.items() if k[1] is None or k[1] in shared}
        rows_c = {k: r for k, r in rows_c.items() if k[1] is None or k[1] in shared}
        several = len(shared) > 1
    else:
        several = len(ms_b) > 1 or len(ms_c) > 1
        if (ms_b and ms_c) or several:
            def said(ms):
                return ", ".join(sorted(ms)) or "no machine named"
            join_note = (f"{names[0]} and {names[1]} share no machine ({names[0]}: {said(ms_b)}; "
                         f"{names[1]}: {said(ms_c)}); rows are compared by case key alone")

    def group(k: tuple[str, str | None]):
        return k if shared else k[0]

    def shown(row: Row, mb: str | None, mc: str | None) -> str:
        where = mb if mc is None or mb == mc else mc if mb is None else f"{mb} → {mc}"
        return case_key(row) + (f" @ {where}" if several and where else "")

    by_c: dict = defaultdict(list)
    for k, r in rows_c.items():
        by_c[group(k)].append((k[1], r))
    pairs: list[tuple[str, Row | None, Row | None]] = []
    seen = set()
    for k, b in rows_b.items():
        g = group(k)
        seen.add(g)
        if g not in by_c:
            pairs.append((shown(b, k[1], None), b, None))
        for mc, cur in by_c.get(g, ()):
            pairs.append((shown(b, k[1], mc), b, cur))
    for g, rows in by_c.items():
        if g not in seen:
            pairs += [(shown(cur, None, mc), None, cur) for mc, cur in rows]
    return pairs, join_note


def check_comparable(base: ResultFile, current: ResultFile, *, normalize: bool = False,
                     names: tuple[str, str] = ("base", "current")) -> None:
    """Raise IncompatibleResultsError (exit 3), naming what differs, when the files cannot be
    compared: schema, dtype, or (without normalize) the device the times were measured on."""
    if base.schema != current.schema:
        raise IncompatibleResultsError(
            f"different schema versions: {names[0]} {base.schema!r}, {names[1]} {current.schema!r}")
    dt_b = {r.dtype for r in base.results if r.bench != "params"}
    dt_c = {r.dtype for r in current.results if r.bench != "params"}
    if dt_b and dt_c and not dt_b & dt_c:
        raise IncompatibleResultsError(
            f"different dtype: {names[0]} {', '.join(sorted(dt_b))}, {names[1]} {', '.join(sorted(dt_c))}")
    if normalize:
        return
    dep_b = [r for r in base.results if _device_dependent(r)]
    dep_c = [r for r in current.results if _device_dependent(r)]
    if not dep_b or not dep_c:
        return  # parameter counts and the like do not depend on the machine
    named_b = {_describe(r.device, _device_name(r, _row_env(r, base))) for r in dep_b}
    named_c = {_describe(r.device, _device_name(r, _row_env(r, current))) for r in dep_c}
    # a CSV names no machine: then only the device kind (cpu, cuda) can tell
    names_b = {_device_name(r, _row_env(r, base)) for r in dep_b} - {None}
    names_c = {_device_name(r, _row_env(r, current)) for r in dep_c} - {None}
    # the kind, not the index: a suite writes "cuda" where `speed` writes "cuda:0"
    same_kind = bool({r.device.split(":")[0] for r in dep_b} & {r.device.split(":")[0] for r in dep_c})
    if same_kind and not (names_b and names_c and not names_b & names_c):
        return
    raise IncompatibleResultsError(
        f"different device: {names[0]} measured on {', '.join(sorted(named_b))}, {names[1]} on "
        f"{', '.join(sorted(named_c))}; pass --normalize to compare times relative to each file's "
        "reference")


def _reference(row: Row, rf: ResultFile, label: str, stat: str = "median") -> float:
    """The row's own reference time if it has one, else its file's; the reference's minimum when
    times are compared by their minimum, so both sides of the ratio are best cases."""
    env_ref = _row_env(row, rf).get("reference") or {}
    keys = [("reference_time_s", "time_s")]
    if stat == "min":
        keys.insert(0, ("reference_time_s_min", "time_s_min"))
    for per_row, in_env in keys:
        for ref in (row.metrics.get(per_row), env_ref.get(in_env)):
            if isinstance(ref, (int, float)) and not isinstance(ref, bool) and ref > 0:
                return float(ref)
    raise RnnbenchError(
        f"--normalize: {label} records no reference time (env.reference.time_s or "
        "metrics.reference_time_s); measure both files with an rnnbench that records it, or "
        "compare without --normalize")


def _check_reference_kinds(base: ResultFile, current: ResultFile, names) -> None:
    kb = (base.env.get("reference") or {}).get("kind")
    kc = (current.env.get("reference") or {}).get("kind")
    if kb and kc and kb != kc:
        raise IncompatibleResultsError(
            f"different reference measurements: {names[0]} {kb}, {names[1]} {kc}")


# -- verdicts --------------------------------------------------------------------------------------
def _judge_time(c: Comparison, name: str, b: Row, cur: Row, scale_b: float, scale_c: float,
                opts: Options) -> None:
    raw_cur = c.current
    if c.base <= 0 or c.current <= 0:
        # backward timed as (step - forward) can come out at or below zero within the noise
        c.note = "not positive: no ratio"
        return
    vb, vc = c.base / scale_b, c.current / scale_c
    c.ratio = vc / vb
    slower = c.ratio > 1 + opts.threshold
    faster = c.ratio < 1 / (1 + opts.threshold)
    if not (slower or faster):
        return
    change = f"{(c.ratio - 1) * 100:+.1f}%"
    if slower and raw_cur < opts.min_time:
        c.note = f"{change}, below --min-time {fmt_time(opts.min_time)}"
        return
    significant, why, c.pvalue = _significant(name, b, cur, scale_b, scale_c, slower, opts.alpha)
    if not significant:
        c.note = f"{change}, not significant ({why})"
        return
    c.verdict = "slower" if slower else "faster"
    c.note = f"{change} ({why})"
    busy = [side for side, r in (("base", b), ("current", cur)) if _timed_busy(r)]
    if busy:
        # the verdict stands (hiding it could hide a real regression); the reader learns why
        # the ratio may say more about a neighbour than about the code
        c.note += f"; {' and '.join(busy)} timed on a busy machine"
    if slower:
        c.regression = opts.time_fail_ratio is None or c.ratio > opts.time_fail_ratio
        if not c.regression:
            c.note += f"; fails only beyond {opts.time_fail_ratio:g}×"


def _timed_busy(row: Row) -> bool:
    """The timing harness warned that other processes shared the CPU (bench/timing.py)."""
    return any("busy:" in str(w) for w in (row.warnings or []))


def _significant(name: str, b: Row, cur: Row, scale_b: float, scale_c: float, slower: bool,
                 alpha: float) -> tuple[bool, str, float | None]:
    sb, sc = b.metrics.get(_samples_key(name)), cur.metrics.get(_samples_key(name))
    if isinstance(sb, list) and isinstance(sc, list) and len(sb) >= 2 and len(sc) >= 2:
        res = mann_whitney_u([v / scale_c for v in sc], [v / scale_b for v in sb],
                             alternative="greater" if slower else "less")
        return res.pvalue < alpha, f"p={res.pvalue:.3g}", res.pvalue
    ib, ic = _interval(b.metrics, name, scale_b), _interval(cur.metrics, name, scale_c)
    if ib and ic:
        apart = ic[0] > ib[1] if slower else ic[1] < ib[0]
        return apart, "IQRs apart" if apart else "IQRs overlap", None
    # nothing to judge the noise by: the threshold alone decides, and the note says so
    return True, "no samples or IQR", None


def _judge_exact(c: Comparison) -> None:
    if c.base != c.current:
        gates = M.lookup(c.metric).gates
        c.verdict, c.regression = "changed", gates
        c.note = f"{c.current - c.base:+,} " + (
            "(must match exactly; update the baseline if intended)" if gates else "(does not gate)")


def _judge_peak(c: Comparison, opts: Options, b_dev: str, c_dev: str) -> None:
    if b_dev.split(":")[0] != c_dev.split(":")[0]:
        c.verdict, c.note = "skipped", f"peak memory on {b_dev} and {c_dev}"
        return
    m = M.lookup(c.metric)
    if m.within_floor(c.base, c.current):
        # pages and allocator arenas move an RSS by this much on unchanged code
        if c.base != c.current:
            c.note = f"within the noise floor (max({fmt_si(m.floor_abs, 'B')}, {m.floor_rel:.0%}))"
        return
    if c.ratio is None:
        return
    gates = opts.gate_memory if c.metric == "peak_rss_bytes" else m.gates
    if c.ratio > 1 + opts.memory_threshold:
        c.verdict, c.regression = "more", gates
        c.note = f"{(c.ratio - 1) * 100:+.1f}%" + ("" if gates else " (does not gate; --gate-memory)")
    elif c.ratio < 1 / (1 + opts.memory_threshold):
        c.verdict, c.note = "less", f"{(c.ratio - 1) * 100:+.1f}%"


def _judge_instructions(c: Comparison) -> None:
    """Counts are deterministic: beyond the declared floor any growth is the code's."""
    if c.ratio is None:
        return
    m = M.lookup(c.metric)
    change = f"{(c.ratio - 1) * 100:+.2f}%"
    if m.within_floor(c.base, c.current):
        c.note = f"{change}, within {m.floor_rel:.1%}" if c.base != c.current else ""
    elif c.current > c.base:
        c.verdict, c.regression, c.note = "more", m.gates, change
    else:
        c.verdict, c.note = "less", change


def _number(v) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return None if math.isnan(v) else v


def compare_rows(b: Row, cur: Row, base: ResultFile, current: ResultFile, opts: Options,
                 names: tuple[str, str], key: str) -> list[Comparison]:
    def make(**kw) -> Comparison:
        return Comparison(key=key, cell=cur.cell, backend=cur.backend, **kw)

    if b.status != "ok" or cur.status != "ok":
        if b.status == "ok":
            return [make(metric="", kind="row", verdict="failed", regression=True,
                         note=f"now {cur.status}: {cur.reason}".rstrip(": "))]
        if cur.status == "ok":
            return [make(metric="", kind="row", verdict="new", note=f"was {b.status}")]
        return []
    out = []
    names_in_order = list(b.metrics) + [k for k in cur.metrics if k not in b.metrics]
    for name in names_in_order:
        kind = metric_kind(name)
        if kind is None:
            continue
        shown = name
        if kind == "time" and opts.time_stat == "min":
            alt = name[: -len("median")] + "min"
            if alt in b.metrics and alt in cur.metrics:
                shown = alt
        vb, vc = _number(b.metrics.get(shown)), _number(cur.metrics.get(shown))
        c = make(metric=shown, kind=kind, base=vb, current=vc)
        if vb is None or vc is None:
            c.verdict = "new" if vb is None else "missing"
            if vb is None and vc is None:
                continue
            out.append(c)
            continue
        if kind == "time":
            scale_b = _reference(b, base, names[0], opts.time_stat) if opts.normalize else 1.0
            scale_c = _reference(cur, current, names[1], opts.time_stat) if opts.normalize else 1.0
            _judge_time(c, name, b, cur, scale_b, scale_c, opts)
        else:
            c.ratio = vc / vb if vb else (1.0 if vc == vb else math.inf)
            if kind == "exact":
                _judge_exact(c)
            elif kind == "instructions":
                _judge_instructions(c)
            else:
                # peak memory depends on the device kind's allocator, not on the CPU or GPU model
                _judge_peak(c, opts, b.device, cur.device)
        out.append(c)
    return out


def compare_files(base: ResultFile, current: ResultFile, opts: Options | None = None, *,
                  names: tuple[str, str] = ("base", "current")) -> Report:
    """Join the rows on their case and judge every metric. Raises IncompatibleResultsError when the
    files cannot be compared and RnnbenchError when --normalize lacks a reference."""
    opts = opts or Options()
    check_comparable(base, current, normalize=opts.normalize, names=names)
    if opts.normalize:
        _check_reference_kinds(base, current, names)
    notes: list[str] = []
    dev_b = {r.device for r in base.results if _device_dependent(r)}
    dev_c = {r.device for r in current.results if _device_dependent(r)}
    # a whole file moved to another device (only allowed with --normalize) joins on the case alone
    with_device = not (len(dev_b) == 1 and len(dev_c) == 1 and dev_b != dev_c)
    rows_b = _index(base, with_device, names[0], notes)
    rows_c = _index(current, with_device, names[1], notes)
    pairs, join_note = _join(rows_b, rows_c, names, notes)
    if not any(b is not None and cur is not None for _, b, cur in pairs):
        raise IncompatibleResultsError(
            f"the files share no case ({names[0]}: {len(rows_b)} cases, {names[1]}: {len(rows_c)}); "
            "were they measured with the same suite?")
    comparisons: list[Comparison] = []
    for shown, b, cur in pairs:
        if cur is None:
            if b.status == "ok":
                comparisons.append(Comparison(shown, b.cell, b.backend, "", "row", verdict="missing"))
        elif b is None:
            if cur.status == "ok":
                comparisons.append(Comparison(shown, cur.cell, cur.backend, "", "row", verdict="new"))
        else:
            comparisons += compare_rows(b, cur, base, current, opts, names, shown)
    report = Report(comparisons, opts, names[0], names[1], notes, join_note)
    if any(c.kind == "time" for c in comparisons) and not any(
            isinstance(rf.env.get("rounds"), int) and rf.env["rounds"] > 1 for rf in (base, current)):
        report.caveat = SINGLE_PROCESS_NOTE
    return report


# a process can sit in a slow state for its whole life, so samples from one process per side say
# nothing about the spread between processes, which is where machine drift shows
SINGLE_PROCESS_NOTE = (
    "each file's times come from one process measured at its own time: a verdict on them cannot "
    "tell machine drift from a change of the code; `rnnbench ab` measures both versions "
    "interleaved on one machine and judges paired rounds")


# -- summary ---------------------------------------------------------------------------------------
def geomean(values) -> float:
    values = list(values)
    return math.exp(sum(math.log(v) for v in values) / len(values))


def geomean_summary(comparisons: list[Comparison]) -> list[dict]:
    """Geometric mean of the time ratios per backend and per cell, then over everything."""
    timed = [c for c in comparisons if c.kind == "time" and c.ratio is not None
             and 0 < c.ratio < math.inf]
    groups: dict[tuple[str, str], list[Comparison]] = defaultdict(list)
    for c in timed:
        groups[("backend", c.backend or "-")].append(c)
    for c in timed:
        groups[("cell", c.cell)].append(c)
    out = []
    for (by, name), cs in list(groups.items()) + ([(("all", "all"), timed)] if timed else []):
        out.append({"by": by, "group": name, "n": len(cs), "geomean_ratio": geomean(c.ratio for c in cs),
                    "slower": sum(c.verdict == "slower" for c in cs),
                    "faster": sum(c.verdict == "faster" for c in cs)})
    return out


SUMMARY_COLUMNS = ["by", "group", "cases", "geomean ratio", "slower", "faster"]


def summary_cells(s: dict) -> list[str]:
    return [s["by"], s["group"], str(s["n"]), f"{s['geomean_ratio']:.3f}", str(s["slower"]),
            str(s["faster"])]


def headline(report: Report) -> str:
    counts = report.counts()
    n = len(report.regressions)
    seen = ", ".join(f"{counts[v]} {v}" for v in VERDICTS if counts.get(v))
    lead = f"{n} regression{'s' if n != 1 else ''}" if n else "no regression"
    return f"{lead} ({len(report.comparisons)} comparisons: {seen or 'nothing compared'})"


def thresholds_line(opts: Options) -> str:
    parts = [f"time threshold {opts.threshold * 100:g}%", f"min time {fmt_time(opts.min_time) or '0 s'}",
             f"alpha {opts.alpha:g}", f"peak-memory threshold {opts.memory_threshold * 100:g}%"]
    if opts.time_fail_ratio is not None:
        parts.append(f"times fail only beyond {opts.time_fail_ratio:g}×")
    if opts.time_stat != "median":
        parts.append(f"times compared by their {opts.time_stat}")
    if opts.normalize:
        parts.append("times normalised by each file's reference")
    return "; ".join(parts)


def report_markdown(report: Report, *, title: str = "rnnbench compare",
                    changes_only: bool = False) -> str:
    """Regressions first, then the summary, then every comparison folded away: a pull-request
    comment stays short when nothing moved."""
    cols = columns(report.options)
    lines = [f"### {title}", "",
             f"**{headline(report)}** — `{report.base_name}` → `{report.current_name}`", ""]
    if report.regressions:
        lines += ["#### Regressions", "", to_markdown(cols, [c.cells() for c in report.regressions])]
    summary = report.summary()
    if summary:
        lines += ["#### Time ratio (current / base), geometric mean", "",
                  to_markdown(SUMMARY_COLUMNS, [summary_cells(s) for s in summary])]
    shown = [c for c in report.comparisons if not changes_only or c.verdict != "same"]
    if shown:
        lines += ["<details><summary>All comparisons</summary>", "",
                  to_markdown(cols, [c.cells() for c in shown]), "</details>", ""]
    lines += [f"_{thresholds_line(report.options)}_", ""]
    lines += [f"- {n}" for n in report.notes + [x for x in (report.join_note, report.caveat) if x]]
    return "\n".join(lines).rstrip() + "\n"


# -- parsing the command line's quantities ---------------------------------------------------------
def parse_percent(text: str, what: str) -> float:
    """'5%' or '5' (percent) into 0.05."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*%?\s*", str(text))
    if not m:
        raise RnnbenchError(f"{what} must be a percentage such as 5%, got {text!r}")
    return float(m.group(1)) / 100


_UNITS = {"": 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(text: str, what: str) -> float:
    """'1e-5', '10us', '0.5ms' or '2s' into seconds."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(s|ms|us|µs|ns)?\s*", str(text))
    if not m:
        raise RnnbenchError(f"{what} must be a duration such as 10us, 1ms or 0.001, got {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2) or ""]
