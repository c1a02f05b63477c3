"""Score a run directory, one observation part at a time: clinical tables and per-patient endpoints.

The clinical layer scores a frame in memory; a run of 10^5 patients does not fit that way, but each
part file of ``observations.parquet/`` holds whole patients (one chunk), and every clinical score and
every endpoint is a function of one patient's rows. So each part is scored on its own, in worker
processes, and its tables are written beside the others as Parquet parts under
``DIR/report/scores/``, which DuckDB then reads as one table. A fingerprint of each part and of the
clinical layer's and the endpoints' code and tables says which stored scores are still valid, so a
second report of the same run does not rescore and a run extended or resumed since the last
report scores only its new parts.

Per part: ``visits`` (the per-visit columns the report draws), ``patients`` (the clinical layer's
per-patient table joined with ``cartwin.endpoints.compute``: every endpoint's per-patient value) and
``adverse_events``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from cartwin.processes import WorkerPool
from cartwin.store import atomic
from cartwin.store.run_directory import RunDirectory

SCORE_TABLES = ("visits", "patients", "adverse_events")
# What the report reads from the per-visit scores; the rest of the clinical layer's 78 columns stay
# in the clinical layer (``cartwin score``).
VISIT_COLUMNS = ("subject", "arm", "day", "pga", "selena", "selena_min", "selena_max", "sledai_visit")


@dataclass(frozen=True)
class Scores:
    directory: Path
    parts: int
    rescored: int


def clinical_fingerprint() -> str:
    """Hash of the clinical layer's and the endpoints' code and tables: scores made by other rules
    or other endpoint definitions are stale."""
    digest = hashlib.sha256()
    for package_name in ("cartwin.clinical", "cartwin.endpoints"):
        package = resources.files(package_name)
        for entry in sorted(_walk(package), key=lambda e: e[0]):
            digest.update(f"{package_name}/{entry[0]}".encode())
            digest.update(entry[1])
    return digest.hexdigest()[:16]


def _walk(node, prefix: str = ""):
    for child in node.iterdir():
        name = f"{prefix}{child.name}"
        if child.is_dir():
            if child.name != "__pycache__":
                yield from _walk(child, name + "/")
        elif child.name.endswith((".py", ".csv", ".toml")):
            yield name, child.read_bytes()


def scores_fingerprint(rundir: RunDirectory) -> str:
    """What makes a run's stored scores valid: the clinical layer and the endpoints
    (:func:`clinical_fingerprint`) and the baseline days the run is scored with."""
    visit_day, lab_day = rundir.scoring_baselines()
    if visit_day is None and lab_day is None:
        return clinical_fingerprint()  # a run made before run.json recorded its baseline days
    return f"{clinical_fingerprint()}:baseline={visit_day!r}:lab_baseline={lab_day!r}"


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
    clinical = scores_fingerprint(rundir)
    stamps = _part_stamps(run_dir)
    stored_path = rundir.scores_fingerprint
    stored = json.loads(stored_path.read_text()) if stored_path.exists() else {}
    if stored.get("clinical") != clinical:
        stored = {"clinical": clinical, "parts": {}}
    done = {name for name, stamp in stored.get("parts", {}).items()
            if stamps.get(name) == stamp and all(rundir.score_part(t, name).exists() for t in SCORE_TABLES)}
    todo = [name for name in stamps if name not in done]
    # checked before any stale score is deleted: a run that kept some observations only cannot
    # score again, and its scores (even stale ones) are all that is left of the others
    if todo and _sampled(rundir):
        from cartwin.store.run_directory import RunDirectoryError
        raise RunDirectoryError(
            f"{run_dir}: the run stored the observations of some patients only (protocol [store] "
            f"observations_per_arm) and scored every patient as it ran, but {len(todo)} of its parts "
            "have no valid scores (the clinical layer or the endpoint definitions changed since, or "
            "the scores were deleted); rerun the protocol, or set observations_per_arm = \"all\" "
            "to keep every observation for later rescoring")
    for table in SCORE_TABLES:
        (out / table).mkdir(parents=True, exist_ok=True)
        for old in rundir.score_parts(table):
            if old not in done:
                rundir.score_part(table, old).unlink()
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
            with WorkerPool(workers) as pool:
                for _ in pool.map(score_part, [run_dir] * len(todo), todo):
                    pass
    atomic.write_json(stored_path, {"clinical": clinical, "parts": stamps})
    return Scores(out, len(stamps), len(todo))


def _sampled(rundir: RunDirectory) -> bool:
    """Whether the run kept the observations of some patients only (its manifest says so)."""
    if not rundir.is_complete():
        return False
    return bool(rundir.manifest().get("store", {}).get("sampled", False))


def run_baselines(source) -> tuple[float | None, float | None]:
    """The baseline days a run directory's patients are scored with (its protocol's [scoring], as
    ``run.json`` records them); (None, None), the rule tables' own, for anything else."""
    rundir = RunDirectory(source)
    return rundir.scoring_baselines() if rundir.path.is_dir() and rundir.is_run() else (None, None)


def score_and_compute(obs, *, baselines: tuple[float | None, float | None] = (None, None),
                      keys=None, flags: bool = True, sledai_window_days: float | None = None,
                      patient_columns=None):
    """The clinical layer's tables of validated observations ``obs`` and every patient's endpoints
    (or those of ``keys``), both with the baseline days ``baselines`` (None: the rule tables'
    own): ``(tables, endpoints)``. ``patient_columns``: a frame by ``subject`` joined to the
    clinical patients table before the endpoints read it (a run's ``withdrawn_day``). The one
    place where scoring and endpoints meet."""
    import dataclasses

    import polars as pl

    from cartwin.clinical import score_observations
    from cartwin.clinical._frames import frames_by_subject_code
    from cartwin.clinical.pipeline import CHUNK_ROWS, baseline_days
    from cartwin.endpoints import compute

    visit_day, lab_day = baseline_days(*baselines)
    # Scored as a run streams (no flags): the subjects are coded once for both layers, which
    # would each code them (an Enum of the identifiers; text again in what is returned); not for a
    # frame the clinical layer scores in parts of whole subjects, which it splits by their text.
    streamed = not flags and obs.frame.height <= CHUNK_ROWS
    coded = frames_by_subject_code({"observations": obs.frame}) if streamed else None
    if coded is not None:
        obs = dataclasses.replace(obs, frame=coded["observations"])
        enum = obs.frame.schema["subject"]
        if patient_columns is not None:  # patients without observations (failed ones) drop out
            patient_columns = patient_columns.with_columns(pl.col("subject").cast(enum, strict=False))
    tables = score_observations(obs, sledai_window_days=sledai_window_days, baseline_last_day=visit_day,
                                lab_baseline_last_day=lab_day, flags=flags)
    if patient_columns is not None:
        tables = {**tables, "patients": tables["patients"].join(patient_columns, on="subject", how="left")}
    endpoints = compute(tables, obs.frame, keys=keys, baseline_last_day=visit_day)
    if coded is not None:
        tables, endpoints = ({name: t.with_columns(pl.col("subject").cast(pl.String)) for name, t in tables.items()},
                             endpoints.with_columns(pl.col("subject").cast(pl.String)))
    return tables, endpoints


def endpoints_of_simulated(observations, patients, keys, baselines=(None, None), source: str = "<simulation>"):
    """Every patient's endpoints (``keys``) of a simulated chunk: its observation and patient
    tables as the engine returns them (failed patients are left out by the clinical layer)."""
    from cartwin.clinical import observations_from_run

    obs = observations_from_run(observations, patients, source)
    return score_and_compute(obs, baselines=baselines, keys=keys)[1]


def score_part(run_dir: Path, part: str) -> None:
    """Score one observation part (whole patients) of ``run_dir`` and write its three score parts."""
    rundir = RunDirectory(run_dir)
    score_frame(run_dir, part, rundir.read_part("observations", part), rundir.part_source("observations", part))


def score_frame(run_dir: Path, part: str, frame, source: str, visit_subjects=None) -> None:
    """Score the observations ``frame`` (whole patients) and write them as score part ``part``.
    ``visit_subjects``: when given, only these patients' per-visit rows are stored (a run that
    stores the observations of some patients only keeps their visits; endpoints, clinical
    patient rows and adverse events are stored for everyone)."""
    import polars as pl

    from cartwin.clinical import observations_from_simulation
    from cartwin.store.reported import as_reported

    rundir = RunDirectory(run_dir)
    # a run's own observations: checked by column (row by row only when they are not as the
    # simulator writes them); the same frame either way
    obs = observations_from_simulation(as_reported(frame), source)
    # the flags are not kept with the scores; a run with withdrawal gives each patient's
    # withdrawn_day, which the responder endpoints impute as non-response
    tables, endpoints = score_and_compute(obs, baselines=rundir.scoring_baselines(), flags=False,
                                          patient_columns=_withdrawal(rundir, part))
    clinical = tables["patients"].drop([c for c in endpoints.columns if c not in ("subject", "arm")], strict=False)
    patients = clinical.join(endpoints.drop("arm"), on="subject", how="left")
    visits = tables["visits"].select(VISIT_COLUMNS)
    if visit_subjects is not None:
        visits = visits.filter(pl.col("subject").is_in(list(visit_subjects)))
    for name, frame_out in (("visits", visits), ("patients", patients), ("adverse_events", tables["adverse_events"])):
        rundir.write_score_part(name, part, frame_out)


def _withdrawal(rundir: RunDirectory, part: str):
    """The part's ``subject`` and ``withdrawn_day`` when the run records withdrawal, else None."""
    path = rundir.table_path("patients") / part
    if not path.exists():
        return None
    import polars as pl
    names = pl.read_parquet_schema(path)
    if "withdrawn_day" not in names:
        return None
    return rundir.read_part("patients", part).select("subject", "withdrawn_day")


@dataclass(frozen=True)
class StoreAndScore:
    """What a worker does with a finished chunk in ``cartwin run --report`` (and in every run that
    stores the observations of some patients only): store it, then score the chunk's patients at
    once, so that scoring runs in parallel with the simulation and the report step only
    aggregates. The scores come from every patient's observations, stored or not."""

    run_dir: Path

    def __call__(self, result):
        import polars as pl

        rundir = RunDirectory(self.run_dir)
        summary = rundir.write_chunk(result)
        part = rundir.part("observations", result.spec.name)
        if result.scoring_observations is None:
            # every patient's observations are stored: score the table just written from memory
            # (the same rows, columns and types as reading the part back, without the reading)
            score_frame(self.run_dir, part.name, pl.from_arrow(result.observations), str(part))
        else:
            import pyarrow.compute as pc
            stored = set(pc.unique(result.observations["subject"]).to_pylist())  # not one per row
            score_frame(self.run_dir, part.name, pl.from_arrow(result.scoring_observations),
                        str(part), visit_subjects=stored)
        return summary


def adopt_scored_parts(run_dir: Path) -> int:
    """After a run that scored its chunks as it went: record every observation part whose score
    parts exist, so that ``score_run`` reuses them. Returns how many parts were adopted."""
    run_dir = Path(run_dir)
    rundir = RunDirectory(run_dir)
    out = rundir.scores_dir
    clinical = scores_fingerprint(rundir)
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
