"""Scoring an uploaded observation file off the server's request path.

An upload is scored as ``cartwin score FILE --out DIR`` scores it (:func:`cartwin.scoring.score`),
in a process of a small pool (:class:`ScorePool`, processes started with ``spawn``: nothing of the
server's threads is copied), so a large file occupies that process, never the server: the request
awaits the outcome while the server answers other requests. A scoring process that dies (out of
memory, killed) is answered with a message and the pool is made anew.
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from cartwin.processes import WorkerPool


class ScorePool:
    """At most ``processes`` scorings at once, each in a process of its own; the others wait their
    turn. The processes start on the first scoring and are reused."""

    def __init__(self, processes: int = 1):
        self.processes = max(1, int(processes))
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                # a scoring process exits when the server is gone, even after kill -9
                self._pool = WorkerPool(self.processes)
            return self._pool

    async def score(self, folder: Path, name: str) -> dict:
        pool = self._executor()
        try:
            return await asyncio.wrap_future(pool.submit(score_upload, folder, name))
        except BrokenProcessPool:
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)
            return {"error": {"message": f"{name}: the scoring process ended before it finished (out of memory?); "
                                         "try a smaller file", "rows": []}}
        except Exception as exc:  # as the command line answers an unexpected failure
            return {"error": {"message": f"{name}: failed: {type(exc).__name__}: {exc}", "rows": []}}

    def shutdown(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


MAX_FLAGS_SHOWN = 50  # the page lists the first flags; the download holds them all


def score_upload(folder: Path, name: str) -> dict:
    """Score an uploaded observation file as ``cartwin score NAME --out scored`` would, run in
    ``folder``: messages name the file as the person named it, never the server's path. Runs in
    a process of the scoring pool; returns ``{"result": ...}`` or ``{"error": ...}`` (and the
    process that scored, ``worker``)."""
    import polars as pl

    from cartwin.clinical import ObservationError
    from cartwin.scoring import score

    path = folder / name
    try:
        result = score(path, folder / "scored")
    except ObservationError as exc:
        message = str(exc).replace(str(path), name).replace(str(folder) + "/", "")
        rows = []
        if exc.rows:
            try:
                frame = pl.read_csv(path, infer_schema=False, null_values=None)
                for r in exc.rows[:20]:
                    if 1 <= r <= frame.height:
                        rows.append({"row": r, "values": frame.row(r - 1, named=True)})
            except pl.exceptions.PolarsError:
                rows = []
        return {"error": {"message": message, "rows": rows, "column": exc.column,
                          "more": max(0, len(exc.rows) - 20)}, "worker": os.getpid()}
    patients = pl.read_parquet(result.paths["patients"])
    endpoints = pl.read_parquet(result.paths["endpoints"]) if "endpoints" in result.paths else None
    from cartwin.endpoints import summarise
    # per arm where the upload names more than one (a trial's arms are not pooled), else over all
    by_arm = endpoints is not None and "arm" in endpoints.columns and endpoints["arm"].drop_nulls().n_unique() > 1
    summary = summarise(endpoints, by="arm" if by_arm else None) if endpoints is not None else None
    # what was flagged, as `cartwin score` writes it to flags.parquet, with the file as uploaded
    flags = pl.read_parquet(result.paths["flags"]) if "flags" in result.paths else pl.DataFrame()
    flag_rows = [{k: (str(v).replace(str(path), name) if isinstance(v, str) else v) for k, v in row.items()
                  if k in ("row", "column", "subject", "test", "day", "problem")}
                 for row in flags.head(MAX_FLAGS_SHOWN).to_dicts()]
    # the per-patient view mixes the scores (patients.parquet) and the endpoints (endpoints.parquet)
    shown = ("subject", "arm", "sledai2k_baseline", "crs_max", "icans_max", "worst_neutropenia_grade",
             "remission_day", "bcell_aplasia_onset_day")
    if endpoints is not None:
        extra = [c for c in shown if c in endpoints.columns and c not in patients.columns]
        patients = patients.join(endpoints.select("subject", *extra), on="subject", how="left")
    return {"result": {
        "subjects": result.subjects_scored, "visits": result.visits, "flags": result.flags,
        "excluded": result.subjects_excluded,
        "patients": patients.select([c for c in shown if c in patients.columns]).to_dicts(),
        "files": [p.name for p in result.paths.values()],
        "summary": [r for r in (summary.to_dicts() if summary is not None else []) if r["n"]],
        "by_arm": by_arm, "flag_rows": flag_rows, "flags_more": max(0, flags.height - MAX_FLAGS_SHOWN),
    }, "worker": os.getpid()}
