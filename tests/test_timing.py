"""The timing harness against workloads whose time is known, and its statistics against hand counts.

No assertion here is a speed target: the known workloads (a sleep, a virtual clock, a matmul timed
by a bare loop) are references for what the harness reports, with bounds loose enough for a busy
2-core machine, and each check fails if the harness mis-divides, skips synchronisation, or
reports the wrong statistic.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
import torch

from rnnbench.bench.flops import count_flops
from rnnbench.bench.timing import (BUSY_LIMIT, SPREAD_LIMIT, TimingStats, WallClock, difference,
                                   measure_callable, quantile)

FAST = dict(min_run_time=0.02, sample_time=0.005, warmup=1, warmup_time=0.0)


# -- statistics, by hand ---------------------------------------------------------------------------
def test_statistics_odd_count_by_hand():
    # sorted: 1 2 3 4 10; type-7 positions q·(n−1): q25 → 1 (=2), median → 2 (=3), q75 → 3 (=4)
    st = TimingStats([4.0, 1.0, 10.0, 3.0, 2.0])
    assert st.median == 3.0
    assert st.q25 == 2.0 and st.q75 == 4.0 and st.iqr == 2.0
    assert st.min == 1.0 and st.max == 10.0 and st.n == 5
    assert st.spread == pytest.approx(2.0 / 3.0)


def test_statistics_even_count_by_hand():
    # sorted: 1 2 3 4; median at position 1.5 → 2.5; q25 at 0.75 → 1 + 0.75·1 = 1.75;
    # q75 at 2.25 → 3 + 0.25·1 = 3.25; IQR 1.5
    st = TimingStats([3.0, 1.0, 4.0, 2.0])
    assert st.median == pytest.approx(2.5)
    assert st.q25 == pytest.approx(1.75)
    assert st.q75 == pytest.approx(3.25)
    assert st.iqr == pytest.approx(1.5)


@pytest.mark.parametrize("n", [1, 2, 7, 20])
def test_quantiles_match_numpy_linear(n):
    rng = np.random.default_rng(n)
    xs = list(rng.exponential(size=n))
    for q in (0.0, 0.25, 0.5, 0.75, 1.0):
        assert quantile(xs, q) == pytest.approx(float(np.quantile(xs, q, method="linear")))


def test_spread_warning_threshold():
    quiet = TimingStats([0.94, 0.97, 1.0, 1.03, 1.06])   # IQR 0.06 of median 1.0
    noisy = TimingStats([0.90, 0.94, 1.0, 1.06, 1.10])   # IQR 0.12 of median 1.0
    assert quiet.spread == pytest.approx(0.06) and quiet.warnings == []
    assert noisy.spread == pytest.approx(0.12) and noisy.spread > SPREAD_LIMIT
    assert len(noisy.warnings) == 1 and "12%" in noisy.warnings[0]


def test_metrics_names_and_raw_samples():
    st = TimingStats([3.0, 1.0, 2.0], inner=7)
    m = st.metrics()
    assert m["time_s_median"] == 2.0 and m["time_s_min"] == 1.0 and m["n_samples"] == 3
    assert m["inner_repeats"] == 7 and m["samples_s"] == [3.0, 1.0, 2.0]
    other = st.metrics("time_s_fwd_grad")
    assert other["n_samples_fwd_grad"] == 3 and other["samples_s_fwd_grad"] == [3.0, 1.0, 2.0]


def test_backward_by_difference():
    total = TimingStats([10.0, 11.0, 12.0, 13.0, 14.0])  # median 12, IQR 2, min 10
    fwd = TimingStats([4.0, 4.5, 5.0, 5.5, 6.0])         # median 5, IQR 1, min 4
    d = difference(total, fwd)
    assert d["time_s_median"] == 7.0 and d["time_s_iqr"] == 3.0 and d["time_s_min"] == 6.0
    assert d["n_samples"] == 5


# -- the harness on a virtual clock: exact -------------------------------------------------------
class VirtualDevice:
    """A clock that advances only when the workload runs: every call costs exactly ``cost``."""

    name = "virtual"

    def __init__(self, cost: float):
        self.cost, self.now, self.t0, self.seen = cost, 0.0, 0.0, []

    def work(self, arg=None):
        self.now += self.cost
        self.seen.append(arg)

    def start(self):
        self.t0 = self.now

    def stop(self):
        return self.now - self.t0


# costs and targets are powers of two, so the virtual clock's sums are exact
COST, TARGET = 2.0 ** -10, 2.0 ** -7   # about 1 ms a call, 7.8 ms a sample: 8 calls


def test_autorange_and_rotation_on_a_virtual_clock():
    dev = VirtualDevice(COST)
    sets = ["a", "b", "c"]
    st = measure_callable(dev.work, inputs=sets, clock=dev, min_run_time=0.2, sample_time=TARGET,
                          warmup=2, warmup_time=0.0, min_samples=5)
    # each sample is one block of `inner` calls lasting the target, divided by inner
    assert st.samples == [COST] * st.n
    assert st.inner == 8
    # it stops once the samples add up to min_run_time: 0.2 / (8 · 2^-10) = 25.6 → 26 samples
    assert st.n == 26
    assert st.warmup_calls >= len(sets) and st.input_sets == 3
    # the input sets are used in turn, every one as often as the others (give or take one)
    assert dev.seen[:6] == ["a", "b", "c", "a", "b", "c"]
    counts = [dev.seen.count(s) for s in sets]
    assert max(counts) - min(counts) <= 1


def test_inputs_factory_and_no_inputs():
    dev = VirtualDevice(2 * COST)
    st = measure_callable(lambda: dev.work(), clock=dev, min_run_time=0.05, sample_time=4 * COST,
                          warmup=1, warmup_time=0.0, min_samples=3)
    assert st.median == 2 * COST and st.inner == 2
    dev2 = VirtualDevice(1e-3)
    measure_callable(dev2.work, inputs=lambda: [1, 2], clock=dev2, **FAST)
    assert set(dev2.seen) == {1, 2}


def test_max_samples_caps_the_run():
    dev = VirtualDevice(1e-3)
    st = measure_callable(dev.work, clock=dev, min_run_time=100.0, sample_time=0.001,
                          warmup=1, warmup_time=0.0, min_samples=1, max_samples=4)
    assert st.n == 4


# -- real clocks: known workloads ------------------------------------------------------------------
def test_sleep_is_timed_at_least_as_long_as_it_sleeps():
    st = measure_callable(lambda: time.sleep(0.002), **FAST)
    assert st.clock == "perf_counter"
    assert st.min >= 0.002          # a sleep never returns early
    assert st.median < 0.05         # and the harness does not multiply it (loose: busy machine)


class AsyncDevice:
    """Work that runs on another thread, like kernels queued on a GPU; ``sync`` waits for it."""

    def __init__(self, seconds: float):
        self.seconds, self.pending = seconds, []

    def launch(self):
        t = threading.Thread(target=time.sleep, args=(self.seconds,))
        t.start()
        self.pending.append(t)

    def sync(self):
        while self.pending:
            self.pending.pop().join()


def test_clock_is_read_only_after_synchronising():
    dev = AsyncDevice(0.01)
    st = measure_callable(dev.launch, synchronize=dev.sync, **FAST)
    assert st.min >= 0.01 * 0.99
    # the control: without the synchronisation the same workload looks far faster
    unsynced = measure_callable(dev.launch, **FAST)
    dev.sync()
    assert unsynced.median < 0.005


def test_wall_clock_syncs_before_each_read():
    events = []
    clock = WallClock(lambda: events.append("sync"))
    clock.start()
    events.append("work")
    clock.stop()
    assert events == ["sync", "work", "sync"]


def test_matmul_agrees_with_a_bare_loop():
    a, b = torch.randn(192, 192), torch.randn(192, 192)
    fn = lambda: torch.mm(a, b)  # noqa: E731
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: a busy machine then slows it down, not stalls it
    try:
        harness, bare = [], []
        for _ in range(4):  # interleaved, so both see the same spells of load
            st = measure_callable(fn, min_run_time=0.03, sample_time=0.003, warmup=2,
                                  warmup_time=0.0, min_samples=5)
            harness.append(st.min)
            for _ in range(5):
                t0 = time.perf_counter()
                for _ in range(st.inner):
                    fn()
                bare.append((time.perf_counter() - t0) / st.inner)
    finally:
        torch.set_num_threads(threads)
    # minima are the least disturbed by other load; a per-call division error would be ×inner
    assert 0.5 < min(harness) / min(bare) < 2.0


def test_flop_counter_counts_a_matmul_of_known_size():
    m, k, n = 7, 11, 13
    assert count_flops(torch.mm, torch.randn(m, k), torch.randn(k, n)) == 2 * m * k * n


@pytest.mark.gpu
def test_cuda_events_wait_for_the_kernel():
    # torch.cuda._sleep spins the GPU; launching it takes microseconds, running it milliseconds
    dev = torch.device("cuda")
    cycles = int(2e7)
    torch.cuda._sleep(cycles)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(5):
        torch.cuda._sleep(cycles)
    torch.cuda.synchronize()
    expected = (time.perf_counter() - t0) / 5
    st = measure_callable(lambda: torch.cuda._sleep(cycles), device=dev, min_run_time=0.2,
                          warmup=2, warmup_time=0.0)
    assert st.clock == "cuda-event"
    assert 0.8 < st.median / expected < 1.25


# -- the machine watch ----------------------------------------------------------------------------
def test_cpu_watch_arithmetic_on_fake_counters(monkeypatch):
    """others = busy ticks − own CPU time, over all CPUs' capacity; steal likewise."""
    from rnnbench.bench import timing

    stats = iter([(1000, 10, 5000), (1000 + 150, 10 + 20, 5000 + 400)])   # 400 ticks = 4 CPU-s
    own = iter([2.0, 2.5])                                               # this process: 0.5 s
    monkeypatch.setattr(timing, "_proc_stat", lambda cpus: next(stats))
    w = timing.CpuWatch()
    w._hz, w._cpus = 100, {0, 1}                                         # 2 s of wall time
    monkeypatch.setattr(w, "_own", lambda: next(own))
    w.start()
    others, steal = w.stop()
    assert others == pytest.approx((1.5 - 0.5) / 4.0)
    assert steal == pytest.approx(0.2 / 4.0)


def test_cpu_watch_short_window_and_no_proc(monkeypatch):
    from rnnbench.bench import timing

    stats = iter([(0, 0, 100), (5, 0, 130)])             # 0.3 CPU-s on 2 CPUs: 0.15 s of wall time
    monkeypatch.setattr(timing, "_proc_stat", lambda cpus: next(stats))
    w = timing.CpuWatch()
    w._hz, w._cpus = 100, {0, 1}
    w.start()
    assert w.stop() == (None, None)
    monkeypatch.setattr(timing, "_proc_stat", lambda cpus: None)         # not Linux
    w.start()
    assert w.stop() == (None, None)


def test_busy_warning_and_metrics():
    st = TimingStats([1.0, 1.0, 1.0], others_cpu=0.30, steal_cpu=0.0)
    assert any(w.startswith("busy: other processes used 30% of") for w in st.warnings)
    assert TimingStats([1.0] * 3, others_cpu=0.01, steal_cpu=0.01).warnings == []
    # the warning and the retries use one rule: the two shares together
    both = TimingStats([1.0] * 3, others_cpu=0.04, steal_cpu=0.02)
    assert both.busy_share == pytest.approx(0.06)
    assert "other processes used 4% and the hypervisor stole 2%" in both.warnings[0]
    m = st.metrics()
    assert m["others_cpu_frac"] == 0.30 and m["steal_cpu_frac"] == 0.0


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="needs Linux /proc/stat")
def test_a_spinning_process_is_seen():
    """A second process spinning on one CPU while we time must show as others' use."""
    import subprocess
    import sys

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    # a quarter of our CPUs busy, whatever their number, is far over BUSY_LIMIT
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(max(1, -(-cpus // 4)))]
    try:
        time.sleep(0.2)
        st = measure_callable(lambda: sum(range(2000)), min_run_time=0.6)
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    assert st.others_cpu is not None and st.others_cpu > BUSY_LIMIT
    assert any(w.startswith("busy:") for w in st.warnings)


def test_other_accelerators_sync_before_the_clock(monkeypatch):
    """MPS has no events here: the wall clock must wait for the device's queue before each read."""
    from rnnbench import devices
    from rnnbench.bench.timing import clock_for

    calls = []
    monkeypatch.setattr(devices, "synchronize", lambda d: calls.append(str(d)))
    clock = clock_for("mps")
    clock.start()
    clock.stop()
    assert calls == ["mps", "mps"]
    assert isinstance(clock_for("cpu"), WallClock) and clock_for("cpu").sync() is None


class _ScriptedTimer:
    """Hands out prepared measurements, one per call, as a busy-then-quiet machine would."""

    def __init__(self, busy_shares):
        self.shares = list(busy_shares)
        self.calls = 0

    def measure(self, fn, xs):
        share = self.shares[self.calls]
        self.calls += 1
        return TimingStats([1.0 + share] * 5, others_cpu=share, steal_cpu=0.0)


@pytest.mark.parametrize("shares,retries,calls,kept,used", [
    ([0.0], 2, 1, 0.0, 0),              # quiet: measured once
    ([0.4, 0.01], 2, 2, 0.01, 1),       # busy, then quiet: the quiet one is kept
    ([0.4, 0.3, 0.5], 2, 3, 0.3, 2),    # busy throughout: the quietest, and the row stays flagged
    ([0.4], 0, 1, 0.4, 0),              # retries off
])
def test_busy_measurements_are_retried(shares, retries, calls, kept, used):
    from rnnbench.bench.speed import measure_quietly

    timer = _ScriptedTimer(shares)
    stats, n = measure_quietly(timer, None, None, retries)
    assert (timer.calls, stats.others_cpu, n) == (calls, kept, used)
    assert any(w.startswith("busy:") for w in stats.warnings) == (kept > BUSY_LIMIT)


def test_retries_are_shared_by_the_measurements_of_one_case():
    from rnnbench.bench.speed import measure_quietly

    timer = _ScriptedTimer([0.4, 0.4, 0.4])
    _, used = measure_quietly(timer, None, None, 2, used=1)
    assert used == 2 and timer.calls == 2


def test_drift_is_the_change_of_the_yardstick():
    from rnnbench.bench.reference import drift
    assert drift({"time_s": 2.0}, {"time_s": 3.0}) == pytest.approx(0.5)
    assert drift({"time_s": 3.0}, {"time_s": 2.0}) == pytest.approx(0.5)
    assert drift({"time_s": 2.0}, {"time_s": 2.0}) == 0.0


def test_a_case_records_its_yardstick_and_flags_a_large_drift(monkeypatch):
    from rnnbench.bench import speed
    from rnnbench.case import Case

    yardsticks = iter([{"time_s": 1e-3, "time_s_min": 0.9e-3}, {"time_s": 1.5e-3, "time_s_min": 1.4e-3}])
    monkeypatch.setattr(speed, "_yardstick", lambda device, s, warnings: next(yardsticks))
    case = Case("speed", "gru", "irc", batch=2, seq_len=3, input_size=4, hidden_size=5)
    row = speed.measure_speed(case, speed.SpeedSettings(min_run_time=0.01, sample_time=0.001,
                                                        flops=False))
    m = row.metrics
    assert m["reference_time_s"] == pytest.approx(1.25e-3) and m["reference_time_s_min"] == 0.9e-3
    assert m["host_drift"] == pytest.approx(0.5)
    assert any(w.startswith("drift: a fixed matrix product ran 50% slower") for w in row.warnings)


def test_the_reference_uses_the_one_harness_on_a_known_product():
    from rnnbench.bench.reference import reference_time
    ref = reference_time(size=64, min_run_time=0.01)
    assert ref["kind"] == "matmul-64" and ref["samples"] >= 5 and ref["number"] >= 1


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux affinity")
def test_pinning_checks_its_cpus_and_sets_the_affinity(monkeypatch):
    from rnnbench import devices
    from rnnbench.errors import RnnbenchError

    seen = []
    monkeypatch.setattr(devices.os, "sched_setaffinity", lambda tid, cpus: seen.append((tid, cpus)))
    allowed = sorted(os.sched_getaffinity(0))
    threads = {int(t) for t in os.listdir("/proc/self/task")}
    before = devices.pin_cpus(allowed[0])
    # every thread of the process moves (torch's workers keep their own affinity otherwise)
    assert {t for t, _ in seen} >= threads and {frozenset(c) for _, c in seen} == {frozenset({allowed[0]})}
    assert before == set(allowed)
    seen.clear()
    devices.unpin(before)
    assert {frozenset(c) for _, c in seen} == {frozenset(allowed)}
    seen.clear()
    with devices.pinned_to(allowed[:2]):
        assert {frozenset(c) for _, c in seen} == {frozenset(allowed[:2])}
        seen.clear()
    assert {frozenset(c) for _, c in seen} == {frozenset(allowed)}      # given back after the block
    seen.clear()
    assert devices.pin_cpus(None) is None and seen == []
    with pytest.raises(RnnbenchError, match="cannot pin to CPU"):
        devices.pin_cpus([max(allowed) + 1000])
    with pytest.raises(RnnbenchError, match="must be CPU numbers"):
        devices.pin_cpus(["one"])


def test_speed_pin_cpus_flag_refuses_a_cpu_it_may_not_use():
    from typer.testing import CliRunner

    from rnnbench.cli import app
    r = CliRunner().invoke(app, ["speed", "--cell", "gru", "-B", "1", "-T", "2", "-N", "4", "-M", "4",
                                 "--pin-cpus", "100000"])
    assert r.exit_code == 2 and "cannot pin to CPU(s) [100000]" in r.output


def test_a_failing_yardstick_costs_its_metrics_not_the_case(monkeypatch):
    from rnnbench.bench import speed
    from rnnbench.case import Case

    calls = []

    def broken(device, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("device lost")
        return {"time_s": 1e-3, "time_s_min": 1e-3}

    monkeypatch.setattr(speed, "reference_time", broken)
    case = Case("speed", "gru", "irc", batch=2, seq_len=3, input_size=4, hidden_size=5)
    row = speed.measure_speed(case, speed.SpeedSettings(min_run_time=0.01, sample_time=0.001,
                                                        flops=False))
    assert row.status == "ok" and "reference_time_s" not in row.metrics
    assert "no yardstick (RuntimeError: device lost)" in row.warnings
