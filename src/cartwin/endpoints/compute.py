"""The generic engine: the clinical layer's frames in, one row per patient with every endpoint out.

Everything here reads the endpoint table; nothing here knows a particular endpoint. Conditions are
Polars expressions built from the table's { column, op, value } records (no code is stored as text).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import reduce

import polars as pl

from cartwin.clinical._frames import frames_by_subject_code, shifted_within_subject, sort_by_subject_day
from cartwin.endpoints.table import Condition, Endpoint, Table, Variable, definitions


def condition(c: Condition) -> pl.Expr:
    """A table condition as an expression; null where its column is null (unknown)."""
    col = pl.col(c.column)
    return {
        "==": lambda: col == c.value, "!=": lambda: col != c.value, "<": lambda: col < c.value,
        "<=": lambda: col <= c.value, ">": lambda: col > c.value, ">=": lambda: col >= c.value,
        "in": lambda: pl.when(col.is_null()).then(None).otherwise(col.is_in(c.value)),
        "is_true": lambda: col == True,  # noqa: E712 (null stays null)
        "is_false": lambda: col == False,  # noqa: E712
        "is_null": lambda: col.is_null(), "is_not_null": lambda: col.is_not_null(),
    }[c.op]()


def all_of(conditions: tuple[Condition, ...]) -> pl.Expr:
    """Every condition holds (Kleene and); true for an empty list."""
    return reduce(lambda a, b: a & b, (condition(c) for c in conditions), pl.lit(True))


def _columns(conditions: tuple[Condition, ...]) -> set[str]:
    return {c.column for c in conditions}


def _with_columns(frame: pl.DataFrame, names: set[str]) -> pl.DataFrame:
    """A column the frame lacks (its test never observed) is null: the endpoint is not evaluable."""
    missing = sorted(n for n in names if n not in frame.columns)
    return frame.with_columns([pl.lit(None).alias(n) for n in missing]) if missing else frame


def _visit_statistic(v: Variable, baseline_last_day: float) -> pl.Expr:
    selected = all_of(v.where)
    if v.after_baseline:
        selected = selected & (pl.col("day") > baseline_last_day)
    if v.statistic == "first_day":
        return pl.col("day").filter(selected).min()
    if v.statistic == "last_day":
        return pl.col("day").filter(selected).max()
    if v.statistic == "last":
        return pl.col(v.column).filter(selected).last()
    if v.statistic == "count_not_null":
        return pl.col(v.column).filter(selected).is_not_null().sum()
    if v.statistic == "any":
        return all_of(v.of).filter(selected).any(ignore_nulls=False)
    raise AssertionError(v.statistic)  # the table loader admits no other statistic


def _visit_variables(variables: list[Variable], visits: pl.DataFrame, baseline_last_day: float) -> list[pl.DataFrame]:
    needed = {"day"}
    for v in variables:
        needed |= _columns(v.rows) | _columns(v.where) | _columns(v.of) | ({v.column} if v.column else set())
    visits = sort_by_subject_day(_with_columns(visits, needed))
    groups: dict[tuple, list[Variable]] = {}
    for v in variables:
        groups.setdefault(v.rows, []).append(v)
    out = []
    for rows, members in groups.items():
        frame = visits.filter(all_of(rows)) if rows else visits
        out.append(frame.group_by("subject").agg(
            [_visit_statistic(v, baseline_last_day).alias(v.name) for v in members]))
    return out


def _subjects(observations: pl.DataFrame, subjects: pl.DataFrame | None) -> pl.DataFrame:
    return observations.select("subject").unique() if subjects is None else subjects


def _serology(v: Variable, observations: pl.DataFrame, baseline_last_day: float,
              subjects: pl.DataFrame | None = None) -> pl.DataFrame:
    """Normalisation at the last measurement of ``v.test``, for patients abnormal at baseline (the
    last measurement on or before the baseline day); null otherwise. ``subjects``: the subjects to
    give a row (one row each), when the caller has them; else the distinct subjects of ``observations``."""
    from cartwin.clinical.composite import serology_normalisation

    subjects = _subjects(observations, subjects)
    limit = "lower" if v.direction == "low" else "upper"
    # only the columns read here are filtered and sorted (not every column of the frame)
    rows = sort_by_subject_day(observations.lazy().select("subject", "day", "test", "value", limit)
                               .filter((pl.col("test") == v.test) & pl.col("value").is_not_null()).collect())
    if rows.height == 0:
        return subjects.with_columns(pl.lit(None, pl.Boolean).alias(v.name))
    per_patient = rows.group_by("subject").agg(
        pl.col("value").filter(pl.col("day") <= baseline_last_day).last().alias("baseline"),
        pl.col("value").last().alias("value"),
        pl.col(limit).last().alias("limit"),
    )
    scored = serology_normalisation(per_patient, v.direction).select("subject", pl.col("normalised").alias(v.name))
    return subjects.join(scored, on="subject", how="left")


def _last_detectable(v: Variable, observations: pl.DataFrame, subjects: pl.DataFrame | None = None) -> pl.DataFrame:
    """The last day on or after day 0 with ``v.test`` at or above its detection limit (the row's
    ``lower``), moved by log-linear interpolation to where the count crosses the limit before the
    next sample (a sampled last day is a step function of the model's parameters, which a search
    cannot descend); the last sample's day when detectable there (censored: a lower bound); 0 when
    never detectable after day 0; null without a count or a detection limit."""
    subjects = _subjects(observations, subjects)
    if "lower" not in observations.columns:
        return subjects.with_columns(pl.lit(None, pl.Float64).alias(v.name))
    # only the columns read here are filtered and sorted (not every column of the frame)
    rows = (observations.lazy().select("subject", "day", "test", "value", "lower")
            .filter((pl.col("test") == v.test) & pl.col("value").is_not_null() & (pl.col("day") >= 0)).collect())
    if rows.height == 0:
        return subjects.with_columns(pl.lit(None, pl.Float64).alias(v.name))
    rows = sort_by_subject_day(rows).with_columns(
        shifted_within_subject("day", -1).alias("_next_day"), shifted_within_subject("value", -1).alias("_next_value"))
    detectable = pl.col("value") >= pl.col("lower")
    per_patient = rows.group_by("subject").agg(
        pl.col("lower").is_not_null().any().alias("_limit_known"),
        *[pl.col(c).filter(detectable).last().alias(f"_{c}") for c in ("day", "value", "lower", "_next_day", "_next_value")])
    log = lambda c: pl.max_horizontal(pl.col(c), pl.lit(1e-300)).log()  # noqa: E731
    lo, hi, limit = log("_value"), log("__next_value"), log("_lower")
    crossing = pl.col("_day") + (pl.col("__next_day") - pl.col("_day")) * (lo - limit) / (lo - hi)
    value = (pl.when(~pl.col("_limit_known")).then(None)
             .when(pl.col("_day").is_null()).then(0.0)
             .when(pl.col("__next_day").is_not_null() & (lo > hi)).then(crossing)
             .otherwise(pl.col("_day")).cast(pl.Float64))
    scored = per_patient.select("subject", value.alias(v.name))
    return subjects.join(scored, on="subject", how="left")


def _lab_grade_variables(variables: list[Variable], lab_grades: pl.DataFrame, baseline_last_day: float) -> list[pl.DataFrame]:
    """``max`` of a lab-grade column over a patient's ``rows`` (e.g. one test), after baseline when
    asked; null for a patient without such rows."""
    needed = {"day"}
    for v in variables:
        needed |= _columns(v.rows) | _columns(v.where) | {v.column}
    lab_grades = _with_columns(lab_grades, needed)
    out = []
    for v in variables:
        selected = all_of(v.where)
        if v.after_baseline:
            selected = selected & (pl.col("day") > baseline_last_day)
        frame = lab_grades.filter(all_of(v.rows)) if v.rows else lab_grades
        out.append(frame.group_by("subject").agg(pl.col(v.column).filter(selected).max().alias(v.name)))
    return out


WITHDRAWN_DAY = "withdrawn_day"
"""Per-patient column (the run's patients table, a run with a protocol's [conduct]): the last visit
before a patient withdrew; null for a patient who stayed."""


def non_responder(e: Endpoint) -> pl.Expr:
    """A patient who withdrew before the endpoint's assessment day (any withdrawal when it has none):
    the non-responder imputation of SLE trials (missing_data = "non_responder")."""
    withdrawn = pl.col(WITHDRAWN_DAY).is_not_null()
    if e.assessment_day is not None:
        withdrawn = withdrawn & (pl.col(WITHDRAWN_DAY) < e.assessment_day)
    return withdrawn


def endpoint_values(e: Endpoint, withdrawal: bool = False) -> list[pl.Expr]:
    """The per-patient value column(s) of an endpoint, over a frame holding its inputs.
    ``withdrawal``: the frame holds ``withdrawn_day``; responder endpoints then impute a withdrawn
    patient as a non-responder (in the denominator, as failure)."""
    if e.type == "binary":
        evaluable = all_of(e.evaluable).fill_null(False)
        value = pl.when(evaluable).then(all_of(e.success).fill_null(False)).otherwise(None)
        if withdrawal and e.missing_data == "non_responder":
            value = pl.when(non_responder(e)).then(False).otherwise(value)
        return [value.alias(e.key)]
    included = all_of(e.subset).fill_null(False)
    if e.type == "continuous":
        return [pl.when(included).then(pl.col(e.column).cast(pl.Float64)).otherwise(None).alias(e.key)]
    origin = pl.lit(e.origin, pl.Float64) if isinstance(e.origin, float) else pl.col(e.origin).cast(pl.Float64)
    event, censor = pl.col(e.event).cast(pl.Float64), pl.col(e.censor).cast(pl.Float64)
    time = pl.coalesce(event, censor) - origin
    known = included & time.is_not_null()
    return [pl.when(known).then(time).otherwise(None).alias(e.key),
            pl.when(known).then(event.is_not_null()).otherwise(None).alias(e.event_column)]


def endpoint_inputs(e: Endpoint) -> set[str]:
    names = _columns(e.success) | _columns(e.evaluable) | _columns(e.subset)
    names |= {n for n in (e.column, e.event, e.censor) if n}
    if isinstance(e.origin, str):
        names.add(e.origin)
    return names


def compute(clinical: Mapping[str, pl.DataFrame], observations: pl.DataFrame, table: Table | None = None,
            keys: list[str] | tuple[str, ...] | None = None, baseline_last_day: float | None = None) -> pl.DataFrame:
    """Every endpoint of ``table`` (default: cartwin's) for every patient.

    ``clinical``: the clinical layer's tables (``clinical.score_observations``), of which
    ``patients`` (one row per subject, with ``arm``), ``visits`` and ``lab_grades`` are read (the
    last two only when a variable needs them; without ``lab_grades`` its variables are null); ``observations``: the canonical observation frame
    they were scored from. ``keys``: only these endpoints and the variables they need (default:
    all). Returns one row per patient of ``clinical["patients"]``: subject, arm, the table's
    variables, then each endpoint's value (binary: true/false, null outside the denominator;
    continuous: the value; time to event: the time in days and ``<key>_event``, true for an event
    and false for a censored time).
    """
    from cartwin.clinical.ruleset import settings

    table = table or definitions()
    chosen = table.endpoints if keys is None else tuple(table.endpoint(k) for k in keys)
    needed = set().union(*(endpoint_inputs(e) for e in chosen)) if chosen else set()
    variables = table.variables if keys is None else tuple(v for v in table.variables if v.name in needed)
    if baseline_last_day is None:
        baseline_last_day = settings("ctcae_v5")["baseline_last_day"]
    visit_vars = [v for v in variables if v.source == "visits"]
    lab_vars = [v for v in variables if v.source == "lab_grades"]
    # the frames read, by name; no lab-grade table (no lab observed): its variables are null,
    # their endpoints not evaluable
    frames = {"patients": clinical["patients"]}
    if visit_vars:
        frames["visits"] = clinical["visits"]
    if lab_vars:
        frames["lab_grades"] = clinical.get("lab_grades",
                                            pl.DataFrame(schema={"subject": clinical["patients"].schema["subject"]}))
    if any(v.source == "observations" for v in variables):
        frames["observations"] = observations
    # Text subjects are coded as one Enum of them all while the endpoints are computed (groupings,
    # sorts and joins by subject on integers, in the same order) and given back as text.
    coded = frames_by_subject_code(frames)
    frames = coded or frames
    patients = frames["patients"]
    observations = frames.get("observations", observations)
    frame = patients
    parts = _visit_variables(visit_vars, frames["visits"], baseline_last_day) if visit_vars else []
    if lab_vars:
        parts += _lab_grade_variables(lab_vars, frames["lab_grades"], baseline_last_day)
    # Each part below is left-joined by subject to ``patients`` (one row per subject), so a part's
    # rows need only cover the patients: its subjects are taken from that table, not found again
    # among every observation row.
    observed = patients.select("subject") if any(v.source == "observations" for v in variables) else None
    readers = {"serology_normalisation": lambda v: _serology(v, observations, baseline_last_day, observed),
               "last_detectable_day": lambda v: _last_detectable(v, observations, observed)}
    parts += [readers[v.statistic](v) for v in variables if v.source == "observations"]
    names = [v.name for v in variables]
    frame = frame.drop([n for n in names if n in frame.columns])
    for part in parts:
        frame = frame.join(part, on="subject", how="left")
    frame = _with_columns(frame, needed)
    withdrawal = WITHDRAWN_DAY in frame.columns
    values = [expr for e in chosen for expr in endpoint_values(e, withdrawal)]
    result = frame.select("subject", "arm", *names, *values)
    return result.with_columns(pl.col("subject").cast(pl.String)) if coded else result
