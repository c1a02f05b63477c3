"""Design points evaluated on common virtual patients.

Every design point sees the same virtual patients: patient *i* is drawn from the random stream
``(seed, POPULATION_STREAM, i)`` whatever the design (``ChunkSpec.stream``), so the covariates and
the random effects of patient *i* are the same at every product, dose and intensity, and a
difference between two designs is a difference of the same patients under two treatments (common
random numbers). A point is first evaluated on patients 0..m-1 and later extended to more: only
the new patients are simulated. Each patient is scored by the clinical layer and
``cartwin.endpoints.compute``, as a run's report scores it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace

import numpy as np
import polars as pl

from cartwin.design.space import DesignPoint, therapy
from cartwin.plan import ArmWork, ChunkSpec, RunWork, typical_parameters
from cartwin.processes import WorkerPool
from cartwin.simulate.execute import execute

POPULATION_STREAM = "design-population"
CHUNK = 50


def score_chunk(result, keys: tuple[str, ...],
                baselines: tuple[float | None, float | None] = (None, None)) -> tuple[int, pl.DataFrame]:
    """One solved chunk -> (arm index, per-patient endpoint values with the patient's index); a
    patient whose solve failed has a row with ``failed`` true and null endpoints. ``baselines``:
    the protocol's [scoring] baseline days (None: the rule tables' own)."""
    import pyarrow as pa  # noqa: F401  (polars.from_arrow needs it)

    from cartwin.endpoints.scoring import endpoints_of_simulated

    patients = pl.from_arrow(result.patients).select("subject", "index", "status")
    obs_frame = pl.from_arrow(result.observations).with_columns(
        pl.col("arm").cast(pl.String), pl.col("test").cast(pl.String), pl.col("unit").cast(pl.String))
    ok = patients.filter(pl.col("status") == "ok")
    frame = patients.select("subject", "index", (pl.col("status") != "ok").alias("failed"))
    if ok.height:
        values = endpoints_of_simulated(obs_frame, pl.from_arrow(result.patients), list(keys), baselines,
                                        "<design>").drop("arm")
        frame = frame.join(values, on="subject", how="left")
    return result.spec.arm_index, frame.drop("subject")


@dataclass
class Evaluator:
    """Simulates and scores design points on the common virtual patients, keeping what it has."""

    base: RunWork  # the protocol's work (population, schedule, model, solver); its arms are unused
    anchors: list
    products: dict
    keys: tuple[str, ...]  # endpoint keys to compute
    workers: int = 1
    stream: str = POPULATION_STREAM
    # one pool of worker processes for every evaluation (its processes start at the first chunk sent,
    # closed by ``close`` or at the end of a ``with`` block): a search evaluates points call after
    # call, and a pool per call made every worker start, import and load the model again each time
    _pool: WorkerPool | None = field(default=None, init=False, repr=False)
    points: list[DesignPoint] = field(default_factory=list)
    outcomes: dict[str, pl.DataFrame] = field(default_factory=dict)  # point key -> per-patient rows
    simulated: int = 0  # patients simulated (all points)

    def _index(self, point: DesignPoint) -> int:
        for i, p in enumerate(self.points):
            if p == point:
                return i
        self.points.append(point)
        return len(self.points) - 1

    def _work(self) -> RunWork:
        model = self.base.model
        index = {n: i for i, n in enumerate(model.parameter_names)}
        arms = []
        for i, point in enumerate(self.points):
            t = therapy(point, f"d{i:04d}", self.anchors, self.products)
            typical = typical_parameters(model, t)
            for name, factor in point.factors:
                typical[index[name]] *= factor
            arms.append(ArmWork(i, t.arm, t, typical))
        return replace(self.base, arms=tuple(arms))

    def have(self, point: DesignPoint) -> int:
        frame = self.outcomes.get(point.key)
        return 0 if frame is None else frame.height

    def ensure(self, requests: list[tuple[DesignPoint, int]]) -> None:
        """Evaluate each point on its first ``m`` patients (simulating only those it lacks)."""
        chunks = []
        for point, m in requests:
            i = self._index(point)
            start = self.have(point)
            for s in range(start, m, CHUNK):
                chunks.append(ChunkSpec(i, f"d{i:04d}", s, min(s + CHUNK, m), stream=self.stream))
        if not chunks:
            return
        work = self._work()
        score = functools.partial(score_chunk, keys=self.keys, baselines=self.base.baselines)
        new: dict[int, list[pl.DataFrame]] = {}
        if self.workers > 1 and self._pool is None:
            # its processes start at the first submission, so execute alone decides whether an
            # evaluation runs in them (it keeps one chunk in this process); the scoring uses Polars,
            # so the workers are spawned
            self._pool = WorkerPool(self.workers, "spawn")
        for arm_index, frame in execute(work, chunks, self.workers, score, pool=self._pool):
            new.setdefault(arm_index, []).append(frame)
            self.simulated += frame.height
        for arm_index, frames in new.items():
            key = self.points[arm_index].key
            parts = ([self.outcomes[key]] if key in self.outcomes else []) + frames
            self.outcomes[key] = pl.concat(parts, how="diagonal_relaxed").sort("index")

    def close(self, cancel: bool = False) -> None:
        """Stop the worker processes, if any were started; a later evaluation starts new ones.
        ``cancel``: drop the chunks still queued instead of finishing them first."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=cancel)
            self._pool = None

    def __enter__(self) -> "Evaluator":
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        # a search that fails (a bad point, Ctrl-C) reports at once, without simulating the
        # chunks it had queued
        self.close(cancel=exc_type is not None)

    def frame(self, point: DesignPoint, m: int | None = None) -> pl.DataFrame:
        """Per-patient endpoint values of the point's first ``m`` patients (evaluated if needed)."""
        m = m or self.have(point)
        self.ensure([(point, m)])
        return self.outcomes[point.key].filter(pl.col("index") < m)


def success(frame: pl.DataFrame, endpoint: str, kind: str, days_at_least: float | None = None,
            outside: str = "fail") -> np.ndarray:
    """Per patient: 1.0 meets the requirement, 0.0 does not, nan outside the denominator (not
    evaluable; a failed solve).

    Binary endpoints: the endpoint's own value (null: not evaluable). Time to event: a time of at
    least ``days_at_least`` (an event after it, or censoring at or after it) meets it; an event
    before it does not; censoring before it is unknown (outside the denominator); a patient outside
    the endpoint's population fails (``outside = "fail"``, e.g. never aplastic: no days of aplasia)
    or is left out (``"exclude"``)."""
    failed = frame["failed"].to_numpy()
    if kind == "binary":
        v = frame[endpoint].cast(pl.Float64).to_numpy()
        return np.where(failed, np.nan, v)
    time = frame[endpoint].cast(pl.Float64).to_numpy()
    event = frame[f"{endpoint}_event"].cast(pl.Float64).to_numpy()
    out = np.where(time >= days_at_least, 1.0, np.where(event == 1.0, 0.0, np.nan))
    out = np.where(np.isnan(time), 0.0 if outside == "fail" else np.nan, out)
    return np.where(failed, np.nan, out)
