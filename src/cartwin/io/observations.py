"""Observations in, at the border: a user's observation file (CSV or Parquet) or a run directory,
read into frames and handed to the clinical layer for validation.

The clinical layer receives frames, not paths; this is where paths become frames. A run directory
is read through the store (:func:`cartwin.store.open_run`); a file is read with every CSV column as
text, so that the clinical layer's checks (numbers, units, codes) see exactly what the file holds.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from cartwin.clinical import ObservationError, observations_from_frame, observations_from_run
from cartwin.clinical.observations import Observations
from cartwin.store.reported import as_reported
from cartwin.store import layout

FILE_SUFFIXES = (".csv", ".parquet", ".pq")


def read_observation_file(path: str | Path) -> pl.DataFrame:
    """A user's observation file as a raw frame (CSV columns as text). Raises ``ObservationError``
    naming the file for a missing, unreadable or unsupported file."""
    path = Path(path)
    if not path.exists():
        raise ObservationError(f"{path}: no such file or directory.", file=str(path))
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            _refuse_ragged_rows(path)
            return pl.read_csv(path, infer_schema=False, null_values=None)
        if suffix in (".parquet", ".pq"):
            return pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise ObservationError(f"{path}: cannot be read as {suffix[1:]} ({exc}).", file=str(path)) from exc
    raise ObservationError(
        f"{path}: unsupported file type '{suffix}'. Give a .csv or .parquet observation file or a run "
        f"directory containing {layout.OBSERVATIONS} and {layout.PATIENTS}.", file=str(path))


def _refuse_other_separators(path: Path, header: list[str]) -> None:
    if len(header) != 1:
        return
    for separator, name in ((";", "semicolons"), ("\t", "tabs")):
        if separator in header[0]:
            raise ObservationError(
                f"{path}: the header {header[0]!r} is separated by {name}, not commas. Save the file as "
                f"comma-separated CSV with '.' as the decimal point (columns subject, day, test, value, "
                f"unit; docs/clinical.md).", file=str(path))


def _refuse_ragged_rows(path: Path) -> None:
    """A CSV row with fewer fields than the header is a broken row, not a row whose last values
    are missing (the CSV reader would fill them with nothing); one with more has a stray comma
    (a decimal comma, an unquoted text). Both are refused, naming the rows. A header of one field
    holding ';' or a tab is a spreadsheet saved as CSV in a locale with the decimal comma: read by
    commas it would be 'missing every column' (or, with decimal commas, 'more fields than the
    header'), which would not say why; it is refused naming the separator."""
    import csv  # noqa: PLC0415
    short, long_ = [], []
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        _refuse_other_separators(path, header)
        width = len(header)
        for row, fields in enumerate(reader, start=1):
            if fields and len(fields) < width:
                short.append(row)
            elif len(fields) > width:
                long_.append(row)
    for rows, what, fix in ((short, "fewer", "leave a cell empty (',,') for a missing value"),
                            (long_, "more", "quote text that holds commas and use '.' as the decimal point")):
        if rows:
            shown = ", ".join(map(str, rows[:10])) + (f" and {len(rows) - 10} more" if len(rows) > 10 else "")
            raise ObservationError(
                f"{path}: row{'s' if len(rows) > 1 else ''} {shown} (1-based data rows) "
                f"{'have' if len(rows) > 1 else 'has'} {what} fields than the header's {width}. Give "
                f"every row exactly the header's columns; {fix}.", file=str(path), rows=rows)


def read_run_observations(run_dir: str | Path) -> Observations:
    """A run directory's observations, validated, failed patients excluded and flagged. The run
    need not be complete (an interrupted run's stored chunks can be scored). With the observation
    model on, the observed values are scored as reported (:func:`as_reported`)."""
    from cartwin.store import open_run

    run = open_run(run_dir, complete=False, tables=("observations", "patients"))
    return observations_from_run(as_reported(run.observations().collect()), run.patients(), str(run.path),
                                 observations_source=run.source("observations"),
                                 patients_source=run.source("patients"))


def read_observations(source: str | Path) -> Observations:
    """Validated observations of a CSV/Parquet observation file or of a run directory."""
    path = Path(source)
    if not path.exists():
        raise ObservationError(f"{path}: no such file or directory.", file=str(path))
    if path.is_dir():
        return read_run_observations(path)
    return observations_from_frame(read_observation_file(path), str(path))
