"""Pooling the rounds of a suite run in several processes (`rnnbench run --rounds R`).

Why: on a shared or virtual machine one process can sit in a slow state for its whole life (where
its memory landed, which cores its threads got, what the host's other guests were doing): two runs
of the same case then differ by tens of percent while each is internally steady, so more samples in
one process do not help. pyperf's answer is to sample in several processes and pool; here each round
is a whole pass over the suite in a fresh process, so the rounds also spread over time. A pooled
median is a median over every sample of every round, so one round in a slow state moves it little.

Speed rows pool their raw samples and recompute every statistic from them; ``round_medians_s``
keeps each round's median so the spread between processes stays visible. Other rows (memory,
counts) are the first round's, with peaks taken as the largest seen. A case that failed in any
round is reported as that failure.
"""

from __future__ import annotations

import dataclasses
import statistics

from rnnbench import metrics as M
from rnnbench.bench.timing import TimingStats, difference
from rnnbench.results import Row


def pool(rounds: list[list[Row]]) -> list[Row]:
    """One row per case key, in first-seen order, from the rows of each round."""
    order: list[str] = []
    by_key: dict[str, list[tuple[int, Row]]] = {}
    for i, rows in enumerate(rounds, 1):
        for r in rows:
            if r.key not in by_key:
                order.append(r.key)
                by_key[r.key] = []
            by_key[r.key].append((i, r))
    return [_pool_case(by_key[k]) for k in order]


def _pool_case(rows: list[tuple[int, Row]]) -> Row:
    bad = [(i, r) for i, r in rows if r.status != "ok"]
    if bad:
        i, r = bad[0]
        return _with(r, labels={**r.labels, "rounds": str(len(rows))},
                     reason=f"{r.reason} (round {i})" if len(rows) > 1 else r.reason)
    first = rows[0][1]
    if first.bench != "speed" or not first.metrics.get("samples_s" if first.mode != "bwd" else
                                                         "samples_s_fwd_bwd"):
        metrics = dict(first.metrics)
        for name in metrics:
            if _pooling(name) == "max":  # peaks: the largest any round saw
                vals = [r.metrics.get(name) for _, r in rows if isinstance(r.metrics.get(name), (int, float))]
                metrics[name] = max(vals) if vals else metrics[name]
        metrics["rounds"] = len(rows)
        return _with(first, metrics=metrics)
    return _pool_speed(rows)


def _stats(rows: list[Row], suffix: str) -> TimingStats:
    samples = [s for r in rows for s in r.metrics.get(f"samples_s{suffix}") or []]
    return TimingStats(samples, inner=max(r.metrics.get(f"inner_repeats{suffix}", 1) for r in rows))


def _numbers(rows: list[Row], name: str) -> list[float]:
    return [r.metrics[name] for r in rows
            if isinstance(r.metrics.get(name), (int, float)) and not isinstance(r.metrics.get(name), bool)]


def _pool_speed(indexed: list[tuple[int, Row]]) -> Row:
    rows = [r for _, r in indexed]
    first = rows[0]
    metrics = dict(first.metrics)
    warnings: list[str] = []
    if first.mode == "bwd":
        total, fwd = _stats(rows, "_fwd_bwd"), _stats(rows, "_fwd_grad")
        metrics.update(difference(total, fwd))
        metrics.update(total.metrics("time_s_fwd_bwd"))
        metrics.update(fwd.metrics("time_s_fwd_grad"))
        warnings += [f"fwd+bwd {w}" for w in total.warnings] + [f"fwd with autograd {w}" for w in fwd.warnings]
    else:
        stats = _stats(rows, "")
        metrics.update(stats.metrics())
        warnings += stats.warnings
    median = metrics["time_s_median"]
    tokens = (first.batch or 0) * (first.seq_len or 0)
    positive = median is not None and median > 0
    metrics["tokens_per_s"] = tokens / median if positive and tokens else None
    if isinstance(metrics.get("flops"), (int, float)):
        metrics["flop_per_s"] = metrics["flops"] / median if positive else None
    # everything else the rows measured, pooled as rnnbench/metrics.py declares (the machine-watch
    # shares of a bwd row's two measurements carry a suffix and pool like their family)
    for name in first.metrics:
        how = _POOL.get(_pooling(name))
        vals = _numbers(rows, name) if how else []
        if vals:
            metrics[name] = how(vals)
    metrics["rounds"] = len(rows)
    # calls per sample may differ between rounds; inner_repeats keeps the largest
    metrics["round_inner_repeats"] = [r.metrics.get("inner_repeats") for r in rows]
    metrics["round_medians_s"] = [r.metrics.get("time_s_median") for r in rows]
    # a round's machine warnings stay, named by round; the noise warning is the pooled one
    for i, r in indexed:
        warnings += [f"round {i}: {w}" for w in r.warnings if "busy:" in w or w.startswith("drift:")]
    return _with(first, metrics=metrics, warnings=warnings)


_POOL = {"max": max, "min": min, "median": statistics.median, "sum": sum}


def _pooling(name: str) -> str | None:
    m = M.lookup(name) or M.lookup(name.rsplit("_fwd_", 1)[0])
    return m.pool if m else None


def _with(row: Row, **changes) -> Row:
    return dataclasses.replace(row, **changes)
