"""Replicate trials drawn from virtual patients agree with the binomial law."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from cartwin.design.trials import replicate_trials


@pytest.mark.parametrize("size,at_least", [(4, 3), (40, 30)])
def test_replicate_trials_match_the_binomial_probability(size, at_least):
    met = np.array([1.0] * 160 + [0.0] * 40)  # 80% of the virtual patients meet the endpoint
    answer = replicate_trials(met, "remission_m6", size, at_least=at_least, replicates=20000, seed=3)
    exact = stats.binom.sf(at_least - 1, size, 0.8)  # P(X >= at_least), X ~ Bin(size, 0.8)
    assert answer.exact == pytest.approx(exact)
    assert answer.mc_lower <= exact <= answer.mc_upper
    assert abs(answer.estimate - exact) < 0.02
    # the population interval reflects 200 virtual patients, wider than the Monte Carlo one
    assert answer.population_lower < exact < answer.population_upper
    assert answer.population_upper - answer.population_lower > answer.mc_upper - answer.mc_lower


def test_not_evaluable_patients_count_as_not_meeting_it():
    met = np.array([1.0] * 50 + [np.nan] * 50)
    answer = replicate_trials(met, "remission_m6", 4, at_least=4, replicates=5000, seed=1)
    assert answer.exact == pytest.approx(0.5 ** 4)


def test_at_most_counts_trials_with_few_events():
    met = np.array([1.0] * 10 + [0.0] * 90)  # 10% with a grade >= 3 event
    answer = replicate_trials(met, "neutropenia_grade3", 40, at_most=2, replicates=20000, seed=2)
    assert answer.exact == pytest.approx(stats.binom.cdf(2, 40, 0.1))
    assert answer.mc_lower <= answer.exact <= answer.mc_upper


def test_same_seed_same_answer():
    met = np.random.default_rng(0).integers(0, 2, 100).astype(float)
    a = replicate_trials(met, "x", 4, at_least=3, replicates=1000, seed=9)
    b = replicate_trials(met, "x", 4, at_least=3, replicates=1000, seed=9)
    assert a == b
