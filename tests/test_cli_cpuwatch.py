"""The CPU watch reads the kernel's counters through psutil; checked against /proc/stat itself."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rnnbench.bench.timing import _proc_stat


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="Linux only")
def test_counters_match_proc_stat():
    hz = os.sysconf("SC_CLK_TCK")
    before = _proc_stat({0})
    fields = next(ln.split() for ln in Path("/proc/stat").read_text().splitlines()
                  if ln.startswith("cpu0 "))
    after = _proc_stat({0})
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) / hz for x in fields[1:9])
    want = (user + nice + system + irq + softirq, steal,
            user + nice + system + idle + iowait + irq + softirq + steal)
    for lo, ref, hi in zip(before, want, after):
        assert lo - 0.05 <= ref <= hi + 0.05  # the counters move while we read them


def test_unknown_cpus_give_nothing():
    assert _proc_stat({10_000}) is None
