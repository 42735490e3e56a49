"""Output paths, checked before any work starts, and the locks that keep two writers apart.

Every command that writes a file names its outputs and inputs here first, so a bad path costs a
line on stderr, not a finished measurement: each output must be writable, must not be one of the
command's inputs (after resolving links), must not be another output of the same command, must
have an extension that agrees with its format, and replaces an existing file only with
--overwrite. ``run --resume`` (and ``task --resume``) name the files they continue as
``resumable``: those may exist.

Locks: a result file being written holds an OS lock (the filelock package: flock on Linux, so a
killed process never leaves a stale lock) on ``.<file>.lock`` for as long as the writer lives; a
second process aiming at the same file refuses at once instead of interleaving its rows.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from rnnbench.errors import RnnbenchError

# suffix -> the format a file of that name holds; a suffix not listed says nothing
SUFFIX_FORMAT = {".json": "json", ".csv": "csv", ".md": "markdown", ".markdown": "markdown",
                 ".toml": "toml", ".png": "png", ".journal": "journal", ".lock": "lock",
                 ".py": "python", ".txt": "text"}
# formats whose files may carry a suffix not in SUFFIX_FORMAT, or .txt (a Markdown report)
LENIENT = {"markdown": {".txt"}}


@dataclass(frozen=True)
class Output:
    """One file a command will write: the flag that names it (for messages), its path and format
    (json, csv, markdown, png-dir)."""

    flag: str
    path: Path | None
    fmt: str


def _same_file(a: Path, b: Path) -> bool:
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)  # hard links, bind mounts
    except OSError:
        return False


def _probe_dir(d: Path, flag: str, path: Path) -> None:
    """The nearest existing ancestor of ``d`` must be a directory we can create files in."""
    probe = d
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise RnnbenchError(f"{flag} {path}: cannot write there: {probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise RnnbenchError(f"{flag} {path}: cannot write there: {probe} is read-only")


def check_outputs(outputs: Iterable[Output], *, inputs: Iterable[Path | None] = (),
                  overwrite: bool = False, resumable: Iterable[Path | None] = (),
                  overwrite_flag: str = "--overwrite") -> list[Path]:
    """Raise one clear RnnbenchError for the first output that cannot or must not be written;
    return the resolved output paths (in order, None left out). Nothing is created or changed."""
    ins = [Path(p).resolve() for p in inputs if p is not None]
    resume = [Path(p).resolve() for p in resumable if p is not None]
    seen: list[tuple[Path, str]] = []
    for o in outputs:
        if o.path is None:
            continue
        path = Path(o.path)
        if str(path).strip() == "":
            raise RnnbenchError(f"{o.flag}: the path is empty")
        real = path.resolve()
        for i in ins:
            if _same_file(real, i):
                raise RnnbenchError(f"{o.flag} {path} is also an input of this command; "
                                    "write the output elsewhere")
        for other, flag in seen:
            if _same_file(real, other):
                raise RnnbenchError(f"{o.flag} {path} is also the {flag} output; give each output "
                                    "its own file")
        seen.append((real, o.flag))
        # after the input checks: writing onto an input is the worse mistake to name
        if o.fmt != "dir":
            suffix = path.suffix.lower()
            claimed = SUFFIX_FORMAT.get(suffix)
            if claimed is not None and claimed != o.fmt and suffix not in LENIENT.get(o.fmt, ()):
                raise RnnbenchError(f"{o.flag} {path}: a {suffix} name for a {o.fmt} file; "
                                    f"name it .{'md' if o.fmt == 'markdown' else o.fmt}")
        if o.fmt == "dir":
            if real.exists() and not real.is_dir():
                raise RnnbenchError(f"{o.flag} {path} is a file, not a directory")
            _probe_dir(real, o.flag, path)
            continue
        if real.is_dir():
            raise RnnbenchError(f"{o.flag} {path} is a directory; name a file")
        _probe_dir(real.parent, o.flag, path)
        if real.exists():
            if not os.access(real, os.W_OK):
                raise RnnbenchError(f"{o.flag} {path} is read-only")
            if not overwrite and not any(_same_file(real, r) for r in resume):
                raise RnnbenchError(f"{o.flag} {path} exists: {overwrite_flag} replaces it")
    return [r for r, _ in seen]


def stale_journal(json_path: Path | None, *, overwrite: bool, resume: bool = False) -> None:
    """A journal beside an output holds rows an earlier run never folded into its file: refuse
    to bury it unless told to (--overwrite discards it, --resume continues it)."""
    from rnnbench.results import journal_path

    if json_path is None:
        return
    jp = journal_path(json_path)
    if jp.exists() and not overwrite and not resume:
        raise RnnbenchError(f"{jp} holds rows of an unfinished run (`--resume` on the command "
                            "that wrote it recovers them); --overwrite discards it")


# -- locks -----------------------------------------------------------------------------------------
_held: dict[str, list] = {}  # lock path -> [FileLock, depth]: re-entrant within this process
_guard = threading.Lock()


def lock_path(path: Path) -> Path:
    """A hidden file beside the output, removed again when the lock is released."""
    real = Path(path).resolve()
    return real.with_name(f".{real.name}.lock")


def acquire(path: Path) -> None:
    """Take the lock of ``path`` or refuse at once: another process is writing it."""
    from filelock import FileLock, Timeout

    key = str(lock_path(path))
    with _guard:
        if key in _held:
            _held[key][1] += 1
            return
        try:
            Path(key).parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RnnbenchError(f"cannot write {path}: {e.strerror or e}") from None
        lock = FileLock(key, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise RnnbenchError(f"{path} is being written by another rnnbench process; write to "
                                "another file (then `rnnbench merge` them) or wait for it") from None
        except OSError as e:
            raise RnnbenchError(f"cannot lock {path}: {e.strerror or e}") from None
        _held[key] = [lock, 1]


def release(path: Path) -> None:
    key = str(lock_path(path))
    with _guard:
        entry = _held.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _held[key]
        # removed while still held, so no stray file is left beside the results; a process that
        # opened it just before finds it unlinked once it gets the lock, and filelock (4.3 on)
        # then does not count it as taken (it checks the link count), so it refuses
        try:
            os.unlink(key)
        except OSError:
            pass
        entry[0].release()


@contextmanager
def locked(paths: Sequence[Path | None]):
    """Hold the locks of every path (None skipped) for the block."""
    taken = []
    try:
        for p in paths:
            if p is not None:
                acquire(Path(p))
                taken.append(Path(p))
        yield
    finally:
        for p in reversed(taken):
            release(p)


_scopes: list[ExitStack] = []  # one per running command (cli_errors opens it)


@contextmanager
def command_scope():
    """What a command holds (its output locks) is let go when the command ends, however it ends."""
    with ExitStack() as stack:
        _scopes.append(stack)
        try:
            yield
        finally:
            _scopes.pop()


def hold_locks(paths: Sequence[Path | None]) -> None:
    """Lock these outputs until the running command ends; outside a command (a direct call in a
    test) the writers' own locks suffice."""
    if _scopes and any(p is not None for p in paths):
        _scopes[-1].enter_context(locked(paths))


def prepare(*, json: Path | None = None, csv: Path | None = None, markdown: Path | None = None,
            others: Sequence[Output] = (), inputs: Iterable[Path | None] = (),
            overwrite: bool = False, resume: bool = False,
            overwrite_flag: str = "--overwrite") -> None:
    """What every writing command calls before it measures anything: its --json, --csv and
    --markdown (and ``others``) checked against each other and its ``inputs``, a stale journal
    refused, and the result files locked for the rest of the command. ``resume``: the --json and
    --csv files are continued, so they may exist."""
    outs = [Output("--json", json, "json"), Output("--csv", csv, "csv"),
            Output("--markdown", markdown, "markdown"), *others]
    check_outputs(outs, inputs=inputs, overwrite=overwrite,
                  resumable=[json, csv] if resume else [], overwrite_flag=overwrite_flag)
    stale_journal(json, overwrite=overwrite, resume=resume)
    hold_locks([json, csv])
