"""Synthetic studies with known truth, for parameter-recovery checks and the fit benchmark.

Subjects are the engine's virtual patients (covariates drawn from a population by
:func:`cartwin.population.virtual.generate`); only the parameters being studied vary between
them (log-normal, with the given SDs), so a fit of those parameters is correctly specified.
Sampling follows a CAR-T trial's visit plan with visit windows, and every value carries
log-normal measurement error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from cartwin.fit.data import load_fit_data
from cartwin.fit.predict import Predictor
from cartwin.model.declaration import Model
from cartwin.population.virtual import generate
from cartwin.protocol import parse_protocol
from cartwin.plan.work import typical_parameters
from cartwin.therapy.arm import resolve_arm
from cartwin.vocabulary import PATIENT_COVARIATES

# Nominal visit days of a CAR-T lupus trial (screening, lymphodepletion, infusion, dense sampling
# during expansion, then monthly-quarterly) and the visit window (days either side) of each.
VISITS = (-6, 0, 3, 7, 10, 14, 21, 28, 42, 56, 84, 112, 140, 168, 210, 270, 365)
WINDOWS = (0, 0, 0, 1, 1, 1, 2, 3, 3, 5, 7, 7, 7, 7, 14, 14, 14)

DESIGN_POPULATION = {
    "sex": {"female": 0.85},
    "age": {"dist": "uniform", "low": 18, "high": 45},
    "weight": {"dist": "lognormal", "median": 62, "cv": 0.18, "low": 40, "high": 110},
    "height": {"dist": "normal", "mean": 165, "sd": 7, "low": 145, "high": 195},
    "creatinine": {"unit": "umol/L", "distribution": {"dist": "lognormal", "median": 65, "cv": 0.2, "high": 130}},
    "disease": {
        "dsdna": {"unit": "IU/mL", "distribution": {"dist": "lognormal", "median": 150, "cv": 0.8, "low": 35}},
        "c3": {"unit": "g/L", "distribution": {"dist": "lognormal", "median": 0.65, "cv": 0.2, "high": 0.89}},
        "c4": {"unit": "g/L", "distribution": {"dist": "lognormal", "median": 0.08, "cv": 0.35, "high": 0.15}},
        "proteinuria": {"unit": "g/24h", "distribution": {"dist": "lognormal", "median": 0.9, "cv": 0.9}},
        "pga": {"dist": "uniform", "low": 1.5, "high": 2.8},
        "descriptors": {"arthritis": 0.7, "rash": 0.5},
    },
}


@dataclass(frozen=True)
class SyntheticStudy:
    observations: pl.DataFrame  # observation format
    subjects: pl.DataFrame  # run patients.parquet layout
    true_phi: np.ndarray  # (N, P) individual log parameters
    truth: dict


def design_protocol(n: int, product: str = "autologous_cd19", regimen: str = "erlangen",
                    cells_per_kg: float = 1e6, seed: int = 1):
    return parse_protocol({
        "schema_version": 1, "study_id": "fit-design", "seed": seed, "follow_up_days": 365,
        "schedule": {"days": list(VISITS)}, "population": DESIGN_POPULATION,
        "arms": [{"id": "arm", "product": product, "dose": {"cells_per_kg": cells_per_kg},
                  "lymphodepletion": regimen, "n": n}]})


def simulate_study(model: Model, n: int, typical: dict[str, float], omega: dict[str, float],
                   sigma: dict[str, float], lloq: dict[str, float] | None = None, seed: int = 1,
                   product: str = "autologous_cd19", regimen: str = "erlangen") -> SyntheticStudy:
    """``n`` subjects with log-normal IIV on the ``typical`` parameters (SDs ``omega``) and
    log-normal error of SD ``sigma[test]``; values at or below ``lloq[test]`` are reported as 0."""
    protocol = design_protocol(n, product, regimen, seed=seed)
    arm = protocol.arms[0]
    therapy = resolve_arm(protocol, arm)
    pop = generate(model, protocol.population, arm.id, np.arange(n), seed, typical_parameters(model, therapy))
    subjects = pl.DataFrame({
        "subject": pop.subject, "arm": [arm.id] * n, "product": [product] * n, "regimen": [regimen] * n,
        "dose_cells_per_kg": [1e6] * n, "sex": np.where(pop.covariates["SEXF"] > 0.5, "F", "M"),
        **{c: pop.covariates[c] for c in PATIENT_COVARIATES if c != "SEXF"}})
    rng = np.random.default_rng(seed)
    names = tuple(typical)
    mu = np.log([typical[p] for p in names])
    om = np.array([omega[p] for p in names])
    true_phi = mu + rng.standard_normal((n, len(names))) * om
    # sampling days: each nominal visit moved within its window, per subject
    days = np.array(VISITS, float)[None, :] + np.rint(
        rng.uniform(-1, 1, (n, len(VISITS))) * np.array(WINDOWS, float)[None, :])
    tests = tuple(sigma)
    rows = {"subject": [], "day": [], "test": [], "value": [], "unit": []}
    units = {o.test: o.unit for o in model.observables}
    for t in tests:
        for i in range(n):
            rows["subject"] += [pop.subject[i]] * len(VISITS)
            rows["day"] += days[i].tolist()
            rows["test"] += [t] * len(VISITS)
            rows["value"] += [1.0] * len(VISITS)
            rows["unit"] += [units[t]] * len(VISITS)
    frame = pl.DataFrame(rows)
    # predictions at the true individual parameters, through the fit's own data path
    data = load_fit_data(frame, model, subjects=subjects)
    predictor = Predictor(model, data, names)
    obs, ok = predictor.solve(true_phi)
    assert ok.all(), "synthetic subjects must solve"
    order = {s: i for i, s in enumerate(data.subjects)}
    idx = np.array([order[s] for s in frame["subject"]])
    day_pos = np.searchsorted(predictor.days, frame["day"].to_numpy())
    obs_pos = np.array([[o.test for o in model.observables].index(t) for t in frame["test"]])
    truth_values = obs[idx, day_pos, obs_pos]
    noise_sd = np.array([sigma[t] for t in frame["test"]])
    values = truth_values * np.exp(rng.standard_normal(truth_values.size) * noise_sd)
    limit = np.array([(lloq or {}).get(t, 0.0) for t in frame["test"]])
    values = np.where(values <= limit, 0.0, values)
    frame = frame.with_columns(pl.Series("value", values))
    return SyntheticStudy(frame, subjects, true_phi[[order[s] for s in pop.subject]],
                          {"typical": dict(typical), "omega": dict(omega), "sigma": dict(sigma),
                           "lloq": dict(lloq or {}), "seed": seed, "n": n, "product": product,
                           "regimen": regimen})

