"""Score a run directory with the clinical layer, one observation part at a time.

The clinical layer scores a frame in memory; a run of 10^5 patients does not fit that way, but each
part file of ``observations.parquet/`` holds whole patients (one chunk), and every clinical score is
a function of one patient's rows. So each part is scored on its own, in worker processes, and its
tables are written beside the others as Parquet parts under ``DIR/report/scores/``, which DuckDB
then reads as one table. A fingerprint of each part and of the clinical layer's code and rule tables
says which stored scores are still valid, so a second report of the same run does not rescore and
a run extended or resumed since the last report scores only its new parts.

Only two things are added here to what the clinical layer returns, both built from its outputs:
the first visit with SELENA-SLEDAI 0 and PGA < 1 (the TyU19 trial's headline endpoint), and
serological normalisation (C3, C4, anti-dsDNA) through ``clinical.composite.serology_normalisation``.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from importlib import resources
from multiprocessing import get_context
from pathlib import Path

import polars as pl

from cartwin.store import atomic
from cartwin.store.run_directory import RunDirectory

SCORE_TABLES = ("visits", "patients", "adverse_events")
# What the report reads from the per-visit scores; the rest of the clinical layer's 78 columns stay
# in the clinical layer (``cartwin score``).
VISIT_COLUMNS = ("subject", "arm", "day", "pga", "selena", "selena_min", "selena_max", "sledai_visit")
# The trial's remission read-out: "SELENA-SLEDAI 0 and PGA < 1" (TyU19 in SLE, Cell Research 2025, NCT05988216).
REMISSION_PGA_BELOW = 1.0
SEROLOGY = (("C3", "low", "c3_normalised"), ("C4", "low", "c4_normalised"), ("DSDNA", "high", "dsdna_seroconverted"))


@dataclass(frozen=True)
class Scores:
    directory: Path
    parts: int
    rescored: int


def clinical_fingerprint() -> str:
    """Hash of the clinical layer's code and rule tables: scores made by other rules are stale."""
    digest = hashlib.sha256()
    package = resources.files("cartwin.clinical")
    for entry in sorted(_walk(package), key=lambda e: e[0]):
        digest.update(entry[0].encode())
        digest.update(entry[1])
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()[:16]


def _walk(node, prefix: str = ""):
    for child in node.iterdir():
        name = f"{prefix}{child.name}"
        if child.is_dir():
            if child.name != "__pycache__":
                yield from _walk(child, name + "/")
        elif child.name.endswith((".py", ".csv", ".toml")):
            yield name, child.read_bytes()


def _part_stamps(run_dir: Path) -> dict[str, list[int]]:
    # Parts are written once, atomically; a part rewritten (a rerun into the same directory) gets
    # a new size or modification time, and only that part is scored again.
    return RunDirectory(run_dir).part_stamps("observations")


def score_run(run_dir: Path, workers: int | None = None) -> Scores:
    """Score the observation parts of ``run_dir`` into ``run_dir/report/scores``.

    Parts already scored by the same clinical layer are reused; only new or changed parts are
    scored, in ``workers`` processes (default: all cores).
    """
    run_dir = Path(run_dir)
    rundir = RunDirectory(run_dir)
    out = rundir.scores_dir
    clinical = clinical_fingerprint()
    stamps = _part_stamps(run_dir)
    stored_path = rundir.scores_fingerprint
    stored = json.loads(stored_path.read_text()) if stored_path.exists() else {}
    if stored.get("clinical") != clinical:
        stored = {"clinical": clinical, "parts": {}}
    done = {name for name, stamp in stored.get("parts", {}).items()
            if stamps.get(name) == stamp and all(rundir.score_part(t, name).exists() for t in SCORE_TABLES)}
    for table in SCORE_TABLES:
        (out / table).mkdir(parents=True, exist_ok=True)
        for old in rundir.score_parts(table):
            if old not in done:
                rundir.score_part(table, old).unlink()
    todo = [name for name in stamps if name not in done]
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    if todo:
        # Forget the stamps of the parts about to be rewritten before touching them: an interrupted
        # rescoring must not leave a stamp that vouches for a half-replaced set of score parts.
        atomic.write_json(stored_path, {"clinical": clinical, "parts": {n: stamps[n] for n in done}})
        if workers == 1:
            for part in todo:
                score_part(run_dir, part)
        else:
            # spawn, not fork: Polars' thread pool does not survive a fork
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
                for _ in pool.map(score_part, [run_dir] * len(todo), todo):
                    pass
    atomic.write_json(stored_path, {"clinical": clinical, "parts": stamps})
    return Scores(out, len(stamps), len(todo))


def score_part(run_dir: Path, part: str) -> None:
    """Score one observation part (whole patients) of ``run_dir`` and write its three score parts."""
    from cartwin.clinical import observations_from_frame, score_observations

    rundir = RunDirectory(run_dir)
    obs = observations_from_frame(rundir.read_part("observations", part), rundir.part_source("observations", part))
    tables = score_observations(obs)
    visits = tables["visits"].select(VISIT_COLUMNS)
    patients = (tables["patients"]
                .join(_remission(visits), on="subject", how="left")
                .join(_serology(obs.frame), on="subject", how="left"))
    for name, frame in (("visits", visits), ("patients", patients), ("adverse_events", tables["adverse_events"])):
        rundir.write_score_part(name, part, frame)


def _remission(visits: pl.DataFrame) -> pl.DataFrame:
    """First post-baseline visit with SELENA-SLEDAI 0 and PGA < 1, and the same on the SLEDAI's lower
    bound (descriptors never recorded taken as absent), with the count of fully evaluable visits."""
    from cartwin.clinical.ruleset import settings

    after = (pl.col("day") > settings("ctcae_v5")["baseline_last_day"]) & pl.col("sledai_visit")
    calm = pl.col("pga") < REMISSION_PGA_BELOW
    return visits.group_by("subject").agg(
        pl.col("day").filter(after & (pl.col("selena") == 0) & calm).min().alias("remission_day"),
        pl.col("day").filter(after & (pl.col("selena_min") == 0) & calm).min().alias("remission_lower_bound_day"),
        pl.col("selena").filter(after).is_not_null().sum().alias("selena_evaluable_visits"),
        pl.col("day").filter(after).max().alias("last_sledai_day"),
    )


def _serology(frame: pl.DataFrame) -> pl.DataFrame:
    """Normalisation at the last measurement, for patients abnormal at baseline (else null)."""
    from cartwin.clinical.composite import serology_normalisation
    from cartwin.clinical.ruleset import settings

    baseline_last_day = settings("ctcae_v5")["baseline_last_day"]
    result = frame.select("subject").unique()
    for test, direction, column in SEROLOGY:
        rows = frame.filter((pl.col("test") == test) & pl.col("value").is_not_null()).sort("subject", "day")
        if rows.height == 0:
            result = result.with_columns(pl.lit(None, pl.Boolean).alias(column))
            continue
        limit = "lower" if direction == "low" else "upper"
        per_patient = rows.group_by("subject").agg(
            pl.col("value").filter(pl.col("day") <= baseline_last_day).last().alias("baseline"),
            pl.col("value").last().alias("value"),
            pl.col(limit).last().alias("limit"),
        )
        scored = serology_normalisation(per_patient, direction).select("subject", pl.col("normalised").alias(column))
        result = result.join(scored, on="subject", how="left")
    return result


@dataclass(frozen=True)
class StoreAndScore:
    """What a worker does with a finished chunk in ``cartwin run --report``: store it, then score
    its observation part at once, so that scoring runs in parallel with the simulation and the
    report step only aggregates."""

    run_dir: Path

    def __call__(self, result):
        rundir = RunDirectory(self.run_dir)
        summary = rundir.write_chunk(result)
        score_part(self.run_dir, rundir.part("observations", result.spec.name).name)
        return summary


def adopt_scored_parts(run_dir: Path) -> int:
    """After a run that scored its chunks as it went: record every observation part whose score
    parts exist, so that ``score_run`` reuses them. Returns how many parts were adopted."""
    run_dir = Path(run_dir)
    rundir = RunDirectory(run_dir)
    out = rundir.scores_dir
    clinical = clinical_fingerprint()
    stored_path = rundir.scores_fingerprint
    stored = json.loads(stored_path.read_text()) if stored_path.exists() else {}
    if stored.get("clinical") != clinical:
        stored = {"clinical": clinical, "parts": {}}
    adopted = 0
    for name, stamp in _part_stamps(run_dir).items():
        if all(rundir.score_part(t, name).exists() for t in SCORE_TABLES):
            stored["parts"][name] = stamp
            adopted += 1
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_json(stored_path, stored)
    return adopted
