"""The scoring workflow: observations (a user's file or a run directory) -> scored-output directory.

``cartwin score DATA --out DIR`` reads at the border (:mod:`cartwin.io.observations`: a file, or a
run directory through the store), scores frames with the clinical layer, computes every patient's
endpoints (:func:`cartwin.endpoints.compute`, the ``endpoints`` table), and writes the result
tables through the store (:class:`cartwin.store.ScoredDirectory`), which refuses a directory that
is not new or empty before anything is read or scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cartwin.clinical import ObservationError, score_observations
from cartwin.clinical.ruleset import applied_rules
from cartwin.endpoints import compute as compute_endpoints
from cartwin.io.observations import read_observations
from cartwin.store.scored import ScoredDirectory


@dataclass
class ScoreResult:
    out_dir: Path
    paths: dict[str, Path]
    subjects_scored: int
    subjects_excluded: list[str]
    visits: int
    flags: int


def score(source: Path | str, out_dir: Path | str, *, sledai_window_days: float | None = None) -> ScoreResult:
    """Score a CSV/Parquet observation file or a run directory into the new or empty ``out_dir``.

    Raises ``ObservationError`` for input that cannot be scored (message names file, row, column)
    and ``RunDirectoryError`` for an ``out_dir`` that holds files (a run directory included)."""
    source, target = Path(source), ScoredDirectory(out_dir)
    target.check_new()  # before any work: a wrong --out is reported at once
    obs = read_observations(source)
    if obs.frame.height == 0:
        raise ObservationError(f"{source}: no observations to score after excluding failed subjects.", file=str(source))
    tables = score_observations(obs, sledai_window_days=sledai_window_days)
    tables["endpoints"] = compute_endpoints(tables, obs.frame)  # every patient's endpoints
    tables["rules"] = applied_rules()  # the standards and versions applied, with rule-file hashes
    paths = target.write(tables)
    return ScoreResult(out_dir=target.path, paths=paths, subjects_scored=tables["patients"].height,
                       subjects_excluded=obs.excluded_subjects, visits=tables["visits"].height,
                       flags=tables["flags"].height)


def run_score_command(source: str | Path, out_dir: str | Path) -> str:
    """Typer-free entry for ``cartwin score DATA --out DIR``: scores and returns a one-paragraph
    summary to print. Raises ``ObservationError`` or ``RunDirectoryError`` for bad input (the CLI
    maps both to exit code 2)."""
    result = score(source, out_dir)
    excluded = (f"; {len(result.subjects_excluded)} failed subject(s) not scored: {', '.join(result.subjects_excluded[:10])}"
                if result.subjects_excluded else "")
    return (f"Scored {result.subjects_scored} subject(s), {result.visits} visit(s){excluded}. "
            f"{result.flags} flag(s) in {result.paths['flags'].name}. Results in {result.out_dir} "
            f"({', '.join(p.name for p in result.paths.values())}).")
