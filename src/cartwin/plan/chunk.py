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

    @property
    def n_failed(self) -> int:
        return int(pc.sum(pc.equal(self.patients["status"], "failed")).as_py() or 0)


def run_chunk(work: RunWork, spec: ChunkSpec) -> ChunkResult:
    model = work.model
    arm = work.arms[spec.arm_index]
    pop = generate(model, work.population, spec.arm_id, np.arange(spec.start, spec.stop), work.seed,
                   arm.typical, work.variability)
    n = len(pop.subject)
    days = np.asarray(work.days, float)
    other = None
    if work.imported:
        solved = solve_with_events(model, pop.theta, np.zeros((n, 0)), [work.fixed_doses] * n, days,
                                   work.solver(), work.fixed_events, which=work.which, origin=0.0,
                                   nonnegative=work.nonnegative)
        # the event table records what each event added for this patient, in the state's unit
        scales = compile_model(model).dose_scales(solved.constants)
        route = {d.name: j for j, d in enumerate(model.doses)}
        doses = [[replace(d, amount=d.amount * scales[i, route[d.route]]) for d in work.fixed_doses]
                 for i in range(n)]
    elif arm.rules:  # rules that react to the patient: evaluated inside the simulation
        ruled = solve_with_rules(model, pop.theta, pop.covariates, arm.therapy.patient_doses(pop.covariates),
                                 days, work.solver(), arm.rules, np.asarray(pop.covariates["WT"], float),
                                 which=work.which)
        solved, doses, other = ruled.solved, ruled.doses, ruled.other
    else:
        doses = arm.therapy.patient_doses(pop.covariates)
        solved = solve(model, pop.theta, pop.covariates, doses, days, work.solver(), which=work.which)
    observed = None
    if work.observation_model:  # after the solve, from the patients' own observation streams
        stored_obs = [model.observables[i] for i in solved.which]
        observed = observe(tuple(o.test for o in stored_obs), tuple(o.unit for o in stored_obs),
                           solved.observations, work.seed, arm_key(spec.arm_id), pop.index)
    stored = solved.ok
    if work.imported:
        # a failed patient of an imported model keeps the days its solve reached (its status
        # says it failed, and why); cartwin's own models store complete patients only, which
        # their clinical scoring needs
        stored = solved.ok | np.any(np.isfinite(solved.observations), axis=(1, 2))
    observations = observations_table(pop, model, days, solved.observations, stored, solved.which,
                                      observed=observed)
    if (stored & ~solved.ok).any():
        partial = np.repeat(~solved.ok[stored], days.size * len(solved.which))
        observations = observations.filter(pc.invert(pc.and_(pa.array(partial), pc.is_nan(observations["value"]))))
    return ChunkResult(spec, patients_table(pop, model, arm.therapy, solved.ok, solved.reasons),
                       parameters_table(pop, model), observations, events_table(pop, model, doses, days, other))
