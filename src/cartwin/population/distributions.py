"""The normal and log-normal distributions of a protocol's covariates: cdf, survival function
and quantiles with scipy.stats' own arithmetic (SciPy's ``ndtr``/``ndtri``, standardised as
scipy.stats does, the same ends of the support), without importing scipy.stats, which takes
about a second in every worker process of a run. ``tests/population/test_truncated_draws.py``
checks them against scipy.stats to the bit.
"""

from __future__ import annotations

import numpy as np
from scipy import special


class Normal:
    """scipy.stats.norm(loc, scale)'s cdf, sf and ppf."""

    def __init__(self, loc: float, scale: float) -> None:
        self.loc, self.scale = loc, scale

    def cdf(self, x):
        return special.ndtr((np.asarray(x, dtype=np.float64) - self.loc) / self.scale)[()]

    def sf(self, x):
        return special.ndtr(-((np.asarray(x, dtype=np.float64) - self.loc) / self.scale))[()]

    def ppf(self, q):
        q = np.asarray(q, dtype=np.float64)
        # the support's ends at q = 0 and 1, as SciPy gives them; NaN outside [0, 1]
        return np.where(q == 0, -np.inf, np.where(q == 1, np.inf, special.ndtri(q) * self.scale + self.loc))[()]


class LogNormal:
    """scipy.stats.lognorm(s, scale=scale)'s cdf, sf and ppf."""

    def __init__(self, s: float, scale: float) -> None:
        self.s, self.scale = s, scale

    def cdf(self, x):
        z = np.asarray(x, dtype=np.float64) / self.scale
        with np.errstate(divide="ignore", invalid="ignore"):
            inside = special.ndtr(np.log(z) / self.s)
        return np.where(z <= 0, 0.0, np.where(z == np.inf, 1.0, inside))[()]

    def sf(self, x):
        z = np.asarray(x, dtype=np.float64) / self.scale
        with np.errstate(divide="ignore", invalid="ignore"):
            inside = special.ndtr(-(np.log(z) / self.s))
        return np.where(z <= 0, 1.0, np.where(z == np.inf, 0.0, inside))[()]

    def ppf(self, q):
        q = np.asarray(q, dtype=np.float64)
        return np.where(q == 0, 0.0, np.where(q == 1, np.inf, np.exp(self.s * special.ndtri(q)) * self.scale + 0.0))[()]

