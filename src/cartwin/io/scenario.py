"""One patient under one therapy: what an SBML export writes down and what it is checked against.

A scenario fixes everything the SBML file must carry as numbers: the model, the product's
mechanism parameters, the patient's covariates and the doses the therapy layer gives this
patient (mg/m^2 x BSA, the fludarabine renal rule, cells/kg x weight). ``simulate_scenario``
solves the same scenario with cartwin's own engine (generated code + LSODA), so an export can be
compared with an independent simulator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cartwin.io.errors import SBMLExportError
from cartwin.model import DEFAULT_MODEL, get_model
from cartwin.model.declaration import Model
from cartwin.simulate.engine import make_solver, solve
from cartwin.therapy.arm import ArmTherapy, UnknownTherapy, preset_therapy
from cartwin.therapy.dosing import Dose
from cartwin.therapy.products import Product
from cartwin.therapy.regimens import Regimen
from cartwin.vocabulary import DESCRIPTOR_FLAGS, PATIENT_COVARIATES, with_derived

# The patient an export describes when none is given: a young woman with active, serologically
# positive SLE, as in the first CAR-T series (Mackensen 2022, Nat Med: median age 22, 4 of 5
# women, all with nephritis). An input for exports, not a calibration target: BSA and
# creatinine clearance are derived from it with the engine's own formulas.
TYPICAL_PATIENT: dict[str, float] = {
    "SEXF": 1.0, "AGE": 25.0, "WT": 62.0, "HT": 165.0, "CREAT": 62.0,
    "DSDNA0": 150.0, "C3_0": 0.70, "C4_0": 0.08, "UPROT0": 1.0, "PGA0": 2.0,
    **{flag: 0.0 for flag in DESCRIPTOR_FLAGS.values()},
    "ARTH0": 1.0, "RASH0": 1.0, "HEMAT0": 1.0,
}


def patient_covariates(overrides: dict[str, float] | None = None) -> dict[str, float]:
    """The typical patient with ``overrides`` applied; BSA (Mosteller) and creatinine clearance
    (Cockcroft-Gault) are derived unless given explicitly."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(PATIENT_COVARIATES))
    if unknown:
        raise SBMLExportError(f"unknown patient covariates {unknown}; known: {sorted(PATIENT_COVARIATES)}")
    cov = {**TYPICAL_PATIENT, **{k: float(v) for k, v in overrides.items()}}
    derived = with_derived(cov, keep_given=True)
    cov = {k: float(derived[k]) for k in PATIENT_COVARIATES}
    bad = {k: v for k, v in cov.items() if not np.isfinite(v) or (k in ("WT", "HT", "BSA", "CRCL", "AGE") and v <= 0)}
    if bad:
        raise SBMLExportError(f"impossible patient covariates {bad}")
    # the limits a protocol's patients are held to (cartwin.vocabulary), so that an export describes
    # a patient cartwin could simulate: WT=5000 is a unit slip, not a patient
    problems = []
    for name, value in overrides.items():
        covariate = PATIENT_COVARIATES[name]
        if (covariate.kind == "descriptor" or name == "SEXF") and float(value) not in (0.0, 1.0):
            problems.append(f"{name}={float(value):g} must be 0 or 1 ({covariate.description})")
        elif covariate.low is not None and not covariate.low <= float(value) <= covariate.high:
            problems.append(f"{name}={float(value):g} is outside the physiologic range "
                            f"{covariate.low:g}-{covariate.high:g} {covariate.unit} ({covariate.description})")
    if problems:
        raise SBMLExportError("patient covariates out of range: " + "; ".join(problems)
                              + "; give them in the units of docs/protocol.md's covariate table")
    return cov


@dataclass(frozen=True)
class Scenario:
    model: Model
    therapy: ArmTherapy
    covariates: dict[str, float]
    theta: np.ndarray = field(repr=False)
    doses: tuple[Dose, ...]

    @property
    def first_intervention_day(self) -> float:
        """Protocol day of the first dose: the origin of SBML and NONMEM time."""
        return min(d.day for d in self.doses)

    def parameter_values(self) -> dict[str, float]:
        return dict(zip(self.model.parameter_names, map(float, self.theta)))

    def covariate_vector(self) -> np.ndarray:
        return np.array([self.covariates[c] for c in self.model.covariate_names], float)


def build_scenario(model: Model | str | None = None, product: str | Product = "autologous_cd19",
                   regimen: str | Regimen = "erlangen", covariates: dict[str, float] | None = None,
                   cells_per_kg: float | None = 1e6, flat_cells: float | None = None) -> Scenario:
    if model is None:
        model = DEFAULT_MODEL
    elif isinstance(model, str):
        try:
            model = get_model(model)
        except KeyError as exc:
            raise SBMLExportError(str(exc.args[0])) from None
    try:
        therapy = preset_therapy(product, regimen, cells_per_kg, flat_cells, arm="export")
    except UnknownTherapy as exc:
        raise SBMLExportError(str(exc)) from None
    cov = patient_covariates(covariates)
    missing = [c for c in model.covariate_names if c not in cov]
    if missing:
        raise SBMLExportError(f"model {model.name} needs covariates {missing} that the patient lacks")
    theta = np.array([p.value for p in model.parameters], float)
    index = {n: i for i, n in enumerate(model.parameter_names)}
    for name, value in therapy.product.mechanism_parameters().items():
        if name in index:
            theta[index[name]] = value
    (doses,) = therapy.patient_doses(cov)
    doses = tuple(doses)
    routes = {d.name for d in model.doses}
    unknown = sorted({d.route for d in doses} - routes)
    if unknown:
        raise SBMLExportError(f"model {model.name} has no dose input for {unknown}")
    return Scenario(model, therapy, cov, theta, doses)


def simulate_scenario(scenario: Scenario, days: np.ndarray, rtol: float = 1e-10,
                      atol: float = 1e-12) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Solve the scenario with cartwin's engine; ``days`` relative to the infusion, ascending.
    Returns the states (T, S) and each observable (T,). A sample at a dose time is pre-dose."""
    model = scenario.model
    days = np.asarray(days, float)
    solved = solve(model, scenario.theta[None, :], scenario.covariate_vector()[None, :], [scenario.doses], days,
                   make_solver("scipy-lsoda", rtol=rtol, atol=atol, max_steps=1_000_000), nonnegative=False)
    if not solved.ok[0]:
        raise RuntimeError(solved.reasons[0])
    obs = solved.observations[0]
    return solved.states[0], {o.test: obs[:, i] for i, o in enumerate(model.observables)}
