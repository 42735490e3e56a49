"""Devices and dtypes as the user names them, checked once, with one clear line when they cannot be had."""

from __future__ import annotations

import contextlib
import os

import torch

from rnnbench.errors import DeviceError, RnnbenchError

DTYPES = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "float64": torch.float64,
}
_ALIASES = {"fp32": "float32", "float": "float32", "bf16": "bfloat16", "fp16": "float16",
            "half": "float16", "fp64": "float64", "double": "float64"}


def resolve_device(name: str | torch.device) -> torch.device:
    """'cpu', 'cuda' or 'cuda:N' into a device that exists on this machine, or DeviceError."""
    text = str(name).strip().lower()
    try:
        device = torch.device(text)
    except RuntimeError:
        raise DeviceError(f"unknown device {str(name)!r}; choose cpu or cuda (cuda:N)") from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceError(f"--device {text} was asked for but this torch cannot use MPS")
        return torch.device("mps")
    if device.type != "cuda":
        raise DeviceError(f"device {text!r} is not supported; choose cpu or cuda (cuda:N)")
    if not torch.cuda.is_available():
        why = (f"torch {torch.__version__} built without CUDA" if torch.version.cuda is None
               else "no CUDA device visible")
        raise DeviceError(f"--device {text} was asked for but no CUDA GPU is available ({why})")
    count = torch.cuda.device_count()
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index >= count:
        raise DeviceError(f"--device {text} was asked for but this machine has {count} CUDA "
                          f"device{'s' if count != 1 else ''} (cuda:0..cuda:{count - 1})")
    return torch.device("cuda", index)


def synchronize(device: torch.device | str) -> None:
    """Wait for every queued kernel on the device; a no-op on the CPU, whose ops run in order."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type != "cpu":
        # mps, xpu, ...: each backend module has its own synchronize
        sync = getattr(getattr(torch, device.type, None), "synchronize", None)
        if sync is not None:
            sync()


def parse_dtype(name: str | torch.dtype) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    key = str(name).strip().lower().removeprefix("torch.")
    key = _ALIASES.get(key, key)
    if key not in DTYPES:
        raise RnnbenchError(f"unknown dtype {str(name)!r}; choose from {', '.join(DTYPES)}")
    return DTYPES[key]


def dtype_name(dtype: torch.dtype) -> str:
    for k, v in DTYPES.items():
        if v == dtype:
            return k
    return str(dtype).removeprefix("torch.")


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op CPU threads (None keeps the current number); returns the number in use."""
    if threads is not None:
        if threads <= 0:
            raise RnnbenchError(f"--threads must be positive, got {threads}")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def pin_cpus(cpus: list[int] | int | None) -> set[int] | None:
    """Keep this process, every thread it has and every thread it starts, on these CPUs; None
    leaves it alone. Returns the CPUs it could use before, for :func:`unpin`.

    On a shared or virtual machine a process that the scheduler moves between CPUs, or whose
    threads land on different ones from one process to the next, times the same case differently
    from run to run; pinned, it also shares the CPUs' speed swings with the per-case yardstick,
    which `compare --normalize` then divides out."""
    if cpus is None:
        return None
    if isinstance(cpus, int) and not isinstance(cpus, bool):
        cpus = [cpus]
    if not isinstance(cpus, (list, tuple)) or not all(
            isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in cpus):
        raise RnnbenchError(f"CPUs to pin to must be CPU numbers such as [1] or [0, 1], got {cpus!r}")
    if not hasattr(os, "sched_setaffinity"):
        raise RnnbenchError("pinning to CPUs needs Linux (os.sched_setaffinity)")
    allowed = os.sched_getaffinity(0)
    bad = [c for c in cpus if c not in allowed]
    if not cpus or bad:
        raise RnnbenchError(f"cannot pin to CPU(s) {bad or cpus}: this process may use "
                            f"{', '.join(map(str, sorted(allowed)))}")
    _set_affinity(set(cpus))
    return allowed


def unpin(before: set[int] | None) -> None:
    """Give the process back the CPUs :func:`pin_cpus` took away (None: it never pinned)."""
    if before is not None:
        _set_affinity(before)


@contextlib.contextmanager
def pinned_to(cpus: list[int] | int | None):
    """:func:`pin_cpus` for the duration of a block."""
    before = pin_cpus(cpus)
    try:
        yield
    finally:
        unpin(before)


def _set_affinity(cpus: set[int]) -> None:
    # affinity belongs to a thread: torch's worker threads, once started, keep theirs unless
    # each is moved too; threads started later inherit the calling thread's
    task = "/proc/self/task"
    tids = [int(t) for t in os.listdir(task)] if os.path.isdir(task) else [0]
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:  # the thread ended meanwhile
            pass


def empty_cache(device: torch.device | str) -> None:
    """Give cached blocks back after an out-of-memory error so the next case starts clean."""
    import gc

    gc.collect()
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
