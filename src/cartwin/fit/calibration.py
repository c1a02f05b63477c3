"""Calibration of the default model's uncertain parameters to summary-level clinical targets.

Published CAR-T lupus series report summaries (a mean B-cell return day, a peak day), not
patient-level data, so a population fit does not apply. Instead a fixed virtual cohort per
scenario (the engine's virtual patients with the model's declared variability; the same random
numbers for every candidate, so the objective is a smooth, deterministic function of the
parameters) is simulated, scored by the clinical layer, each patient's endpoints computed by
cartwin.endpoints (cart_tmax, cart_persistence, bcell_return_time), and the weighted squared
distance of the cohort's means and medians to the targets is minimised (Nelder-Mead on log
parameters; scipy.optimize).

The result is a data file (``calibrations/<model>_<date>.json``) holding the values, the targets
with their sources, the objective, the cohort, the date and the hash of the model it was made
with; :func:`apply_calibration` turns it into a model declaration. The default model's source is
never edited here: its owner decides whether to adopt the values.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl
from scipy import optimize

from cartwin.fit.errors import FitError

CALIBRATIONS_DIR = Path(__file__).parent / "calibrations"

# Daily through expansion and B-cell depletion, every 2 days while B cells return, then weekly.
CALIBRATION_DAYS = tuple(range(-6, 43)) + tuple(range(44, 200, 2)) + tuple(range(203, 366, 7))


@dataclass(frozen=True)
class Target:
    name: str
    product: str
    regimen: str
    statistic: str  # "mean_bcell_return_day" | "mean_cart_tmax" | "median_cart_last_detectable_day"
    value: float
    sd: float  # weight: the uncertainty of the reported summary
    source: str
    upper: float | None = None
    """When given, the target is the range [value, upper]: no penalty inside it (evidence that
    reports a range, not a point), distance / sd outside it."""

    def residual(self, simulated: float) -> float:
        if self.upper is None:
            return (simulated - self.value) / self.sd
        return (min(simulated - self.value, 0.0) + max(simulated - self.upper, 0.0)) / self.sd


TARGETS = (
    Target("B cells back after autologous CD19 CAR-T, Erlangen Flu/Cy, 1e6/kg", "autologous_cd19",
           "erlangen", "mean_bcell_return_day", 110.0, 32.0 / np.sqrt(5),
           "Mackensen 2022 Nat Med (n = 5): B cells reappear after mean +/- SD 110 +/- 32 days "
           "; weight: SD / sqrt(n), the SE of that mean"),
    Target("CAR-T peak day after autologous CD19 CAR-T, Erlangen Flu/Cy", "autologous_cd19", "erlangen",
           "mean_cart_tmax", 7.0, 1.0,
           "the model's behaviour target 'CAR-T peak on day 7-14' (the Erlangen peak time itself was not "
           "published; Stein 2019 Tmax 9.3 d in oncology): a range, "
           "no penalty inside it", upper=14.0),
    Target("CAR-T detectable beyond 3 months after TyU19, reduced Flu/Cy", "tyu19", "reduced",
           "median_cart_last_detectable_day", 100.0, 10.0,
           "TyU19, Cell 2024 (n = 3): CAR-T detectable for > 3 months (Wang X 2024); median last day at or above 1 cell/uL (interpolated between samples), from day 100 "
           "(a margin over day 90) on", upper=365.0),
    Target("CAR-T peak day after TyU19, reduced Flu/Cy", "tyu19", "reduced", "mean_cart_tmax", 14.0, 1.75,
           "TyU19 in SLE, Med 2025 (n = 3): CAR+ T-cell peak at day 14 in blood (Wang D 2025); a sampled peak on day 14 puts the true peak between the neighbouring "
           "visits, days 10-17, taken as +/- 2 SD (as the model's behaviour test reads it)"),
)

# MTT_PRE and X50 set when B cells return; RHO the pace of expansion; EC15 how much that pace
# depends on lymphodepletion (the low-intensity regimen of TyU19 against Erlangen Flu/Cy); K_EM
# how many effectors become long-lived memory, which keeps CAR-T detectable for months.
DEFAULT_PARAMETERS = ("MTT_PRE", "X50", "RHO", "EC15", "K_EM")


def _protocol(n: int, seed: int, scenarios: list[tuple[str, str]]):
    from cartwin.fit.synthetic import DESIGN_POPULATION
    from cartwin.protocol import parse_protocol
    return parse_protocol({
        "schema_version": 1, "study_id": "calibration-cohort", "seed": seed, "follow_up_days": 365,
        "schedule": {"days": list(CALIBRATION_DAYS)}, "population": DESIGN_POPULATION,
        "arms": [{"id": f"{p}_{r}", "product": p, "dose": {"cells_per_kg": 1e6}, "lymphodepletion": r, "n": n}
                 for p, r in scenarios]})


class Cohort:
    """Fixed virtual patients of every target's scenario; ``statistics(values)`` simulates them with
    the given typical values (everything else as declared) and scores them."""

    def __init__(self, model, targets, n: int, seed: int):
        from cartwin.plan.work import typical_parameters
        from cartwin.population.virtual import generate
        from cartwin.simulate.engine import make_solver
        from cartwin.therapy.arm import resolve_arm

        self.model, self.targets = model, targets
        scenarios = sorted({(t.product, t.regimen) for t in targets})
        self.protocol = _protocol(n, seed, scenarios)
        self.solver = make_solver("numba-bdf")  # the solver the published calibration was fitted with
        self.days = np.array(CALIBRATION_DAYS, float)
        self.arms = {}
        for arm in self.protocol.arms:
            therapy = resolve_arm(self.protocol, arm)
            typical = typical_parameters(model, therapy)
            pop = generate(model, self.protocol.population, arm.id, np.arange(n), seed, typical)
            # keep each patient's random effects; candidates move only the typical values
            self.arms[(therapy.product.name, therapy.regimen.name)] = {
                "eta": pop.eta, "typical": typical,
                "cov": pop.covariates, "doses": therapy.patient_doses(pop.covariates)}

    def statistics(self, values: dict[str, float]) -> dict[str, float]:
        from cartwin.simulate.engine import solve

        names = self.model.parameter_names
        out = {}
        for key, arm in self.arms.items():
            typical = arm["typical"].copy()
            for name, v in values.items():
                typical[names.index(name)] = v
            theta = typical[None, :] * np.exp(arm["eta"])
            res = solve(self.model, theta, arm["cov"], arm["doses"], self.days, self.solver, nonnegative=False)
            out[key] = {**scenario_statistics(self.model, res.observations[res.ok], self.days),
                        "failed": int((~res.ok).sum())}
        return out


# The endpoints (cartwin.endpoints, definitions.toml) each statistic summarises.
STATISTIC_ENDPOINTS = {"mean_cart_tmax": "cart_tmax", "median_cart_last_detectable_day": "cart_persistence",
                       "mean_bcell_return_day": "bcell_return_time"}
CART_DETECTION_LIMIT = 1.0  # cells/uL: "detectable" as the model's behaviour tests read flow counts


def scenario_statistics(model, observations: np.ndarray, days: np.ndarray) -> dict[str, float]:
    """The calibration statistics of one scenario's simulated patients (``observations``: patients x
    days x the model's observables), from their endpoints: the clinical layer scores the CAR-T and
    B-cell counts, cartwin.endpoints computes each patient's cart_tmax, cart_persistence and
    bcell_return_time, and the cohort's mean or median is taken here."""
    from cartwin.clinical import observations_from_frame, score_observations
    from cartwin.endpoints import compute

    tests = [o.test for o in model.observables]
    units = {o.test: o.unit for o in model.observables}
    n, t = observations.shape[:2]
    subject = np.repeat([f"p{i:04d}" for i in range(n)], t)
    day = np.tile(days, n)
    frames = [pl.DataFrame({"subject": subject, "arm": "calibration", "day": day, "test": test,
                            "value": observations[:, :, tests.index(test)].reshape(-1), "unit": units[test],
                            "lower": CART_DETECTION_LIMIT if test == "CART" else None},
                           schema_overrides={"lower": pl.Float64})
              for test in ("CART", "BCELL")]
    obs = observations_from_frame(pl.concat(frames), "<calibration cohort>")
    endpoints = compute(score_observations(obs), obs.frame, keys=list(STATISTIC_ENDPOINTS.values()))
    back = endpoints.filter(pl.col("bcell_return_time").is_not_null())
    return {
        "mean_cart_tmax": float(endpoints["cart_tmax"].drop_nulls().mean()),
        "median_cart_last_detectable_day": float(endpoints["cart_persistence"].drop_nulls().median()),
        # a patient still aplastic at the last count counts at that day (censored: a lower bound)
        "mean_bcell_return_day": float(back["bcell_return_time"].mean()),
        "bcell_aplastic": back.height,
        "bcell_not_back": int((~back["bcell_return_time_event"]).sum()),
    }


def calibrate(parameters: tuple[str, ...] = DEFAULT_PARAMETERS, targets: tuple[Target, ...] = TARGETS,
              n: int = 60, seed: int = 20260101, max_evaluations: int = 80, model=None,
              out: str | Path | None = None) -> dict:
    """Calibrate ``parameters`` of the default model to ``targets``; write and return the record."""
    from cartwin import __version__
    from cartwin.model import DEFAULT_MODEL

    model = model or DEFAULT_MODEL
    unknown = [p for p in parameters if p not in model.parameter_names]
    if unknown:
        raise FitError(f"parameters {unknown} are not parameters of model {model.name}")
    start = time.perf_counter()
    cohort = Cohort(model, targets, n, seed)
    declared = np.array([model.parameter(p).value for p in parameters])

    def residuals(log_values):
        stats = cohort.statistics(dict(zip(parameters, np.exp(log_values))))
        return np.array([t.residual(stats[(t.product, t.regimen)][t.statistic]) for t in targets]), stats

    def objective(log_values):
        return float(np.sum(residuals(log_values)[0] ** 2))

    initial_objective = objective(np.log(declared))
    # simplex steps of 10% in each parameter: the targets move over days, not fractions of one
    simplex = np.log(declared)[None, :] + np.vstack([np.zeros(len(parameters)), 0.1 * np.eye(len(parameters))])
    res = optimize.minimize(objective, np.log(declared), method="Nelder-Mead",
                            options={"maxfev": max_evaluations, "initial_simplex": simplex,
                                     "xatol": 1e-3, "fatol": 1e-3})
    best = np.exp(res.x)
    final_res, stats = residuals(res.x)
    bounds_violated = [p for p, v in zip(parameters, best) if not model.parameter(p).within_bounds(v)]
    date = datetime.now(timezone.utc)
    record = {
        "model": model.name, "model_version": model.version, "model_hash": model.content_hash(),
        "date": date.isoformat(timespec="seconds"), "cartwin": __version__,
        "parameters": {p: {"value": float(v), "declared": float(model.parameter(p).value),
                           "unit": model.parameter(p).unit, "declared_source": model.parameter(p).source}
                       for p, v in zip(parameters, best)},
        "targets": [{"name": t.name, "product": t.product, "regimen": t.regimen, "statistic": t.statistic,
                     "target": t.value if t.upper is None else [t.value, t.upper], "sd": t.sd,
                     "source": t.source,
                     "declared_model": None, "calibrated_model": stats[(t.product, t.regimen)][t.statistic],
                     "standardised_residual": float(r)} for t, r in zip(targets, final_res)],
        "objective": {"definition": "sum over targets of ((cohort statistic - target) / sd)^2; for a "
                                    "range target, the distance outside the range",
                      "declared": initial_objective, "calibrated": float(res.fun),
                      "optimizer": "scipy.optimize.minimize Nelder-Mead on log parameters",
                      "evaluations": int(res.nfev), "message": str(res.message)},
        "cohort": {"n_per_scenario": n, "seed": seed, "days": "daily -6..42, every 2 days to 198, weekly to 364",
                   "population": "cartwin.fit.synthetic.DESIGN_POPULATION (refractory SLE, as tests/model)",
                   "variability": "the model's declared IIV; the same patients for every candidate",
                   "dose": "1e6 CAR-T cells/kg",
                   "definitions": "cartwin.endpoints (definitions.toml " + _endpoint_table_version() + "): mean "
                                  "of cart_tmax; median of cart_persistence (detection limit 1 cell/uL, "
                                  "interpolated to the crossing); mean of bcell_return_time over patients "
                                  "with aplasia, a patient not back by the last count (day 364) counted there "
                                  "(censored, a lower bound)"},
        "scenario_statistics": {f"{k[0]}/{k[1]}": v for k, v in stats.items()},
        "outside_declared_bounds": bounds_violated,
        "seconds": time.perf_counter() - start,
    }
    declared_stats = cohort.statistics({})
    for t, entry in zip(targets, record["targets"]):
        entry["declared_model"] = declared_stats[(t.product, t.regimen)][t.statistic]
    if out is not None:
        path = Path(out)
        if path.suffix != ".json":
            path = path / f"{model.name}_{date.strftime('%Y%m%d')}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2) + "\n")
        record["path"] = str(path)
    return record


def _endpoint_table_version() -> str:
    from cartwin.endpoints import definitions
    return f"version {definitions().version}"


def latest_calibration(model_name: str = "lupus_cart") -> Path:
    files = sorted(CALIBRATIONS_DIR.glob(f"{model_name}_*.json"))
    if not files:
        raise FitError(f"no calibration of model {model_name} in {CALIBRATIONS_DIR}")
    return files[-1]


def apply_calibration(calibration: str | Path | dict | None = None, model=None):
    """The model with the calibrated values (source 'calibrated: ...'); the newest shipped
    calibration by default. Warns when the model has changed since the calibration was made."""
    from cartwin.model import DEFAULT_MODEL

    model = model or DEFAULT_MODEL
    if calibration is None:
        calibration = latest_calibration(model.name)
    record = calibration if isinstance(calibration, dict) else json.loads(Path(calibration).read_text())
    if record.get("model") != model.name:
        raise FitError(f"calibration is of model {record.get('model')!r}, not {model.name!r}")
    if record.get("model_hash") != model.content_hash():
        warnings.warn(f"model {model.name} has changed since this calibration ({record.get('model_hash')} -> "
                      f"{model.content_hash()}); re-run the calibration to be sure the values still fit",
                      stacklevel=2)
    values = record["parameters"]
    unknown = [p for p in values if p not in model.parameter_names]
    if unknown:
        raise FitError(f"calibration names parameters {unknown} that model {model.name} lacks")
    targets = "; ".join(f"{t['name']} = {t['target']}" for t in record["targets"])
    params = tuple(replace(p, value=float(values[p.name]["value"]),
                           source=f"calibrated: {targets} (cartwin.fit calibration {record['date']})")
                   if p.name in values else p for p in model.parameters)
    return replace(model, parameters=params)
