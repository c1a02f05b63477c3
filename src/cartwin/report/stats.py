"""Interval estimates for the report's tables.

Proportions: exact Clopper-Pearson intervals (beta quantiles). Differences of proportions between
arms: Newcombe's hybrid score interval (Newcombe 1998, Stat Med 17:873-890, method 10), built from
the two Wilson score intervals; it keeps its coverage near the nominal level for small arms and for
proportions near 0 or 1, where the Wald interval fails. Ratios of geometric means (CAR-T Cmax and
AUC): a Welch t interval on the log scale, back-transformed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    estimate: float
    lower: float
    upper: float


def clopper_pearson(k: int, n: int, level: float = LEVEL) -> Interval:
    """Exact binomial interval for k successes in n trials; ``nan`` everywhere when n is 0."""
    if n <= 0:
        return Interval(math.nan, math.nan, math.nan)
    if not 0 <= k <= n:
        raise ValueError(f"k={k} successes out of n={n} trials")
    alpha = 1.0 - level
    lower = 0.0 if k == 0 else float(stats.beta.ppf(alpha / 2, k, n - k + 1))
    upper = 1.0 if k == n else float(stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return Interval(k / n, lower, upper)


def wilson(k: int, n: int, level: float = LEVEL) -> Interval:
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
