"""TOML suites: axes, their cartesian product, exclusions and extra cases. Parsing only: a suite
becomes a list of cases here without measuring anything; rnnbench/sweep.py runs them.

A suite file::

    [meta]
    name = "cpu"                      # default: the file name without .toml
    description = "..."
    bench = ["speed", "memory"]       # innermost axis unless [axes] names it itself

    [axes]                            # TOML order is nesting order: first key varies slowest
    cell = ["all"]
    variant = ["baseline", "irc", "ihc"]
    batch = [1, 32]
    seq_len = [64]
    input_equals_hidden = true        # N = M: one axis instead of two
    hidden_size = [128, 256, 512]
    fold = ["on", "off"]              # IRC on the fused backends (auto, on, off); others: auto

    [settings.speed]                  # keyword arguments of the measure function: a sub-table
    min_run_time = 0.5                # fills the settings dataclass of that keyword (SpeedSettings)

    [options]                         # cell options, applied where a cell takes them
    gamma_input = "h"

    [[exclude]]                       # drops product cases matching every key (a list = any of)
    cell = "sru"
    batch = 1

    [[include]]                       # extra cases: the axes, with these keys replaced
    cell = ["gru", "lstm"]
    form = "canonical"
    backend = "native"

    [[target]]                        # what the results must show (rnnbench/targets.py)
    name = "fused at least 1.5x eager"
    where = { variant = "irc", backend = "fused" }
    than = { backend = "eager" }
    speedup = 1.5

Cases a cell cannot take (N ≠ M for cells whose feedback is elementwise, a form the zoo does not
have) are dropped with a note rather than kept as `unsupported` rows: they are not cases of the
cell at all, and `rnnbench plan` lists the notes. A backend that cannot run a case is different:
that is a measurement outcome, and dispatch records it as an `unsupported` row.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from rnnbench.case import DTYPES, FOLDS, Case, layer_sizes
from rnnbench.cells.registry import FORMS, VARIANTS, all_specs, families
from rnnbench.errors import ConfigError, RnnbenchError
from rnnbench.validate import POSITIVE_INT, check_settings, keeps

import tomllib  # Python 3.11+ (pyproject's requires-python)

DEVICE_RE = re.compile(r"^(cpu|cuda(:\d+)?|mps)$")

# axis name -> default when a suite leaves it out; None means the suite must give it, because a
# silently assumed size would make the numbers mean something other than the author thought
AXES: dict[str, object] = {
    "bench": None, "cell": None, "variant": "baseline", "form": "paper", "backend": "eager",
    "mode": "fwd+bwd", "dtype": "float32", "device": "cpu", "batch": None, "seq_len": None,
    "input_size": None, "hidden_size": None, "layers": 1, "fold": "auto",
}
TOP_KEYS = ("meta", "axes", "settings", "options", "exclude", "include", "target")
META_KEYS = ("name", "description", "title", "bench")


@dataclass
class Suite:
    name: str
    path: Path | None
    cases: list[Case]
    settings: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what was dropped, and why
    targets: list = field(default_factory=list)     # rnnbench.targets.Target, judged on results

    def with_device(self, device: str) -> Suite:
        """Every case on one device (run/plan --device): e.g. the GPU suite on a CPU."""
        check_device(device, "--device")
        return replace(self, cases=[replace(c, device=device) for c in self.cases])


def check_device(device: str, what: str) -> None:
    if not isinstance(device, str) or not DEVICE_RE.match(device):
        raise RnnbenchError(f"{what}: unknown device {device!r}; allowed: cpu, cuda, cuda:N, mps")


# -- validation ------------------------------------------------------------------------------------
class _Where:
    """Builds the messages: '<file>: [axes] cell: unknown value 'gru2'; allowed: ...'."""

    def __init__(self, path, table: str):
        self.path, self.table = path, table

    def error(self, key: str | None, what: str, allowed: Iterable | str | None = None) -> ConfigError:
        where = f"{self.path}: {self.table}".rstrip(": ") + (f" {key}" if key else "")
        if allowed is not None:
            allowed = allowed if isinstance(allowed, str) else ", ".join(map(str, allowed))
            what = f"{what}; allowed: {allowed}"
        return ConfigError(f"{where}: {what}")


def _choices(name: str) -> tuple[str, ...]:
    # the lists the measuring code itself checks against, so a suite cannot ask for what it lacks
    if name == "bench":
        from rnnbench.bench.dispatch import BENCHES
        return BENCHES
    if name == "backend":
        from rnnbench.backends import BACKENDS
        return tuple(BACKENDS)
    if name == "mode":
        from rnnbench.bench.speed import MODES
        return MODES
    return {"cell": (*families(), "all"), "variant": (*VARIANTS, "all"),
            "form": (*FORMS, "all"), "dtype": DTYPES, "fold": FOLDS}[name]


def _positive(v) -> bool:
    """A size: the same rule as the flags' (rnnbench/validate.py)."""
    return keeps(POSITIVE_INT, v)


def _check_value(name: str, v, where: _Where):
    """One axis value, normalised (cell names as the registry spells them, per-layer sizes as
    tuples); raises with what is allowed."""
    if name in ("batch", "seq_len", "input_size", "layers"):
        if not _positive(v):
            raise where.error(name, f"{v!r} is not a positive integer", "positive integers")
        return v
    if name == "hidden_size":
        if _positive(v):
            return v
        if isinstance(v, list) and v and all(_positive(x) for x in v):
            return v[0] if len(set(v)) == 1 and len(v) == 1 else tuple(v)
        raise where.error(name, f"{v!r} is not a positive integer or a list of them (one per layer)",
                          "positive integers, or [[M1, M2, ...]] for a stack")
    if name == "device":
        if not isinstance(v, str) or not DEVICE_RE.match(v):
            raise where.error(name, f"unknown value {v!r}", "cpu, cuda, cuda:N, mps")
        return v
    allowed = _choices(name)
    if name == "cell" and isinstance(v, str) and ":" in v:
        from rnnbench.usercell import user_spec
        try:
            user_spec(v)  # imported and checked now: a broken cell fails before any work
        except RnnbenchError as e:
            raise where.error(name, str(e)) from None
        return v
    if name == "cell" and isinstance(v, str):
        v = v.lower().replace("-", "").replace("_", "")
    if name == "backend" and isinstance(v, str):
        from rnnbench.backends import renamed_note
        if note := renamed_note(v):
            raise where.error(name, note)
    if v not in allowed:
        raise where.error(name, f"unknown value {v!r}", allowed)
    return v


def _values(name: str, raw, where: _Where) -> list:
    """An axis: a list of values, or one value standing for a list of one."""
    if name == "hidden_size" and isinstance(raw, list) and raw and all(_positive(x) for x in raw):
        items = raw  # [128, 256]: two sizes; a stack is written [[1150, 1150, 400]]
    else:
        items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise where.error(name, "is empty", "a value or a non-empty list")
    out = []
    for v in items:
        v = _check_value(name, v, where)
        if v not in out:
            out.append(v)
    return out


def _parse_axes(table, where: _Where) -> tuple[dict[str, list], bool | None]:
    """[axes] (or an include/exclude entry): axis -> values in file order, and input_equals_hidden
    (None where the table does not say)."""
    if not isinstance(table, dict):
        raise where.error(None, "must be a table", "a TOML table of axis = [values]")
    allowed = list(AXES) + ["input_equals_hidden"]
    axes, ieh = {}, None
    for key, raw in table.items():
        if key not in allowed:
            raise where.error(None, f"unknown key {key!r}", allowed)
        if key == "input_equals_hidden":
            if not isinstance(raw, bool):
                raise where.error(key, f"{raw!r} is not true or false", "true, false")
            ieh = raw
            continue
        axes[key] = _values(key, raw, where)
    return axes, ieh


# -- loading ---------------------------------------------------------------------------------------
def read_toml(path: str | Path, what: str = "suite file") -> dict:
    """The one TOML reader (suites, parameter tables, task suites): a missing file, a folder,
    bytes that are not UTF-8 and bad syntax are each one line naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"no such {what}: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory, not a {what}") from None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset "
                          f"{e.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({_one_line(e)})") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML (nested too deeply)") from None


def _one_line(e) -> str:
    return " ".join(str(e).split())


def is_params_table(data: dict) -> bool:
    """bench_configs/paper_table2.toml and its kind: published figures, not a sweep."""
    meta = data.get("meta")
    return isinstance(meta, dict) and meta.get("bench") == "params"


def load_suite(path: str | Path) -> Suite:
    path = Path(path)
    data = read_toml(path)
    if is_params_table(data):
        raise ConfigError(f"{path} is a parameter table (bench = \"params\"), not a sweep suite")
    return parse_suite(data, path)


def parse_suite(data: dict, path: str | Path = "suite.toml") -> Suite:
    """TOML (already read) into a Suite: every table checked, the product expanded, excludes and
    includes applied, duplicates kept once; what was dropped, and why, in its notes."""
    for key in data:
        if key not in TOP_KEYS:
            raise _Where(path, "").error(None, f"unknown table {key!r}", TOP_KEYS)
    meta, name = _parse_meta(data, path)
    axes, ieh = _parse_main_axes(data, meta, path)
    settings = data.get("settings", {})
    if not isinstance(settings, dict):
        raise _Where(path, "[settings]").error(None, "must be a table", "key = value pairs")
    check_settings(settings, f"{path}: [settings]")  # here, so `plan` refuses what `run` would
    options = _parse_options(data.get("options", {}), _Where(path, "[options]"))

    dropped: Counter = Counter()
    kept, notes = _excluded(_expand(axes, ieh, options, dropped), data, path)
    kept += _included(data, axes, ieh, options, dropped, path)
    unique, dup = _unique(kept, path)
    notes = _drop_notes(dropped) + notes
    if dup:
        notes.append(f"{dup} case(s) listed more than once (e.g. by an include) kept once")
    from rnnbench.targets import parse_targets
    targets = parse_targets(data.get("target"), path)
    notes += _target_notes(targets, unique)
    return Suite(name, Path(path), unique, dict(settings), dict(meta), notes, targets)


def _parse_meta(data: dict, path) -> tuple[dict, str]:
    meta = data.get("meta", {})
    where = _Where(path, "[meta]")
    if not isinstance(meta, dict):
        raise where.error(None, "must be a table", META_KEYS)
    for key in meta:
        if key not in META_KEYS:
            raise where.error(None, f"unknown key {key!r}", META_KEYS)
    # the name becomes part of default result file names, so it stays a plain word
    name = meta.get("name", re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(str(path)).stem).strip("-.")
                    or "suite")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise where.error("name", f"{name!r} is not a plain name", "letters, digits, _ . -")
    return meta, name


_PER_LAYER = "layers, or hidden_size = [[M1, M2, ...]] (its length is the depth)"


def _parse_main_axes(data: dict, meta: dict, path) -> tuple[dict[str, list], bool]:
    """[axes], with [meta] bench as the innermost axis; every required axis present."""
    axes_where = _Where(path, "[axes]")
    if "axes" not in data:
        raise axes_where.error(None, "missing", "a table of axis = [values]: " + ", ".join(AXES))
    axes, ieh = _parse_axes(data["axes"], axes_where)
    if "bench" in meta:
        if "bench" in axes:
            raise _Where(path, "[meta]").error("bench", "given in both [meta] and [axes]",
                                               "one of them")
        axes["bench"] = _values("bench", meta["bench"], _Where(path, "[meta]"))  # innermost
    ieh = bool(ieh)
    if ieh and "input_size" in axes:
        raise axes_where.error("input_size", "given with input_equals_hidden = true",
                               "one of input_size, input_equals_hidden")
    required = [k for k, d in AXES.items() if d is None and not (k == "input_size" and ieh)]
    for key in required:
        if key not in axes:
            hint = " (or input_equals_hidden = true)" if key == "input_size" else ""
            tbl = "[meta] or [axes]" if key == "bench" else "[axes]"
            raise ConfigError(f"{path}: {tbl}: missing {key!r}{hint}")
    if "layers" in axes and any(isinstance(v, tuple) for v in axes["hidden_size"]):
        raise axes_where.error("layers", "given with per-layer hidden sizes", _PER_LAYER)
    return axes, ieh


def _excluded(cases: list[Case], data: dict, path) -> tuple[list[Case], list[str]]:
    """The cases no [[exclude]] matches, and a note for each exclude that matched nothing."""
    excludes = _entries(data, "exclude", path)
    matched = [0] * len(excludes)
    kept = []
    for c in cases:
        hit = [i for i, ex in enumerate(excludes) if _matches(c, ex)]
        for i in hit:
            matched[i] += 1
        if not hit:
            kept.append(c)
    return kept, [f"exclude #{i + 1} matches no case" for i, n in enumerate(matched) if n == 0]


def _included(data: dict, axes, ieh: bool, options: dict, dropped: Counter, path) -> list[Case]:
    """The cases of each [[include]]: the main axes with the entry's keys replaced."""
    includes = data.get("include", [])
    if not isinstance(includes, list):
        raise _Where(path, "[[include]]").error(None, "must be an array of tables",
                                                "[[include]] entries")
    cases = []
    for i, raw in enumerate(includes, 1):
        inc_where = _Where(path, f"[[include]] #{i}")
        inc_axes, inc_ieh = _parse_axes(raw, inc_where)
        if "layers" in inc_axes and any(isinstance(v, tuple) for v in inc_axes.get("hidden_size", [])):
            raise inc_where.error("layers", "given with per-layer hidden sizes", _PER_LAYER)
        merged = {k: inc_axes.get(k, v) for k, v in axes.items()}
        merged.update({k: v for k, v in inc_axes.items() if k not in merged})
        use_ieh = ieh if inc_ieh is None else inc_ieh
        if use_ieh and "input_size" in inc_axes:
            raise inc_where.error("input_size", "given with input_equals_hidden = true",
                                  "one of input_size, input_equals_hidden")
        if use_ieh:
            merged.pop("input_size", None)
        elif "input_size" not in merged:
            raise inc_where.error("input_size", "missing (the suite sets N = M; this entry turns "
                                  "that off)", "a list of positive integers")
        cases += _expand(merged, use_ieh, options, dropped)
    return cases


def _unique(cases: list[Case], path) -> tuple[list[Case], int]:
    """Each case key once, and how many repeats were dropped; one key on two devices is refused."""
    unique, seen, dup = [], {}, 0
    for c in cases:
        first = seen.get(c.key)
        if first is None:
            seen[c.key] = c
            unique.append(c)
        elif first.device == c.device:
            dup += 1
        else:
            # result files, resume and merge join rows on the key, which does not name the device
            raise _Where(path, "[axes]").error(
                "device", f"{c.key} would be measured on both {first.device} and {c.device}, "
                "but a case key does not name the device", "one device per suite (run --device "
                "moves a suite)")
    return unique, dup


def _target_notes(targets, cases: list[Case]) -> list[str]:
    """Targets that judge nothing here, or whose reference case the suite lacks."""
    judged = {t.name for t in targets for c in cases if t.matches(c.row())}
    notes = [f"target {t.name!r} matches no speed case of the suite" for t in targets
             if t.name not in judged]
    keys = {c.key for c in cases}
    for t in targets:
        lost = [c for c in cases if t.than and t.matches(c.row())
                and not keys.intersection(t.reference_keys(c.row()))]
        if lost:
            notes.append(f"target {t.name!r}: no reference case in the suite for {len(lost)} "
                         f"case(s), e.g. {t.reference_key(lost[0].row())}")
    return notes


def _drop_notes(dropped: Counter) -> list[str]:
    by_reason: dict[str, list] = {}
    for (reason, cell), n in dropped.items():
        by_reason.setdefault(reason, []).append((cell, n))
    return [f"dropped {sum(n for _, n in cells)} case(s): {reason} "
            + ", ".join(c for c, _ in cells) for reason, cells in by_reason.items()]


def _entries(data: dict, table: str, path) -> list[dict]:
    raw = data.get(table, [])
    if not isinstance(raw, list):
        raise _Where(path, f"[[{table}]]").error(None, "must be an array of tables",
                                                 f"[[{table}]] entries")
    out = []
    for i, entry in enumerate(raw, 1):
        axes, ieh = _parse_axes(entry, _Where(path, f"[[{table}]] #{i}"))
        if ieh is not None:
            raise _Where(path, f"[[{table}]] #{i}").error(
                "input_equals_hidden", "has no meaning here", list(AXES))
        if not axes:
            raise _Where(path, f"[[{table}]] #{i}").error(None, "is empty (it would drop every case)",
                                                          list(AXES))
        out.append(axes)
    return out


def _parse_options(table, where: _Where) -> dict:
    if not isinstance(table, dict):
        raise where.error(None, "must be a table", "cell option = value")
    from rnnbench.bench.params import _defaults
    known = sorted({k for s in all_specs() for k in _defaults(s.cls)} - {"input_size", "hidden_size"})
    for key in table:
        if key not in known:
            raise where.error(None, f"unknown cell option {key!r}", known)
    return dict(table)


def _matches(case: Case, entry: dict[str, list]) -> bool:
    for key, values in entry.items():
        have = getattr(case, key)
        if key in ("cell", "variant", "form") and "all" in values:
            continue
        if key == "hidden_size":
            values = [v if isinstance(v, int) else tuple(v) for v in values]
        if have not in values:
            return False
    return True


def _expand(axes: dict[str, list], ieh: bool, options: dict, dropped: Counter) -> list[Case]:
    from rnnbench.backends import folds_for
    from rnnbench.bench.params import applicable_options, changed_options
    from rnnbench.cells.registry import get

    names = list(axes)
    for name in AXES:  # axes the suite leaves out hold one default value: their place is moot
        if name not in axes and not (name == "input_size" and ieh):
            names.append(name)
    lists = [_expand_all(n, axes.get(n, [AXES[n]])) for n in names]
    cases, opts_of, seen = [], {}, set()
    for combo in itertools.product(*lists):
        v = dict(zip(names, combo))
        hs = v["hidden_size"]
        if isinstance(hs, tuple) and len(set(hs)) == 1:
            # [[64, 64]] is the case `hidden_size = 64, layers = 2`: one case, one key
            hs, v["layers"] = hs[0], len(hs)
        n = (hs if isinstance(hs, int) else hs[0]) if ieh else v["input_size"]
        layers = len(hs) if isinstance(hs, tuple) else v["layers"]
        try:
            spec = get(v["cell"], v["variant"], v["form"])
        except RnnbenchError:
            dropped[(f"the zoo has no {v['form']} form of", f"{v['cell']}/{v['variant']}")] += 1
            continue
        sizes = layer_sizes(n, list(hs) if isinstance(hs, tuple) else hs, layers)
        if spec.requires_square and any(a != b for a, b in sizes):
            dropped[("N ≠ M, which needs N = M:", f"{spec.family}/{spec.variant}")] += 1
            continue
        key = (spec.family, spec.variant, spec.form)
        if key not in opts_of:  # signature inspection is slow; thousands of cases share a spec
            opts_of[key] = tuple(sorted(changed_options(spec, applicable_options(spec, options))
                                        .items())) if options else ()
        # a fold only where the backend folds an IRC recurrence; elsewhere the axis collapses
        fold = v["fold"] if v["fold"] in folds_for(v["backend"], spec.variant, FOLDS) else "auto"
        case = Case(bench=v["bench"], cell=spec.family, variant=spec.variant, form=spec.form,
                    backend=v["backend"], mode=v["mode"], dtype=v["dtype"], device=v["device"],
                    batch=v["batch"], seq_len=v["seq_len"], input_size=n, hidden_size=hs,
                    layers=layers, options=opts_of[key], fold=fold)
        if case not in seen:
            seen.add(case)
            cases.append(case)
    return cases


def _expand_all(name: str, values: list) -> list:
    """'all' in cell/variant/form lists: the registry's values, in its order, without repeats."""
    if name not in ("cell", "variant", "form") or "all" not in values:
        return values
    every = {"cell": families(), "variant": list(VARIANTS), "form": list(FORMS)}[name]
    out = []
    for v in values:
        for x in (every if v == "all" else [v]):
            if x not in out:
                out.append(x)
    return out


# -- the sweep lives in rnnbench/sweep.py; these names stay importable from here for callers of old
from rnnbench.sweep import (Measure, SweepReport, default_measure, is_oom,  # noqa: E402,F401
                            measure_kwargs, run_suite)
