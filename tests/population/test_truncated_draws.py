"""The covariate draws (and the protocol's check of truncated distributions) use SciPy's normal and log-normal cdf/ppf arithmetic without importing
scipy.stats (a second per worker process): the two must agree to the bit, or patients would
change with the import."""

import numpy as np
import pytest
from scipy import stats

from cartwin.population.distributions import LogNormal, Normal

EDGES = np.array([0.0, 5e-324, 1e-300, 1e-12, 0.025, 0.5, 0.975, 1 - 1e-12, np.nextafter(1.0, 0.0), 1.0])


@pytest.mark.parametrize("loc, scale", [(0.0, 1.0), (161.0, 6.0), (55.0, 1e-300), (-3.5, 250.0)])
def test_normal_cdf_and_ppf_are_scipys_to_the_bit(loc, scale):
    ours, scipys = Normal(loc, scale), stats.norm(loc, scale)
    x = np.concatenate([[-np.inf, np.inf, np.nan, loc], loc + scale * np.random.default_rng(1).normal(size=2000) * 3])
    assert np.array_equal(ours.cdf(x), scipys.cdf(x), equal_nan=True)
    assert np.array_equal(ours.sf(x), scipys.sf(x), equal_nan=True)
    q = np.concatenate([EDGES, np.random.default_rng(2).random(2000), [-0.1, 1.1, np.nan]])
    assert np.array_equal(ours.ppf(q), scipys.ppf(q), equal_nan=True)
    for value in (loc - scale, loc + 2 * scale):  # scalars stay scalars
        assert ours.cdf(value) == scipys.cdf(value) and np.ndim(ours.cdf(value)) == 0


@pytest.mark.parametrize("s, scale", [(0.15, 55.0), (0.7, 200.0), (np.sqrt(np.log1p(0.9 ** 2)), 0.6), (1e-300, 60.0)])
def test_lognormal_cdf_and_ppf_are_scipys_to_the_bit(s, scale):
    ours, scipys = LogNormal(s, scale), stats.lognorm(s=s, scale=scale)
    x = np.concatenate([[0.0, -1.0, np.inf, np.nan, scale], scale * np.exp(np.random.default_rng(3).normal(size=2000))])
    assert np.array_equal(ours.cdf(x), scipys.cdf(x), equal_nan=True)
    assert np.array_equal(ours.sf(x), scipys.sf(x), equal_nan=True)
    q = np.concatenate([EDGES, np.random.default_rng(4).random(2000), [-0.1, 1.1, np.nan]])
    assert np.array_equal(ours.ppf(q), scipys.ppf(q), equal_nan=True)
    assert ours.cdf(40.0) == scipys.cdf(40.0) and np.ndim(ours.ppf(0.3)) == 0
