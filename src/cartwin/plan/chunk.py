"""One chunk of a run: its virtual patients, their doses, one call to the engine, tidy tables."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cartwin.model.codegen import compile_model
from cartwin.plan.chunks import ChunkSpec
from cartwin.plan.work import RunWork
from cartwin.population.virtual import generate
from cartwin.simulate.engine import solve
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
    pop = generate(model, work.population, spec.arm_id, np.arange(spec.start, spec.stop), work.seed,
                   arm.typical, work.variability)
    n = len(pop.subject)
    days = np.asarray(work.days, float)
    if work.imported:
        solved = solve(model, pop.theta, np.zeros((n, 0)), [work.fixed_doses] * n, days, work.solver(),
                       which=work.which, origin=0.0, nonnegative=False)
        # the event table records what each event added for this patient, in the state's unit
        scales = compile_model(model).dose_scales(solved.constants)
        route = {d.name: j for j, d in enumerate(model.doses)}
        doses = [[replace(d, amount=d.amount * scales[i, route[d.route]]) for d in work.fixed_doses]
                 for i in range(n)]
    else:
        doses = arm.therapy.patient_doses(pop.covariates)
        solved = solve(model, pop.theta, pop.covariates, doses, days, work.solver(), which=work.which)
    stored = work.stores_observations(pop.index)
    every = observations_table(pop, model, days, solved.observations, solved.ok, solved.which)
    kept = every if stored.all() else observations_table(pop, model, days, solved.observations,
                                                          solved.ok & stored, solved.which)
    return ChunkResult(spec, patients_table(pop, model, arm.therapy, solved.ok, solved.reasons),
                       parameters_table(pop, model), kept,
                       events_table(pop, model, doses, days, sampled=stored),
                       None if stored.all() else every)
