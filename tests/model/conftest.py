"""Shared fixtures of the model behaviour tests.

Cohort tests run through the public engine (``parse_protocol`` + ``simulate``): the protocol
below describes refractory SLE as the CAR-T lupus series enrolled it, and every arm of interest
is one arm of it, 200 virtual patients each, drawn with the model's declared variability.
"""

from __future__ import annotations

import numpy as np
import pytest

from lupus_virtual import Run

COHORT_N = 200
COHORT_SEED = 20260101

# Daily while CAR-T expand and B cells vanish, then every 2 days (B-cell return), then weekly.
COHORT_DAYS = (list(range(-6, 43)) + list(range(44, 200, 2)) + list(range(203, 366, 7)))

# (arm id, product, lymphodepletion preset)
COHORT_ARMS = (
    ("autologous_erlangen", "autologous_cd19", "erlangen"),
    ("autologous_standard", "autologous_cd19", "standard"),
    ("autologous_reduced", "autologous_cd19", "reduced"),
    ("autologous_none", "autologous_cd19", "none"),
    ("tyu19_standard", "tyu19", "standard"),
    ("tyu19_reduced", "tyu19", "reduced"),
    ("tyu19_none", "tyu19", "none"),
    ("allo_hla_intact_standard", "allo_hla_intact", "standard"),
)


def cohort_protocol() -> dict:
    """Refractory SLE referred for CAR-T: young adults, mostly women (Mackensen 2022: median
    age 22, 4/5 women; TyU19 SLE: women aged 22-24), active serology, multi-organ disease with
    nephritis in many (Mackensen 2022: 5/5); SLEDAI mostly 8-26 at baseline."""
    return {
        "schema_version": 1,
        "study_id": "model-behaviour-cohort",
        "title": "Behaviour tests of the default model",
        "seed": COHORT_SEED,
        "follow_up_days": 365,
        "schedule": {"days": COHORT_DAYS},
        "population": {
            "sex": {"female": 0.85},
            "age": {"dist": "uniform", "low": 18, "high": 45},
            "weight": {"dist": "lognormal", "median": 62, "cv": 0.18, "low": 40, "high": 110},
            "height": {"dist": "normal", "mean": 165, "sd": 7, "low": 145, "high": 195},
            "creatinine": {"unit": "umol/L", "distribution": {
                "dist": "lognormal", "median": 65, "cv": 0.2, "high": 130}},
            "disease": {
                "dsdna": {"unit": "IU/mL", "distribution": {
                    "dist": "lognormal", "median": 150, "cv": 0.8, "low": 35}},
                "c3": {"unit": "g/L", "distribution": {
                    "dist": "lognormal", "median": 0.65, "cv": 0.2, "high": 0.89}},
                "c4": {"unit": "g/L", "distribution": {
                    "dist": "lognormal", "median": 0.08, "cv": 0.35, "high": 0.15}},
                "proteinuria": {"unit": "g/24h", "distribution": {
                    "dist": "lognormal", "median": 0.9, "cv": 0.9}},
                "pga": {"dist": "uniform", "low": 1.5, "high": 2.8},
                "descriptors": {"arthritis": 0.7, "alopecia": 0.4, "vasculitis": 0.25,
                                "rash": 0.5, "mucosal_ulcers": 0.25, "hematuria": 0.45,
                                "urinary_casts": 0.2, "pyuria": 0.25, "pleurisy": 0.1},
            },
        },
        "arms": [{"id": arm, "label": f"{product} after {ld}", "product": product,
                  "dose": {"cells_per_kg": 1e6}, "lymphodepletion": ld, "n": COHORT_N}
                 for arm, product, ld in COHORT_ARMS],
    }


@pytest.fixture(scope="session")
def cohort_runs() -> dict[str, Run]:
    return run_cohort_arms()


def run_cohort_arms() -> dict[str, Run]:
    """One engine run of every cohort arm, as wide arrays per arm (subject x day)."""
    from cartwin.protocol import parse_protocol
    from cartwin.run import simulate

    sim = simulate(parse_protocol(cohort_protocol()), n_per_arm=COHORT_N, seed=COHORT_SEED,
                   workers=2)
    runs = {}
    for arm, _, _ in COHORT_ARMS:
        patients = sim.patients.filter(sim.patients["arm"] == arm)
        obs = sim.observations.filter(sim.observations["arm"] == arm)
        wide = obs.pivot(on="day", index=["subject", "test"], values="value")
        days = np.array(sorted(float(c) for c in wide.columns if c not in ("subject", "test")))
        cols = [str(d) for d in days]
        subjects = patients["subject"].to_list()
        by_test = {}
        for test in obs["test"].unique().to_list():
            t = wide.filter(wide["test"] == test)
            order = {s: i for i, s in enumerate(t["subject"].to_list())}
            m = t.select(cols).to_numpy()
            by_test[test] = m[[order[s] for s in subjects]]
        ok = (patients["status"] == "ok").to_numpy()
        cov = {c: patients[c].to_numpy() for c in ("WT", "CRCL") if c in patients.columns}
        runs[arm] = Run(days, by_test, None, None, cov, ok)
    return runs
