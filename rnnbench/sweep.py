"""The sweep: a list of cases measured one by one, each row written as it finishes.

Kept apart from rnnbench/suite.py, which only turns a TOML file into cases: `plan` and the
parsers' tests need none of this, and this needs no TOML.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass

from rnnbench.case import Case
from rnnbench.errors import ConfigError, RnnbenchError
from rnnbench.results import Row
from rnnbench.validate import check_settings

Measure = Callable[..., Row]


def default_measure() -> Measure:
    # imported by name at call time so that the sweep machinery (and `plan`) work without the
    # measuring stack, and so tests can put a fake module in its place
    import importlib
    try:
        return importlib.import_module("rnnbench.bench.dispatch").measure
    except ImportError as e:
        raise RnnbenchError(f"the measuring module rnnbench.bench.dispatch is not available ({e})"
                            ) from None


def default_measure_group() -> Callable[..., list[Row]] | None:
    """The measuring module's group measure (cases timed in alternation), None where it has none
    (a stand-in module of the tests): then a group's cases are measured one by one."""
    import importlib
    try:
        return getattr(importlib.import_module("rnnbench.bench.dispatch"), "measure_together", None)
    except ImportError:
        return None


def measure_kwargs(measure: Measure, settings: dict, where: str = "[settings]") -> dict:
    """[settings] as keyword arguments of the measure function. A sub-table fills the settings
    dataclass its keyword is typed with (``[settings.speed]`` → ``SpeedSettings``); a key the
    function does not take is an error, so a typo is never silently a no-op."""
    if not settings:
        return {}
    try:
        sig = inspect.signature(measure)
    except (TypeError, ValueError):
        sig = None
    params = {} if sig is None else {
        p.name: p for p in list(sig.parameters.values())[1:]
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_KEYWORD)}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    allowed = [n for n, p in params.items() if p.kind is not p.VAR_KEYWORD]
    try:
        hints = typing.get_type_hints(measure)
    except Exception:
        hints = {}
    kwargs = {}
    for key, value in settings.items():
        if key not in allowed and not takes_any:
            raise ConfigError(f"{where}: unknown key {key!r}; allowed: {', '.join(allowed) or 'none'}")
        cls = _dataclass_in(hints.get(key))
        kwargs[key] = _fill(cls, value, f"{where[:-1]}.{key}]") if cls and isinstance(value, dict) \
            else value
    return kwargs


def _dataclass_in(hint):
    for t in (hint, *typing.get_args(hint)):
        if dataclasses.is_dataclass(t) and isinstance(t, type):
            return t
    return None


def _fill(cls, table: dict, where: str):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in table.items():
        if key not in fields:
            raise ConfigError(f"{where}: unknown key {key!r}; allowed: {', '.join(fields)}")
        default = fields[key].default
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, (int, float)):
            ok = isinstance(value, (int, float) if isinstance(default, float) else int) \
                and not isinstance(value, bool)
        else:  # None or no default: the dataclass's own annotation is all there is to go by
            ok = default is None or default is dataclasses.MISSING or isinstance(value, type(default))
        if not ok:
            raise ConfigError(f"{where}: {key} = {value!r} is not a {type(default).__name__}")
    check_settings(table, where)
    return cls(**table)


def is_oom(e: BaseException) -> bool:
    if isinstance(e, MemoryError):
        return True
    try:
        import torch
        if isinstance(e, torch.cuda.OutOfMemoryError):
            return True
    except Exception:
        pass
    return isinstance(e, RuntimeError) and "out of memory" in str(e).lower()


def _release_memory() -> None:
    try:
        import torch
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:
        pass


@dataclass
class SweepReport:
    rows: list[Row]            # this sweep's rows, in case order: measured now or found done
    measured: int = 0
    resumed: int = 0


def run_suite(cases: list[Case], *, writer, measure: Measure | None = None,
              settings: dict | None = None, on_start: Callable[[Case], None] | None = None,
              on_done: Callable[[Case, Row], None] | None = None,
              together: list[list[str]] | None = None,
              measure_group: Callable[..., list[Row]] | None = None) -> SweepReport:
    """Measure each case not already done in the writer's file, writing every row as it finishes.

    ``together``: groups of case keys to time in alternation (a target's row and its reference,
    :func:`rnnbench.targets.alternation_groups`), each measured by ``measure_group`` when the sweep
    reaches its first member; the default measure comes with the default group measure, and a
    custom ``measure`` without one measures a group's cases one by one.

    A KeyboardInterrupt (or kill) loses only the case (or group) in flight: every earlier row is
    already on disk. dispatch turns per-case failures into rows itself; the guard here keeps one
    bad case from ending a sweep of thousands even if it does not.
    """
    if measure is None:
        measure = default_measure()
        measure_group = measure_group or default_measure_group()
    kwargs = measure_kwargs(measure, settings or {})
    done = writer.done_keys()
    have = {r.key: r for r in writer.result.results}
    report = SweepReport([])
    group_of = {k: g for g in (together or []) for k in g}
    rows: dict[str, Row] = {}
    try:
        for case in cases:
            if case.key in rows:
                continue  # measured with an earlier member of its group
            if case.key in done:
                rows[case.key] = have[case.key]
                report.resumed += 1
                if on_done:
                    on_done(case, have[case.key])
                continue
            group = group_of.get(case.key, ())
            members = [c for c in cases if c.key in group and c.key not in done
                       and c.key not in rows] if measure_group else []
            if len(members) < 2:
                members = [case]
            for c in members:
                if on_start:
                    on_start(c)
            got = _measure_group(measure_group, members, kwargs) if len(members) > 1 else \
                [_measure_one(measure, case, kwargs)]
            for c, row in zip(members, got):
                _file(row, c.key)
                writer.add(row)
                rows[c.key] = row
                report.measured += 1
                if on_done:
                    on_done(c, row)
    finally:
        # rows past the writer's rewrite threshold may be only in its journal, and a resumed file
        # may still have one from the run before: the files end complete however the sweep ends
        writer.close()
    report.rows = [rows[c.key] for c in cases if c.key in rows]
    return report


def _file(row: Row, key: str) -> None:
    if row.key != key:
        # resume and merge join on the case key: a row filed under another key would be
        # measured again on every resume
        row.warnings.append(f"measure returned key {row.key!r}; stored under the case key")
        row.key = key


def _measure_group(measure_group, cases: list[Case], kwargs: dict) -> list[Row]:
    """The group's rows; a failure that is no user error becomes every member's row, as in
    :func:`_measure_one`."""
    try:
        rows = measure_group(cases, **kwargs)
    except RnnbenchError:
        raise
    except Exception as e:  # not BaseException: Ctrl-C must stop the sweep
        return _failed(cases, e)
    if not isinstance(rows, list) or len(rows) != len(cases) or \
            not all(isinstance(r, Row) for r in rows):
        return [c.row(status="failed", reason="the group measure did not return one Row per case")
                for c in cases]
    return rows


def _measure_one(measure: Measure, case: Case, kwargs: dict) -> Row:
    try:
        row = measure(case, **kwargs)
    except RnnbenchError:
        raise  # dispatch raises only what concerns the whole run (no GPU, unknown bench)
    except Exception as e:  # not BaseException: Ctrl-C must stop the sweep
        return _failed([case], e)[0]
    if not isinstance(row, Row):
        return case.row(status="failed", reason=f"measure returned {type(row).__name__}, not a Row")
    return row


def _failed(cases: list[Case], e: Exception) -> list[Row]:
    """The rows of cases whose measurement raised: out of memory (its cache freed) or failed."""
    status = "oom" if is_oom(e) else "failed"
    if status == "oom":
        _release_memory()
    return [c.row(status=status, reason=f"{type(e).__name__}: {str(e)[:300]}") for c in cases]
