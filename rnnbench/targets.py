"""Performance targets declared in a suite, judged on its results.

A suite may state what its numbers must show, so a CI job or a reader checks the claim instead of
eyeballing a table::

    [[target]]
    name = "fused IRC-GRU training step at least 1.5x faster than eager"
    where = { cell = "gru", variant = "irc", backend = "fused" }   # the speed rows it judges
    than = { backend = "eager" }         # the reference: the same case with these fields changed
    speedup = 1.5                        # time(reference) / time(row) >= 1.5
                                         # (for a metric where higher is better, such as
                                         # flop_per_s: value(row) / value(reference))

    [[target]]
    name = "eager GRU forward within 1.5x of torch.nn.GRU"
    where = { cell = "gru", form = "canonical", backend = "eager", mode = "fwd" }
    than = { backend = "native" }
    max_slowdown = 1.5                   # time(row) / time(reference) <= 1.5

    [[target]]
    name = "a step under 4 us"
    where = { backend = "triton", hidden_size = 1024 }
    max_time_per_step_s = 4e-6           # time_s_median / seq_len <= 4e-6

Every row matching ``where`` (a value or a list of values per case field; a per-layer hidden size
is a list inside the list, ``hidden_size = [[400, 1150]]``) is one check. The reference row is found
by case key in the same result file and on the same machine (the project's rule for comparing
speeds: ratios taken in one run); cell options the reference cell does not take (an IHC Γ reading
against a baseline) drop out of its key. A check passes, misses, or
cannot be judged (`missing`: a row or its reference absent or not `ok`). A check whose rows were
timed on a busy machine (a `busy:` warning from the timing harness) keeps its verdict but is
marked, because then the ratio says more about the neighbours than about the code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from rnnbench import metrics as M
from rnnbench.errors import ConfigError
from rnnbench.results import CASE_FIELDS, Row

TARGET_KEYS = ("name", "where", "than", "speedup", "max_slowdown", "max_time_per_step_s", "metric")
KINDS = ("speedup", "max_slowdown", "max_time_per_step_s")
VERDICTS = ("pass", "miss", "missing")


@dataclass(frozen=True)
class Target:
    name: str
    where: tuple[tuple[str, tuple], ...]       # (field, allowed values)
    than: tuple[tuple[str, object], ...] = ()  # fields that turn a row into its reference
    speedup: float | None = None
    max_slowdown: float | None = None
    max_time_per_step_s: float | None = None
    metric: str = "time_s_median"

    def matches(self, row: Row) -> bool:
        return row.bench == "speed" and all(_norm(getattr(row, k)) in vs for k, vs in self.where)

    def reference_key(self, row: Row) -> str:
        return dataclasses.replace(row, key="", **dict(self.than)).key

    def reference_keys(self, row: Row) -> list[str]:
        """The reference's key with the row's cell options, then without them."""
        keys = [self.reference_key(row)]
        if row.labels.get("options"):
            labels = {k: v for k, v in row.labels.items() if k != "options"}
            keys.append(dataclasses.replace(row, key="", labels=labels, **dict(self.than)).key)
        return keys

    @property
    def requirement(self) -> str:
        ref = ", ".join(f"{k}={v}" for k, v in self.than)
        if self.speedup is not None:
            return f"speedup ≥ {self.speedup:g}× vs {ref}"
        if self.max_slowdown is not None:
            return f"time ≤ {self.max_slowdown:g}× that of {ref}"
        return f"≤ {self.max_time_per_step_s * 1e6:g} µs/step"


@dataclass
class Check:
    target: str
    key: str
    verdict: str                  # pass | miss | missing
    measured: float | None = None  # the speedup, the slowdown, or seconds per step
    required: str = ""
    busy: bool = False
    reason: str = ""
    ratio: bool = False           # measured is a ratio to a reference row
    alternated: bool = False      # ... and the two were timed in turn, in one window


def _norm(v):
    return tuple(v) if isinstance(v, list) else v


def _field_value(field: str, v, where: str):
    if field == "hidden_size" and isinstance(v, list):
        if not v or not all(isinstance(m, int) and not isinstance(m, bool) and m > 0 for m in v):
            raise ConfigError(f"{where}: a per-layer hidden_size must list positive integers, got {v!r}")
        return tuple(v)
    if field in ("batch", "seq_len", "input_size", "layers", "hidden_size"):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ConfigError(f"{where}: {field} must be a positive integer, got {v!r}")
    elif not isinstance(v, str):
        raise ConfigError(f"{where}: {field} must be a string, got {v!r}")
    return v


def _fields(raw, where: str, *, lists: bool) -> tuple:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be an inline table such as {{ backend = \"fused\" }}")
    out = []
    for k, v in raw.items():
        if k not in CASE_FIELDS or k == "bench":
            allowed = ", ".join(f for f in CASE_FIELDS if f != "bench")
            raise ConfigError(f"{where}: unknown case field {k!r}; allowed: {allowed}")
        if lists:
            vs = v if isinstance(v, list) else [v]
            if not vs:
                raise ConfigError(f"{where}: {k} lists no values")
            out.append((k, tuple(_field_value(k, x, where) for x in vs)))
        else:
            out.append((k, _field_value(k, v, where)))
    return tuple(out)


def _positive(v, where: str, key: str) -> float:
    """A bound: finite and above zero, by the settings' rule (rnnbench/validate.py)."""
    from rnnbench.validate import POSITIVE, check
    return float(check(key, v, POSITIVE, f"{where}:", error=ConfigError))


def parse_targets(raw, path) -> list[Target]:
    """The suite's ``[[target]]`` entries, validated: one clear line on the first problem."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError(f"{path}: [[target]] must be an array of tables")
    targets, names = [], set()
    for i, t in enumerate(raw, 1):
        where = f"{path}: [[target]] #{i}"
        if not isinstance(t, dict):
            raise ConfigError(f"{where}: must be a table")
        unknown = [k for k in t if k not in TARGET_KEYS]
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(TARGET_KEYS)}")
        name = t.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{where}: needs a name")
        if name in names:
            raise ConfigError(f"{where}: name {name!r} is used twice")
        names.add(name)
        if "where" not in t:
            raise ConfigError(f"{where}: needs where = {{ ... }}, the rows it judges")
        kinds = [k for k in KINDS if k in t]
        if len(kinds) != 1:
            raise ConfigError(f"{where}: give exactly one of {', '.join(KINDS)}")
        metric = t.get("metric", "time_s_median")
        declared = M.lookup(metric) if isinstance(metric, str) else None
        if declared is None or declared.better not in ("lower", "higher"):
            raise ConfigError(f"{where}: metric must be a measured metric with a better direction "
                              "(rnnbench/metrics.py), such as time_s_median, time_s_fwd_bwd_median "
                              f"or flop_per_s, got {metric!r}")
        kind = kinds[0]
        if kind == "max_time_per_step_s" and declared.unit != "s":
            raise ConfigError(f"{where}: max_time_per_step_s needs a time metric, got {metric!r}")
        bound = _positive(t[kind], where, kind)
        relative = kind != "max_time_per_step_s"
        if relative and "than" not in t:
            raise ConfigError(f"{where}: {kind} needs than = {{ ... }}, the reference case")
        if not relative and "than" in t:
            raise ConfigError(f"{where}: than is for speedup and max_slowdown targets")
        than = _fields(t["than"], where + " than", lists=False) if "than" in t else ()
        if relative and not than:
            raise ConfigError(f"{where}: than changes no field, so a row would be its own reference")
        targets.append(Target(name=name, where=_fields(t["where"], where + " where", lists=True),
                              than=than, metric=metric, **{kind: bound}))
    return targets


def alternation_groups(targets: list[Target], cases) -> list[list[str]]:
    """The case keys to time in alternation: each relative target's row with its reference, joined
    into one group where they share a case (a reference judged against several rows), in the
    cases' order. Only what is timed in one measurement alternates (speed, fwd or fwd+bwd: a bwd
    row is two measurements subtracted) and only cases of one device. A ratio of two cases timed
    in turn in the same seconds is not the machine's swing between two minutes; the run's rounds
    still repeat the whole in fresh processes."""
    from rnnbench.bench.speed import can_alternate  # torch-heavy, and only a run needs it

    by_key = {c.key: c for c in cases if can_alternate(c)}
    parent = {k: k for k in by_key}

    def root(k):
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for t in targets:
        if t.max_time_per_step_s is not None:
            continue
        for key, c in by_key.items():
            row = c.row()
            if not t.matches(row):
                continue
            ref = next((k for k in t.reference_keys(row) if k in by_key), None)
            if ref is not None and ref != key and by_key[ref].device == c.device:
                parent[root(ref)] = root(key)
    groups: dict[str, list[str]] = {}
    for k in by_key:
        groups.setdefault(root(k), []).append(k)
    return [g for g in groups.values() if len(g) > 1]


def _busy(row: Row) -> bool:
    warnings = [row.warnings] if isinstance(row.warnings, str) else row.warnings or []
    return any(str(w).startswith("busy:") or " busy:" in str(w) for w in warnings)


def evaluate(targets: list[Target], rows: list[Row]) -> list[Check]:
    """One check per (target, matching row) of ONE result file, in the order of the targets and
    then of the rows. A merged file's machines are judged apart: a reference comes from the
    row's own machine."""
    by_key = {(r.labels.get("machine", ""), r.key): r for r in rows}
    checks = []
    for t in targets:
        hits = [r for r in rows if t.matches(r)]
        if not hits:
            checks.append(Check(t.name, "", "missing", required=t.requirement,
                                reason="no result row matches `where`"))
            continue
        for r in hits:
            machine = r.labels.get("machine", "")
            checks.append(_check(t, r, {k: v for (m, k), v in by_key.items() if m == machine}))
    return checks


def _check(t: Target, r: Row, by_key: dict[str, Row]) -> Check:
    c = Check(t.name, r.key, "missing", required=t.requirement, busy=_busy(r))
    value = r.metrics.get(t.metric)
    if r.status != "ok":
        c.reason = f"the row is {r.status}" + (f": {r.reason}" if r.reason else "")
        return c
    if not _positive_number(value):
        c.reason = f"the row has no {t.metric}"
        return c
    if t.max_time_per_step_s is not None:
        if not (isinstance(r.seq_len, int) and r.seq_len > 0):
            c.reason = "the row has no sequence length"
            return c
        c.measured = value / r.seq_len
        c.verdict = "pass" if c.measured <= t.max_time_per_step_s else "miss"
        return c
    ref = next((by_key[k] for k in t.reference_keys(r) if k in by_key), None)
    if ref is None:
        c.reason = f"no reference row {t.reference_key(r)}"
        return c
    ref_value = ref.metrics.get(t.metric)
    if ref.status != "ok" or not _positive_number(ref_value):
        c.reason = f"the reference row is {ref.status}" if ref.status != "ok" else \
            f"the reference row has no {t.metric}"
        return c
    c.busy = c.busy or _busy(ref)
    group = r.labels.get("alternated")
    c.ratio, c.alternated = True, bool(group) and group == ref.labels.get("alternated")
    # "faster" is the metric's better direction: less time, or more FLOP/s and tokens/s
    better_ratio = ref_value / value if M.lookup(t.metric).better == "lower" else value / ref_value
    if t.speedup is not None:
        c.measured = better_ratio
        c.verdict = "pass" if c.measured >= t.speedup else "miss"
    else:
        c.measured = 1 / better_ratio
        c.verdict = "pass" if c.measured <= t.max_slowdown else "miss"
    return c


def _positive_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0


def _fmt_measured(t: Target | None, c: Check) -> str:
    if c.measured is None:
        return ""
    if t is not None and t.max_time_per_step_s is not None:
        return f"{c.measured * 1e6:.3g} µs/step"
    return f"{c.measured:.3f}×"


def table(targets: list[Target], checks: list[Check]):
    """The checks as a Rich table: target, case, measured, required, verdict."""
    from rich.table import Table

    by_name = {t.name: t for t in targets}
    tbl = Table(title="Targets")
    for col in ("target", "case", "measured", "required", "verdict"):
        tbl.add_column(col, justify="right" if col == "measured" else "left",
                       overflow="fold")
    style = {"pass": "green", "miss": "bold red", "missing": "yellow"}
    for c in checks:
        verdict = c.verdict.upper() if c.verdict == "miss" else c.verdict
        if c.busy:
            verdict += " (busy machine)"
        if c.reason:
            verdict += f": {c.reason}"
        tbl.add_row(c.target, c.key, _fmt_measured(by_name.get(c.target), c), c.required,
                    f"[{style[c.verdict]}]{verdict}[/]")
    return tbl


def summary(checks: list[Check]) -> str:
    n = {v: sum(c.verdict == v for c in checks) for v in VERDICTS}
    busy = sum(c.busy for c in checks)
    relative = [c for c in checks if c.ratio]
    apart = sum(not c.alternated for c in relative)
    return (f"{len(checks)} check(s): {n['pass']} pass, {n['miss']} miss, {n['missing']} missing"
            + (f"; {busy} measured on a busy machine" if busy else "")
            + (f"; {apart} of {len(relative)} ratio(s) from rows timed apart, not in alternation "
               "(minutes apart on a machine whose speed swings)" if apart else ""))
