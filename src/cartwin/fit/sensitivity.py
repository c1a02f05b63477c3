"""Global sensitivity: Sobol indices (SALib) of clinical endpoints over parameter ranges.

One virtual patient of one arm (the protocol's population, its dose rules and schedule) is
simulated for every parameter set of a Sobol sequence (Saltelli's scheme, ``n x (D + 2)`` runs
for ``D`` parameters); the endpoints are scored by the clinical layer exactly as a run would be
scored, and SALib's ``sobol.analyze`` gives first-order (S1) and total (ST) indices with
bootstrap intervals. Parameters that are not varied stay at their typical values for the arm's
product. Holding the patient fixed keeps covariate variability out of the variance being
decomposed; repeat with ``patient`` to see how the ranking moves between patients.

Default ranges: a parameter's inter-individual 95% range, typical x exp(+/-1.96 omega), sampled
uniformly in log space (the log-normal IIV the model declares). User ranges (LOW, HIGH) are also
sampled in log space.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl

from cartwin.fit.errors import FitError
from cartwin.store.atomic import follow_umask

Z95 = 1.959963984540054
MONTH6_DAY = 180.0

# Each output is an endpoint of cartwin.endpoints (definitions.toml: standard, definition,
# censoring); Sobol indices need one number per run, so what the endpoint leaves out of its
# population gets the value written here.
OUTPUTS = {
    "bcell_aplasia_days": "B-cell aplasia duration, days (endpoint bcell_aplasia_days: below 1 cell/uL to "
                          "return; still aplastic at the last B-cell count: censored there, so the time to "
                          "that count, a lower bound); never aplastic: 0",
    "cart_cmax": "CAR-T Cmax, cells/uL (endpoint cart_cmax)",
    "sledai0_month6": "SLEDAI-2K 0 at month 6 (day 180), 1/0 (endpoint sledai0_month6: the SLEDAI-2K lower "
                      "bound, descriptors the model does not produce, the CNS items, taken as absent)",
    "neutropenia_grade3": "grade >= 3 neutrophil count decreased after infusion, 1/0 (endpoint neutropenia_grade3, "
                          "CTCAE v5); no graded count after infusion: 0",
}
# what a run outside an endpoint's population scores (see OUTPUTS)
OUTSIDE_POPULATION = {"bcell_aplasia_days": 0.0, "neutropenia_grade3": 0.0}


@dataclass
class SensitivityResult:
    parameters: tuple[str, ...]
    outputs: tuple[str, ...]
    bounds: np.ndarray  # (D, 2) natural scale
    samples: np.ndarray  # (R, D) natural scale
    values: dict[str, np.ndarray]  # output -> (R,)
    indices: dict[str, dict[str, np.ndarray]]  # output -> S1, S1_conf, ST, ST_conf
    n_runs: int
    n_failed: int

    def table(self) -> pl.DataFrame:
        rows = []
        for o in self.outputs:
            for k, p in enumerate(self.parameters):
                rows.append({"output": o, "parameter": p, **{key: float(self.indices[o][key][k])
                                                             for key in ("S1", "S1_conf", "ST", "ST_conf")}})
        return pl.DataFrame(rows)


def default_ranges(model, typical: dict[str, float], names: list[str],
                   ranges: dict[str, tuple[float, float]]) -> np.ndarray:
    bounds = []
    for name in names:
        if name in ranges:
            low, high = ranges[name]
            if not (0 < low < high):
                raise FitError(f"range of {name}: need 0 < LOW < HIGH, got {low:g}:{high:g}")
            bounds.append((low, high))
            continue
        omega = model.parameter(name).iiv
        if omega <= 0:
            raise FitError(f"{name} has no declared IIV, so it has no default range; give one "
                           f"(--range {name}=LOW:HIGH)")
        if typical[name] <= 0:
            raise FitError(f"{name} has typical value {typical[name]:g} for this product; give a range")
        bounds.append((typical[name] * np.exp(-Z95 * omega), typical[name] * np.exp(Z95 * omega)))
    return np.array(bounds, float)


def _grid(protocol, follow_up: float) -> np.ndarray:
    from cartwin.protocol.load import schedule_days
    days = set(float(d) for d in schedule_days(protocol))
    days |= set(float(d) for d in range(0, 29))  # daily through expansion: Cmax and nadirs
    days |= set(float(d) for d in np.arange(28, follow_up + 1, 7))
    days |= {MONTH6_DAY} if follow_up >= MONTH6_DAY else set()
    return np.array(sorted(d for d in days if d <= follow_up))


def _score(frame: pl.DataFrame, outputs: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Endpoints per subject ("r<row>"), in row order: the clinical layer's tables, then
    cartwin.endpoints."""
    from cartwin.clinical import observations_from_frame, score_observations
    from cartwin.endpoints import compute

    obs = observations_from_frame(frame, "<sensitivity>")
    # the binary endpoint bcell_aplasia tells a patient never aplastic (false) from one without counts
    extra = ["bcell_aplasia"] if "bcell_aplasia_days" in outputs else []
    endpoints = compute(score_observations(obs), obs.frame, keys=[*outputs, *extra])
    subjects = frame.select("subject").unique(maintain_order=True)
    per_run = subjects.join(endpoints, on="subject", how="left")
    out = {}
    for o in outputs:
        values = per_run[o].cast(pl.Float64).to_numpy()
        if o == "bcell_aplasia_days":
            never = (~per_run["bcell_aplasia"]).fill_null(False).to_numpy()
            values = np.where(never, OUTSIDE_POPULATION[o], values)
        elif o in OUTSIDE_POPULATION:
            values = np.where(np.isnan(values), OUTSIDE_POPULATION[o], values)
        out[o] = values
    return out


def sensitivity(protocol, outputs: list[str] | None = None, parameters: list[str] | None = None,
                ranges: dict[str, tuple[float, float]] | None = None, arm: str | None = None,
                patient: int = 0, n: int = 64, seed: int = 1, out: str | Path | None = None,
                chunk: int = 256) -> SensitivityResult:
    """Sobol indices of ``outputs`` (keys of :data:`OUTPUTS`) over ``parameters`` of the model."""
    from SALib.analyze import sobol as sobol_analyze
    from SALib.sample import sobol as sobol_sample

    from cartwin.model import get_model
    from cartwin.plan.work import typical_parameters
    from cartwin.population.virtual import generate
    from cartwin.simulate.engine import covariate_matrix, make_solver, solve
    from cartwin.therapy.arm import resolve_arm

    outputs = tuple(outputs or OUTPUTS)
    unknown = [o for o in outputs if o not in OUTPUTS]
    if unknown:
        raise FitError(f"unknown outputs {unknown}; choose from {sorted(OUTPUTS)}")
    if n < 2 or n & (n - 1):
        raise FitError(f"n = {n}: the Sobol sequence needs a power of 2 (e.g. 64, 128, 256)")
    out_path = Path(out) if out is not None else None
    if out_path is not None and out_path.exists() and (not out_path.is_dir() or any(out_path.iterdir())):
        raise FitError(f"{out_path}: output directory exists and is not empty; choose a new directory")
    model = get_model(protocol.model)
    arms = {a.id: (i, a) for i, a in enumerate(protocol.arms)}
    if arm is not None and arm not in arms:
        raise FitError(f"arm {arm!r} is not in the protocol (arms: {sorted(arms)})")
    arm_index, arm_decl = arms[arm] if arm is not None else (0, protocol.arms[0])
    follow_up = float(protocol.follow_up_days)
    if "sledai0_month6" in outputs and follow_up < MONTH6_DAY:
        raise FitError(f"sledai0_month6 needs follow-up to day {MONTH6_DAY:g}; the protocol follows "
                       f"patients to day {follow_up:g}")
    therapy = resolve_arm(protocol, arm_decl)
    typical_vector = typical_parameters(model, therapy)
    typical = dict(zip(model.parameter_names, typical_vector))
    names = list(parameters) if parameters else [p.name for p in model.parameters if p.iiv > 0]
    bad = [p for p in names if p not in typical]
    if bad:
        raise FitError(f"parameters {bad} are not parameters of model {model.name}")
    if len(set(names)) != len(names) or len(names) < 2:
        raise FitError(f"need at least two distinct parameters, got {names}")
    ranges = dict(ranges or {})
    stray = [p for p in ranges if p not in names]
    if stray:
        raise FitError(f"ranges given for {stray}, which are not among the varied parameters {names}")
    bounds = default_ranges(model, typical, names, ranges)

    pop = generate(model, protocol.population, arm_decl.id, np.array([patient]), protocol.seed, typical_vector)
    covariates = covariate_matrix(model, pop.covariates, 1)
    (doses,) = therapy.patient_doses(pop.covariates)

    problem = {"num_vars": len(names), "names": names, "bounds": np.log(bounds).tolist()}
    log_samples = sobol_sample.sample(problem, n, calc_second_order=False, seed=seed)
    samples = np.exp(log_samples)
    columns = [model.parameter_names.index(p) for p in names]
    s = protocol.solver
    solver = make_solver(s.backend, rtol=s.rtol, atol=s.atol)
    days = _grid(protocol, follow_up)
    tests = [o.test for o in model.observables]
    units = [o.unit for o in model.observables]
    values = {o: np.full(len(samples), np.nan) for o in outputs}
    failed = 0
    for start in range(0, len(samples), chunk):
        rows = np.arange(start, min(start + chunk, len(samples)))
        theta = np.tile(typical_vector, (rows.size, 1))
        theta[:, columns] = samples[rows]
        result = solve(model, theta, np.repeat(covariates, rows.size, axis=0), [doses] * rows.size, days,
                       solver, nonnegative=False)
        failed += int((~result.ok).sum())
        ok_rows = rows[result.ok]
        if ok_rows.size == 0:
            continue
        obs = result.observations[result.ok]  # (n_ok, T, O)
        n_ok, n_t, n_o = obs.shape
        frame = pl.DataFrame({
            "subject": np.repeat([f"r{r}" for r in ok_rows], n_t * n_o),
            "arm": [arm_decl.id] * (n_ok * n_t * n_o),
            "day": np.tile(np.repeat(days, n_o), n_ok),
            "test": np.tile(tests, n_ok * n_t), "value": obs.reshape(-1),
            "unit": np.tile(units, n_ok * n_t)})
        scored = _score(frame, outputs)
        for o in outputs:
            values[o][ok_rows] = scored[o]
    indices = {}
    for o in outputs:
        y = values[o]
        if np.isnan(y).any():
            # SALib needs every run; a failed solve is rare and gets the mean so the design stays whole
            y = np.where(np.isnan(y), np.nanmean(y), y)
        if np.nanvar(y) == 0:
            zeros = np.zeros(len(names))
            indices[o] = {"S1": zeros, "S1_conf": zeros, "ST": zeros, "ST_conf": zeros, "constant": True}
            continue
        res = sobol_analyze.analyze(problem, y, calc_second_order=False, seed=seed)
        indices[o] = {k: np.asarray(res[k]) for k in ("S1", "S1_conf", "ST", "ST_conf")}
        indices[o]["constant"] = False
    result = SensitivityResult(tuple(names), outputs, bounds, samples, values, indices, len(samples), failed)
    if out_path is not None:
        _write(result, out_path, model, protocol, arm_decl.id, patient, n, seed, typical)
    return result


def _atomic(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    follow_umask(fd)
    os.close(fd)
    write(tmp)
    os.replace(tmp, path)


def _write(result: SensitivityResult, out: Path, model, protocol, arm: str, patient: int, n: int,
           seed: int, typical: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cartwin import __version__

    out.mkdir(parents=True, exist_ok=True)
    _atomic(out / "sobol_indices.parquet", result.table().write_parquet)
    runs = pl.DataFrame({**{p: result.samples[:, k] for k, p in enumerate(result.parameters)},
                         **{o: result.values[o] for o in result.outputs}})
    _atomic(out / "runs.parquet", runs.write_parquet)
    meta = {
        "method": "Sobol indices (SALib: Saltelli/Sobol sequence sampling, sobol.analyze, first-order "
                  "and total, 95% bootstrap intervals), second-order indices not computed",
        "outputs": {o: OUTPUTS[o] for o in result.outputs},
        "constant_outputs": [o for o in result.outputs if result.indices[o]["constant"]],
        "parameters": [{"name": p, "typical": float(typical[p]), "low": float(result.bounds[k, 0]),
                        "high": float(result.bounds[k, 1]), "sampled": "uniform in log"}
                       for k, p in enumerate(result.parameters)],
        "n_base": n, "n_runs": result.n_runs, "n_failed_solves": result.n_failed, "seed": seed,
        "protocol": protocol.study_id, "arm": arm, "patient_index": patient,
        "model": model.name, "model_hash": model.content_hash(), "cartwin": __version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    _atomic(out / "sensitivity.json", lambda p: Path(p).write_text(json.dumps(meta, indent=2)))
    top = 15
    fig, axes = plt.subplots(1, len(result.outputs), figsize=(4.2 * len(result.outputs), 0.35 * min(top, len(result.parameters)) + 1.8),
                             squeeze=False)
    for ax, o in zip(axes[0], result.outputs):
        idx = result.indices[o]
        order = np.argsort(idx["ST"])[::-1][:top][::-1]
        y = np.arange(order.size)
        ax.barh(y + 0.2, idx["ST"][order], 0.4, xerr=idx["ST_conf"][order], label="total (ST)", color="tab:blue")
        ax.barh(y - 0.2, idx["S1"][order], 0.4, xerr=idx["S1_conf"][order], label="first order (S1)", color="tab:orange")
        ax.set_yticks(y, [result.parameters[k] for k in order])
        ax.set_xlim(-0.05, 1.05)
        ax.set_title(o + (" (constant)" if idx["constant"] else ""), fontsize=10)
    axes[0, 0].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"Sobol indices, {protocol.study_id} arm {arm}, patient {patient}, {result.n_runs} runs", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "sobol.png", dpi=110)
    plt.close(fig)
