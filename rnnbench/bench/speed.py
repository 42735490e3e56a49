"""Time one case: forward (inference), forward+backward (a training step), or backward by difference.

- ``fwd``: the forward pass under ``torch.inference_mode`` (no autograd).
- ``fwd+bwd``: forward, the loss (mean square of the outputs), and the gradients of every parameter
  (``torch.autograd.grad``, so nothing accumulates between calls): a training step without the
  optimiser.
- ``bwd``: (fwd+bwd) − (forward with autograd recording), two measurements, medians subtracted.

Throughput is tokens per second, B·T / median. FLOPs come from :mod:`rnnbench.bench.flops` on the
eager reference, FLOP/s = FLOPs / median.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from rnnbench import backends
from rnnbench.backends import training_loss
from rnnbench.bench.flops import count_flops
from rnnbench.bench.reference import DRIFT_LIMIT, drift, reference_time
from rnnbench.bench.timing import BUSY_LIMIT, TimingStats, Timer, difference
from rnnbench.case import Case
from rnnbench.devices import pin_cpus, resolve_device, set_threads
from rnnbench.errors import RnnbenchError
from rnnbench.outcome import guarded
from rnnbench.results import Row

MODES = ("fwd", "fwd+bwd", "bwd")


@dataclass
class SpeedSettings:
    min_run_time: float = 1.0    # seconds of samples per measurement
    sample_time: float = 0.01    # seconds per sample at least
    warmup: int = 2
    warmup_time: float = 0.05
    min_samples: int = 5
    max_samples: int = 10_000
    input_sets: int = 4          # inputs rotated through (fewer when they would pass 256 MiB)
    check: bool = True           # verify non-eager backends against eager before timing
    flops: bool = True
    seed: int = 0
    threads: int | None = None   # CPU intra-op threads (None: leave torch's setting)
    busy_retries: int = 2        # measure again, up to this often, while other work shares the CPU
    reference: bool = True       # time a fixed matmul just before and after the case (drift)
    pin_cpus: list[int] | None = None  # keep the process on these CPUs (Linux; steadier on VMs)

    def timer(self, device) -> Timer:
        return Timer(min_run_time=self.min_run_time, sample_time=self.sample_time,
                     warmup=self.warmup, warmup_time=self.warmup_time, min_samples=self.min_samples,
                     max_samples=self.max_samples, device=device)


def measure_speed(case: Case, settings: SpeedSettings | None = None) -> Row:
    settings = settings or SpeedSettings()
    if case.mode not in MODES:
        raise RnnbenchError(f"unknown mode {case.mode!r}; choose from {', '.join(MODES)}")
    return guarded(case, lambda: _measure(case, settings))


def _measure(case: Case, s: SpeedSettings) -> Row:
    device, load = _setup(case, s)
    prepared = _prepare(case, s)
    ref_before = _yardstick(device, s, prepared.warnings)
    metrics, median = _time_mode(case.mode, s, s.timer(device), prepared.forward, prepared.step,
                                 prepared.xs, prepared.warnings)
    ref_after = _yardstick(device, s, prepared.warnings) if ref_before is not None else None
    return _finish(case, s, prepared, metrics, median, (ref_before, ref_after), load)


def _setup(case: Case, s: SpeedSettings):
    """The device, the pin and the threads; the load average before any work."""
    device = resolve_device(case.device)
    pin_cpus(s.pin_cpus)  # the callers (speed, run) pin before any work and unpin after
    set_threads(s.threads if s.threads is not None else pinned_threads(s.pin_cpus))
    return device, load_average()


@dataclass
class _Prepared:
    """A case built and checked, ready to time: its inputs, forward and training step."""

    runnable: object
    xs: list
    forward: object
    step: object
    warnings: list[str]


def _prepare(case: Case, s: SpeedSettings) -> _Prepared:
    xs = backends.make_inputs(case, s.input_sets, seed=s.seed + 1)
    runnable = backends.build(case, check=s.check, seed=s.seed, example=xs[0])
    params = runnable.parameters()
    forward = runnable.forward

    def step(x):
        return torch.autograd.grad(training_loss(forward(x)), params)

    # what the backend says about itself starts the row's warnings
    return _Prepared(runnable, xs, forward, step, list(runnable.notes))


def _finish(case: Case, s: SpeedSettings, p: _Prepared, metrics: dict, median: float,
            yardsticks: tuple, load: float | None) -> Row:
    """The row of a timed case: throughput, FLOPs, the backend's facts, the yardstick's drift."""
    warnings = p.warnings
    tokens = case.batch * case.seq_len
    metrics["tokens_per_s"] = tokens / median if median > 0 else None
    # RNNBENCH_NO_FLOPS: `rnnbench ab` counts FLOPs (exact) in its first round only; the count's
    # first use imports torch._dynamo, about 2 s of every later round's fresh process
    if s.flops and not os.environ.get("RNNBENCH_NO_FLOPS"):
        n = case_flops(p.runnable.reference, p.xs[0], case.mode)
        metrics["flops"] = n
        metrics["flop_per_s"] = n / median if median > 0 else None
    if p.runnable.compile_time_s is not None and case.backend == "compile":
        metrics["compile_time_s"] = p.runnable.compile_time_s
    if p.runnable.verify_error is not None:
        metrics["verify_rel_err"] = p.runnable.verify_error
    metrics["input_sets"] = len(p.xs)
    ref_before, ref_after = yardsticks
    if ref_before is not None and ref_after is not None:
        _drift_metrics(ref_before, ref_after, metrics, warnings)
    if resolve_device(case.device).type == "cpu":
        metrics["threads"] = torch.get_num_threads()
    if load is not None:
        # other processes on the CPU are the usual cause of a noisy row: keep the evidence
        metrics["load_avg_1m"] = load
    return case.row(metrics=metrics, warnings=warnings)


#: the modes a case can be timed in alternation with others: one measurement each (bwd is two)
ALTERNATING_MODES = ("fwd", "fwd+bwd")


def can_alternate(case: Case) -> bool:
    return case.bench == "speed" and case.mode in ALTERNATING_MODES


def measure_speed_together(cases: list[Case], settings: SpeedSettings | None = None) -> list[Row]:
    """Time several cases of one device in alternation (:meth:`Timer.measure_alternating`): one
    sample of each in turn, in a fresh random order every round, so that the ratio of any two of
    them (a target and its reference) is not the machine's swing between two minutes. Each row is
    what :func:`measure_speed` would give, with the label ``alternated``: an id shared by the rows
    timed together. A case that cannot be built (unsupported, a failed check, out of memory) gets
    its row as :func:`measure_speed` would give it, and the others go on without it."""
    s = settings or SpeedSettings()
    bad = [c for c in cases if not can_alternate(c)]
    if bad:
        raise RnnbenchError(f"only {' and '.join(ALTERNATING_MODES)} speed cases are timed in "
                            f"alternation, not {bad[0].key}")
    devices = {str(resolve_device(c.device)) for c in cases}
    if len(devices) > 1:
        raise RnnbenchError(f"cases timed in alternation share one device, not {sorted(devices)}")
    device, load = _setup(cases[0], s)
    rows: dict[str, Row] = {}
    ready: list[tuple[Case, _Prepared]] = []
    for case in cases:
        box: list[_Prepared] = []

        def prepare(case=case, box=box):
            box.append(_prepare(case, s))
            return case.row()

        row = guarded(case, prepare)
        if box:
            ready.append((case, box[0]))
        else:
            rows[case.key] = row
    if ready:
        group = alternation_id([c.key for c, _ in ready])
        shared: list[str] = []
        ref_before = _yardstick(device, s, shared)
        timed: list = []

        def time_group():
            timed.append(_alternate_quietly(s, s.timer(device), ready))
            return ready[0][0].row()

        # a failure while timing (out of memory, say) is every member's row, as guarded() makes it
        failed = guarded(ready[0][0], time_group)
        if not timed:
            rows.update({c.key: c.row(status=failed.status, reason=failed.reason) for c, _ in ready})
            return [rows[c.key] for c in cases]
        stats, retries = timed[0]
        ref_after = _yardstick(device, s, shared) if ref_before is not None else None
        for (case, p), st in zip(ready, stats):
            p.warnings += shared + st.warnings
            metrics = st.metrics()
            metrics["busy_retries"] = retries
            metrics["alternated_cases"] = len(ready)
            row = _finish(case, s, p, metrics, st.median, (ref_before, ref_after), load)
            row.labels["alternated"] = group
            rows[case.key] = row
    return [rows[c.key] for c in cases]


def alternation_id(keys: list[str]) -> str:
    """A short id naming a set of cases timed together, the same in every round of a run."""
    import hashlib
    return hashlib.sha1("\n".join(sorted(keys)).encode()).hexdigest()[:10]


def _alternate_quietly(s: SpeedSettings, timer: Timer, ready: list
                       ) -> tuple[list[TimingStats], int]:
    """measure_quietly for a group: while other work took more than BUSY_LIMIT of the CPUs, time
    the whole group again (its samples must share one window), keeping the quietest attempt."""
    import random

    rng = random.Random(s.seed)
    jobs = [(p.forward, p.xs, torch.inference_mode) if case.mode == "fwd" else
            (p.step, p.xs, torch.enable_grad) for case, p in ready]
    # one window, one watch: every job's stats carry the same busy share
    return quietest(lambda: timer.measure_alternating(jobs, rng), lambda sts: sts[0].busy_share,
                    s.busy_retries)


def _time_mode(mode: str, s: SpeedSettings, timer: Timer, forward, step, xs, warnings: list[str]
               ) -> tuple[dict, float]:
    """The timing metrics of one mode and its median; bwd is fwd+bwd minus fwd with autograd."""
    retries = [0]

    def quiet(fn):
        stats, retries[0] = measure_quietly(timer, fn, xs, s.busy_retries, retries[0])
        return stats

    metrics: dict = {}
    if mode in ("fwd", "fwd+bwd"):
        fn, grad_mode = (forward, torch.inference_mode) if mode == "fwd" else (step, torch.enable_grad)
        with grad_mode():
            stats = quiet(fn)
        metrics.update(stats.metrics())
        warnings += stats.warnings
        median = stats.median
    else:
        with torch.enable_grad():
            total = quiet(step)
            fwd = quiet(forward)
        metrics.update(difference(total, fwd))
        metrics.update(total.metrics("time_s_fwd_bwd"))
        metrics.update(fwd.metrics("time_s_fwd_grad"))
        warnings += [f"fwd+bwd {w}" for w in total.warnings]
        warnings += [f"fwd with autograd {w}" for w in fwd.warnings]
        median = metrics["time_s_median"]
        if median <= 0:
            warnings.append("backward by difference is not positive: forward and step timings "
                            "overlap within their noise")
    metrics["busy_retries"] = retries[0]
    return metrics, median


def _drift_metrics(before: dict, after: dict, metrics: dict, warnings: list[str]) -> None:
    """The yardstick around the case: its mean for `compare --normalize`, and the drift."""
    metrics["reference_time_s"] = (before["time_s"] + after["time_s"]) / 2
    metrics["reference_time_s_min"] = min(before["time_s_min"], after["time_s_min"])
    metrics["host_drift"] = d = drift(before, after)
    if d > DRIFT_LIMIT:
        slower = "slower" if after["time_s"] > before["time_s"] else "faster"
        warnings.append(f"drift: a fixed matrix product ran {100 * d:.0f}% {slower} after this "
                        "case than before it: the machine's speed changed while it was timed")


def pinned_threads(cpus) -> int | None:
    """Threads to match a pin: one per pinned CPU (more would only take turns on them)."""
    if cpus is None:
        return None
    return 1 if isinstance(cpus, int) else len(cpus)


def _yardstick(device, s: SpeedSettings, warnings: list[str]) -> dict | None:
    if not s.reference:
        return None
    try:
        # a short window: the point is the same yardstick on both sides of the case, not precision
        return reference_time(str(device), min_run_time=min(0.1, s.min_run_time / 4))
    except Exception as e:  # noqa: BLE001 - a missing yardstick must not cost a measured case
        warnings.append(f"no yardstick ({type(e).__name__}: {e})")
        return None


def measure_quietly(timer: Timer, fn, xs, retries: int, used: int = 0) -> tuple[TimingStats, int]:
    """Measure; while other processes (or the hypervisor) took more than BUSY_LIMIT of the CPUs,
    measure again, up to ``retries`` times in all for the case (``used`` so far). Keep the
    quietest attempt. A transient neighbour then costs time instead of a wrong number, and a row
    that stays busy says so in its warnings. Returns (stats, retries used)."""
    return quietest(lambda: timer.measure(fn, xs), lambda st: st.busy_share, retries, used)


def quietest(attempt, busy_share, retries: int, used: int = 0):
    """measure_quietly's loop for any measurement: ``attempt()`` measures, ``busy_share(result)``
    says how busy the machine was meanwhile (None: unknown). Returns (result, retries used)."""
    best = attempt()
    while used < retries:
        b = busy_share(best)
        if b is None or b <= BUSY_LIMIT:
            break
        used += 1
        again = attempt()
        if (busy_share(again) or 0.0) < b:
            best = again
    return best, used


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


def busy_note() -> str | None:
    """A line for the user when other work competes for the CPU, None on a quiet machine."""
    load, cpus = load_average(), os.cpu_count() or 1
    if load is None or load <= 0.5 * cpus:
        return None
    hint = "" if torch.get_num_threads() == 1 else "; on a shared CPU --threads 1 is steadier"
    return (f"the machine is busy (load average {load:.1f} on {cpus} CPUs): timings will be noisy"
            + hint)


def case_flops(stack, x: torch.Tensor, mode: str) -> int:
    """Matrix-product FLOPs of one call in ``mode``, counted on the eager stack."""
    params = [p for p in stack.parameters() if p.requires_grad]

    def fwd():
        with torch.inference_mode():
            stack(x)

    def fwd_grad():
        with torch.enable_grad():
            stack(x)

    def step():
        with torch.enable_grad():
            torch.autograd.grad(training_loss(stack(x)[0]), params)

    if mode == "fwd":
        return count_flops(fwd)
    if mode == "fwd+bwd":
        return count_flops(step)
    return count_flops(step) - count_flops(fwd_grad)


def stats_of(row: Row) -> TimingStats | None:
    """The raw samples of a speed row back as statistics (None for rows without samples)."""
    samples = row.metrics.get("samples_s")
    if not samples:
        return None
    return TimingStats(list(samples), inner=row.metrics.get("inner_repeats", 1))
