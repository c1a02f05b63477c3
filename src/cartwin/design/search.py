"""The search: the least lymphodepletion intensity at which every requirement holds.

Why bisection along intensity, with patients added as the interval narrows (successive halving of
the candidates, doubling of the patients). The requirements are responses that grow with
lymphodepletion: more fludarabine and cyclophosphamide leave fewer host T and NK cells and more
homeostatic cytokine, so the CAR-T cells expand more and deplete B cells more deeply; with common
random numbers each virtual patient's response is a function of the intensity alone. So the
feasible intensities of a product and dose form an interval [t*, 1], and the least feasible grid
level is found by bisection in ceil(log2(G + 1)) looks instead of G. Most looks are far from t*,
where few patients suffice to tell: a look starts with ``start_patients`` and doubles them until
the requirement's interval (Clopper-Pearson at ``screening_level``) lies wholly above or below its
threshold, or all patients are used and the decision is the goal's own rule (the estimate, or the
95% lower bound). Because patients are common, the patients of a small look are the first ones of
a larger one: extending a look simulates only the patients it adds.

Bayesian optimisation was not chosen: the objective is a monotone threshold crossing over one
ordered dimension per product and dose, where bisection is optimal and needs no surrogate model
to trust; the few doses of a design are compared exhaustively. A full grid (``compare_grid``)
evaluates every level with all patients; the report prints both counts and whether the answers
agree.

The functions here see only counts: ``looks(level, m)`` returns, for each requirement, the
successes and the evaluable patients among the first ``m`` patients at that grid level. They know
no simulation, so a synthetic response surface tests them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from cartwin.endpoints.stats import clopper_pearson

Counts = list[tuple[int, int]]  # per requirement: (successes, evaluable)


@dataclass(frozen=True)
class Rule:
    thresholds: tuple[float, ...]  # per requirement: the proportion that must meet it
    decide_on: str = "estimate"  # or "lower_bound"
    screening_level: float = 0.99

    def holds(self, counts: Counts) -> bool:
        """The goal's rule, on all patients."""
        for (k, n), thr in zip(counts, self.thresholds):
            if n == 0:
                return False
            value = k / n if self.decide_on == "estimate" else clopper_pearson(k, n).lower
            if value < thr:
                return False
        return True

    def screen(self, counts: Counts) -> bool | None:
        """True when every requirement is clearly met, False when one is clearly missed (its
        interval at the screening level wholly above / below its threshold), None otherwise."""
        clear = True
        for (k, n), thr in zip(counts, self.thresholds):
            if n == 0:
                clear = False
                continue
            iv = clopper_pearson(k, n, self.screening_level)
            if iv.upper < thr:
                return False
            if iv.lower < thr:
                clear = False
        return True if clear else None


@dataclass
class Look:
    level: int
    patients: int
    counts: Counts
    decision: bool | None


@dataclass
class SearchResult:
    answer: int | None  # least feasible grid level, None when none is
    looks: list[Look] = field(default_factory=list)
    patients: dict[int, int] = field(default_factory=dict)  # level -> most patients simulated there

    @property
    def patients_simulated(self) -> int:
        return sum(self.patients.values())


def feasible(level: int, looks: Callable[[int, int], Counts], rule: Rule, n: int, start: int,
             result: SearchResult) -> bool:
    m = min(start, n)
    while True:
        counts = looks(level, m)
        result.patients[level] = max(result.patients.get(level, 0), m)
        decision = rule.screen(counts) if m < n else rule.holds(counts)
        result.looks.append(Look(level, m, counts, decision))
        if decision is not None:
            return decision
        m = min(2 * m, n)


def bisection(levels: int, looks: Callable[[int, int], Counts], rule: Rule, n: int, start: int) -> SearchResult:
    """Least grid level in 0..levels-1 at which the rule holds, assuming that once it holds it
    holds at every higher level."""
    result = SearchResult(None)
    lo, hi = -1, levels  # invariant: lo fails (or is below the grid), hi holds (or is above it)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if feasible(mid, looks, rule, n, start, result):
            hi = mid
        else:
            lo = mid
    result.answer = hi if hi < levels else None
    return result


def full_grid(levels: int, looks: Callable[[int, int], Counts], rule: Rule, n: int) -> SearchResult:
    """Every level with all ``n`` patients; the answer is the least level at which the rule holds
    (with no assumption of monotonicity)."""
    result = SearchResult(None)
    for level in range(levels):
        counts = looks(level, n)
        ok = rule.holds(counts)
        result.looks.append(Look(level, n, counts, ok))
        result.patients[level] = n
        if ok and result.answer is None:
            result.answer = level
    return result


def grid_patients(levels: int, n: int) -> int:
    return levels * n


def bisection_looks_bound(levels: int) -> int:
    return math.ceil(math.log2(levels + 1))
