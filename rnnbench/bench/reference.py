"""A fixed yardstick: a float32 512×512 matrix product, timed by the one harness.

Two uses. Per run (env["reference"]): `compare --normalize` divides each time by it, so files from
two machines compare as ratios. Per case (metrics ``reference_time_s``, taken just before and just
after the case): a shared or virtual machine can change speed by tens of percent within seconds
without any process of its own to blame (another guest on the host, frequency limits), which no CPU
counter shows; a yardstick that took longer after the case than before is the evidence, and a per-case
reference lets `compare --normalize` cancel a slow drift between two runs.
"""

from __future__ import annotations

import torch

from rnnbench.bench.timing import Timer

REFERENCE_KIND = "matmul-512"
#: the yardstick before and after a case differing by more than this flags the row (a short
#: yardstick itself scatters by ~10-20% on a shared VM, so smaller changes are left unflagged)
DRIFT_LIMIT = 0.25


def reference_time(device: str = "cpu", *, size: int = 512, min_run_time: float = 0.05,
                   threads: int | None = None) -> dict:
    """Median and minimum seconds of one ``size``³ float32 product on ``device``. Pass the thread
    count the cases ran with: the reference must scale with the machine the way they do."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(0)
        a = torch.randn(size, size, generator=gen).to(device)
        b = torch.randn(size, size, generator=gen).to(device)
        stats = Timer(min_run_time=min_run_time, sample_time=min(1e-3, min_run_time / 10),
                      warmup=2, warmup_time=0.0, min_samples=5, device=device).measure(lambda: a @ b)
        return {"kind": REFERENCE_KIND if size == 512 else f"matmul-{size}",
                "time_s": stats.median, "time_s_min": stats.min, "device": str(device),
                "threads": torch.get_num_threads(), "samples": stats.n, "number": stats.inner}
    finally:
        torch.set_num_threads(before)


def run_reference(device: str, threads: int | None = None, *, warn) -> dict | None:
    """The yardstick of a whole run (env["reference"]); never fails the run: a missing yardstick is
    not worth losing a sweep over, so any error becomes one line through ``warn``."""
    try:
        return reference_time(device, threads=threads)
    except Exception as e:  # noqa: BLE001 - see above
        warn(f"no reference time recorded ({type(e).__name__}: {e}); "
             "compare --normalize cannot use this file")
        return None


def drift(before: dict, after: dict) -> float:
    """How much slower (or faster) the machine ran the yardstick after a case than before it:
    |after − before| / min(before, after), from the two medians."""
    a, b = before["time_s"], after["time_s"]
    return abs(b - a) / min(a, b)
