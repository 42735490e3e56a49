"""The single entry point from a Case to a result Row: ``measure(case, **settings)``.

Used by the ``speed`` and ``memory`` commands and by the suite runner, whose ``[settings]`` table
arrives here as keywords: any field of SpeedSettings (for speed cases) or MemorySettings (for memory
cases), e.g. ``min_run_time = 0.5``. An unsupported case, an out-of-memory error or a failure comes
back as a row with that status; only errors that concern the whole run raise (no GPU, unknown cell,
unknown bench, unknown setting).
"""

from __future__ import annotations

from dataclasses import fields, replace

from rnnbench.bench.memory import MemorySettings, measure_memory
from rnnbench.bench.speed import SpeedSettings, can_alternate, measure_speed, measure_speed_together
from rnnbench.case import Case
from rnnbench.errors import ConfigError
from rnnbench.results import Row

BENCHES = ("speed", "memory")
SPEED_KEYS = {f.name for f in fields(SpeedSettings)}
MEMORY_KEYS = {f.name for f in fields(MemorySettings)}


def _apply(base, settings: dict, keys: set[str]):
    return replace(base, **{k: v for k, v in settings.items() if k in keys})


def _check_keys(settings: dict) -> None:
    unknown = sorted(set(settings) - SPEED_KEYS - MEMORY_KEYS)
    if unknown:
        raise ConfigError(f"unknown measurement setting(s) {', '.join(unknown)}; speed takes "
                          f"{', '.join(sorted(SPEED_KEYS))}; memory takes {', '.join(sorted(MEMORY_KEYS))}")


def measure(case: Case, *, speed: SpeedSettings | None = None,
            memory: MemorySettings | None = None, **settings) -> Row:
    _check_keys(settings)
    if case.bench == "speed":
        return measure_speed(case, _apply(speed or SpeedSettings(), settings, SPEED_KEYS))
    if case.bench == "memory":
        return measure_memory(case, _apply(memory or MemorySettings(), settings, MEMORY_KEYS))
    raise ConfigError(f"rnnbench cannot measure bench {case.bench!r} here; "
                      f"measure() takes {', '.join(BENCHES)}")


def measure_together(cases: list[Case], *, speed: SpeedSettings | None = None,
                     memory: MemorySettings | None = None, **settings) -> list[Row]:
    """Rows for several cases timed in alternation (the suite runner's groups: a target's row and
    its reference), in the order given. Cases that cannot alternate (memory, bwd) and cases of
    another device than the first are measured alone, after."""
    first = next((c for c in cases if can_alternate(c)), None)
    alone = [c for c in cases if not can_alternate(c) or c.device != first.device]
    together = [c for c in cases if c not in alone]
    rows = {}
    if len(together) > 1:
        _check_keys(settings)
        s = _apply(speed or SpeedSettings(), settings, SPEED_KEYS)
        rows.update(zip((c.key for c in together), measure_speed_together(together, s)))
    else:
        alone = cases
    for c in alone:
        rows[c.key] = measure(c, speed=speed, memory=memory, **settings)
    return [rows[c.key] for c in cases]
