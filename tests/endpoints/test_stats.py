"""Interval methods against published worked examples and scipy's own implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from cartwin.endpoints import stats


@pytest.mark.parametrize("k,n", [(0, 4), (4, 4), (2, 4), (1, 10), (37, 1000), (999, 1000), (0, 1)])
def test_clopper_pearson_equals_scipy_exact(k, n):
    iv = stats.clopper_pearson(k, n)
    ref = sps.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    assert iv.estimate == k / n
    assert math.isclose(iv.lower, ref.low, abs_tol=1e-12) and math.isclose(iv.upper, ref.high, abs_tol=1e-12)


def test_clopper_pearson_closed_forms_at_the_edges():
    # all 4 of 4: lower bound (alpha/2)^(1/n); none of 10: upper bound 1 - (alpha/2)^(1/n)
    assert math.isclose(stats.clopper_pearson(4, 4).lower, 0.025 ** 0.25, rel_tol=1e-12)
    assert math.isclose(stats.clopper_pearson(0, 10).upper, 1 - 0.025 ** 0.1, rel_tol=1e-12)
    assert math.isnan(stats.clopper_pearson(0, 0).estimate)
    with pytest.raises(ValueError):
        stats.clopper_pearson(5, 4)


def test_wilson_matches_newcombe_1998_single_proportion_example():
    # Newcombe, Stat Med 1998;17:857-872, Table II: 81/263 -> 0.2553 to 0.3662 (method 3, Wilson)
    iv = stats.wilson(81, 263)
    assert (round(iv.lower, 4), round(iv.upper, 4)) == (0.2553, 0.3662)
    assert stats.wilson(0, 10).lower == 0.0 and stats.wilson(10, 10).upper == 1.0


@pytest.mark.parametrize("k1,n1,k0,n0,lower,upper", [
    # Newcombe, Stat Med 1998;17:873-890, Table II, method 10 (hybrid score)
    (56, 70, 48, 80, 0.0524, 0.3339),
    (9, 10, 3, 10, 0.1705, 0.8090),
    (6, 7, 2, 7, 0.0582, 0.8062),
    (5, 56, 0, 29, -0.0381, 0.1926),
    (0, 10, 0, 20, -0.1611, 0.2775),
    (10, 10, 0, 20, 0.6791, 1.0000),
])
def test_newcombe_difference_matches_the_published_table(k1, n1, k0, n0, lower, upper):
    iv = stats.newcombe_difference(k1, n1, k0, n0)
    assert math.isclose(iv.estimate, k1 / n1 - k0 / n0)
    assert (round(iv.lower, 4), round(iv.upper, 4)) == (lower, upper)


def test_geometric_mean_ratio_equals_welch_t_on_logs():
    rng = np.random.default_rng(3)
    a, b = rng.lognormal(2.0, 0.6, 40), rng.lognormal(1.6, 0.9, 25)
    la, lb = np.log(a), np.log(b)
    iv = stats.geometric_mean_ratio(la.mean(), la.var(ddof=1), len(a), lb.mean(), lb.var(ddof=1), len(b))
    ref = sps.ttest_ind(la, lb, equal_var=False).confidence_interval(0.95)
    assert math.isclose(iv.estimate, math.exp(la.mean() - lb.mean()), rel_tol=1e-12)
    assert math.isclose(iv.lower, math.exp(ref.low), rel_tol=1e-9)
    assert math.isclose(iv.upper, math.exp(ref.high), rel_tol=1e-9)
    assert math.isnan(stats.geometric_mean_ratio(0.0, 1.0, 1, 0.0, 1.0, 5).estimate)


# Freireich et al. 1963, 6-MP arm (remission duration in weeks; 0 = censored), the worked example of
# Kaplan-Meier estimation in most survival texts.
MP6_TIME = [6, 6, 6, 6, 7, 9, 10, 10, 11, 13, 16, 17, 19, 20, 22, 23, 25, 32, 32, 34, 35]
MP6_EVENT = [1, 1, 1, 0, 1, 0, 1, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0]


def test_kaplan_meier_matches_the_6mp_textbook_estimate():
    km = stats.kaplan_meier(MP6_TIME, MP6_EVENT)
    at_events = {t: round(s, 3) for t, s, d in zip(km.time, km.survival, km.events) if d}
    assert at_events == {6: 0.857, 7: 0.807, 10: 0.753, 13: 0.690, 16: 0.627, 22: 0.538, 23: 0.448}
    assert (km.n, int(km.events.sum()), int(km.censored.sum())) == (21, 9, 12)


def test_km_median_interval_is_brookmeyer_crowley_log_log():
    # By hand: at t = 10, S = 0.7529 with Greenwood sum 0.016375, so the log-log lower limit of S is
    # 0.7529^exp(1.96 x 0.12797 / 0.28386) = 0.503 > 0.5; at t = 13 it is 0.6902^2.266 = 0.432 <= 0.5.
    # No time has its whole interval below 0.5: the upper limit is not reached.
    median = stats.kaplan_meier(MP6_TIME, MP6_EVENT).median()
    assert median.estimate == 23 and median.lower == 13 and math.isnan(median.upper)


def test_km_without_censoring_gives_the_sample_median():
    # S(t) is exactly 0.5 from 70 to 80: the median is the middle (the sample median, 75)
    km = stats.kaplan_meier([42, 70, 80, 102], [True] * 4)
    assert km.quantile(0.5) == 75.0 == float(np.median([42, 70, 80, 102]))
    assert math.isnan(stats.kaplan_meier([5, 9], [False, False]).median().estimate)  # not reached


def test_grouped_counts_equal_individual_rows():
    a = stats.kaplan_meier([3, 3, 5, 8, 8, 8], [1, 0, 1, 1, 1, 0])
    b = stats.kaplan_meier([3, 3, 5, 8, 8], [1, 0, 1, 1, 0], count=[1, 1, 1, 2, 1])
    assert np.array_equal(a.survival, b.survival) and a.median() == b.median()


def test_censored_patients_count_in_the_median():
    # Left out, the three censored at day 400 would give a median of 60; kept, they hold S above 0.5 longer.
    time, event = [30, 60, 90, 400, 400, 400], [True, True, True, False, False, False]
    assert float(np.median([t for t, e in zip(time, event) if e])) == 60
    assert stats.kaplan_meier(time, event).quantile(0.5) == 90


@pytest.mark.parametrize("n", [6, 10, 25, 101])
def test_median_interval_covers_at_least_the_level(n):
    x = np.arange(1.0, n + 1)
    iv = stats.median_interval(x)
    j = int(iv.lower)  # values are their ranks
    assert iv.upper == n - j + 1
    coverage = sps.binom.cdf(n - j, n, 0.5) - sps.binom.cdf(j - 1, n, 0.5)
    assert coverage >= 0.95 and iv.estimate == float(np.median(x))
    # one order statistic further in would no longer cover 95%
    assert sps.binom.cdf(n - j - 1, n, 0.5) - sps.binom.cdf(j, n, 0.5) < 0.95


def test_median_interval_needs_six_values_at_95_percent():
    assert math.isnan(stats.median_interval([1.0, 2, 3, 4, 5]).lower)
    assert stats.median_interval([1.0, 2, 3, 4, 5, 6]).lower == 1.0
