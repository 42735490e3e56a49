"""Verdicts from paired rounds: the statistics of `rnnbench ab`. Pure functions, no I/O.

Each round measures base and head once each, in fresh processes, back to back (in random order),
so a round's two numbers share the machine's state of the moment. The evidence is the per-round
ratio head/base; on a log scale the ratios are differences d_r = ln(head_r / base_r), and a
change of the code shifts every d_r alike, while the machine's drift between rounds cancels.

- The estimate is the Hodges-Lehmann estimator of the pseudo-median of d (the median of the
  Walsh averages (d_i + d_j) / 2, i <= j), reported as a ratio exp(HL): robust to the round that
  landed in a slow state, which a mean is not.
- The interval is the exact Wilcoxon signed-rank confidence interval of that pseudo-median (order
  statistics of the Walsh averages), assuming only that d is symmetric about its centre.
- A slowdown fails a check when the signed-rank test rejects "the ratio is at most 1 + threshold":
  a minimum effect, so a real but harmless 0.5% change of layout is not a regression, and
  unchanged code (ratio 1) is far from the boundary. The p-values of every judged case are
  Holm-corrected together, so the false-alarm rate holds for the whole job, not per case.

Why not scipy: the exact signed-rank distribution is a 10-line dynamic programme over integer
subset sums; taking scipy as a run-time dependency for it would not serve users better.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from functools import lru_cache


@lru_cache(maxsize=128)
def signed_rank_counts(n: int) -> tuple[int, ...]:
    """How many of the 2^n sign patterns give each rank sum T+ = 0..n(n+1)/2 (ranks 1..n)."""
    counts = [1] + [0] * (n * (n + 1) // 2)
    top = 0
    for r in range(1, n + 1):
        top += r
        for t in range(top, r - 1, -1):
            counts[t] += counts[t - r]
    return tuple(counts)


def _ranks_abs(d: list[float]) -> list[float]:
    """Average ranks of |d| (1-based)."""
    order = sorted(range(len(d)), key=lambda i: abs(d[i]))
    ranks = [0.0] * len(d)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and abs(d[order[j + 1]]) == abs(d[order[i]]):
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def signed_rank_p_greater(d: list[float]) -> float:
    """One-sided p-value of the Wilcoxon signed-rank test that d is centred above 0.

    Zeros are dropped (Wilcoxon's convention). The p-value is exact: the permutation distribution
    of T+ over the 2^n sign patterns of the observed ranks, mid-ranks of ties included (doubled,
    so every rank is an integer); a normal approximation would be anti-conservative at the small
    n of a job, exactly where a false alarm costs most."""
    d = [v for v in d if v != 0]
    n = len(d)
    if n == 0:
        return 1.0
    doubled = [round(2 * r) for r in _ranks_abs(d)]
    t_plus = sum(r for r, v in zip(doubled, d) if v > 0)
    counts = [1] + [0] * sum(doubled)
    top = 0
    for r in doubled:
        top += r
        for t in range(top, r - 1, -1):
            counts[t] += counts[t - r]
    return sum(counts[t_plus:]) / 2 ** n


def _critical(n: int, alpha: float) -> int:
    """The smallest c with P(T+ >= c) <= alpha under the null, for n pairs without ties; n(n+1)/2
    + 1 when no c is small enough (too few rounds for that level)."""
    counts = signed_rank_counts(n)
    total = 2 ** n
    tail = 0
    top = len(counts) - 1
    for c in range(top, -1, -1):
        if (tail + counts[c]) / total > alpha:
            return c + 1
        tail += counts[c]
    return 0


def walsh_averages(d: list[float]) -> list[float]:
    return sorted((d[i] + d[j]) / 2 for i in range(len(d)) for j in range(i, len(d)))


def hodges_lehmann(d: list[float]) -> float:
    return statistics.median(walsh_averages(d))


def signed_rank_interval(d: list[float], confidence: float) -> tuple[float, float]:
    """The two-sided Wilcoxon interval of the pseudo-median of d at ``confidence`` (-inf/inf ends
    when there are too few values to reach that confidence)."""
    n = len(d)
    if n == 0:
        return -math.inf, math.inf
    w = walsh_averages(d)
    c = _critical(n, (1 - confidence) / 2)
    big = len(w)
    if c > big:
        return -math.inf, math.inf
    # #(Walsh averages > theta) >= c rejects theta from below: the bound is the c-th largest
    lo = w[big - c] if c >= 1 else -math.inf
    hi = w[c - 1] if c >= 1 else math.inf
    return lo, hi


def min_p_value(n: int) -> float:
    """The smallest p-value n pairs can give: every round pointing the same way."""
    return 0.5 ** n


def holm(pvalues: list[float], alpha: float) -> list[bool]:
    """Holm's step-down: which hypotheses are rejected with the family-wise error rate <= alpha."""
    order = sorted(range(len(pvalues)), key=pvalues.__getitem__)
    rejected = [False] * len(pvalues)
    m = len(pvalues)
    for k, i in enumerate(order):
        if pvalues[i] > alpha / (m - k):
            break
        rejected[i] = True
    return rejected


@dataclass
class PairedEstimate:
    n: int                       # rounds that gave a pair
    ratio: float                 # exp(Hodges-Lehmann of the log ratios)
    low: float                   # the interval, as ratios
    high: float
    p_slower: float              # H0: ratio <= 1 + threshold
    p_faster: float              # H0: ratio >= 1 / (1 + threshold)
    round_ratios: list[float]


def estimate(pairs: list[tuple[float, float]], *, threshold: float, confidence: float
             ) -> PairedEstimate | None:
    """The head/base ratio from (base, head) pairs of positive numbers; None without a usable pair."""
    d = [math.log(h / b) for b, h in pairs if b > 0 and h > 0 and math.isfinite(h / b)]
    if not d:
        return None
    lo, hi = signed_rank_interval(d, confidence)
    margin = math.log1p(threshold)
    return PairedEstimate(
        n=len(d), ratio=math.exp(hodges_lehmann(d)), low=math.exp(lo) if lo > -math.inf else 0.0,
        high=math.exp(hi) if hi < math.inf else math.inf,
        p_slower=signed_rank_p_greater([v - margin for v in d]),
        p_faster=signed_rank_p_greater([-margin - v for v in d]),
        round_ratios=[math.exp(v) for v in d])
