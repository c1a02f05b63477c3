"""One chunk of a run: its virtual patients, their doses, one call to the engine, tidy tables."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cartwin.model.codegen import compile_model
from cartwin.plan.chunks import ChunkSpec
from cartwin.plan.rules import solve_with_rules
from cartwin.plan.work import RunWork
from cartwin.observation import observe
from cartwin.population.virtual import arm_key, generate
from cartwin.simulate.engine import solve
from cartwin.simulate.timed_events import solve_with_events
from cartwin.store.tables import events_table, observations_table, parameters_table, patients_table


@dataclass(frozen=True)
class ChunkResult:
    spec: ChunkSpec
    patients: pa.Table
    parameters: pa.Table
    observations: pa.Table
    events: pa.Table
    scoring_observations: pa.Table | None = None
    """Every ok patient's observations, when some of them are not stored (``observations`` holds
    the stored ones): what the clinical scores of the chunk are computed from as the run streams."""

    @property
    def n_failed(self) -> int:
        return int(pc.sum(pc.equal(self.patients["status"], "failed")).as_py() or 0)


def run_chunk(work: RunWork, spec: ChunkSpec) -> ChunkResult:
    model = work.model
    arm = work.arms[spec.arm_index]
    replicate = getattr(spec, "replicate", None)
    typical, variability = work.replicate_inputs(spec.arm_index, replicate)
    stream = spec.stream or spec.arm_id
    pop = generate(model, work.population, stream, np.arange(spec.start, spec.stop), work.seed,
                   typical, variability, replicate=None if work.same_patients else replicate,
                   subject_prefix="" if replicate is None else f"r{replicate + 1:04d}-")
    if stream != spec.arm_id:  # shared patients, labelled with this arm
        pop = replace(pop, arm=spec.arm_id, subject=[f"{spec.arm_id}-{s[len(stream) + 1:]}" for s in pop.subject])
    n = len(pop.subject)
    days = np.asarray(work.days, float)
    other = None
    # with visit windows the solver is asked for every day a visit may fall on
    grid = np.asarray(work.solve_days, float) if work.solve_days else days
    if work.imported:
        solved = solve_with_events(model, pop.theta, np.zeros((n, 0)), [work.fixed_doses] * n, grid,
                                   work.solver(), work.fixed_events, which=work.which, origin=0.0,
                                   nonnegative=work.nonnegative)
        # the event table records what each event added for this patient, in the state's unit
        scales = compile_model(model).dose_scales(solved.constants)
        route = {d.name: j for j, d in enumerate(model.doses)}
        doses = [[replace(d, amount=d.amount * scales[i, route[d.route]]) for d in work.fixed_doses]
                 for i in range(n)]
    elif arm.rules:  # rules that react to the patient: evaluated inside the simulation
        ruled = solve_with_rules(model, pop.theta, pop.covariates, arm.therapy.patient_doses(pop.covariates),
                                 grid, work.solver(), arm.rules, np.asarray(pop.covariates["WT"], float),
                                 which=work.which)
        solved, doses, other = ruled.solved, ruled.doses, ruled.other
    else:
        doses = arm.therapy.patient_doses(pop.covariates)
        solved = solve(model, pop.theta, pop.covariates, doses, grid, work.solver(), which=work.which)
    patients = patients_table(pop, model, arm.therapy, solved.ok, solved.reasons)
    sample_days, values = days, solved.observations
    if work.conduct is not None:
        patients, sample_days, values = _conduct(work, spec, pop, days, grid, solved, patients, replicate)
    if replicate is not None:
        patients = patients.add_column(2, "replicate", pa.array(np.full(n, replicate + 1), pa.int32()))
    observed = None
    if work.observation_model:  # after the solve, from the patients' own observation streams
        stored_obs = [model.observables[i] for i in solved.which]
        observed = observe(tuple(o.test for o in stored_obs), tuple(o.unit for o in stored_obs),
                           values, work.seed, arm_key(spec.arm_id), pop.index)
    stored = solved.ok
    if work.imported:
        # a failed patient of an imported model keeps the days its solve reached (its status
        # says it failed, and why); cartwin's own models store complete patients only, which
        # their clinical scoring needs
        stored = solved.ok | np.any(np.isfinite(values), axis=(1, 2))
    every = observations_table(pop, model, sample_days, values, stored, solved.which, observed=observed)
    if (stored & ~solved.ok).any() and np.ndim(sample_days) == 1:
        partial = np.repeat(~solved.ok[stored], sample_days.size * len(solved.which))
        every = every.filter(pc.invert(pc.and_(pa.array(partial), pc.is_nan(every["value"]))))
    # a run may store the observations of the first patients of each arm only (outputs sized for
    # the question); the others are scored from ``every`` while the run streams
    keep = work.stores_observations(pop.index)
    if keep.all():
        kept = every
    elif not keep.any():  # most chunks of a large arm: no row to look at
        kept = every.slice(0, 0)
    else:
        kept = every.filter(pc.is_in(every["subject"], pa.array(
            [s for s, k in zip(pop.subject, keep) if k], pa.string())))
    return ChunkResult(spec, patients, parameters_table(pop, model), kept,
                       events_table(pop, model, doses, sample_days, other, sampled=keep),
                       None if keep.all() else every)


def _conduct(work: RunWork, spec: ChunkSpec, pop, days: np.ndarray, grid: np.ndarray, solved,
             patients: pa.Table, replicate: int | None) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """Visit windows, missed visits and withdrawal (cartwin.plan.conduct). Returns the patients
    table with ``withdrawn_day``, ``withdrawal_reason`` and ``visits_missed``, each patient's
    sampling days (N, T: the day each scheduled visit happened, NaN where no sample was taken) and
    the values there (N, T, read-outs)."""
    from cartwin.plan.conduct import actual_days, apply_conduct, conduct_uniforms
    n, t = len(pop.subject), days.size
    window = work.conduct.visits.window_days
    if window > 0:
        u = conduct_uniforms(work.seed, spec.arm_id, pop.index, replicate, t)
        actual = actual_days(u, days, window, work.follow_up_days)
        values = solved.observations[np.arange(n)[:, None], np.searchsorted(grid, actual)]
    else:
        actual, values = np.broadcast_to(days, (n, t)).copy(), solved.observations
    tests = [work.model.observables[i].test for i in solved.which]
    needed = {h.test for h in work.conduct.dropout if h.test is not None}
    result = apply_conduct(work.conduct, work.seed, spec.arm_id, pop.index, replicate, days,
                           {k: values[:, :, tests.index(k)] for k in needed}, actual if window > 0 else None)
    ok = np.asarray(solved.ok, bool)
    withdrawn = np.where(ok, result.withdrawn_day, np.nan)
    patients = (patients
                .append_column("withdrawn_day", pa.array(withdrawn, pa.float64(), from_pandas=True))
                .append_column("withdrawal_reason", pa.array([r if o else "" for r, o in zip(result.reason, ok)], pa.string()))
                .append_column("visits_missed", pa.array(np.where(ok, result.missed, 0), pa.int32())))
    return patients, np.where(result.keep, actual, np.nan), values
