"""Shared fixtures of the fit tests: one synthetic study with known truth and its fit.

The study: 50 virtual patients (autologous CD19 CAR-T after Erlangen Flu/Cy, 1e6/kg), CAR-T and
B cells sampled at a trial's visits with visit windows, 30% and 25% log-normal measurement error,
CAR-T below 0.01 cells/uL unquantifiable (so pre-infusion samples are left out). Only RHO, K_E
and MTT_PRE vary between patients, so a fit of those three is correctly specified.
"""

from __future__ import annotations

import pytest

from cartwin.model import DEFAULT_MODEL

TRUTH = {"RHO": 1.4, "K_E": 0.16, "MTT_PRE": 55.0}
OMEGA = {"RHO": 0.15, "K_E": 0.2, "MTT_PRE": 0.25}
SIGMA = {"CART": 0.3, "BCELL": 0.25}
LLOQ = {"CART": 0.01}
START = {"RHO": 1.0, "K_E": 0.25, "MTT_PRE": 40.0}  # away from the truth, as a user's guess would be
STUDY_SEED = 3


@pytest.fixture(scope="session")
def study():
    from cartwin.fit.synthetic import simulate_study
    return simulate_study(DEFAULT_MODEL, 50, TRUTH, OMEGA, SIGMA, lloq=LLOQ, seed=STUDY_SEED)


@pytest.fixture(scope="session")
def fitted(study, tmp_path_factory):
    from cartwin.fit import fit
    out = tmp_path_factory.mktemp("fit") / "out"
    result = fit(study.observations, list(TRUTH), subjects=study.subjects, lloq=LLOQ, out=out,
                 initial=START, vpc_replicates=40, seed=5)
    return result, out
