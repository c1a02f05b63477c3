"""The scoring workflow: observations (a user's file or a run directory) -> scored-output directory.

``cartwin score DATA --out DIR`` reads at the border (:mod:`cartwin.io.observations`: a file, or a
run directory through the store), scores frames with the clinical layer, computes every patient's
endpoints (:func:`cartwin.endpoints.compute`, the ``endpoints`` table), and writes the result
tables through the store (:class:`cartwin.store.ScoredDirectory`), which refuses a directory that
is not new or empty before anything is read or scored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from cartwin.clinical import ObservationError
from cartwin.clinical.pipeline import baseline_days
from cartwin.clinical.ruleset import applied_rules
from cartwin.endpoints.scoring import run_baselines, score_and_compute
from cartwin.io.observations import read_observations
from cartwin.store.scored import ScoredDirectory
from cartwin.vocabulary import BASELINE_DAY_LIMIT


@dataclass
class ScoreResult:
    out_dir: Path
    paths: dict[str, Path]
    subjects_scored: int
    subjects_excluded: list[str]
    visits: int
    flags: int


# Instruments whose baseline is the visit baseline (``baseline_last_day``) and the one graded
# against the pre-lymphodepletion reference (``lab_baseline_last_day``); the rules table names the
# day each one used.
VISIT_BASELINE_INSTRUMENTS = ("SLEDAI-2K", "SELENA-SLEDAI", "PGA", "SRI", "BICLA", "DORIS", "LLDAS", "SFI")
LAB_BASELINE_INSTRUMENTS = ("CTCAE",)


def check_baseline_day(name: str, day: float | None) -> None:
    """A chosen baseline day must be a finite study day within a year of the infusion."""
    if day is not None and not (math.isfinite(day) and abs(day) <= BASELINE_DAY_LIMIT):
        raise ValueError(f"{name}: {day!r} is not a study day; give a number of days relative to the "
                         f"CAR-T infusion between {-BASELINE_DAY_LIMIT:g} and {BASELINE_DAY_LIMIT:g}")


def score(source: Path | str, out_dir: Path | str, *, sledai_window_days: float | None = None,
          baseline_last_day: float | None = None, lab_baseline_last_day: float | None = None) -> ScoreResult:
    """Score a CSV/Parquet observation file or a run directory into the new or empty ``out_dir``.
    ``baseline_last_day``: the last study day that counts as baseline for SLEDAI, SRI-4, the
    composites, serology and the endpoints (default ``ctcae_v5.toml``, day 0);
    ``lab_baseline_last_day``: the last day of the CTCAE grading reference (default day -5, before
    lymphodepletion). The rules table records the days applied.

    Raises ``ObservationError`` for input that cannot be scored (message names file, row, column)
    and ``RunDirectoryError`` for an ``out_dir`` that holds files (a run directory included)."""
    check_baseline_day("baseline_last_day", baseline_last_day)
    check_baseline_day("lab_baseline_last_day", lab_baseline_last_day)
    source, target = Path(source), ScoredDirectory(out_dir)
    target.check_new()  # before any work: a wrong --out is reported at once
    obs = read_observations(source)
    if obs.frame.height == 0:
        problem = ("no observations to score after excluding failed subjects" if source.is_dir() else
                   "no observation rows to score (a header only); give one row per subject, day and test "
                   "(docs/clinical.md)")
        raise ObservationError(f"{source}: {problem}.", file=str(source))
    # a run directory is scored with its protocol's [scoring] days unless others are given
    run_visit_day, run_lab_day = run_baselines(source)
    visit_day, lab_day = baseline_days(run_visit_day if baseline_last_day is None else baseline_last_day,
                                       run_lab_day if lab_baseline_last_day is None else lab_baseline_last_day)
    tables, endpoints = score_and_compute(obs, baselines=(visit_day, lab_day), sledai_window_days=sledai_window_days)
    tables["endpoints"] = endpoints  # every patient's endpoints
    # the standards and versions applied, with rule-file hashes and the baseline day each used
    tables["rules"] = applied_rules().with_columns(
        pl.when(pl.col("instrument").is_in(VISIT_BASELINE_INSTRUMENTS)).then(pl.lit(visit_day))
        .when(pl.col("instrument").is_in(LAB_BASELINE_INSTRUMENTS)).then(pl.lit(lab_day))
        .otherwise(None).cast(pl.Float64).alias("baseline_last_day"))
    paths = target.write(tables)
    return ScoreResult(out_dir=target.path, paths=paths, subjects_scored=tables["patients"].height,
                       subjects_excluded=obs.excluded_subjects, visits=tables["visits"].height,
                       flags=tables["flags"].height)


def run_score_command(source: str | Path, out_dir: str | Path, baseline_last_day: float | None = None,
                      lab_baseline_last_day: float | None = None) -> str:
    """Typer-free entry for ``cartwin score DATA --out DIR``: scores and returns a one-paragraph
    summary to print. Raises ``ObservationError`` or ``RunDirectoryError`` for bad input (the CLI
    maps both to exit code 2)."""
    result = score(source, out_dir, baseline_last_day=baseline_last_day, lab_baseline_last_day=lab_baseline_last_day)
    excluded = (f"; {len(result.subjects_excluded)} failed subject(s) not scored: {', '.join(result.subjects_excluded[:10])}"
                if result.subjects_excluded else "")
    return (f"Scored {result.subjects_scored} subject(s), {result.visits} visit(s){excluded}. "
            f"{result.flags} flag(s) in {result.paths['flags'].name}. Results in {result.out_dir} "
            f"({', '.join(p.name for p in result.paths.values())}).")
