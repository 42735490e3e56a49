"""The one timing harness every command uses.

How a measurement goes (:func:`measure_callable`):

1. Warm up: call the function at least ``warmup`` times and once per input set, and for at least
   ``warmup_time`` seconds, each call timed alone; the fastest gives a first estimate of one call.
2. Autorange: choose ``inner``, the calls per sample, so one sample lasts at least ``sample_time``
   (and at least 1000 timer resolutions), growing it until a trial block really does.
3. Sample: time blocks of ``inner`` calls until the blocks add up to ``min_run_time`` seconds and
   ``min_samples`` samples, or ``max_samples``. A sample is the block's time divided by ``inner``.

Several functions can be timed together (:meth:`Timer.measure_alternating`, what `rnnbench run`
does for a target's row and its reference): each is warmed up and autoranged on its own, then the
samples are taken in rounds, one block of each in an order drawn anew every round, until every one
has its ``min_run_time`` and ``min_samples``. A slow spell of the machine then falls on all of them
alike, so their ratio is not the machine's swing between the minutes each was timed in.

Each call takes the next input set in turn, so a case does not run from a cache warmed by the same
data. The clock is read only after the device has finished its queued work: on CUDA the block is
bracketed by CUDA events after a full synchronise; on the CPU by ``time.perf_counter``.

While the samples are taken, the harness also watches the machine (:class:`CpuWatch`, Linux): the
share of all CPUs that OTHER processes used, and the share the hypervisor stole. A benchmark on a
busy or oversubscribed machine is flagged in the row ("busy: ...") instead of passing for a quiet one.

Statistics, defined so they can be checked by hand: the median is the middle sample (the mean of
the two middle ones for an even count); quartiles use linear interpolation between closest ranks
(numpy's default 'linear' method, Hyndman-Fan type 7): for ``n`` sorted samples ``x[0..n-1]`` the
``q`` quantile is ``x[k] + f·(x[k+1] − x[k])`` with ``k + f = q·(n − 1)``. IQR = q75 − q25.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import cycle, islice, repeat

import torch

SPREAD_LIMIT = 0.10
#: other processes (or the hypervisor's steal) using more than this share of all CPUs flags a row busy
BUSY_LIMIT = 0.05
QUANTILE_METHOD = "linear interpolation between closest ranks (numpy 'linear', Hyndman-Fan type 7)"


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile by linear interpolation between closest ranks (type 7): the
    ``statistics`` module's "inclusive" method, at the cut point q of ``n`` equal parts."""
    if not values:
        return math.nan
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be within [0, 1], got {q}")
    if len(values) == 1 or q == 0.0:
        return float(min(values))
    if q == 1.0:
        return float(max(values))
    part = Fraction(q).limit_denominator(10_000)
    cuts = statistics.quantiles(values, n=part.denominator, method="inclusive")
    return float(cuts[part.numerator - 1])


@dataclass
class TimingStats:
    """Seconds per call, one value per sample; each sample averaged ``inner`` back-to-back calls."""

    samples: list[float]
    inner: int = 1
    warmup_calls: int = 0
    input_sets: int = 0
    measure_time_s: float = 0.0   # clock time inside the timed blocks (not the warm-up)
    clock: str = "perf_counter"
    others_cpu: float | None = None   # share of all CPUs other processes used while sampling
    steal_cpu: float | None = None    # share of all CPUs the hypervisor stole while sampling

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def median(self) -> float:
        return quantile(self.samples, 0.5)

    @property
    def q25(self) -> float:
        return quantile(self.samples, 0.25)

    @property
    def q75(self) -> float:
        return quantile(self.samples, 0.75)

    @property
    def iqr(self) -> float:
        return self.q75 - self.q25

    @property
    def min(self) -> float:
        return min(self.samples) if self.samples else math.nan

    @property
    def max(self) -> float:
        return max(self.samples) if self.samples else math.nan

    @property
    def mean(self) -> float:
        return sum(self.samples) / len(self.samples) if self.samples else math.nan

    @property
    def spread(self) -> float:
        """IQR over the median: the noise figure the table warns about."""
        med = self.median
        return self.iqr / med if med > 0 else math.nan

    @property
    def warnings(self) -> list[str]:
        out = []
        if self.spread > SPREAD_LIMIT:
            out.append(f"noisy: IQR is {100 * self.spread:.0f}% of the median "
                       f"(over {100 * SPREAD_LIMIT:.0f}%); is the machine busy?")
        busy = self.busy_share
        if busy is not None and busy > BUSY_LIMIT:
            parts = [f"other processes used {100 * (self.others_cpu or 0):.0f}%"]
            if self.steal_cpu:
                parts.append(f"the hypervisor stole {100 * self.steal_cpu:.0f}%")
            out.append(f"busy: {' and '.join(parts)} of this process's CPUs while this was timed "
                       f"(over {100 * BUSY_LIMIT:.0f}% together); not an idle machine")
        return out

    @property
    def busy_share(self) -> float | None:
        """Others' use plus the hypervisor's steal, as a share of the CPUs we may run on."""
        shares = [v for v in (self.others_cpu, self.steal_cpu) if v is not None]
        return sum(shares) if shares else None

    def metrics(self, prefix: str = "time_s") -> dict:
        return {
            f"{prefix}_median": self.median,
            f"{prefix}_iqr": self.iqr,
            f"{prefix}_q25": self.q25,
            f"{prefix}_q75": self.q75,
            f"{prefix}_min": self.min,
            f"{prefix}_spread": self.spread,
            f"n_samples{prefix[len('time_s'):]}": self.n,
            f"inner_repeats{prefix[len('time_s'):]}": self.inner,
            f"samples_s{prefix[len('time_s'):]}": list(self.samples),
            f"others_cpu_frac{prefix[len('time_s'):]}": self.others_cpu,
            f"steal_cpu_frac{prefix[len('time_s'):]}": self.steal_cpu,
        }


# -- the machine while we measure ------------------------------------------------------------------
def _allowed_cpus() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def _proc_stat(cpus: set[int] | None = None) -> tuple[float, float, float] | None:
    """(busy, steal, total) CPU seconds summed over ``cpus`` (all CPUs if None), from psutil's
    reading of the kernel's counters (/proc/stat on Linux), or None where it has none. psutil lists
    the CPUs in the kernel's order, which is their number while every CPU is online."""
    try:
        import psutil
        times = psutil.cpu_times(percpu=cpus is not None)
    except Exception:  # noqa: BLE001 - no counters (or no psutil): the watch says nothing
        return None
    if cpus is not None:
        times = [t for i, t in enumerate(times) if i in cpus]
        if not times:
            return None
    else:
        times = [times]
    busy = steal = total = 0.0
    for t in times:
        st = getattr(t, "steal", 0.0)
        # guest time is already inside user/nice, so it is not added again
        parts = (t.user, t.nice if hasattr(t, "nice") else 0.0, t.system,
                 getattr(t, "irq", 0.0), getattr(t, "softirq", 0.0))
        busy += sum(parts)
        steal += st
        total += sum(parts) + t.idle + getattr(t, "iowait", 0.0) + st
    return busy, steal, total


class CpuWatch:
    """How much of the CPUs this process may run on others used between :meth:`start` and
    :meth:`stop`.

    The kernel's per-CPU counters (through psutil) over the CPUs of this process's
    affinity give their busy and stolen time; this process's own CPU time (all its threads,
    ``os.times``) is subtracted from the busy part. Both shares are of those CPUs' capacity (wall
    time × CPUs), so a neighbour on CPUs we never use does not count. A container's CPU quota is
    not seen. Counters tick every 10 ms, so a window under 0.2 s of wall time gives None.
    """

    def __init__(self):
        self._hz = 1.0  # counter units per second: psutil gives seconds
        self._cpus = _allowed_cpus()
        self._t0 = None

    def _own(self) -> float:
        t = os.times()
        return t.user + t.system

    def start(self) -> None:
        self._t0 = (_proc_stat(self._cpus), self._own())

    def stop(self) -> tuple[float | None, float | None]:
        if self._t0 is None or self._t0[0] is None:
            return None, None
        end = _proc_stat(self._cpus)
        if end is None:
            return None, None
        (b0, s0, tot0), own0 = self._t0
        b1, s1, tot1 = end
        capacity = (tot1 - tot0) / self._hz                 # CPU-seconds of the watched CPUs
        n = len(self._cpus) if self._cpus else (os.cpu_count() or 1)
        if capacity / n < 0.2:
            return None, None
        others = max(0.0, (b1 - b0) / self._hz - (self._own() - own0))
        return min(1.0, others / capacity), (s1 - s0) / self._hz / capacity


# -- clocks ----------------------------------------------------------------------------------------
class WallClock:
    """perf_counter, read only after ``sync()`` returns (a no-op for the CPU)."""

    name = "perf_counter"

    def __init__(self, sync: Callable[[], None] | None = None):
        self.sync = sync or (lambda: None)
        self._t0 = 0.0

    def start(self) -> None:
        self.sync()
        self._t0 = time.perf_counter()

    def stop(self) -> float:
        self.sync()
        return time.perf_counter() - self._t0


class CudaEventClock:
    """GPU time between two events on the current stream, after all earlier work has finished."""

    name = "cuda-event"

    def __init__(self, device: torch.device):
        self.device = device
        self._start = torch.cuda.Event(enable_timing=True)
        self._end = torch.cuda.Event(enable_timing=True)

    def start(self) -> None:
        # work queued before the block must not be counted in it
        torch.cuda.synchronize(self.device)
        self._start.record(torch.cuda.current_stream(self.device))

    def stop(self) -> float:
        self._end.record(torch.cuda.current_stream(self.device))
        self._end.synchronize()
        return self._start.elapsed_time(self._end) / 1e3


def clock_for(device: torch.device | str = "cpu", synchronize: Callable[[], None] | None = None):
    device = torch.device(device)
    if synchronize is not None:
        return WallClock(synchronize)
    if device.type == "cuda":
        return CudaEventClock(device)
    if device.type == "cpu":
        return WallClock()
    # any other accelerator (MPS, XPU...): wall time, read only after the device's queue drains
    from rnnbench.devices import synchronize
    return WallClock(lambda: synchronize(device))


def timer_resolution(clock=None, reads: int = 200) -> float:
    """Smallest nonzero step of the clock as used here (two reads around nothing)."""
    clock = clock or WallClock()
    best = math.inf
    for _ in range(reads):
        clock.start()
        dt = clock.stop()
        if dt > 0:
            best = min(best, dt)
    return best if best < math.inf else 1e-6


# -- the harness -----------------------------------------------------------------------------------
@dataclass
class Timer:
    """Settings of one measurement; :meth:`measure` times ``fn``."""

    min_run_time: float = 1.0     # seconds of samples at least
    sample_time: float = 0.01     # a sample lasts at least this long (capped, see _target)
    warmup: int = 2               # warm-up calls at least (and one per input set)
    warmup_time: float = 0.05     # warm-up seconds at least
    min_samples: int = 5
    max_samples: int = 10_000
    device: str | torch.device = "cpu"
    synchronize: Callable[[], None] | None = None
    clock: object | None = None   # anything with start() and stop() -> seconds
    _resolution: float | None = field(default=None, repr=False)

    def _target(self, clock) -> float:
        # Short min_run_time (tests, smoke runs) must still leave room for min_samples samples.
        if self._resolution is None:
            self._resolution = timer_resolution(clock)
        cap = self.min_run_time / max(1, self.min_samples)
        return max(min(self.sample_time, cap), 1000 * self._resolution)

    def measure(self, fn: Callable, inputs: Sequence | Callable[[], Sequence] | None = None
                ) -> TimingStats:
        clock = self.clock or clock_for(self.device, self.synchronize)
        job = self._prime(clock, fn, inputs)
        watch = CpuWatch()
        watch.start()
        while True:
            job.sample()
            if job.n >= self.max_samples or job.enough(self):
                break
        return job.stats(clock, *watch.stop())

    def measure_alternating(self, jobs: Sequence[tuple[Callable, Sequence | None, Callable | None]],
                            rng: random.Random) -> list[TimingStats]:
        """Time several functions in turn: a round takes one sample of each, in an order drawn at
        random, until every one has its ``min_run_time`` and ``min_samples`` (or ``max_samples``).

        Why: a ratio between two cases timed minutes apart carries the machine's swings between
        those minutes (on a shared VM, tens of percent); sampled in turn, a slow spell falls on
        every side alike, at the scale of one sample. Each job is ``(fn, inputs, context)``;
        ``context`` (a no-argument context manager factory, such as ``torch.inference_mode``) is
        entered around each block, so every job keeps its own grad mode. Warm-up and autorange are
        each job's own, as in :meth:`measure`."""
        if not jobs:
            return []
        clock = self.clock or clock_for(self.device, self.synchronize)
        primed = []
        for fn, inputs, context in jobs:
            with (context or contextlib.nullcontext)():
                primed.append(self._prime(clock, fn, inputs))
        # every job's sample lasts about as long as the slowest job's: a round then adds about the
        # same time to each, and all reach min_run_time together (with a 1 ms job beside a 100 ms
        # one, the fast job would otherwise need a hundred times the rounds)
        longest = max(j.inner * j.call_s for j in primed)
        for j in primed:
            j.inner = max(j.inner, math.ceil(longest / max(j.call_s, 1e-9)))
        watch = CpuWatch()
        watch.start()
        while True:
            live = [i for i, j in enumerate(primed) if j.n < self.max_samples]
            if not live or all(j.enough(self) or j.n >= self.max_samples for j in primed):
                break
            rng.shuffle(live)
            for i in live:
                with (jobs[i][2] or contextlib.nullcontext)():
                    primed[i].sample()
        others, steal = watch.stop()
        return [j.stats(clock, others, steal) for j in primed]

    def _prime(self, clock, fn: Callable, inputs) -> _Job:
        """Warm-up and autorange (steps 1 and 2): a job ready to take samples."""
        if callable(inputs):
            inputs = inputs()
        sets = list(inputs) if inputs is not None else None
        if sets is not None and not sets:
            raise ValueError("inputs must hold at least one input set")
        job = _Job(fn, clock, cycle(sets) if sets is not None else None, len(sets) if sets else 0)
        # 1. warm-up, each call timed alone
        calls, spent, best = 0, 0.0, math.inf
        need = max(self.warmup, len(sets) if sets else 1)
        while calls < need or spent < self.warmup_time:
            dt = job.block(1)
            calls += 1
            spent += dt
            best = min(best, dt)
            if calls >= 1000 * need:
                break
        job.warmup_calls = calls
        # 2. autorange
        target = self._target(clock)
        inner = max(1, math.ceil(target / max(best, 1e-9)))
        for _ in range(20):
            dt = job.block(inner)
            if dt >= target:
                break
            inner = max(inner + 1, math.ceil(inner * 1.2 * target / max(dt, 1e-9)))
        job.inner = inner
        job.call_s = dt / inner
        return job


@dataclass
class _Job:
    """One function being sampled (step 3): its blocks of ``inner`` calls and their times."""

    fn: Callable
    clock: object
    feed: object                  # a cycle over the input sets, or None: fn takes no argument
    input_sets: int
    inner: int = 1
    warmup_calls: int = 0
    call_s: float = 0.0           # one call's time, as the autorange last measured it
    samples: list[float] = field(default_factory=list)
    timed: float = 0.0

    @property
    def n(self) -> int:
        return len(self.samples)

    def block(self, n: int) -> float:
        # the loop is all the harness adds per call: keep it to the iteration itself
        fn, clock = self.fn, self.clock
        if self.feed is None:
            clock.start()
            for _ in repeat(None, n):
                fn()
        else:
            chunk = list(islice(self.feed, n))
            clock.start()
            for arg in chunk:
                fn(arg)
        return clock.stop()

    def sample(self) -> None:
        dt = self.block(self.inner)
        self.samples.append(dt / self.inner)
        self.timed += dt

    def enough(self, timer: Timer) -> bool:
        return self.n >= timer.min_samples and self.timed >= timer.min_run_time

    def stats(self, clock, others: float | None, steal: float | None) -> TimingStats:
        return TimingStats(self.samples, inner=self.inner, warmup_calls=self.warmup_calls,
                           input_sets=self.input_sets, measure_time_s=self.timed,
                           clock=getattr(clock, "name", type(clock).__name__),
                           others_cpu=others, steal_cpu=steal)


def measure_callable(fn: Callable, *, device: str | torch.device = "cpu",
                     inputs: Sequence | Callable[[], Sequence] | None = None,
                     min_run_time: float = 1.0, sample_time: float = 0.01, warmup: int = 2,
                     warmup_time: float = 0.05, min_samples: int = 5, max_samples: int = 10_000,
                     synchronize: Callable[[], None] | None = None, clock=None) -> TimingStats:
    """Time ``fn`` (called as ``fn(input_set)`` in rotation, or ``fn()`` without inputs)."""
    return Timer(min_run_time=min_run_time, sample_time=sample_time, warmup=warmup,
                 warmup_time=warmup_time, min_samples=min_samples, max_samples=max_samples,
                 device=device, synchronize=synchronize, clock=clock).measure(fn, inputs)


def difference(total: TimingStats, part: TimingStats) -> dict:
    """Backward alone, as (forward+backward) − (forward with autograd), from two measurements.

    Medians and minima subtract; the IQR given is the sum of the two IQRs, a bound on the spread
    of the difference (the samples are not paired, so no exact figure exists)."""
    return {
        "time_s_median": total.median - part.median,
        "time_s_iqr": total.iqr + part.iqr,
        "time_s_min": total.min - part.min,
        "time_s_spread": (total.iqr + part.iqr) / (total.median - part.median)
        if total.median > part.median else math.nan,
        "n_samples": min(total.n, part.n),
    }
