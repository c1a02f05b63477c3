"""Virtual patients for the behaviour tests of the default model, and the read-outs they are
judged by.

The typical patient takes every parameter at its declared value. A cohort draws each
parameter from its declared log-normal inter-individual variability (``iiv`` is omega, the
SD of log theta; ``Correlation`` rows couple the random effects) and draws covariates from
the SLE population below. Doses follow the therapy layer: regimen mg/m^2 x body surface
area (Mosteller), the fludarabine renal rule of the US label, CAR-T cells/kg x weight.

The read-out definitions follow the clinical layer where it has one
(``src/cartwin/clinical/rules/kinetics.toml`` and ``reference_limits.csv``): B-cell aplasia is
CD19+ B cells below 1 cell/uL after infusion, return is the first later day at or above it;
CAR-T are detectable at >= 1 cell/uL; C3 >= 0.9 g/L, C4 >= 0.16 g/L, anti-dsDNA <= 30 IU/mL.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cartwin.clinical.sledai import weights as sledai_weights
from cartwin.model import DEFAULT_MODEL
from cartwin.body import bsa_mosteller
from cartwin.simulate.engine import make_solver, solve
from cartwin.therapy.arm import ArmTherapy
from cartwin.therapy.products import PRODUCTS
from cartwin.therapy.regimens import PRESETS, Regimen

MODEL = DEFAULT_MODEL

# Clinical-layer thresholds (src/cartwin/clinical/rules/kinetics.toml, reference_limits.csv).
B_APLASIA_BELOW = 1.0  # cells/uL
CART_DETECTION_LIMIT = 1.0  # cells/uL, flow cytometry
C3_LLN, C4_LLN, DSDNA_POSITIVE_ABOVE = 0.9, 0.16, 30.0

# SLEDAI-2K items this model describes; their weights come from the clinical layer's table
# (Gladman DD et al. J Rheumatol 2002;29:288; clinical/rules/sledai_descriptors.csv).
SLEDAI_ITEMS = (
    "SD_VASC", "SD_ARTH", "SD_MYOS", "SD_CASTS", "SD_HEMAT", "SD_PROT", "SD_PYUR", "SD_RASH", "SD_ALOP",
    "SD_MUCUL", "SD_PLEUR", "SD_PERIC", "SD_LOWCOMP", "SD_DNA", "SD_FEVER", "SD_THROMB", "SD_LEUK",
)

TYPICAL_COVARIATES = dict(
    WT=62.0, CRCL=110.0, DSDNA0=150.0, C3_0=0.7, C4_0=0.08, UPROT0=1.0, PGA0=2.0,
    ARTH0=1, RASH0=1, ALOP0=1, VASC0=0, MUC0=0, PLEUR0=0, PERIC0=0, MYOS0=0, CASTS0=0,
    HEMAT0=1, PYUR0=0,
)
TYPICAL_HEIGHT_CM = 165.0

# Covariates of a refractory-SLE population: young adults, mostly women (Mackensen 2022: median
# age 22, 4/5 women; TyU19 SLE: women aged 22-24), active serology and multi-organ disease.
# (median, log-SD) of log-normal draws; assumed, chosen to cover the trial ranges.
LOGNORMAL_COVARIATES = {
    "WT": (62.0, 0.18), "CRCL": (110.0, 0.25), "DSDNA0": (150.0, 0.8), "C3_0": (0.70, 0.25),
    "C4_0": (0.08, 0.40), "UPROT0": (1.0, 0.8),
}
# Prevalence of each descriptor at baseline in refractory SLE referred for CAR-T (assumed;
# Mackensen 2022: nephritis in 5/5; TyU19 Cell Research 2025: arthritis, alopecia, digital
# vasculitis).
DESCRIPTOR_PREVALENCE = {
    "ARTH0": 0.6, "RASH0": 0.5, "ALOP0": 0.35, "VASC0": 0.2, "MUC0": 0.25, "PLEUR0": 0.15,
    "PERIC0": 0.1, "MYOS0": 0.05, "CASTS0": 0.25, "HEMAT0": 0.45, "PYUR0": 0.3,
}
# Trials enrol CrCl >= 30 mL/min at least (fludarabine is withheld below it).
CRCL_RANGE = (35.0, 200.0)


@dataclass
class Run:
    """One simulated arm: observables and states on a daily grid, and per-patient inputs."""

    days: np.ndarray  # (T,)
    obs: dict[str, np.ndarray]  # test -> (N, T)
    states: np.ndarray | None  # (N, T, S); None when only observables were kept
    theta: np.ndarray | None  # (N, P)
    cov: dict[str, np.ndarray]  # covariate -> (N,)
    ok: np.ndarray  # (N,)

    @property
    def n(self) -> int:
        return next(iter(self.obs.values())).shape[0]

    def state(self, name: str) -> np.ndarray:
        return self.states[:, :, MODEL.state_names.index(name)]

    def at(self, test: str, day: float) -> np.ndarray:
        return self.obs[test][:, int(np.searchsorted(self.days, day))]


# a creatinine clearance above every threshold of the fludarabine renal rule (mL/min)
NORMAL_RENAL_FUNCTION = float(np.finfo(float).max)


def typical_theta(product: str, overrides: dict | None = None) -> np.ndarray:
    theta = np.array([p.value for p in MODEL.parameters])
    names = list(MODEL.parameter_names)
    for k, v in {**PRODUCTS[product].mechanism_parameters(), **(overrides or {})}.items():
        theta[names.index(k)] = v
    return theta


def sample_parameters(n: int, rng: np.random.Generator) -> np.ndarray:
    """Typical values x exp(eta), eta ~ N(0, Omega) with the declared omegas and correlations."""
    names = list(MODEL.parameter_names)
    omega = np.array([p.iiv for p in MODEL.parameters])
    corr = np.eye(len(names))
    for c in MODEL.correlations:
        i, j = names.index(c.first), names.index(c.second)
        corr[i, j] = corr[j, i] = c.rho
    cov = corr * np.outer(omega, omega)
    varied = omega > 0
    eta = np.zeros((n, len(names)))
    sub = cov[np.ix_(varied, varied)]
    eta[:, varied] = rng.multivariate_normal(np.zeros(varied.sum()), sub, size=n)
    theta = np.array([p.value for p in MODEL.parameters])[None, :] * np.exp(eta)
    for k, p in enumerate(MODEL.parameters):
        if p.lower is not None or p.upper is not None:
            theta[:, k] = np.clip(theta[:, k], p.lower, p.upper)
    return theta


def sample_covariates(n: int, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray]:
    cov = {}
    for name, (median, sd) in LOGNORMAL_COVARIATES.items():
        cov[name] = median * np.exp(sd * rng.standard_normal(n))
    cov["CRCL"] = np.clip(cov["CRCL"], *CRCL_RANGE)
    cov["PGA0"] = rng.uniform(1.5, 2.8, n)
    for name, prevalence in DESCRIPTOR_PREVALENCE.items():
        cov[name] = (rng.random(n) < prevalence).astype(float)
    height = rng.normal(165.0, 7.0, n)
    return cov, height


def simulate(product: str, regimen: str | Regimen, theta: np.ndarray, cov: dict[str, np.ndarray],
             height_cm: np.ndarray, *, dose_per_kg: float = 1e6, days: np.ndarray | None = None,
             renal_rule: bool = True, overrides: dict | None = None) -> Run:
    """Simulate each row of ``theta`` with the product's mechanism parameters applied, through
    the engine, with the therapy layer's doses (``renal_rule=False``: fludarabine as if renal
    function were normal). ``regimen`` is a preset name or a Regimen (e.g. one interpolated
    between presets by cartwin.design.space.interpolate)."""
    theta = np.array(theta, float, copy=True)
    names = list(MODEL.parameter_names)
    for k, v in {**PRODUCTS[product].mechanism_parameters(), **(overrides or {})}.items():
        theta[:, names.index(k)] = v
    n = theta.shape[0]
    covd = {c: np.broadcast_to(np.asarray(cov[c], float), (n,)).copy() for c in MODEL.covariate_names}
    days = np.arange(-6.0, 731.0) if days is None else days
    regimen = PRESETS[regimen] if isinstance(regimen, str) else regimen
    therapy = ArmTherapy("reference", PRODUCTS[product], regimen, dose_per_kg, None)
    bsa = bsa_mosteller(np.broadcast_to(height_cm, (n,)), covd["WT"])
    crcl = covd["CRCL"] if renal_rule else np.full(n, NORMAL_RENAL_FUNCTION)
    doses = therapy.patient_doses({"BSA": bsa, "WT": covd["WT"], "CRCL": crcl})
    result = solve(MODEL, theta, covd, doses, days, make_solver("scipy-lsoda"), nonnegative=False)
    obs = {MODEL.observables[j].test: result.observations[:, :, k] for k, j in enumerate(result.which)}
    return Run(days, obs, result.states, theta, covd, result.ok)


def typical(product: str, regimen: str, *, covariates: dict | None = None, **kw) -> Run:
    cov = {**TYPICAL_COVARIATES, **(covariates or {})}
    return simulate(product, regimen, typical_theta(product)[None, :],
                    {k: np.array([v], float) for k, v in cov.items()},
                    np.array([TYPICAL_HEIGHT_CM]), **kw)


def cohort(product: str, regimen: str, n: int = 200, seed: int = 20240601, **kw) -> Run:
    """``n`` virtual patients. The same seed gives the same patients in every arm, so arms
    compare like with like (a paired design)."""
    rng = np.random.default_rng(seed)
    theta = sample_parameters(n, rng)
    cov, height = sample_covariates(n, rng)
    return simulate(product, regimen, theta, cov, height, **kw)


# Read-outs (per patient; NaN where the event does not occur) ---------------------------------
def _first(mask: np.ndarray, days: np.ndarray) -> np.ndarray:
    hit = mask.any(axis=1)
    return np.where(hit, days[np.argmax(mask, axis=1)], np.nan)


def cart_peak(run: Run) -> tuple[np.ndarray, np.ndarray]:
    """(peak day, peak cells/uL) after infusion."""
    post = run.days >= 0
    c = run.obs["CART"][:, post]
    return run.days[post][np.argmax(c, axis=1)], c.max(axis=1)


def b_aplasia_day(run: Run) -> np.ndarray:
    post = run.days >= 0
    return _first(run.obs["BCELL"][:, post] < B_APLASIA_BELOW, run.days[post])


def b_return_day(run: Run) -> np.ndarray:
    """First day at or above the aplasia threshold after aplasia began (clinical layer)."""
    onset = b_aplasia_day(run)
    later = (run.days[None, :] > onset[:, None]) & (run.obs["BCELL"] >= B_APLASIA_BELOW)
    return _first(later, run.days)


def last_detectable_cart_day(run: Run) -> np.ndarray:
    post = run.days >= 0
    above = run.obs["CART"][:, post] >= CART_DETECTION_LIMIT
    rev = above[:, ::-1]
    idx = above.shape[1] - 1 - np.argmax(rev, axis=1)
    return np.where(above.any(axis=1), run.days[post][idx], np.nan)


def crs_grade(run: Run, first_day: float = 0.0, last_day: float = 14.0) -> np.ndarray:
    """ASTCT grade from the model's drivers (Lee 2019): fever >= 38 C is grade 1; with it,
    hypotension needing fluids or low-flow oxygen is grade 2."""
    w = (run.days >= first_day) & (run.days <= last_day)
    fever = (run.obs["TEMP"][:, w] >= 38.0).any(axis=1)
    organ = np.maximum(run.obs["HYPOTEN"][:, w], run.obs["HYPOXIA"][:, w]).max(axis=1)
    return np.where(fever, 1 + organ, 0)


def sledai(run: Run, day: float) -> np.ndarray:
    """SLEDAI-2K from the model's descriptors and labs on ``day`` (CNS items are not modelled
    and score 0)."""
    i = int(np.searchsorted(run.days, day))
    o = {k: v[:, i] for k, v in run.obs.items()}
    derived = {
        "SD_PROT": o["UPROT"] > 0.5,
        "SD_LOWCOMP": (o["C3"] < C3_LLN) | (o["C4"] < C4_LLN),
        "SD_DNA": o["DSDNA"] > DSDNA_POSITIVE_ABOVE,
        "SD_FEVER": o["TEMP"] > 38.0,
        "SD_THROMB": o["PLAT"] < 100.0,
        "SD_LEUK": o["WBC"] < 3.0,
    }
    weight = sledai_weights()
    score = np.zeros(run.n)
    for code in SLEDAI_ITEMS:
        present = derived[code] if code in derived else o[code] > 0.5
        score += weight[code] * present
    return score


def nadir(run: Run, test: str, first_day: float = -6.0, last_day: float = 60.0) -> np.ndarray:
    w = (run.days >= first_day) & (run.days <= last_day)
    return run.obs[test][:, w].min(axis=1)


def auc(run: Run, state: str, first_day: float = -6.0, last_day: float = 0.0) -> np.ndarray:
    """Trapezoid AUC of a state on the run's grid (use a fine grid for PK)."""
    w = (run.days >= first_day) & (run.days <= last_day)
    return np.trapezoid(run.state(state)[:, w], run.days[w], axis=1)
