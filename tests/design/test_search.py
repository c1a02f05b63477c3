"""The search on synthetic response surfaces: no simulation, known optima."""

from __future__ import annotations

import numpy as np
import pytest

from cartwin.design.search import Rule, bisection, full_grid, grid_patients


def surface(thresholds: list[np.ndarray], levels: list[float]):
    """Each virtual patient i meets requirement r at intensity t when t >= thresholds[r][i] (a
    response that grows with intensity); looks() counts among the first m patients."""
    def looks(level: int, m: int):
        return [(int((u[:m] <= levels[level]).sum()), m) for u in thresholds]
    return looks


def true_optimum(thresholds, levels, required) -> int | None:
    """Brute force over the grid, written out independently of the search: the least level where the
    share of all patients meeting each requirement reaches its threshold."""
    for i, t in enumerate(levels):
        if all(np.mean(u <= t) >= q for u, q in zip(thresholds, required)):
            return i
    return None


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_bisection_finds_the_known_optimum_with_fewer_patients_than_the_grid(seed):
    rng = np.random.default_rng(seed)
    n, levels = 400, [i / 32 for i in range(33)]
    # two requirements: remission-like (most respond early) and aplasia-like (needs more intensity)
    centre = rng.uniform(0.3, 0.6)
    thresholds = [rng.beta(2, 5, n) * centre * 1.5, rng.normal(centre, 0.08, n)]
    required = (0.9, 0.85)
    rule = Rule(required)
    expected = true_optimum(thresholds, levels, required)
    assert expected is not None and 0 < expected < len(levels) - 1  # the surface has an interior optimum
    found = bisection(len(levels), surface(thresholds, levels), rule, n, start=25)
    assert found.answer == expected
    grid = full_grid(len(levels), surface(thresholds, levels), rule, n)
    assert grid.answer == expected
    assert grid.patients_simulated == grid_patients(len(levels), n)
    # 33 levels x 400 patients on the grid; bisection looks at <= 6 levels, most with few patients
    assert found.patients_simulated < 0.2 * grid.patients_simulated
    assert len({look.level for look in found.looks}) <= 6


def test_no_feasible_level_is_reported_as_none():
    n, levels = 200, [i / 8 for i in range(9)]
    thresholds = [np.full(n, 2.0)]  # never met
    found = bisection(len(levels), surface(thresholds, levels), Rule((0.5,)), n, start=10)
    assert found.answer is None


def test_every_level_feasible_gives_the_least_level():
    n, levels = 100, [i / 8 for i in range(9)]
    found = bisection(len(levels), surface([np.full(n, -1.0)], levels), Rule((0.9,)), n, start=10)
    assert found.answer == 0


def test_a_look_near_the_threshold_uses_all_patients_and_the_goal_rule():
    # 90% exactly at level 4: the screening interval cannot clear 0.9 with few patients
    n, levels = 200, [i / 8 for i in range(9)]
    u = np.where(np.arange(n) % 10 == 0, 0.9, 0.45)  # 90% meet from intensity 0.5 (level 4)
    found = bisection(len(levels), surface([u], levels), Rule((0.9,)), n, start=10)
    assert found.answer == 4
    at_answer = [look for look in found.looks if look.level == 4]
    assert at_answer[-1].patients == n and at_answer[-1].decision is True


def test_lower_bound_rule_demands_more_than_the_estimate():
    rule_est, rule_lb = Rule((0.9,)), Rule((0.9,), decide_on="lower_bound")
    assert rule_est.holds([(92, 100)])
    assert not rule_lb.holds([(92, 100)])  # 95% CI lower bound about 0.85
    assert rule_lb.holds([(990, 1000)])


def test_screen_decides_only_when_the_interval_clears_the_threshold():
    rule = Rule((0.9,))
    assert rule.screen([(5, 25)]) is False  # clearly below
    assert rule.screen([(25, 25)]) is None  # 25/25: the 99% lower bound (0.81) is below 0.9
    assert rule.screen([(200, 200)]) is True
    assert rule.screen([(5, 25), (25, 25)]) is False  # one requirement clearly missed decides
