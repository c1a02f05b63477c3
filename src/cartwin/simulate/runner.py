"""From a protocol to simulated patients: planning chunks, solving them, collecting results.

A chunk is a contiguous block of patients of one arm. Everything about a patient is computed
inside its chunk from the patient's own random stream, so the numbers do not depend on the
chunk size, the number of workers or the order in which chunks run.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from cartwin.model import get_model
from cartwin.model.codegen import compile_model, warm_up
from cartwin.model.declaration import Model
from cartwin.population.covariates import PATIENT_COVARIATES
from cartwin.population.virtual import generate
from cartwin.protocol.load import schedule_days
from cartwin.protocol.schema import Protocol
from cartwin.simulate.events import EVENT_COLUMNS, doses_to_schedule
from cartwin.simulate.schedule import build_schedule
from cartwin.simulate.solvers import BACKENDS, SolveResult
from cartwin.therapy.arm import ArmTherapy, resolve_arm
from cartwin.vocabulary import test_codes

MAX_CHUNK = 500
MIN_CHUNK = 16


@dataclass(frozen=True)
class ChunkSpec:
    arm_index: int
    arm_id: str
    start: int
    stop: int

    @property
    def name(self) -> str:
        return f"part-{self.arm_index:03d}-{self.start:09d}"


@dataclass(frozen=True)
class Plan:
    """What a run will compute. Stored in run.json so that a resumed run computes the same."""

    n_per_arm: dict[str, int]
    chunk_size: int
    seed: int
    chunks: tuple[ChunkSpec, ...] = field(repr=False)

    def to_json(self) -> dict:
        return {"n_per_arm": self.n_per_arm, "chunk_size": self.chunk_size, "seed": self.seed}


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def auto_chunk_size(n_total: int, workers: int) -> int:
    """Enough chunks to keep every worker busy and to bound memory; no more than needed."""
    return int(min(MAX_CHUNK, max(MIN_CHUNK, math.ceil(n_total / (4 * workers)))))


def make_plan(protocol: Protocol, n_per_arm: int | None = None, seed: int | None = None,
              chunk_size: int | None = None, workers: int | None = None) -> Plan:
    explicit = protocol.population.patients if protocol.population is not None else None
    counts = {}
    for arm in protocol.arms:
        if n_per_arm is not None:
            counts[arm.id] = int(n_per_arm)
        elif explicit is not None:
            counts[arm.id] = len(explicit)
        else:
            counts[arm.id] = int(arm.n)
    size = chunk_size or auto_chunk_size(sum(counts.values()), workers or default_workers())
    chunks = tuple(ChunkSpec(i, arm.id, s, min(s + size, counts[arm.id]))
                   for i, arm in enumerate(protocol.arms) for s in range(0, counts[arm.id], size))
    return Plan(counts, size, protocol.seed if seed is None else int(seed), chunks)


@dataclass(frozen=True)
class Context:
    """Everything a worker needs to compute any chunk (picklable)."""

    protocol: Protocol
    seed: int
    days: tuple[float, ...]
    imported: Any = None
    """An imported model and its fixed-time doses (``cartwin.io.sbml_import.ImportedModel``)."""

    @property
    def model(self) -> Model:
        return self.imported.model if self.imported is not None else get_model(self.protocol.model)

    def therapy(self, arm_index: int) -> ArmTherapy:
        return resolve_arm(self.protocol, self.protocol.arms[arm_index])

    def solver(self):
        s = self.protocol.solver
        return BACKENDS[s.backend](rtol=s.rtol, atol=s.atol)


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


def typical_parameters(model: Model, therapy: ArmTherapy) -> np.ndarray:
    theta = np.array([p.value for p in model.parameters])
    index = {n: i for i, n in enumerate(model.parameter_names)}
    for name, value in therapy.product.mechanism_parameters().items():
        theta[index[name]] = value
    return theta


def make_context(protocol: Protocol, seed: int) -> Context:
    """The context of a run; an SBML model named by the protocol is imported here."""
    imported = None
    if protocol.model.startswith("sbml:"):
        from cartwin.io.sbml_import import import_sbml  # only runs with SBML models need it
        from cartwin.protocol import ProtocolError
        path = protocol.model[len("sbml:"):]
        try:
            imported = import_sbml(path)
        except ValueError as exc:  # the importer's errors list the unsupported constructs
            raise ProtocolError(path, [str(exc)]) from None
        unknown = sorted(set(protocol.model_variability) - set(imported.model.parameter_names))
        if unknown:
            raise ProtocolError(path, [f"model_variability: unknown parameters {unknown}; the SBML "
                                       f"model has {list(imported.model.parameter_names)}"])
    return Context(protocol, seed, tuple(schedule_days(protocol)), imported)


def run_chunk(ctx: Context, spec: ChunkSpec) -> ChunkResult:
    if ctx.imported is not None:
        return _run_imported_chunk(ctx, spec)
    model = ctx.model
    compiled = compile_model(model)
    therapy = ctx.therapy(spec.arm_index)
    pop = generate(model, ctx.protocol.population, spec.arm_id, np.arange(spec.start, spec.stop),
                   ctx.seed, typical_parameters(model, therapy), ctx.protocol.model_variability)
    missing = [c for c in model.covariate_names if c not in pop.covariates]
    if missing:
        raise ValueError(f"model {model.name} needs covariates {missing} that the population lacks")
    cov_matrix = np.column_stack([pop.covariates[c] for c in model.covariate_names])
    K = compiled.constants(pop.theta, cov_matrix)
    Y0 = compiled.initial(K)
    scales = compiled.dose_scales(K)
    days = np.asarray(ctx.days, float)
    n = len(pop.subject)
    doses = [therapy.doses(pop.covariates["BSA"][i], pop.covariates["WT"][i], pop.covariates["CRCL"][i])
             for i in range(n)]
    schedules = [doses_to_schedule(d, model, scales[i]) for i, d in enumerate(doses)]
    result = reject_negative_states(ctx.solver().solve(compiled, K, Y0, schedules, days), model,
                                    ctx.protocol.solver.atol, ctx.protocol.solver.rtol)
    which = stored_observables(model, ctx.protocol.outputs)
    obs = _observe_ok(compiled, result, K, days, which)
    return ChunkResult(spec, _patients_table(pop, therapy, result),
                       _parameters_table(pop, model), _observations_table(pop, model, days, obs, result.ok, which),
                       _events_table(pop, model, doses, days))


def _observe_ok(compiled, result: SolveResult, K: np.ndarray, days: np.ndarray, which: list[int]) -> np.ndarray:
    """Read-outs ``which`` of the patients that solved; NaN for those that failed."""
    obs = np.full(result.states.shape[:2] + (len(which),), np.nan)
    if result.ok.any():
        obs[result.ok] = compiled.observe(result.states[result.ok], K[result.ok], days, which)
    return obs


NEGATIVE_TOLERANCE_FACTOR = 100.0


def reject_negative_states(result, model: Model, atol: float, rtol: float = 1e-6):
    """cartwin's own models keep every state nonnegative. A state a little below zero is
    round-off within the solver's error control (100 x (atol + rtol x the state's largest
    value)) and is set to zero; one further below means the solve went wrong, and the patient
    is marked failed with the state named."""
    states = result.states
    ok = result.ok.copy()
    reasons = list(result.reasons)
    for i in np.flatnonzero(ok):
        worst = states[i].min(axis=0)
        limit = -NEGATIVE_TOLERANCE_FACTOR * (atol + rtol * np.abs(states[i]).max(axis=0))
        if np.any(worst < limit):
            j = int(np.argmin(worst))
            ok[i] = False
            reasons[i] = (f"state {model.state_names[j]} went negative ({worst[j]:.3g}), beyond "
                          "the solver's error control")
            states[i] = np.nan
    np.maximum(states, 0.0, out=states, where=~np.isnan(states))
    return SolveResult(states, ok, reasons)


def _run_imported_chunk(ctx: Context, spec: ChunkSpec) -> ChunkResult:
    """A chunk of an imported (SBML) model: its own doses, no covariates, time 0 = model start."""
    import sympy as sp

    model = ctx.model
    compiled = compile_model(model)
    typical = np.array([p.value for p in model.parameters], float)
    pop = generate(model, None, spec.arm_id, np.arange(spec.start, spec.stop), ctx.seed, typical,
                   ctx.protocol.model_variability)
    n = len(pop.subject)
    K = compiled.constants(pop.theta, np.zeros((n, 0)))
    Y0 = compiled.initial(K)
    index = {s: i for i, s in enumerate(model.state_names)}
    doses = ctx.imported.doses
    schedules, dose_rows = [], []
    for i in range(n):
        env = {sp.Symbol(c, real=True): K[i, j] for j, c in enumerate(compiled.CONSTANT_NAMES)}
        amounts = np.array([float(d.amount.xreplace(env)) for d in doses], float)
        schedules.append(build_schedule(len(index), np.array([d.time for d in doses], float),
                                        np.array([index[d.state] for d in doses], int), amounts,
                                        np.zeros(len(doses))))
        dose_rows.append(amounts)
    days = np.asarray(ctx.days, float)
    grid = days if days[0] == 0.0 else np.concatenate([[0.0], days])  # SBML starts at time 0
    result = ctx.solver().solve(compiled, K, Y0, schedules, grid)
    which = stored_observables(model, ctx.protocol.outputs)
    obs = _observe_ok(compiled, result, K, grid, which)[:, grid.size - days.size:]
    patients = pa.table({"subject": pop.subject, "arm": [pop.arm] * n,
                         "index": pop.index.astype(np.int64), "model": [model.name] * n,
                         "status": np.where(result.ok, "ok", "failed"), "failure_reason": result.reasons})
    events = {k: [] for k in ("ID", "TIME", "EVID", "CMT", "CMTNAME", "AMT")}
    for subject, amounts in zip(pop.subject, dose_rows):
        for d, amount in zip(doses, amounts):
            for key, value in zip(events, (subject, d.time, 1, index[d.state] + 1, d.state, amount)):
                events[key].append(value)
    return ChunkResult(spec, patients, _parameters_table(pop, model),
                       _observations_table(pop, model, days, obs, result.ok, which), pa.table(events))


def _patients_table(pop, therapy: ArmTherapy, result) -> pa.Table:
    n = len(pop.subject)
    cols = {
        "subject": pop.subject,
        "arm": [pop.arm] * n,
        "index": pop.index.astype(np.int64),
        "product": [therapy.product.name] * n,
        "regimen": [therapy.regimen.name] * n,
        # float64 in every part (null for a flat dose), so that the parts of a protocol mixing
        # flat-dose and per-kg arms read as one table
        "dose_cells_per_kg": pa.array([therapy.cells_per_kg] * n, type=pa.float64()),
        "dose_cells": (therapy.cells_per_kg * pop.covariates["WT"] if therapy.cells_per_kg is not None
                       else np.full(n, therapy.flat_cells, dtype=np.float64)),
        "sex": np.where(pop.covariates["SEXF"] > 0.5, "F", "M"),
    }
    for name in PATIENT_COVARIATES:
        if name != "SEXF":
            cols[name] = pop.covariates[name]
    cols["status"] = np.where(result.ok, "ok", "failed")
    cols["failure_reason"] = result.reasons
    return pa.table(cols)


def _parameters_table(pop, model: Model) -> pa.Table:
    cols = {"subject": pop.subject}
    for j, name in enumerate(model.parameter_names):
        cols[name] = pop.theta[:, j]
    return pa.table(cols)


def stored_observables(model: Model, outputs: tuple[str, ...] | None) -> list[int]:
    """Indices of the observables a run stores (the protocol's ``outputs``, or all)."""
    return [i for i, o in enumerate(model.observables) if not outputs or o.test in outputs]


def _observations_table(pop, model: Model, days: np.ndarray, obs: np.ndarray, ok: np.ndarray,
                        which: list[int]) -> pa.Table:
    """The long table of ok patients; ``obs`` holds the observables ``which`` (in that order)."""
    observables = [model.observables[i] for i in which]
    tests = [o.test for o in observables]
    units = [o.unit for o in observables]
    idx = np.flatnonzero(ok)
    n_ok, n_t, n_o = idx.size, days.size, len(tests)
    subject = np.repeat(np.asarray(pop.subject, dtype=object)[idx], n_t * n_o)
    day = np.tile(np.repeat(days, n_o), n_ok)
    test_idx = np.tile(np.arange(n_o), n_ok * n_t)
    test_dict = pa.array(tests)
    # a dictionary of distinct units, so that the same values always give the same bytes
    distinct_units = sorted(set(units))
    unit_code = np.array([distinct_units.index(u) for u in units], dtype=np.int32)
    unit_dict = pa.array(distinct_units)
    return pa.table({
        "subject": pa.array(subject, pa.string()),
        "arm": pa.DictionaryArray.from_arrays(np.zeros(subject.size, np.int32), pa.array([pop.arm])),
        "day": pa.array(day, pa.float64()),
        "test": pa.DictionaryArray.from_arrays(test_idx.astype(np.int32), test_dict),
        "value": pa.array(obs[idx].reshape(-1), pa.float64()),
        "unit": pa.DictionaryArray.from_arrays(unit_code[test_idx], unit_dict),
    })


EVENT_SCHEMA = pa.schema([("ID", pa.string()), ("TIME", pa.float64()), ("EVID", pa.int8()),
                          ("CMT", pa.int16()), ("CMTNAME", pa.string()), ("AMT", pa.float64()),
                          ("AMTU", pa.string()), ("RATE", pa.float64()), ("DVID", pa.string()),
                          ("DV", pa.float64()), ("MDV", pa.int8()), ("DRUG", pa.string()),
                          ("NOTE", pa.string())])


def _events_table(pop, model: Model, doses, days: np.ndarray) -> pa.Table:
    """Dose rows (EVID 1) and one sampling row (EVID 0, MDV 1) per assessment day, ordered by
    subject, time and, at equal times, sampling first (a sample on a dose day is pre-dose)."""
    index = {s: i + 1 for i, s in enumerate(model.state_names)}
    dose_rows = []
    for p, patient_doses in enumerate(doses):
        for d in patient_doses:
            route = model.dose_input(d.route)
            dose_rows.append((p, d.day, index[route.state], route.state, d.amount, route.unit,
                              d.amount / d.duration_days if d.duration_days > 0 else 0.0, d.drug, d.note))
    n, n_days, n_doses = len(pop.subject), days.size, len(dose_rows)
    patient = np.concatenate([np.repeat(np.arange(n), n_days),
                              np.array([r[0] for r in dose_rows], dtype=np.int64)])
    time = np.concatenate([np.tile(days.astype(float), n), np.array([r[1] for r in dose_rows], float)])
    evid = np.concatenate([np.zeros(n * n_days, np.int8), np.ones(n_doses, np.int8)])
    order = np.lexsort((evid, time, patient))  # stable: doses keep their given order

    def column(sampling_value, dose_values, dtype):
        values = np.empty(n * n_days + n_doses, dtype=object)
        values[: n * n_days] = sampling_value
        values[n * n_days:] = dose_values
        return pa.array(values[order], dtype)

    table = {
        "ID": pa.array(np.asarray(pop.subject, dtype=object)[patient[order]], pa.string()),
        "TIME": pa.array(time[order], pa.float64()),
        "EVID": pa.array(evid[order], pa.int8()),
        "CMT": column(0, [r[2] for r in dose_rows], pa.int16()),
        "CMTNAME": column("", [r[3] for r in dose_rows], pa.string()),
        "AMT": column(0.0, [r[4] for r in dose_rows], pa.float64()),
        "AMTU": column("", [r[5] for r in dose_rows], pa.string()),
        "RATE": column(0.0, [r[6] for r in dose_rows], pa.float64()),
        "DVID": column("ALL", [""] * n_doses, pa.string()),
        "DV": pa.nulls(patient.size, pa.float64()),
        "MDV": pa.array(np.ones(patient.size, np.int8), pa.int8()),
        "DRUG": column("", [r[7] for r in dose_rows], pa.string()),
        "NOTE": column("", [r[8] for r in dose_rows], pa.string()),
    }
    return pa.table(table, schema=EVENT_SCHEMA)


# --- execution ------------------------------------------------------------------------------
def _worker_init() -> None:
    # one BLAS thread per worker process: parallelism comes from processes
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def execute(ctx: Context, chunks: Iterable[ChunkSpec], workers: int,
            on_result: Callable[[ChunkResult], object], start_method: str | None = None) -> Iterator[object]:
    """Compute chunks, in parallel processes when ``workers > 1``; yield ``on_result`` of each.
    ``on_result`` runs in the worker, so large tables need not travel back. Workers are forked
    (they inherit the compiled model) unless ``start_method`` says otherwise: ``"spawn"`` for an
    ``on_result`` that uses Polars, whose thread pool does not survive a fork."""
    chunks = list(chunks)
    compiled = compile_model(ctx.model)
    warm_up(compiled)  # compile once before forking; workers inherit the machine code
    ctx.solver().warm_up(compiled)
    if workers <= 1 or len(chunks) <= 1:
        for spec in chunks:
            yield on_result(run_chunk(ctx, spec))
        return
    method = start_method or ("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    mp = multiprocessing.get_context(method)
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp, initializer=_worker_init) as pool:
        pending = set()
        queue = iter(chunks)
        for spec in queue:
            pending.add(pool.submit(_run_and_handle, ctx, spec, on_result))
            if len(pending) >= 2 * workers:
                break
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                yield fut.result()
                nxt = next(queue, None)
                if nxt is not None:
                    pending.add(pool.submit(_run_and_handle, ctx, nxt, on_result))


def _run_and_handle(ctx: Context, spec: ChunkSpec, on_result):
    return on_result(run_chunk(ctx, spec))


@dataclass(frozen=True)
class Simulation:
    """An in-memory simulation (for tests, notebooks and small studies)."""

    patients: pl.DataFrame
    observations: pl.DataFrame
    parameters: pl.DataFrame
    events: pl.DataFrame
    plan: Plan


def _identity(result: ChunkResult) -> ChunkResult:
    return result


def simulate(protocol: Protocol, n_per_arm: int | None = None, seed: int | None = None,
             workers: int | None = None, chunk_size: int | None = None) -> Simulation:
    """Simulate a protocol in memory and return tidy tables (no files written)."""
    workers = workers or 1
    plan = make_plan(protocol, n_per_arm, seed, chunk_size, workers)
    ctx = make_context(protocol, plan.seed)
    results = sorted(execute(ctx, plan.chunks, workers, _identity),
                     key=lambda r: (r.spec.arm_index, r.spec.start))
    def cat(name):
        return pl.from_arrow(pa.concat_tables([getattr(r, name) for r in results]).combine_chunks())
    obs = cat("observations").with_columns(pl.col("arm").cast(pl.String), pl.col("test").cast(pl.String),
                                           pl.col("unit").cast(pl.String))
    return Simulation(cat("patients"), obs, cat("parameters"), cat("events"), plan)


def check_vocabulary(model: Model) -> None:
    codes = test_codes()
    for o in model.observables:
        if o.test not in codes:
            raise ValueError(f"model {model.name}: observable {o.test} is not in the test-code vocabulary")
        if codes[o.test].unit != o.unit:
            raise ValueError(f"model {model.name}: observable {o.test} in {o.unit}, vocabulary says "
                             f"{codes[o.test].unit}")
