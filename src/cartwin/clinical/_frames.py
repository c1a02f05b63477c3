"""Frame helpers for the scoring hot paths (same results as the plain Polars calls they replace)."""

from __future__ import annotations

import numpy as np
import polars as pl

_MAX_DENSE_CELLS = 50_000_000  # subject x day grid cells for a direct (unsorted) group index


def pivot_first(frame: pl.DataFrame, on: str, values: str) -> pl.DataFrame:
    """``frame.pivot(on=on, index=["subject", "day"], values=values, aggregate_function="first")``
    for frames with at most one row per (subject, day, ``on``), as a scatter into (subject, day)
    groups, numbered from the row order when the rows already come in subject and day order (a
    run's observations), else from a grid of subject codes (an Enum subject column) and day codes
    (the sorted distinct days): no hashing or sorting of the rows is needed. Rows come out sorted
    by subject and day (the pivot keeps first-appearance order; callers sort or join afterwards). Falls back to the
    pivot for anything else: text subjects, missing days, repeated keys, floating-point values
    that are NaN or a value type other than Float64/Boolean.
    """
    dtype = frame.schema[values]
    if (frame.height == 0 or not isinstance(frame.schema["subject"], pl.Enum) or dtype not in (pl.Float64, pl.Boolean)
            or frame["day"].null_count() or frame[on].null_count()
            or (dtype == pl.Float64 and frame[values].is_nan().any())):
        return frame.pivot(on=on, index=["subject", "day"], values=values, aggregate_function="first")
    names = frame[on].unique(maintain_order=True)
    subject_codes = frame["subject"].to_physical().to_numpy().astype(np.int64)
    days = frame["day"].to_numpy()
    if np.isnan(days).any():
        return frame.pivot(on=on, index=["subject", "day"], values=values, aggregate_function="first")
    group = _groups_in_order(subject_codes, days)
    ordered = group is not None
    if not ordered:
        distinct_days = np.sort(frame["day"].unique().to_numpy())
        if subject_codes.max(initial=0) * distinct_days.size > _MAX_DENSE_CELLS:
            return frame.pivot(on=on, index=["subject", "day"], values=values, aggregate_function="first")
        cell = subject_codes * distinct_days.size + np.searchsorted(distinct_days, days)
        used = np.zeros((subject_codes.max() + 1) * distinct_days.size, dtype=bool)
        used[cell] = True
        group = (np.cumsum(used) - 1)[cell]
    n_groups = int(group.max()) + 1
    # each row's position of its ``on`` value among ``names``: the physical code of an Enum of them
    column = frame.select(pl.col(on).cast(pl.String).cast(pl.Enum(names.cast(pl.String))).to_physical()
                          .cast(pl.Int64)).to_series().to_numpy()
    slot = column * n_groups + group
    if np.bincount(slot, minlength=names.len() * n_groups).max(initial=0) > 1:
        return frame.pivot(on=on, index=["subject", "day"], values=values, aggregate_function="first")
    value_series = frame[values]
    valid = np.zeros(names.len() * n_groups, dtype=bool)
    valid[slot] = value_series.is_not_null().to_numpy()
    if dtype == pl.Float64:
        data = np.zeros(names.len() * n_groups)
        data[slot] = value_series.fill_null(0.0).to_numpy()
    else:
        data = np.zeros(names.len() * n_groups, dtype=bool)
        data[slot] = value_series.fill_null(False).to_numpy()
    # each (subject, day)'s first row, whose day the pivot keeps: -0.0 and 0.0 are one day, and
    # the day of another row of the group could differ from the pivot's in its sign bit
    if ordered:
        representative = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    else:
        representative = np.full(n_groups, frame.height, dtype=np.int64)
        np.minimum.at(representative, group, np.arange(frame.height))
    result = frame.select("subject", "day")[pl.Series(representative)]
    columns = []
    for i, name in enumerate(names.cast(pl.String).to_list()):
        block = slice(i * n_groups, (i + 1) * n_groups)
        series = pl.Series(name, data[block], dtype=dtype)
        columns.append(pl.when(pl.Series(valid[block])).then(series).otherwise(None).alias(name))
    return result.with_columns(columns)


def _groups_in_order(subject_codes: np.ndarray, days: np.ndarray) -> np.ndarray | None:
    """Each row's (subject, day) group, numbered in ascending (subject, day) order, when the rows
    already come in that order (subject codes, then days, never decreasing: a run's observations):
    a new group starts wherever the subject or the day changes, with no grid of every subject and
    day. None for rows in any other order."""
    same_subject = subject_codes[1:] == subject_codes[:-1]
    if not np.all((subject_codes[1:] > subject_codes[:-1]) | (same_subject & (days[1:] >= days[:-1]))):
        return None
    starts = np.ones(days.size, dtype=bool)
    starts[1:] = ~(same_subject & (days[1:] == days[:-1]))
    return np.cumsum(starts) - 1


def subject_runs(subjects: pl.Series) -> pl.DataFrame:
    """The runs of equal identifiers (``value``, ``len``) of a subject column, in row order."""
    return subjects.rle().struct.unnest()


def subjects_as_enum(subjects: pl.Series, enum: pl.Enum | None = None, runs: pl.DataFrame | None = None) -> pl.Series:
    """``subjects`` (text, no nulls) cast to ``enum`` (default: an Enum of their sorted distinct
    identifiers). Rows of a subject usually come together (every frame the simulator writes, most
    files): then the text of each run of rows is cast once and repeated, instead of every row's
    text being looked up. ``runs``: :func:`subject_runs` of ``subjects``, when the caller has them."""
    runs = subject_runs(subjects) if runs is None else runs
    enum = enum if enum is not None else pl.Enum(runs["value"].unique().sort())
    if runs.height > subjects.len() // 2:  # subjects interleaved: the plain cast is as cheap
        return subjects.cast(enum)
    cast = runs["value"].cast(enum).gather(np.repeat(np.arange(runs.height), runs["len"].to_numpy())).alias(subjects.name)
    # one run per subject, in identifier order (as in a run's chunks): marked sorted, as a sort
    # would mark it, so that groupings by subject use the runs instead of hashing every row
    in_order = runs.select((pl.col("value") > pl.col("value").shift(1)).slice(1).all()).item()
    return cast.set_sorted() if in_order else cast


def frames_by_subject_code(frames: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame] | None:
    """The frames with their text ``subject`` columns cast to one Enum of every identifier among
    them (sorted), so that joins, groupings and sorts by subject between them work on integers and
    still order subjects by their text; None when a frame's subjects are not all text (already
    coded, or missing), and the frames are then used as they are."""
    if not frames or any(f.schema.get("subject") != pl.String or f["subject"].null_count() for f in frames.values()):
        return None
    runs = {name: subject_runs(f["subject"]) for name, f in frames.items()}
    enum = pl.Enum(pl.concat([r["value"] for r in runs.values()]).unique().sort())
    return {name: f.with_columns(subjects_as_enum(f["subject"], enum, runs[name])) for name, f in frames.items()}


def in_subject_day_order(frame: pl.DataFrame) -> bool:
    """Whether the rows are in strictly ascending (subject, day) order, so that no (subject, day)
    repeats and ``sort("subject", "day")`` would return them as they are: each subject's rows
    together with ascending days, and the subjects' runs in ascending order. Comparisons with the
    row above, no hashing or sorting. Text subjects compare as text and Enum subjects by their
    category order, as the sort orders them; False for any other subject type, for a missing
    subject or day and for a NaN day (ordered before, after and equal to no day, wherever it is)."""
    dtype = frame.schema["subject"]
    if not (isinstance(dtype, pl.Enum) or dtype == pl.String) or frame["subject"].null_count() or frame["day"].null_count():
        return False
    if frame.schema["day"].is_float() and frame["day"].is_nan().any():
        return False
    if frame.height < 2:
        return True
    run = frame["subject"].rle_id().to_numpy()  # the run of equal subjects each row belongs to
    new_run = run[1:] != run[:-1]
    days = frame["day"].to_numpy()
    if not np.all(new_run | (days[1:] > days[:-1])):
        return False
    firsts = frame["subject"].gather(np.flatnonzero(np.r_[True, new_run]))  # each run's subject
    if isinstance(dtype, pl.Enum):
        firsts = firsts.to_physical()
    return bool((firsts.slice(1) > firsts.slice(0, firsts.len() - 1)).all())


def sort_by_subject_day(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame.sort("subject", "day")``, without sorting rows already in that order (the usual
    case: the clinical layer's frames keep the order of the daily frame, and a run's observations
    come in subject and day order)."""
    if in_subject_day_order(frame):
        # marked sorted by subject, as the sort marks it: later groupings by subject use that
        return frame.with_columns(pl.col("subject").set_sorted())
    return frame.sort("subject", "day")


def shifted_within_subject(column: str, n: int = 1) -> pl.Expr:
    """``pl.col(column).shift(n).over("subject")`` for a frame whose subjects' rows are together and
    in order: the value ``n`` rows away when that row is the same subject's, else null, without a
    window pass over the subjects."""
    return pl.when(pl.col("subject") == pl.col("subject").shift(n)).then(pl.col(column).shift(n))
