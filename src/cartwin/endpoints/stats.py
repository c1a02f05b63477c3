"""Interval estimates for endpoint summaries.

Proportions: exact Clopper-Pearson intervals (beta quantiles). Differences of proportions between
arms: Newcombe's hybrid score interval (Newcombe 1998, Stat Med 17:873-890, method 10), built from
the two Wilson score intervals; it keeps its coverage near the nominal level for small arms and for
proportions near 0 or 1, where the Wald interval fails. Ratios of geometric means (CAR-T Cmax and
AUC): a Welch t interval on the log scale, back-transformed. Medians: the distribution-free exact
interval between two order statistics (binomial with p = 1/2; coverage at least the level).
Time to event: the Kaplan-Meier estimate with Greenwood's variance; the median's interval is
Brookmeyer and Crowley's (Biometrics 1982;38:29-41), the times whose pointwise log-log interval of
S(t) contains 0.5 (the default of SAS PROC LIFETEST).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# scipy.stats is imported by the functions that use it: it takes about a second to import, and
# every worker process of a run imports this module without summarising anything.
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    estimate: float
    lower: float
    upper: float


def clopper_pearson(k: int, n: int, level: float = LEVEL) -> Interval:
    """Exact binomial interval for k successes in n trials; ``nan`` everywhere when n is 0."""
    from scipy import stats
    if n <= 0:
        return Interval(math.nan, math.nan, math.nan)
    if not 0 <= k <= n:
        raise ValueError(f"k={k} successes out of n={n} trials")
    alpha = 1.0 - level
    lower = 0.0 if k == 0 else float(stats.beta.ppf(alpha / 2, k, n - k + 1))
    upper = 1.0 if k == n else float(stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return Interval(k / n, lower, upper)


def wilson(k: int, n: int, level: float = LEVEL) -> Interval:
    from scipy import stats
    if n <= 0:
        return Interval(math.nan, math.nan, math.nan)
    z = float(stats.norm.ppf(1 - (1 - level) / 2))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # At k = 0 (k = n) the lower (upper) bound is exactly 0 (1); the formula leaves rounding error.
    lower = 0.0 if k == 0 else centre - half
    upper = 1.0 if k == n else centre + half
    return Interval(p, lower, upper)


def newcombe_difference(k1: int, n1: int, k0: int, n0: int, level: float = LEVEL) -> Interval:
    """Difference p1 - p0 with Newcombe's hybrid score interval (method 10)."""
    if n1 <= 0 or n0 <= 0:
        return Interval(math.nan, math.nan, math.nan)
    a, b = wilson(k1, n1, level), wilson(k0, n0, level)
    p1, p0 = k1 / n1, k0 / n0
    d = p1 - p0
    lower = d - math.sqrt((p1 - a.lower) ** 2 + (b.upper - p0) ** 2)
    upper = d + math.sqrt((a.upper - p1) ** 2 + (p0 - b.lower) ** 2)
    return Interval(d, lower, upper)


def geometric_mean_ratio(mean_log1: float, var_log1: float, n1: int,
                         mean_log0: float, var_log0: float, n0: int, level: float = LEVEL) -> Interval:
    """Ratio of geometric means from per-arm mean and sample variance of log values (Welch)."""
    from scipy import stats
    if n1 < 2 or n0 < 2 or any(map(_missing, (mean_log1, var_log1, mean_log0, var_log0))):
        return Interval(math.nan, math.nan, math.nan)
    se2_1, se2_0 = var_log1 / n1, var_log0 / n0
    se = math.sqrt(se2_1 + se2_0)
    diff = mean_log1 - mean_log0
    if se == 0:
        return Interval(math.exp(diff), math.exp(diff), math.exp(diff))
    df = (se2_1 + se2_0) ** 2 / (se2_1 ** 2 / (n1 - 1) + se2_0 ** 2 / (n0 - 1)) if (se2_1 + se2_0) > 0 else n1 + n0 - 2
    t = float(stats.t.ppf(1 - (1 - level) / 2, df))
    return Interval(math.exp(diff), math.exp(diff - t * se), math.exp(diff + t * se))


def _missing(x: float | None) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def median_interval(values, level: float = LEVEL) -> Interval:
    """Sample median with the exact distribution-free interval [x_(j), x_(n-j+1)]: the largest j
    with P(Binomial(n, 1/2) <= j - 1) <= (1 - level) / 2. Bounds are ``nan`` when n is too small
    for any order statistic to give the level (n <= 5 at 95%)."""
    from scipy import stats
    x = np.sort(np.asarray([v for v in values if v is not None and not _missing(v)], dtype=float))
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan)
    alpha = 1.0 - level
    j = int(stats.binom.ppf(alpha / 2, n, 0.5))  # smallest j with P(B <= j) >= alpha/2
    while j >= 1 and stats.binom.cdf(j - 1, n, 0.5) > alpha / 2:
        j -= 1
    while stats.binom.cdf(j, n, 0.5) <= alpha / 2:
        j += 1
    median = float(np.median(x))
    if j < 1:
        return Interval(median, math.nan, math.nan)
    return Interval(median, float(x[j - 1]), float(x[n - j]))


@dataclass(frozen=True)
class KaplanMeier:
    """Kaplan-Meier estimate: distinct times, number at risk, events and censorings there, S(t)."""

    time: np.ndarray
    at_risk: np.ndarray
    events: np.ndarray
    censored: np.ndarray
    survival: np.ndarray
    greenwood: np.ndarray  # cumulative sum of d / (n (n - d)): Var(S) = S^2 x this

    @property
    def n(self) -> int:
        return int(self.at_risk[0]) if len(self.at_risk) else 0

    def quantile(self, p: float) -> float:
        """The p-th quantile of the event time: the smallest time at which S(t) <= 1 - p, or, where
        S(t) equals 1 - p on an interval, the middle of that interval (SAS PROC LIFETEST's
        definition; without censoring it is the sample quantile, the median the sample median);
        ``nan`` when S never falls that low (e.g. the median is not reached)."""
        target = 1.0 - p
        hit = np.flatnonzero(self.survival <= target + 1e-12)
        if not len(hit):
            return math.nan
        i = hit[0]
        if abs(self.survival[i] - target) <= 1e-12:
            below = np.flatnonzero(self.survival < target - 1e-12)
            if len(below):
                return float((self.time[i] + self.time[below[0]]) / 2)
        return float(self.time[i])

    def median(self, level: float = LEVEL) -> Interval:
        """KM median with Brookmeyer-Crowley limits (log-log pointwise intervals of S)."""
        from scipy import stats
        z = float(stats.norm.ppf(1 - (1 - level) / 2))
        s = self.survival
        with np.errstate(divide="ignore", invalid="ignore"):
            log_s = np.log(s)
            se = np.sqrt(self.greenwood) / np.abs(log_s)
            lower_s = np.where(s >= 1.0, 1.0, np.where(s <= 0.0, 0.0, s ** np.exp(z * se)))
            upper_s = np.where(s >= 1.0, 1.0, np.where(s <= 0.0, 0.0, s ** np.exp(-z * se)))
        lower_s = np.nan_to_num(lower_s, nan=0.0)
        upper_s = np.nan_to_num(upper_s, nan=1.0)
        first = lambda mask: float(self.time[np.flatnonzero(mask)[0]]) if mask.any() else math.nan  # noqa: E731
        # lower limit: the first time whose interval reaches down to 0.5; upper limit: the first
        # time whose whole interval lies below 0.5
        return Interval(self.quantile(0.5), first(lower_s <= 0.5 + 1e-12), first(upper_s < 0.5 - 1e-12))


def kaplan_meier(time, event, count=None) -> KaplanMeier:
    """Kaplan-Meier estimate from per-patient (or grouped, with ``count``) times and event flags
    (True: the event; False: censored at that time). At a tie, events come before censorings."""
    t = np.asarray(time, dtype=float)
    e = np.asarray(event, dtype=bool)
    w = np.ones_like(t) if count is None else np.asarray(count, dtype=float)
    if not (t.shape == e.shape == w.shape):
        raise ValueError("time, event and count must have the same length")
    keep = ~np.isnan(t)
    t, e, w = t[keep], e[keep], w[keep]
    # one pass over the patients (a time per patient is common: interpolated days), not one per
    # distinct time; the sums are exact for the whole-number counts cartwin passes
    times, where = np.unique(t, return_inverse=True)
    events = np.bincount(where, weights=np.where(e, w, 0.0), minlength=times.size)
    censored = np.bincount(where, weights=np.where(e, 0.0, w), minlength=times.size)
    at_risk = w.sum() - np.concatenate([[0.0], np.cumsum(events + censored)[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(at_risk > 0, 1.0 - events / at_risk, 1.0)
        term = np.where(at_risk > events, events / (at_risk * (at_risk - events)), np.where(events > 0, np.inf, 0.0))
    survival = np.cumprod(factor)
    return KaplanMeier(times, at_risk, events, censored, survival, np.cumsum(term))
