"""What each metric means, declared once: its label, unit, which direction is better, how rounds
pool it, how two values of it are compared, and whether a change fails a check by default.

`compare`, `ab`, `run`'s summary, `plot` and `targets` read this table instead of guessing a
metric's meaning from its name. A metric measured as a time has several statistics in a row
(``time_s_median``, ``time_s_min``, ``time_s_q25``...; ``time_s_fwd_bwd_median`` in a ``bwd`` row):
:func:`lookup` resolves those spellings to the one declaration of their family.

Comparisons:
- ``exact``: the code fixes the value (parameter counts, saved-for-backward bytes), so any change
  is a change of the code;
- ``statistical``: measured with noise; judged from samples or from paired rounds;
- ``threshold``: not repeatable enough for a test, but a change beyond the noise floor is reported
  (peak memory);
- ``info``: context (the yardstick, the machine's busy share), never judged on its own.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

EXACT, STATISTICAL, THRESHOLD, INFO = "exact", "statistical", "threshold", "info"


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    unit: str                 # "s", "B", "/s", "FLOP", "FLOP/s", "instr", "" (a count or ratio)
    better: str               # "lower", "higher" or "none"
    comparison: str           # exact | statistical | threshold | info
    pool: str = "first"       # across rounds: samples | median | min | max | sum | first
    floor_abs: float = 0.0    # differences below max(floor_abs, floor_rel * base) are "same"
    floor_rel: float = 0.0
    gates: bool = False       # a change fails `compare`/`ab` by default
    statistic: str = ""       # for a timed metric: median, min, q25...

    def within_floor(self, base: float, current: float) -> bool:
        """The change is inside the metric's noise floor, so it says nothing about the code."""
        return abs(current - base) < max(self.floor_abs, self.floor_rel * abs(base))

    def worse(self, base: float, current: float) -> bool:
        if self.better == "lower":
            return current > base
        if self.better == "higher":
            return current < base
        return current != base

    def human(self) -> str:
        """'time per call (median), s' style header for tables and plot axes."""
        return f"{self.label} [{self.unit}]" if self.unit else self.label


_MiB = 1024 ** 2

_DECLARED = [
    # -- speed --------------------------------------------------------------------------------
    Metric("time_s", "time per call", "s", "lower", STATISTICAL, pool="samples", gates=True),
    Metric("tokens_per_s", "throughput", "tokens/s", "higher", INFO, pool="samples"),
    Metric("flop_per_s", "matrix-product rate", "FLOP/s", "higher", INFO, pool="samples"),
    Metric("flops", "matrix-product FLOPs per call", "FLOP", "lower", EXACT, gates=False),
    # callgrind counts repeat to well under 0.1% (rnnbench/bench/instructions.py): 0.2% is growth
    Metric("instructions", "instructions per call", "instr", "lower", THRESHOLD,
           floor_rel=0.002, gates=True),
    Metric("compile_time_s", "compile time", "s", "lower", INFO),
    Metric("reference_time_s", "yardstick (512³ matmul)", "s", "lower", INFO, pool="median"),
    Metric("reference_time_s_min", "yardstick, fastest", "s", "lower", INFO, pool="min"),
    Metric("host_drift", "yardstick drift", "", "lower", INFO, pool="max"),
    Metric("others_cpu_frac", "CPU share of other processes", "", "lower", INFO, pool="max"),
    Metric("steal_cpu_frac", "CPU share stolen by the host", "", "lower", INFO, pool="max"),
    Metric("busy_retries", "busy retries", "", "lower", INFO, pool="sum"),
    # the size of the group of cases timed in alternation with this one (rnnbench/bench/speed.py);
    # absent from a row timed alone
    Metric("alternated_cases", "cases timed in alternation", "", "none", INFO, pool="max"),
    Metric("load_avg_1m", "load average", "", "lower", INFO, pool="max"),
    Metric("verify_rel_err", "error against eager", "", "lower", INFO, pool="max"),
    # -- counts the code fixes ----------------------------------------------------------------
    Metric("params", "parameters", "", "none", EXACT, gates=True),
    Metric("param_bytes", "parameter bytes", "B", "none", EXACT, gates=True),
    Metric("saved_bytes", "saved for backward", "B", "lower", EXACT, gates=True),
    Metric("saved_bytes_per_token", "saved for backward per token", "B", "lower", EXACT, gates=True),
    Metric("saved_tensors", "saved tensors", "", "lower", INFO),
    Metric("reduction_pct", "parameter reduction", "%", "higher", EXACT, gates=True),
    # -- peak memory: allocators and RSS are not repeatable to the byte ---------------------------
    # An RSS high-water mark moves by pages and allocator arenas from run to run (a 4 kB → 238 kB
    # "growth" on unchanged code), so differences under max(1 MiB, 5%) say nothing, and RSS does
    # not gate unless asked; the CUDA caching allocator's figures are steadier and do.
    Metric("peak_rss_bytes", "peak resident memory", "B", "lower", THRESHOLD, pool="max",
           floor_abs=_MiB, floor_rel=0.05, gates=False),
    Metric("peak_allocated_bytes", "peak allocated (CUDA)", "B", "lower", THRESHOLD, pool="max",
           floor_abs=_MiB, floor_rel=0.05, gates=True),
    Metric("peak_reserved_bytes", "peak reserved (CUDA)", "B", "lower", THRESHOLD, pool="max",
           floor_abs=_MiB, floor_rel=0.05, gates=False),
    # -- learning tasks -----------------------------------------------------------------------
    Metric("val_final", "final validation score", "", "none", INFO),
    Metric("val_best", "best validation score", "", "none", INFO),
    Metric("step_time_s", "time per training step", "s", "lower", STATISTICAL, pool="samples"),
]
METRICS: dict[str, Metric] = {m.name: m for m in _DECLARED}

# the statistics the timing harness writes for a timed metric, and which of them a comparison uses
_TIME_STATS = ("median", "min", "q25", "q75", "iqr", "spread", "mean", "max")
# time_s_median, time_s_fwd_bwd_min, step_time_s_iqr: (family, part, statistic)
_TIMED = re.compile(r"^(?P<family>(?:step_)?time_s)(?P<part>_fwd_bwd|_fwd_grad)?_(?P<stat>"
                    + "|".join(_TIME_STATS) + r")$")
_PART_LABEL = {"_fwd_bwd": " (fwd+bwd)", "_fwd_grad": " (fwd with autograd)", None: ""}


def lookup(name: str) -> Metric | None:
    """The declaration behind a metric name as rows spell it, or None for a name that is not a
    metric of its own (sample lists, per-round lists, labels)."""
    if name in METRICS:
        return METRICS[name]
    m = _TIMED.match(name)
    if m:
        base = METRICS[m["family"]]
        stat = m["stat"]
        # only the central statistic is judged; the others describe its spread
        comparison = base.comparison if stat in ("median", "min") else INFO
        return Metric(name, f"{base.label}{_PART_LABEL[m['part']]} ({stat})", base.unit,
                      base.better, comparison, pool="samples",
                      gates=base.gates and comparison != INFO, statistic=stat)
    if name.startswith("param_bytes_"):  # param_bytes_float32 and the like
        return Metric(name, f"parameter bytes ({name[len('param_bytes_'):]})", "B", "none", EXACT,
                      gates=True)
    return None


def samples_key(name: str) -> str | None:
    """Where a timed metric's raw samples live: time_s_median -> samples_s,
    time_s_fwd_bwd_median -> samples_s_fwd_bwd. None for metrics without samples."""
    m = _TIMED.match(name)
    if not m:
        return None
    prefix = "step_samples_s" if m["family"] == "step_time_s" else "samples_s"
    return prefix + (m["part"] or "")


def is_timed(name: str) -> bool:
    return _TIMED.match(name) is not None


def judged(name: str) -> bool:
    """Compared on its own by `compare` and `ab` (exact, statistical or threshold)."""
    m = lookup(name)
    return m is not None and m.comparison != INFO


def label(name: str) -> str:
    m = lookup(name)
    return m.label if m else name.replace("_", " ")


def unit(name: str) -> str:
    m = lookup(name)
    return m.unit if m else ""


def number(v) -> float | None:
    """A metric value that can be compared: a finite or infinite real, not a bool, not NaN."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return None if math.isnan(v) else v


def fmt(name: str, v) -> str:
    """A value for people, in the metric's unit."""
    from rnnbench.results import fmt_count, fmt_si, fmt_time
    if v is None:
        return ""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    u = unit(name)
    if u == "s":
        return fmt_time(v)
    if u == "B":
        return fmt_si(v, "B") if lookup(name) and lookup(name).comparison != EXACT \
            else fmt_count(int(v)) + " B"
    if u in ("tokens/s", "FLOP/s", "FLOP", "instr"):
        return fmt_si(v, "" if u == "instr" else u)
    if u == "%":
        return f"{v:.1f}%"
    if isinstance(v, int):
        return fmt_count(v)
    return f"{v:.4g}"
