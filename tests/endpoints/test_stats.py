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
