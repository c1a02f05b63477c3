"""Shared fixtures of the fit tests: one synthetic study with known truth and its fit.

The study: 50 virtual patients (autologous CD19 CAR-T after Erlangen Flu/Cy, 1e6/kg), CAR-T and
B cells sampled at a trial's visits with visit windows, 30% and 25% log-normal measurement error,
CAR-T below 0.01 cells/uL unquantifiable (so pre-infusion samples are left out). Only RHO, K_E
and MTT_PRE vary between patients, so a fit of those three is correctly specified.
"""

from __future__ import annotations

import pytest

from cartwin.model import DEFAULT_MODEL
from recovery_design import LLOQ, OMEGA, SIGMA, START, STUDY_SEED, TRUTH


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
