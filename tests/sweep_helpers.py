"""A stand-in for the measure function, for tests of sweeps (run, resume, shards, merge): rows come
at once with a time fixed by the case key, so the tests check bookkeeping, not timing."""

from __future__ import annotations

import sys
import types
import zlib

from rnnbench.bench.dispatch import BENCHES

FAKE_REF = {"kind": "matmul-512", "time_s": 0.002, "time_s_min": 0.0019}


def fake_time(key: str) -> float:
    return (zlib.crc32(key.encode()) % 1000 + 1) * 1e-6


def ok_row(case):
    return case.row(metrics={"time_s_median": fake_time(case.key)})


def fake_dispatch(monkeypatch):
    """Puts a stand-in module where the CLI looks for the measure function."""
    mod = types.ModuleType("rnnbench.bench.dispatch")
    mod.BENCHES = BENCHES
    mod.measure = ok_row
    monkeypatch.setitem(sys.modules, "rnnbench.bench.dispatch", mod)
    # the matrix-product yardstick is real timing too: a fixed stand-in keeps the tests fast
    monkeypatch.setattr("rnnbench.bench.reference.run_reference",
                        lambda device, threads=None, warn=None: dict(FAKE_REF))
    return mod
