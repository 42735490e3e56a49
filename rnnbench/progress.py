"""Progress of long commands, on stderr, so stdout stays the table (or the pipe's data).

On a terminal, a Rich bar shows the current case, cases done, elapsed time and an ETA. Anywhere
else (a CI log, a pipe, a file) each finished case is one plain line, so a log is never silent for
longer than a case takes::

    [12/36] speed gru/irc eager fwd+bwd … 207 ms (eta 1m40s)

The API, for every command (``speed``, ``memory``, ``run``, ``verify``, ``task``, ``ab``)::

    from rnnbench import progress

    progress.announce(progress.plan_line(len(cases), estimate_s, "speed"))  # before long work
    with progress.reporter(len(cases), "speed", quiet=quiet) as p:
        for case in cases:
            p.start(case_text)                  # shows what is being measured now
            ...
            p.done(case_text, "207 ms")         # one line per case off a terminal
    progress.announce("round 2/3 in a fresh process")  # rounds, retries, compiles

- ``reporter(total, label, quiet=False, estimate_s=None)``: a context manager yielding a
  :class:`Reporter`. ``estimate_s`` (the whole job's estimate) gives an ETA before the first case
  ends; after that the ETA comes from the cases measured.
- ``Reporter.start(desc)``: the case now running.
- ``Reporter.done(desc, result="", seconds=None)``: a case finished; ``result`` is the short
  outcome ("207 ms", "failed"); ``seconds`` how long it took (measured from ``start`` if omitted).
- ``Reporter.skip(desc, why)``: a case not measured (already in the file on --resume).
- ``announce(text, quiet=False)``: one line, above the bar when one is shown.
- ``plan_line(n, seconds, what)``, ``fmt_duration(seconds)``: the wording of estimates.

``quiet`` (``--quiet``) turns all of it off. Errors are not progress: they go to stderr whatever
``quiet`` says, from the commands themselves.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Iterator, TextIO

_active: list["Reporter"] = []


def fmt_duration(seconds: float | None) -> str:
    """'4s', '1m40s', '2h05m': short, for ETAs and estimates."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def plan_line(n: int, seconds: float | None, what: str) -> str:
    """'speed: 18 cases, about 1m10s' — said before long work starts."""
    est = f", about {fmt_duration(seconds)}" if seconds else ""
    return f"{what}: {n} case{'s' if n != 1 else ''}{est}"


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Reporter:
    """Progress of ``total`` cases; see the module docstring. Built by :func:`reporter`."""

    def __init__(self, total: int, label: str, *, quiet: bool = False,
                 estimate_s: float | None = None, stream: TextIO | None = None):
        self.total, self.label, self.quiet = total, label, quiet
        self.estimate_s = estimate_s
        self.stream = stream if stream is not None else sys.stderr
        self.count = 0
        self._measured_s = 0.0
        self._measured_n = 0
        self._t0 = time.monotonic()
        self._case_t0: float | None = None
        self._bar = None
        self._task = None

    # -- lifecycle -------------------------------------------------------------------------------
    def _open(self) -> None:
        if self.quiet or not _is_terminal(self.stream):
            return
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)
        console = Console(file=self.stream)
        self._bar = Progress(TextColumn("{task.description}", markup=False), BarColumn(),
                             MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                             console=console, transient=False)
        self._bar.start()
        self._task = self._bar.add_task(self.label, total=self.total)

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=self.label)
            self._bar.stop()
            self._bar = None

    # -- what commands call ----------------------------------------------------------------------
    def start(self, desc: str) -> None:
        self._case_t0 = time.monotonic()
        if self._bar is not None:
            self._bar.update(self._task, description=desc)

    def done(self, desc: str, result: str = "", seconds: float | None = None) -> None:
        if seconds is None and self._case_t0 is not None:
            seconds = time.monotonic() - self._case_t0
        self._case_t0 = None
        self.count += 1
        if seconds is not None:
            self._measured_s += seconds
            self._measured_n += 1
        if self._bar is not None:
            self._bar.advance(self._task)
            return
        if self.quiet:
            return
        eta = self.eta_s()
        tail = f" (eta {fmt_duration(eta)})" if eta is not None and self.count < self.total else ""
        self._line(f"[{self.count}/{self.total}] {desc} … {result}".rstrip(" …") + tail)

    def skip(self, desc: str, why: str) -> None:
        self._case_t0 = None
        self.count += 1
        if self._bar is not None:
            self._bar.advance(self._task)
        elif not self.quiet:
            self._line(f"[{self.count}/{self.total}] {desc}: {why}")

    def announce(self, text: str) -> None:
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            self._line(text)

    def eta_s(self) -> float | None:
        """Seconds left: the mean of the cases measured so far times the cases left; before any,
        what is left of the estimate."""
        left = self.total - self.count
        if self._measured_n:
            return left * self._measured_s / self._measured_n
        if self.estimate_s is not None:
            return max(0.0, self.estimate_s - (time.monotonic() - self._t0))
        return None

    def _line(self, text: str) -> None:
        # plain print, flushed: Rich would wrap it at 80 columns in a log, and a buffered line
        # would keep a CI log silent
        print(text, file=self.stream, flush=True)


@contextmanager
def reporter(total: int, label: str, *, quiet: bool = False, estimate_s: float | None = None,
             stream: TextIO | None = None) -> Iterator[Reporter]:
    """Progress of ``total`` cases named ``label``; see the module docstring."""
    rep = Reporter(total, label, quiet=quiet, estimate_s=estimate_s, stream=stream)
    rep._open()
    _active.append(rep)
    try:
        yield rep
    finally:
        _active.remove(rep)
        rep._close()


def announce(text: str, *, quiet: bool = False) -> None:
    """One line of news (rounds, retries, compiles, the plan) on stderr: above the bar of the
    reporter in progress, if any, and silent under ``quiet`` or the quiet reporter's."""
    if _active:
        _active[-1].announce(text) if not quiet else None
        return
    if not quiet:
        print(text, file=sys.stderr, flush=True)
