"""How a case ends: the one place an exception becomes a row status.

A case that raises while it is built or measured is a row, not a crash: ``unsupported`` (this
backend cannot run this case: a refusal, impossible sizes, an operation torch does not implement
for this dtype or device, an optional package missing), ``oom`` (out of memory on the device or the
host), or ``failed`` (anything else, with the exception in one line).
"""

from __future__ import annotations

import torch

from rnnbench.devices import empty_cache
from rnnbench.errors import RnnbenchError, SizeError

STATUSES = ("ok", "unsupported", "oom", "failed")


class Unsupported(Exception):
    """This backend cannot run this case; ``reason`` says why, in one line."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def one_line(e: BaseException, limit: int = 300) -> str:
    text = str(e).strip().splitlines()
    msg = f"{type(e).__name__}: {text[0]}" if text else type(e).__name__
    return msg if len(msg) <= limit else msg[:limit - 1] + "…"


def is_oom(e: BaseException) -> bool:
    if isinstance(e, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(e).lower()
    return isinstance(e, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def classify(e: BaseException) -> tuple[str, str]:
    """(status, reason) for an exception met while building or measuring a case."""
    if isinstance(e, Unsupported):
        return "unsupported", e.reason
    if isinstance(e, SizeError):
        return "unsupported", str(e)
    if is_oom(e):
        return "oom", one_line(e)
    if isinstance(e, (NotImplementedError, ImportError)) or (
            isinstance(e, RuntimeError) and "not implemented for" in str(e)):
        return "unsupported", one_line(e)
    return "failed", one_line(e)


def guarded(case, measure):
    """Run ``measure()`` (which returns the case's row); an unsupported case, an OOM or a failure
    becomes a row, never a crash. User errors other than impossible sizes (unknown cell, no GPU)
    still stop the run."""
    try:
        return measure()
    except (KeyboardInterrupt, SystemExit):
        raise
    except RnnbenchError as e:
        if not isinstance(e, SizeError):
            raise
        status, reason = classify(e)
    except Exception as e:  # noqa: BLE001 - a sweep must survive any one case
        status, reason = classify(e)
    # the exception (and the frames holding its tensors) is gone here, so the cache can be freed
    if status == "oom":
        empty_cache(case.device)
    return case.row(status=status, reason=reason)
