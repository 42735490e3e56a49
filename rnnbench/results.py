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
import sys
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
    fold = f"fold={row.labels['fold']}" if row.labels.get("fold") else ""
    parts = [row.bench, row.cell, row.variant, form, row.backend, fold, row.mode,
             row.dtype if row.bench != "params" else "", "-".join(sizes)]
    # cell options (e.g. gamma_input) and a config row's id tell apart cases with equal sizes
    parts += [str(row.labels.get("options") or ""), str(row.labels.get("case") or "")]
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
def _umask() -> int:
    # os.umask can only be read by setting it; set it straight back (commands are single-threaded
    # while they write)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temporary file beside the target, then rename: readers never see half a file.
    The file gets the mode the user's umask gives a new file (mkstemp alone would make it 0600, so
    a teammate or a CI artifact step could not read it). An OSError is one line, not a traceback."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise RnnbenchError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


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
    """Both files whole, each under its lock (see rnnbench.outputs). A journal beside the JSON
    belonged to the file this one replaces (the command checked --overwrite): it goes, so that no
    resume later folds stale rows into these."""
    from rnnbench.outputs import locked

    with locked([json_path, csv_path]):
        if json_path:
            atomic_write_text(json_path, result.to_json())
            journal_path(json_path).unlink(missing_ok=True)
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
    however it ends. Only the writer's owner reads the journal (``resume``: a journal left by a
    killed run, even without its JSON file, is recovered into the file); other readers see the
    JSON file alone. A CSV beside it is rewritten with the JSON, so between rewrites of a large
    file it lags until :meth:`close`.

    The writer holds the OS lock of its files (rnnbench.outputs) from creation to :meth:`close`:
    a second process aiming at the same file refuses at once instead of mixing rows.
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
        from rnnbench.outputs import acquire, release

        self._locked = [p for p in (json_path, csv_path) if p]
        for i, p in enumerate(self._locked):
            try:
                acquire(Path(p))
            except BaseException:
                for q in self._locked[:i]:
                    release(Path(q))
                raise
        try:
            if resume and json_path and (Path(json_path).exists()
                                         or journal_path(json_path).exists()):
                old = read_results(json_path, journal=True)
                self.result.results = list(old.results)
                self.result.provenance = {**provenance, "resumed_from": old.provenance}
        except BaseException:
            self._unlock()
            raise

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
        try:
            with open(journal_path(self.json_path), "a", encoding="utf-8") as f:
                f.write(json.dumps(row.to_dict(), allow_nan=True, default=_json_default) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise RnnbenchError(f"cannot write {journal_path(self.json_path)}: "
                                f"{e.strerror or e}") from None

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
        try:
            self.flush()
        finally:
            self._unlock()

    def _unlock(self) -> None:
        from rnnbench.outputs import release

        for p in self._locked:
            release(Path(p))
        self._locked = []


# -- reading ---------------------------------------------------------------------------------------
# The one reader of result files. Everything a command later does with a row (keys, tables,
# ratios) trusts these types, so a file that parses but holds the wrong ones is refused here, with
# the file and the field named, instead of failing somewhere deep inside a command.
_TEXT_FIELDS = ("bench", "cell", "variant", "form", "backend", "mode", "dtype", "device", "reason",
                "key")
_INT_FIELDS = ("batch", "seq_len", "input_size", "layers")


def _show(v) -> str:
    try:
        text = json.dumps(v, allow_nan=True)
    except (TypeError, ValueError):
        text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _kind(v) -> str:
    return {dict: "a table", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(v), "a number" if isinstance(v, (int, float)) else
                                    type(v).__name__)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _numeric_tree(v) -> bool:
    """A metric that is a list (raw samples, a learning curve): numbers, null, or lists of them."""
    if v is None or isinstance(v, bool) or _is_num(v):
        return True
    if isinstance(v, list):
        return all(_numeric_tree(x) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and _numeric_tree(x) for k, x in v.items())
    return False


def check_row(d, where: str) -> str | None:
    """What is wrong with one row as read from a file (``where`` names it), or None."""
    def bad(field: str, expected: str, v) -> str:
        return f"{where}.{field}: expected {expected}, got {_show(v)}"

    if not isinstance(d, dict):
        return f"{where}: expected a table of fields, got {_kind(d)}"
    for f in ("bench", "cell", "variant"):
        if f not in d:
            return f"{where}: missing field {f!r}"
    for f in _TEXT_FIELDS:
        if f in d and not isinstance(d[f], str):
            return bad(f, "a string", d[f])
    for f in _INT_FIELDS:
        v = d.get(f)
        if v is not None and not (_is_int(v) and v > 0):
            return bad(f, "a positive integer", v)
    hs = d.get("hidden_size")
    if hs is not None and not (_is_int(hs) and hs > 0) and not (
            isinstance(hs, list) and hs and all(_is_int(x) and x > 0 for x in hs)):
        return bad("hidden_size", "a positive integer or a list of them", hs)
    if "status" in d and d["status"] not in STATUSES:
        return bad("status", "one of " + ", ".join(STATUSES), d["status"])
    metrics = d.get("metrics", {})
    if not isinstance(metrics, dict):
        return bad("metrics", "a table", metrics)
    for k, v in metrics.items():
        if isinstance(v, (list, dict)):
            if not _numeric_tree(v):
                return bad(f"metrics.{k}", "numbers", v)
        elif not (v is None or isinstance(v, bool) or _is_num(v)):
            return bad(f"metrics.{k}", "a number", v)
    warnings = d.get("warnings", [])
    if not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings):
        return bad("warnings", "a list of strings", warnings)
    labels = d.get("labels", {})
    if not isinstance(labels, dict):
        return bad("labels", "a table", labels)
    for k, v in labels.items():
        if isinstance(v, (list, dict)):
            return bad(f"labels.{k}", "a string or a number", v)
    for f in ("options", "case", "machine", "id"):
        if f in labels and not isinstance(labels[f], str):
            return bad(f"labels.{f}", "a string", labels[f])
    return None


def _decode(path: Path) -> str:
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise RnnbenchError(f"{path} is a directory, not a result file") from None
    except OSError as e:
        raise RnnbenchError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RnnbenchError(f"{path}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset "
                            f"{e.start})") from None


def read_results(path: str | Path, *, journal: bool = False) -> ResultFile:
    """A result file (JSON, or CSV by its suffix), validated. ``journal``: the owner of the file
    (a resuming writer) folds in the rows of its journal, and recovers a journal whose JSON file
    is gone; every other reader reads the file alone, and hears of a journal beside it."""
    path = Path(path)
    jp = journal_path(path)
    if path.suffix.lower() == ".journal":
        raise RnnbenchError(f"{path} is the journal of an unfinished run, not a result file: "
                            f"`--resume --json {str(path)[:-8]}` on the command that wrote it "
                            "recovers its rows into a result file")
    if not path.exists():
        if jp.exists():
            if journal:
                return ResultFile({}, {"recovered_from": str(jp)}, _with_journal(jp, []), SCHEMA)
            raise RnnbenchError(f"no such result file: {path}, but {jp} holds rows of an "
                                f"unfinished run: `--resume --json {path}` on the command that "
                                "wrote it recovers them")
        raise RnnbenchError(f"no such result file: {path}")
    text = _decode(path)
    if path.suffix.lower() == ".csv":
        rf = _read_csv(text, path)
    else:
        rf = _read_json(text, path)
    if journal:
        rf.results = _with_journal(jp, rf.results)
    elif jp.exists():
        print(f"rnnbench: note: {jp} holds rows not yet in {path} (an unfinished or running "
              "sweep); they are not read: `--resume` on that run folds them in", file=sys.stderr)
    return rf


def _read_json(text: str, path: Path) -> ResultFile:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise RnnbenchError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column "
                            f"{e.colno})") from None
    except RecursionError:
        raise RnnbenchError(f"{path}: not valid JSON (nested too deeply)") from None
    if not isinstance(data, dict) or "results" not in data:
        raise RnnbenchError(f"{path} is not an rnnbench result file (no 'results')")
    schema = data.get("schema")
    if schema != SCHEMA:
        raise IncompatibleResultsError(f"{path} has schema {schema!r}; this rnnbench reads "
                                       f"{SCHEMA!r}")
    for name in ("env", "provenance"):
        if name in data and not isinstance(data[name], dict):
            raise RnnbenchError(f"{path}: {name}: expected a table, got {_kind(data[name])}")
    results = data["results"]
    if not isinstance(results, list):
        raise RnnbenchError(f"{path}: results: expected a list of rows, got {_kind(results)}")
    rows = []
    for i, d in enumerate(results):
        problem = check_row(d, f"results[{i}]")
        if problem:
            raise RnnbenchError(f"{path}: {problem}")
        rows.append(Row.from_dict(d))
    return ResultFile(data.get("env", {}), data.get("provenance", {}), rows, schema)


def _with_journal(jp: Path, rows: list[Row]) -> list[Row]:
    """Rows appended to ``<json>.journal`` since the file was last rewritten replace or follow
    the file's own. A line cut short by a kill (or otherwise unreadable) is skipped: its row was
    never finished."""
    if not jp.exists():
        return rows
    by_key = {r.key: r for r in rows}
    try:
        text = jp.read_bytes().decode("utf-8", errors="replace")
    except OSError as e:
        raise RnnbenchError(f"cannot read {jp}: {e.strerror or e}") from None
    for line in text.splitlines():
        try:
            d = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            continue
        if check_row(d, "row") is not None:
            continue
        row = Row.from_dict(d)
        by_key.pop(row.key, None)
        by_key[row.key] = row
    return list(by_key.values())


def _num(s: str):
    if s == "":
        return None
    if s in ("True", "False"):  # how the CSV writer spells a boolean metric
        return s == "True"
    for conv in (int, float):
        try:
            return conv(s)
        except ValueError:
            pass
    return s


_CSV_INTS = ("batch", "seq_len", "input_size", "layers")


def _read_csv(text: str, path: Path) -> ResultFile:
    try:
        reader = csv.DictReader(io.StringIO(text))
        fieldnames = reader.fieldnames
        records = list(reader)
    except csv.Error as e:
        raise RnnbenchError(f"{path}: not valid CSV ({e})") from None
    if not fieldnames or "key" not in fieldnames or "bench" not in fieldnames:
        raise RnnbenchError(f"{path} is not an rnnbench CSV (no 'key'/'bench' columns)")
    rows = []
    for i, rec in enumerate(records):
        where = f"line {i + 2}"
        if None in rec:  # more cells than the header has columns
            raise RnnbenchError(f"{path}: {where}: {len(fieldnames) + len(rec[None])} cells for "
                                f"{len(fieldnames)} columns")
        rec = {k: ("" if v is None else v) for k, v in rec.items()}
        case = {}
        for f in CASE_FIELDS:
            raw = rec.get(f, "")
            case[f] = _num(raw) if f in _CSV_INTS else (raw if raw != "" or f in
                                                        ("bench", "cell", "variant") else None)
        for f in ("form", "backend", "mode", "dtype", "device"):
            if case[f] is None:
                case[f] = ""
        hs = rec.get("hidden_size", "")
        if "-" in hs and all(p.isdigit() for p in hs.split("-")):
            case["hidden_size"] = [int(v) for v in hs.split("-")]
        else:
            case["hidden_size"] = _num(hs)
        metrics = {k: _num(v) for k, v in rec.items()
                   if k not in CASE_FIELDS and k not in ("key", "status", "reason", "warnings")
                   and not k.startswith("label_") and v != ""}
        labels = {k[6:]: v for k, v in rec.items() if k.startswith("label_") and v}
        warnings = [w for w in (rec.get("warnings") or "").split("; ") if w]
        d = {**case, "metrics": metrics, "status": rec.get("status") or "ok",
             "reason": rec.get("reason") or "", "warnings": warnings, "labels": labels,
             "key": rec.get("key") or ""}
        problem = check_row(d, where)
        if problem:
            raise RnnbenchError(f"{path}: {problem.replace(where + '.', where + ', column ', 1)}")
        rows.append(Row.from_dict(d))
    return ResultFile({}, {"source": str(path)}, rows, SCHEMA)


# Units for people are formatted here rather than with a library: humanize and the like cover
# file sizes and dates, not seconds down to nanoseconds or FLOP/s with 3 significant digits, and
# these few lines keep every table's spelling the same.
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
