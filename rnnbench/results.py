"""The one result schema every command writes, its writers, and atomic incremental output.

JSON is the source of truth (raw samples included); CSV is the flat view with units in the column
names and nothing rounded; Markdown and the Rich tables round for people.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rnnbench.errors import IncompatibleResultsError, RnnbenchError

SCHEMA = "rnnbench.results/1"
STATUSES = ("ok", "unsupported", "oom", "failed")
CASE_FIELDS = ("bench", "cell", "variant", "form", "backend", "mode", "dtype", "device", "batch",
               "seq_len", "input_size", "hidden_size", "layers")


def size_label(hidden_size) -> str:
    return "-".join(map(str, hidden_size)) if isinstance(hidden_size, (list, tuple)) else str(hidden_size)


@dataclass
class Row:
    bench: str
    cell: str
    variant: str
    form: str = "paper"
    backend: str = ""
    mode: str = ""
    dtype: str = "float32"
    device: str = "cpu"
    batch: int | None = None
    seq_len: int | None = None
    input_size: int | None = None
    hidden_size: Any = None  # an int, or a list with one hidden size per layer
    layers: int | None = None
    metrics: dict = field(default_factory=dict)
    status: str = "ok"
    reason: str = ""
    warnings: list = field(default_factory=list)
    labels: dict = field(default_factory=dict)  # free-form annotations (section, note, task)
    key: str = ""

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        if isinstance(self.hidden_size, (list, tuple)):
            hs = list(self.hidden_size)
            self.hidden_size = hs[0] if len(set(hs)) == 1 and self.layers == len(hs) else hs
        if not self.key:
            self.key = case_key(self)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Row:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


def case_key(row: Row) -> str:
    """A stable id for the case (not the measurement): joins rows across files and resumes."""
    form = "" if row.form == "paper" else row.form
    sizes = []
    for tag, v in (("B", row.batch), ("T", row.seq_len), ("N", row.input_size),
                   ("M", None if row.hidden_size is None else size_label(row.hidden_size)),
                   ("L", row.layers)):
        if v is not None:
            sizes.append(f"{tag}{v}")
    parts = [row.bench, row.cell, row.variant, form, row.backend, row.mode,
             row.dtype if row.bench != "params" else "", "-".join(sizes)]
    # cell options (e.g. gamma_input) and a config row's id tell apart cases with equal sizes
    parts += [row.labels.get("options", ""), row.labels.get("case", "")]
    return "/".join(p for p in parts if p)


@dataclass
class ResultFile:
    env: dict
    provenance: dict
    results: list[Row]
    schema: str = SCHEMA

    def to_json(self) -> str:
        return json.dumps({"schema": self.schema, "env": self.env, "provenance": self.provenance,
                           "results": [r.to_dict() for r in self.results]}, indent=1,
                          default=_json_default, allow_nan=True)


def _json_default(o):
    if hasattr(o, "item"):
        return o.item()
    return str(o)


# -- writing ---------------------------------------------------------------------------------------
def atomic_write_text(path: str | Path, text: str) -> None:
    """Write to a temporary file beside the target, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def flat_record(row: Row) -> dict:
    """One row, flat: key, case fields, metrics (lists such as raw samples left out), status,
    reason, warnings, then labels as label_<name>."""
    rec = {"key": row.key}
    for f in CASE_FIELDS:
        v = getattr(row, f)
        rec[f] = size_label(v) if isinstance(v, (list, tuple)) else v
    for k, v in row.metrics.items():
        if not isinstance(v, (list, tuple, dict)):
            rec[k] = v
    rec["status"], rec["reason"] = row.status, row.reason
    rec["warnings"] = "; ".join(row.warnings)
    for k, v in row.labels.items():
        rec[f"label_{k}"] = v
    return rec


# the columns every row has, in their order: an empty result still has them
FLAT_COLUMNS = ("key", *CASE_FIELDS, "status", "reason", "warnings")


def to_dataframe(rows: list[Row], *, exact: bool = False):
    """The rows as a pandas DataFrame, one line per result row: the flat view a CSV file holds.
    Columns: key, the case fields (per-layer hidden sizes as a label: 1150-1150-400), every scalar
    metric under its own name, whose suffix is its unit (time_s_median, saved_bytes,
    tokens_per_s), status, reason, warnings and label_<name>, in the order they first appear;
    a row without a metric holds NaN there. Raw samples and learning curves (lists) stay in
    JSON.

    Columns get numeric dtypes where their values allow (an integer column with gaps becomes
    float). ``exact=True`` keeps every value as the Python object it was, so an integer prints as
    one: the CSV writer's view.

    pandas is imported here, when first asked for, so the command line starts without it."""
    import pandas as pd

    if not rows:
        return pd.DataFrame(columns=list(FLAT_COLUMNS), dtype=object)
    frame = pd.DataFrame([flat_record(r) for r in rows], dtype=object)
    return frame if exact else frame.infer_objects()


def to_csv(rows: list[Row]) -> str:
    """Every value as Python writes it (repr for floats: nothing rounded); a value that is missing
    or NaN is an empty cell."""
    return to_dataframe(rows, exact=True).to_csv(index=False, lineterminator="\n")


def to_markdown(columns: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_outputs(result: ResultFile, *, json_path=None, csv_path=None) -> None:
    if json_path:
        atomic_write_text(json_path, result.to_json())
    if csv_path:
        atomic_write_text(csv_path, to_csv(result.results))


def journal_path(json_path) -> Path:
    """Where IncrementalWriter appends rows between full rewrites of a large result file."""
    return Path(str(json_path) + ".journal")


class IncrementalWriter:
    """Keeps every finished row on disk, so an interrupted sweep loses nothing it finished; with
    resume, rows already in the file are kept and reported done.

    While the JSON file is small it is rewritten (atomically) after every row. A sweep of
    thousands of rows with raw samples would then spend its time rewriting one growing file
    (quadratic in the rows), so past :data:`REWRITE_BYTES` each row is appended, flushed and
    synced to ``<json>.journal`` instead, and the whole file is rewritten only once the time since
    the last rewrite is :data:`REWRITE_FACTOR` times what that rewrite took (writing then costs at
    most ~1/REWRITE_FACTOR of the run), and at :meth:`close`, which every user calls when it ends,
    however it ends. :func:`read_results` reads the journal too, so every reader of the JSON file
    (resume, compare, merge) sees every finished row; a CSV beside it is rewritten with the JSON,
    so between rewrites of a large file it lags until :meth:`close`.
    """

    REWRITE_BYTES = 2 * 2**20
    REWRITE_FACTOR = 20

    def __init__(self, env: dict, provenance: dict, *, json_path=None, csv_path=None,
                 resume: bool = False):
        self.json_path, self.csv_path = json_path, csv_path
        self.result = ResultFile(env, provenance, [])
        self._bytes = 0
        self._cost = 0.0
        self._last = time.monotonic()
        if resume and json_path and (Path(json_path).exists() or journal_path(json_path).exists()):
            old = read_results(json_path)
            self.result.results = list(old.results)
            self.result.provenance = {**provenance, "resumed_from": old.provenance}

    def done_keys(self, statuses=("ok", "unsupported")) -> set[str]:
        return {r.key for r in self.result.results if r.status in statuses}

    def add(self, row: Row) -> None:
        # a retried case replaces its earlier (failed, oom) row instead of appearing twice
        self.result.results = [r for r in self.result.results if r.key != row.key] + [row]
        if not self.json_path:
            self.flush()  # a CSV alone has no journal: it is the only copy on disk
            return
        if self._bytes < self.REWRITE_BYTES or \
                time.monotonic() - self._last >= self.REWRITE_FACTOR * self._cost:
            self.flush()
            return
        with open(journal_path(self.json_path), "a", encoding="utf-8") as f:
            f.write(json.dumps(row.to_dict(), allow_nan=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def flush(self) -> None:
        """Rewrite the whole file (and CSV) now; the journal, then redundant, goes."""
        t0 = time.monotonic()
        if self.json_path:
            text = self.result.to_json()
            atomic_write_text(self.json_path, text)
            self._bytes = len(text)
            journal_path(self.json_path).unlink(missing_ok=True)
        if self.csv_path:
            atomic_write_text(self.csv_path, to_csv(self.result.results))
        self._last = time.monotonic()
        self._cost = self._last - t0

    def close(self) -> None:
        self.flush()


# -- reading ---------------------------------------------------------------------------------------
def read_results(path: str | Path) -> ResultFile:
    path = Path(path)
    if not path.exists():
        raise RnnbenchError(f"no such result file: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RnnbenchError(f"cannot read {path}: {e}") from None
    if path.suffix.lower() == ".csv":
        try:
            return _read_csv(text, path)
        except (ValueError, TypeError, KeyError) as e:
            raise RnnbenchError(f"{path}: malformed CSV row ({e})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise RnnbenchError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict) or "results" not in data:
        raise RnnbenchError(f"{path} is not an rnnbench result file (no 'results')")
    schema = data.get("schema")
    if schema != SCHEMA:
        raise IncompatibleResultsError(f"{path} has schema {schema!r}; this rnnbench reads {SCHEMA!r}")
    try:
        rows = [Row.from_dict(r) for r in data["results"]]
    except (TypeError, ValueError) as e:
        raise RnnbenchError(f"{path}: malformed result row ({e})") from None
    return ResultFile(data.get("env", {}), data.get("provenance", {}), _with_journal(path, rows),
                      schema)


def _with_journal(path: Path, rows: list[Row]) -> list[Row]:
    """Rows appended to ``<json>.journal`` since the file was last rewritten replace or follow
    the file's own. A last line cut short by a kill is skipped: its row was never finished."""
    jp = journal_path(path)
    if not jp.exists():
        return rows
    by_key = {r.key: r for r in rows}
    for line in jp.read_text(encoding="utf-8").splitlines():
        try:
            row = Row.from_dict(json.loads(line))
        except (json.JSONDecodeError, TypeError, ValueError):
            continue
        by_key.pop(row.key, None)
        by_key[row.key] = row
    return list(by_key.values())


def _num(s: str):
    if s == "":
        return None
    for conv in (int, float):
        try:
            return conv(s)
        except ValueError:
            pass
    return s


def _read_csv(text: str, path: Path) -> ResultFile:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "key" not in reader.fieldnames or "bench" not in reader.fieldnames:
        raise RnnbenchError(f"{path} is not an rnnbench CSV (no 'key'/'bench' columns)")
    rows = []
    for rec in reader:
        case = {f: _num(rec.get(f, "")) for f in CASE_FIELDS}
        for f in ("bench", "cell", "variant", "form", "backend", "mode", "dtype", "device"):
            case[f] = "" if case[f] is None else str(case[f])
        hs = rec.get("hidden_size", "")
        case["hidden_size"] = [int(v) for v in hs.split("-")] if "-" in hs else _num(hs)
        metrics = {k: _num(v) for k, v in rec.items()
                   if k not in CASE_FIELDS and k not in ("key", "status", "reason", "warnings")
                   and not k.startswith("label_") and v != ""}
        labels = {k[6:]: v for k, v in rec.items() if k.startswith("label_") and v}
        warnings = [w for w in (rec.get("warnings") or "").split("; ") if w]
        rows.append(Row(**case, metrics=metrics, status=rec.get("status") or "ok",
                        reason=rec.get("reason") or "", warnings=warnings, labels=labels,
                        key=rec["key"]))
    return ResultFile({}, {"source": str(path)}, rows, SCHEMA)


def fmt_count(n: int | None) -> str:
    return "" if n is None else f"{n:,}"


def fmt_si(x: float | None, unit: str = "") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    for div, pre in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g} {pre}{unit}"
    return f"{x:.3g} {unit}".strip()


def fmt_time(s: float | None) -> str:
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return ""
    for mult, unit in ((1, "s"), (1e3, "ms"), (1e6, "µs")):
        if abs(float(f"{s * mult:.3g}")) >= 1:  # after rounding: 0.9996 s is "1 s", not "1e+03 ms"
            return f"{s * mult:.3g} {unit}"
    return f"{s * 1e9:.3g} ns"
