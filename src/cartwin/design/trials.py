"""Trial-level answers: how likely is a trial of a given size to show a result?

Replicate trials are drawn by resampling the virtual patients of a design point with replacement,
``size`` at a time; a trial succeeds when at least (or at most) the asked number of its patients
meet a binary endpoint. A patient outside the endpoint's denominator (not evaluable, or a failed
solve) counts as not meeting it, as a trial's non-responder imputation would count a patient
without an assessment.

Two intervals: the Monte Carlo interval of the replicate count (Clopper-Pearson over the
replicates, which more replicates shrink), and the interval from the finite virtual population
(percentile bootstrap: the virtual patients resampled, the trial probability computed exactly from
the binomial law of a trial drawn from them), which more virtual patients shrink.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cartwin.endpoints.stats import clopper_pearson

BOOTSTRAP = 1000


@dataclass(frozen=True)
class TrialAnswer:
    endpoint: str
    size: int
    at_least: int | None
    at_most: int | None
    patients: int  # virtual patients resampled
    responders: int
    replicates: int
    estimate: float  # share of replicate trials that succeed
    mc_lower: float
    mc_upper: float
    population_lower: float
    population_upper: float
    exact: float  # the binomial probability at the virtual patients' proportion

    @property
    def question(self) -> str:
        if self.at_least is not None:
            return f"at least {self.at_least} of {self.size}"
        return f"at most {self.at_most} of {self.size}"


def _trial_probability(p, size: int, at_least: int | None, at_most: int | None):
    from scipy import stats  # imported here: it takes about a second to import
    if at_least is not None:
        return stats.binom.sf(at_least - 1, size, p)
    return stats.binom.cdf(at_most, size, p)


def replicate_trials(met: np.ndarray, endpoint: str, size: int, at_least: int | None = None,
                     at_most: int | None = None, replicates: int = 4000, seed: int = 0) -> TrialAnswer:
    """``met``: per virtual patient 1 (meets the endpoint), 0, or nan (not evaluable: counted 0)."""
    if (at_least is None) == (at_most is None):
        raise ValueError("give at_least or at_most")
    met = np.nan_to_num(np.asarray(met, float), nan=0.0)
    n = met.size
    if n == 0:
        raise ValueError("no virtual patients to resample")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(size, at_least or 0, at_most or 0)))
    picks = rng.integers(0, n, size=(replicates, size))
    successes = met[picks].sum(axis=1)
    ok = successes >= at_least if at_least is not None else successes <= at_most
    k = int(ok.sum())
    mc = clopper_pearson(k, replicates)
    boot_p = met[rng.integers(0, n, size=(BOOTSTRAP, n))].mean(axis=1)
    boot = _trial_probability(boot_p, size, at_least, at_most)
    responders = int(met.sum())
    return TrialAnswer(endpoint, size, at_least, at_most, n, responders, replicates, k / replicates, mc.lower,
                       mc.upper, float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975)),
                       float(_trial_probability(responders / n, size, at_least, at_most)))
