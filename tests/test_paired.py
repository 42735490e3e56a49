"""The statistics of `rnnbench ab` on synthetic pairs whose answer is known."""

import math
import random

import pytest
from scipy import stats

from rnnbench import paired


def test_signed_rank_p_value_matches_scipy_exact_and_with_ties():
    rng = random.Random(3)
    for n in (4, 7, 10, 16, 25):
        for _ in range(4):
            d = [rng.gauss(0.01, 0.03) for _ in range(n)]
            want = stats.wilcoxon(d, alternative="greater", method="exact").pvalue
            assert paired.signed_rank_p_greater(d) == pytest.approx(want, rel=1e-12)
    # with ties: the permutation distribution of the mid-ranks, by brute force over sign patterns
    tied = [0.1, 0.1, -0.2, 0.3, 0.3, 0.3, -0.05, 0.4]
    ranks = stats.rankdata([abs(v) for v in tied])
    observed = sum(r for r, v in zip(ranks, tied) if v > 0)
    n = len(tied)
    at_least = sum(sum(r for i, r in enumerate(ranks) if mask >> i & 1) >= observed - 1e-9
                   for mask in range(2 ** n))
    assert paired.signed_rank_p_greater(tied) == pytest.approx(at_least / 2 ** n, rel=1e-12)


def test_signed_rank_counts_are_the_subset_sums_of_1_to_n():
    # brute force over every sign pattern
    for n in range(1, 9):
        brute = [0] * (n * (n + 1) // 2 + 1)
        for mask in range(2 ** n):
            brute[sum(r for r in range(1, n + 1) if mask >> (r - 1) & 1)] += 1
        assert list(paired.signed_rank_counts(n)) == brute


def test_interval_is_the_textbook_one_for_ten_pairs():
    # n = 10, 95% two-sided: the critical lower-tail T is 8, so the interval is the 9th smallest and
    # the 9th largest of the 55 Walsh averages
    d = [0.3, -0.1, 0.25, 0.7, 0.05, 0.4, -0.2, 0.15, 0.6, 0.35]
    w = paired.walsh_averages(d)
    assert paired.signed_rank_interval(d, 0.95) == (w[8], w[-9])


def test_interval_covers_the_true_ratio_as_often_as_it_says():
    rng = random.Random(11)
    true, hits, trials = 1.05, 0, 400
    for _ in range(trials):
        pairs = [(1.0, true * math.exp(rng.gauss(0, 0.03))) for _ in range(12)]
        est = paired.estimate(pairs, threshold=0.0, confidence=0.95)
        hits += est.low <= true <= est.high
    assert 0.92 <= hits / trials <= 0.99  # exact for symmetric noise: 95% (a discrete level)


def test_estimate_recovers_a_planted_ratio_despite_an_outlier_round():
    rng = random.Random(5)
    pairs = [(b, b * 1.10 * math.exp(rng.gauss(0, 0.01)))
             for b in (rng.uniform(1, 3) for _ in range(10))]   # the machine's speed drifts 3x
    pairs[3] = (1.0, 2.5)                                        # one round in a slow state
    est = paired.estimate(pairs, threshold=0.02, confidence=0.95)
    assert est.ratio == pytest.approx(1.10, rel=0.01)
    assert est.low > 1.02 and est.p_slower < 0.01


def test_unchanged_code_is_far_from_the_threshold():
    rng = random.Random(8)
    pairs = [(1.0, math.exp(rng.gauss(0, 0.03))) for _ in range(10)]
    est = paired.estimate(pairs, threshold=0.02, confidence=0.95)
    assert est.p_slower > 0.05 and est.p_faster > 0.05


def test_false_alarm_rate_of_a_job_holds_over_many_cases():
    """A/A with 20 cases per job: Holm keeps the chance of any false alarm per job under alpha,
    even with the threshold at zero (the threshold only makes it rarer)."""
    rng = random.Random(21)
    jobs, alarms = 300, 0
    for _ in range(jobs):
        ps = [paired.estimate([(1.0, math.exp(rng.gauss(0, 0.05))) for _ in range(10)],
                              threshold=0.0, confidence=0.95).p_slower for _ in range(20)]
        alarms += any(paired.holm(ps, 0.05))
    assert alarms / jobs <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / jobs)


def test_holm_step_down():
    assert paired.holm([0.01, 0.04, 0.03, 0.005], 0.05) == [True, False, False, True]
    assert paired.holm([0.001, 0.002, 0.003], 0.05) == [True, True, True]
    assert paired.holm([0.2], 0.05) == [False]


def test_too_few_rounds_can_never_reject():
    assert paired.min_p_value(4) == 1 / 16
    est = paired.estimate([(1.0, 2.0)] * 4, threshold=0.0, confidence=0.95)
    assert est.p_slower == pytest.approx(1 / 16)
    assert est.low == 0.0 and est.high == math.inf  # 4 pairs cannot reach 95%


def test_pairs_with_a_non_positive_time_are_left_out():
    assert paired.estimate([(0.0, 1.0), (1.0, -1.0)], threshold=0.0, confidence=0.9) is None
    est = paired.estimate([(0.0, 1.0)] + [(1.0, 1.2)] * 6, threshold=0.0, confidence=0.9)
    assert est.n == 6 and est.ratio == pytest.approx(1.2)
