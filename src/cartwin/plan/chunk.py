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

    @property
    def n_failed(self) -> int:
        return int(pc.sum(pc.equal(self.patients["status"], "failed")).as_py() or 0)


def run_chunk(work: RunWork, spec: ChunkSpec) -> ChunkResult:
    model = work.model
    arm = work.arms[spec.arm_index]
    replicate = getattr(spec, "replicate", None)
    typical, variability = work.replicate_inputs(spec.arm_index, replicate)
    pop = generate(model, work.population, spec.arm_id, np.arange(spec.start, spec.stop), work.seed,
                   typical, variability, replicate=None if work.same_patients else replicate,
                   subject_prefix="" if replicate is None else f"r{replicate + 1:04d}-")
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
    patients = patients_table(pop, model, arm.therapy, solved.ok, solved.reasons)
    observations = observations_table(pop, model, days, solved.observations, solved.ok, solved.which)
    if work.conduct is not None:
        patients, observations = _conduct(work, spec, pop, days, solved, patients, observations, replicate)
    if replicate is not None:
        patients = patients.add_column(2, "replicate", pa.array(np.full(n, replicate + 1), pa.int32()))
    return ChunkResult(spec, patients, parameters_table(pop, model), observations,
                       events_table(pop, model, doses, days))


def _conduct(work: RunWork, spec: ChunkSpec, pop, days, solved, patients: pa.Table, observations: pa.Table,
             replicate: int | None) -> tuple[pa.Table, pa.Table]:
    """Missed visits and withdrawal (cartwin.plan.conduct): observations removed, and per patient
    ``withdrawn_day``, ``withdrawal_reason`` and ``visits_missed``."""
    from cartwin.plan.conduct import apply_conduct
    tests = [work.model.observables[i].test for i in solved.which]
    needed = {h.test for h in work.conduct.dropout if h.test is not None}
    values = {t: solved.observations[:, :, tests.index(t)] for t in needed}
    result = apply_conduct(work.conduct, work.seed, spec.arm_id, pop.index, replicate, days, values)
    ok = np.asarray(solved.ok, bool)
    withdrawn = np.where(ok, result.withdrawn_day, np.nan)
    patients = (patients
                .append_column("withdrawn_day", pa.array(withdrawn, pa.float64(), from_pandas=True))
                .append_column("withdrawal_reason", pa.array([r if o else "" for r, o in zip(result.reason, ok)], pa.string()))
                .append_column("visits_missed", pa.array(np.where(ok, result.missed, 0), pa.int32())))
    # the observation table holds ok patients, day by day, every stored test of a day together
    keep = np.repeat(result.keep[ok].reshape(-1), len(tests))
    return patients, observations.filter(pa.array(keep))
