"""The one place that says what a setting may be: its type, its range, and that it is finite.

Command-line flags, a suite's ``[settings]`` (and so both ``plan`` and ``run``) and the commands'
own numeric options all check their values here, before any work starts, so a setting is refused
the same way wherever it comes from, and the message names the setting and its source::

    quick.toml: [settings.speed] min_run_time = -1: must be positive
    --min-run-time must be a finite number > 0, got nan

A NaN slips through ``v <= 0`` (every comparison with NaN is false): that is how ``--min-run-time
nan`` used to hang and ``--time-fail-ratio nan`` switched a gate off, so every rule here asks
for what a value must be, never for what it must not.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from rnnbench.errors import ConfigError, RnnbenchError


@dataclass(frozen=True)
class Rule:
    kind: str                  # "int", "float", "bool", "cpus"
    low: float | None = None   # inclusive bound unless open_low
    high: float | None = None  # inclusive
    open_low: bool = False
    optional: bool = False     # None (or absent) allowed

    def describe(self) -> str:
        what = {"int": "an integer", "float": "a finite number", "bool": "true or false",
                "cpus": "a list of CPU numbers (integers >= 0)"}[self.kind]
        bounds = []
        if self.low is not None:
            bounds.append(f"{'>' if self.open_low else '>='} {self.low:g}")
        if self.high is not None:
            bounds.append(f"<= {self.high:g}")
        return what + (" " + " and ".join(bounds) if bounds else "")


POSITIVE = Rule("float", 0, open_low=True)
POSITIVE_INT = Rule("int", 1)
COUNT = Rule("int", 0)

# the fields of SpeedSettings and MemorySettings (rnnbench/bench), and what each may hold
SETTINGS: dict[str, Rule] = {
    "min_run_time": POSITIVE,
    "sample_time": POSITIVE,
    "warmup": COUNT,
    "warmup_time": Rule("float", 0),
    "min_samples": POSITIVE_INT,
    "max_samples": POSITIVE_INT,
    "input_sets": POSITIVE_INT,
    "check": Rule("bool"),
    "flops": Rule("bool"),
    "seed": COUNT,
    "threads": Rule("int", 1, optional=True),
    "busy_retries": COUNT,
    "reference": Rule("bool"),
    "pin_cpus": Rule("cpus", optional=True),
    "rss": Rule("bool"),
    "rss_timeout_s": POSITIVE,
}


def _show(value) -> str:
    """The value as the user wrote it: TOML-ish in a file, plain on the command line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def _fails(rule: Rule, value) -> str | None:
    if value is None:
        return None if rule.optional else f"must be {rule.describe()}"
    if rule.kind == "bool":
        return None if isinstance(value, bool) else "must be true or false"
    if rule.kind == "cpus":
        ok = isinstance(value, (list, tuple)) and value and all(
            isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in value)
        return None if ok else f"must be {rule.describe()}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"must be {rule.describe()}"
    if rule.kind == "int" and not isinstance(value, int):
        return f"must be {rule.describe()}"
    if not math.isfinite(value):
        return f"must be {rule.describe()}"
    if rule.low is not None and (value <= rule.low if rule.open_low else value < rule.low):
        if rule.low == 0 and rule.open_low or rule.kind == "int" and rule.low == 1:
            return "must be positive"
        return f"must be {'>' if rule.open_low else '>='} {rule.low:g}"
    if rule.high is not None and value > rule.high:
        return f"must be <= {rule.high:g}"
    return None


def keeps(rule: Rule, value) -> bool:
    """Whether ``value`` keeps ``rule`` (for callers that word their own message)."""
    return _fails(rule, value) is None


def check(name: str, value, rule: Rule, source: str | None = None, *, error=RnnbenchError):
    """``value`` if it keeps ``rule``; else one line naming the setting and where it came from.
    ``source`` None: a command-line flag (``name`` is the flag)."""
    why = _fails(rule, value)
    if why is None:
        return value
    if source is None:
        shown = repr(value) if isinstance(value, str) else _show(value)
        raise error(f"{name} {why}, got {shown}")
    raise error(f"{source} {name} = {_show(value)}: {why}")


def flag(name: str, value, rule: Rule):
    """A command-line flag; None (not given) passes where the flag is optional."""
    if value is None:
        return None
    return check(name, value, rule)


def check_settings(table: Mapping, source: str) -> None:
    """A settings table (a suite's [settings] or one of its sub-tables): every key this module
    knows is checked; keys it does not know are left to the measure function, which names them."""
    for key, value in table.items():
        if isinstance(value, Mapping):
            check_settings(value, f"{source[:-1]}.{key}]" if source.endswith("]")
                           else f"{source} [{key}]")
            continue
        rule = SETTINGS.get(key)
        if rule is not None:
            check(key, value, rule, source, error=ConfigError)
