"""The main workflow: protocol file -> run directory."""

from __future__ import annotations

import dataclasses
import platform
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import scipy

import cartwin
from cartwin.protocol import LoadedProtocol, ProtocolError
from cartwin.plan import Plan, check_loadable, default_workers, make_plan, make_work
from cartwin.simulate.execute import execute
from cartwin.store import layout
from cartwin.store.run_directory import RunDirectory


@dataclass
class RunSummary:
    out: Path
    n_total: int
    n_failed: int
    failed: list[tuple[str, str]] = field(default_factory=list)
    chunks_computed: int = 0
    chunks_reused: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # what the scoring will lack (scoring_notes)


def run_protocol(loaded: LoadedProtocol, out: str | Path, *, n_per_arm: int | None = None,
                 seed: int | None = None, workers: int | None = None, chunk_size: int | None = None,
                 resume: bool = False, progress: Callable[[int, int], None] | None = None,
                 cluster: str | None = None, score: bool = False) -> RunSummary:
    """Simulate ``loaded`` into the run directory ``out``. Checks everything before writing.

    ``cluster``: None computes in this process or a process pool of ``workers``; ``"local"``
    starts a local Dask cluster of ``workers`` processes; an address (``tcp://HOST:8786``) sends
    the chunks to that Dask scheduler, whose workers must see ``out`` (docs/cluster.md)."""
    if cluster is None:
        return _run_protocol(loaded, out, n_per_arm, seed, workers, chunk_size, resume, progress, None, score)
    from cartwin.simulate.distributed import DaskExecutor  # optional extra: cartwin[cluster]
    with DaskExecutor(cluster, workers or default_workers()) as executor:
        return _run_protocol(loaded, out, n_per_arm, seed, workers, chunk_size, resume, progress, executor, score)


def _run_protocol(loaded, out, n_per_arm, seed, workers, chunk_size, resume, progress, executor,
                  score=False) -> RunSummary:
    t0 = time.perf_counter()
    started = datetime.now(timezone.utc)
    protocol = loaded.protocol
    # an imported model is read (and checked) before anything is written
    ctx = check_loadable(protocol, seed, base=str(Path(loaded.source).parent))  # the same checks as `cartwin validate`
    model = ctx.model
    if score and ctx.imported:
        # refused before anything is written: the run would otherwise stop at its first scored chunk
        raise ProtocolError(loaded.source, [
            f"model {protocol.model!r}: the clinical scores and the report grade lupus read-outs "
            "(SLEDAI, CTCAE, ASTCT ...) that an imported SBML model does not give; run without "
            "--report, then `cartwin show` or read the tables (docs/run_directory.md)"])
    workers = workers or default_workers()
    # a remote cluster is asked how many threads it has; a local one is not started yet
    plan_workers = executor.planning_workers() if executor else workers
    rundir = RunDirectory(out)
    if resume and rundir.stopped_while_starting():
        resume = False  # stopped before run.json: nothing was computed, so the run starts again
    if resume:
        stored = None
        if rundir.is_run():
            stored = rundir.stored_plan()
        plan = make_plan(protocol, n_per_arm, seed, stored["chunk_size"] if stored else chunk_size,
                         plan_workers)
        rundir.check_resumable(plan.to_json(), loaded.sha256, _solver_record(ctx), _solver_before_the_record(protocol))
    else:
        plan = make_plan(protocol, n_per_arm, seed, chunk_size, plan_workers)
        rundir.check_new()
        rundir.start(plan.to_json(), loaded.text, loaded.sha256,
                     {"name": model.name, "version": model.version, "hash": model.content_hash()},
                     _scoring_record(ctx.baselines), _solver_record(ctx))
    # a run that keeps the observations of some patients only scores every chunk as it streams:
    # afterwards, the observations the scores need are gone
    limit = ctx.observations_per_arm
    sampled = limit is not None and any(n > limit for n in plan.n_per_arm.values())
    # (an imported model's read-outs have no clinical scores: its unstored observations are dropped)
    score = score or (sampled and not ctx.imported)
    todo = [c for c in plan.chunks if not rundir.chunk_done(c.name)]
    reused = len(plan.chunks) - len(todo)
    t_solve = time.perf_counter()
    done = 0
    if progress:
        progress(0, len(todo))  # the total is known before the first chunk (and its compile) ends
    if executor is None and score:
        from cartwin.endpoints.scoring import StoreAndScore  # scoring as the run goes (--report)
        results = execute(ctx, todo, workers, StoreAndScore(rundir.path.resolve()), start_method="spawn")
    elif executor is None:
        results = execute(ctx, todo, workers, rundir.write_chunk)
    else:
        # workers elsewhere write by absolute path, and refuse to run where run.json is not visible
        shared = RunDirectory(rundir.path.resolve())
        if sampled and not ctx.imported:
            from cartwin.endpoints.scoring import StoreAndScore
            on_result = StoreAndScore(shared.path)
        else:
            on_result = shared.write_chunk
        results = executor.execute(ctx, todo, on_result, shared_path=shared.run_json)
    for _ in results:
        done += 1
        if progress:
            progress(done, len(todo))
    solve_seconds = time.perf_counter() - t_solve
    if score and (executor is None or sampled):
        from cartwin.endpoints.scoring import adopt_scored_parts
        adopt_scored_parts(rundir.path)
    # counts come from what is stored, so a resumed run reports every chunk
    con = None
    rundir.build_database()
    con = rundir.connect()
    try:
        counts = con.execute("SELECT arm, status, count(*) FROM patients GROUP BY ALL ORDER BY ALL").fetchall()
        failed = con.execute("SELECT subject, failure_reason FROM patients WHERE status = 'failed' "
                             "ORDER BY subject").fetchall()
    finally:
        con.close()
    per_arm: dict[str, dict[str, int]] = {}
    for arm, status, count in counts:
        per_arm.setdefault(arm, {"ok": 0, "failed": 0})[status] = count
    n_total = sum(c for _, _, c in counts)
    solver = ctx.solver().describe()
    manifest = {
        "cartwin_version": cartwin.__version__,
        "created_utc": started.isoformat(timespec="seconds"),
        "study_id": protocol.study_id,
        "protocol": {"file": loaded.source, "sha256": loaded.sha256, "copy": layout.PROTOCOL},
        "seed": plan.seed,
        "n_per_arm": plan.n_per_arm,
        **({"replicates": _replicates_record(protocol.uncertainty, ctx)} if plan.replicates else {}),
        "chunk_size": plan.chunk_size,
        "chunks": len(plan.chunks),
        "model": _model_record(model, protocol.model),
        "solver": solver,
        "observation_model": _observation_record(protocol.observation_model.enabled),
        "schedule_days": list(ctx.days),
        "store": {"observations_per_arm": "all" if limit is None else limit, "sampled": sampled},
        "scoring": {**_scoring_record(rundir.scoring_baselines()),
                    "notes": scoring_notes(protocol.outputs, model)},
        "counts": {"ok": n_total - len(failed), "failed": len(failed), "per_arm": per_arm},
        "failed": [{"subject": s, "reason": r} for s, r in failed],
        "timings_s": {"solve_and_write": round(solve_seconds, 3),
                      "total": round(time.perf_counter() - t0, 3)},
        "execution": {"workers": workers, "chunks_computed": len(todo), "chunks_reused": reused,
                      **(executor.describe() if executor else
                         {"executor": "process_pool" if workers > 1 and len(todo) > 1 else "in_process"})},
        "environment": {"python": sys.version.split()[0], "numpy": np.__version__,
                        "scipy": scipy.__version__, "platform": platform.platform()},
    }
    rundir.finish(manifest)
    return RunSummary(Path(out), n_total, len(failed), failed, len(todo), reused,
                      time.perf_counter() - t0, manifest["scoring"]["notes"])


def scoring_notes(outputs, model) -> list[str]:
    """What the clinical scoring of a run will lack because the protocol's ``outputs`` leave out
    read-outs of the model that SLEDAI reads (none when every read-out is kept)."""
    if not outputs:
        return []
    from cartwin.clinical.sledai import missing_inputs

    missing, clinical = missing_inputs(outputs, {o.test for o in model.observables})
    if not missing:
        return []
    shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
    scores = "SLEDAI-2K, SELENA-SLEDAI and the clinical SLEDAI of DORIS" if clinical else "SLEDAI-2K and SELENA-SLEDAI"
    return [f"outputs leave out {len(missing)} read-outs that SLEDAI reads ({shown}): {scores} are then "
            "only ranges at every visit, so the endpoints that need the exact score (remission, LLDAS"
            + (", DORIS" if clinical else "") + "; SRI-4 where the range does not decide it) are not "
            "evaluable and count as not met; add them to outputs, or leave outputs out to keep every read-out"]


def _solver_record(ctx) -> dict:
    """The solver a run is made with, as run.json records it: the part of its description that a
    resumed run must share (a later version's default could be another)."""
    described = ctx.solver().describe()
    return {key: described[key] for key in ("backend", "rtol", "atol")}


def _solver_before_the_record(protocol) -> dict:
    """The solver of a run started before run.json recorded one: the protocol's own ``[solver]``
    values, else the defaults of those versions (numba-bdf, or scipy-lsoda for an imported SBML
    model, at rtol 1e-6 and atol 1e-9)."""
    from cartwin.plan.work import IMPORTED_MODEL_BACKEND

    s = protocol.solver
    default = IMPORTED_MODEL_BACKEND if protocol.model.startswith("sbml:") else "numba-bdf"
    return {"backend": s.backend if "backend" in s.model_fields_set else default,
            "rtol": 1e-6 if s.rtol is None else s.rtol, "atol": 1e-9 if s.atol is None else s.atol}


def _scoring_record(baselines: tuple[float | None, float | None]) -> dict:
    """The baseline days the run's patients are scored with (the protocol's [scoring], else the
    rule tables' own), as ``run.json`` and the manifest record them."""
    from cartwin.clinical.pipeline import baseline_days

    visit_day, lab_day = baseline_days(*baselines)
    return {"baseline_last_day": visit_day, "lab_baseline_last_day": lab_day}


def _observation_record(enabled: bool) -> dict:
    """Whether the observation model was applied and, if so, which table (its content hash)."""
    if not enabled:
        return {"enabled": False}
    from cartwin.observation import observation_model, table_sha256
    table = observation_model()
    return {"enabled": True, "name": table.name, "version": table.version, "sha256": table_sha256(),
            "tests": sorted(table.assays)}


def _replicates_record(uncertainty, ctx) -> dict:
    """What the replicate trials drew: the source and each replicate's typical values that moved."""
    names = ctx.model.parameter_names
    rows = []
    for draw in ctx.replicates:
        moved = {names[k]: round(float(np.exp(s)), 6) for k, s in enumerate(draw.log_shift) if s != 0}
        rows.append({"replicate": draw.replicate + 1, "typical_factor": moved,
                     "typical": dict(draw.typical), "omega": dict(draw.omega)})
    return {"count": uncertainty.replicates, "source": uncertainty.source, "fit": uncertainty.fit,
            "patients": uncertainty.patients, "draws": rows}


def _model_record(model, reference: str) -> dict:
    record = {"name": model.name, "version": model.version, "hash": model.content_hash()}
    if reference.startswith("sbml:"):
        import hashlib
        path = Path(reference[len("sbml:"):])
        record["source"] = str(path)
        record[layout.IMPORTED_MODEL_SOURCE_HASH] = hashlib.sha256(path.read_bytes()).hexdigest()
        record["notes"] = list(model.notes)  # time unit, ignored packages, renamed ids
    return record


@dataclass(frozen=True)
class Simulation:
    """An in-memory simulation (for tests, notebooks and small studies): polars frames."""

    patients: "pl.DataFrame"
    observations: "pl.DataFrame"
    parameters: "pl.DataFrame"
    events: "pl.DataFrame"
    plan: Plan


def _identity(result):
    return result


def simulate(protocol, n_per_arm: int | None = None, seed: int | None = None,
             workers: int | None = None, chunk_size: int | None = None) -> Simulation:
    """Simulate a protocol (a loaded :class:`~cartwin.protocol.Protocol`) in memory and return
    tidy tables; no files are written."""
    import polars as pl
    import pyarrow as pa

    workers = workers or 1
    plan = make_plan(protocol, n_per_arm, seed, chunk_size, workers)
    # in memory, every patient's observations are returned (nothing is written)
    work = dataclasses.replace(make_work(protocol, plan.seed), observations_per_arm=None)
    results = sorted(execute(work, plan.chunks, workers, _identity),
                     key=lambda r: (-1 if r.spec.replicate is None else r.spec.replicate, r.spec.arm_index,
                                    r.spec.start))

    def cat(name):
        return pl.from_arrow(pa.concat_tables([getattr(r, name) for r in results]).combine_chunks())
    obs = cat("observations").with_columns(pl.col("arm").cast(pl.String), pl.col("test").cast(pl.String),
                                           pl.col("unit").cast(pl.String))
    return Simulation(cat("patients"), obs, cat("parameters"), cat("events"), plan)
