"""Validate observation frames into one long frame in canonical units.

The clinical layer receives frames, never paths: a user's file is read at the border
(:mod:`cartwin.io.observations`) and a run's tables by the store; ``source`` names where the rows
came from, for messages and flags.

Every problem names the file, the data row (1-based, header excluded) and the column. Rows are
never dropped silently: a row the engine cannot use either stops the run (``ObservationError``)
or stays in the frame as "not evaluable" with an entry in the flag table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import numpy as np
import polars as pl

from cartwin.clinical.errors import ObservationError
from cartwin.clinical.ruleset import settings, table
from cartwin.vocabulary import suggest_test_code, test_codes

REQUIRED_COLUMNS = ("subject", "day", "test", "value", "unit")
OPTIONAL_COLUMNS = ("lower", "upper", "arm", "cause")
ALLOWED_CAUSES = ("sle", "drug", "lymphodepletion", "crs", "icans", "infection", "sedation", "other")
MISSING_TEXT = ("", "na", "nan", "null", "none")
_SHOWN_ROWS = 8

FLAG_SCHEMA = {
    "file": pl.String, "row": pl.Int64, "column": pl.String, "subject": pl.String,
    "test": pl.String, "day": pl.Float64, "problem": pl.String,
}


@dataclass
class Observations:
    """Validated observations in canonical units plus everything the reader had to say."""

    frame: pl.DataFrame
    flags: pl.DataFrame
    source: str
    excluded_subjects: list[str] = field(default_factory=list)


def empty_flags() -> pl.DataFrame:
    return pl.DataFrame(schema=FLAG_SCHEMA)


def make_flags(frame: pl.DataFrame, column: str, problem: str | pl.Expr) -> pl.DataFrame:
    """Flag rows of a frame that carries ``file``/``row``/``subject``/``test``/``day`` columns."""
    problem_expr = pl.lit(problem) if isinstance(problem, str) else problem
    cols = []
    for name, dtype in FLAG_SCHEMA.items():
        if name == "column":
            cols.append(pl.lit(column, pl.String).alias(name))
        elif name == "problem":
            cols.append(problem_expr.cast(pl.String).alias(name))
        elif name == "day" and "_day" in frame.columns:
            # the parsed day (the raw text may carry spaces: "7 ")
            cols.append(pl.col("_day").cast(dtype).alias(name))
        elif name in frame.columns:
            cols.append(pl.col(name).cast(dtype))
        else:
            cols.append(pl.lit(None, dtype).alias(name))
    return frame.select(cols)


@cache
def unit_table() -> pl.DataFrame:
    """Supported (test, unit) pairs with the factor and offset to the canonical unit."""
    rules = table("units", numeric=("factor", "offset")).with_columns(pl.col("unit").fill_null(""))
    codes = pl.DataFrame(
        [{"test": c.code, "canonical_unit": c.unit} for c in test_codes().values()]
    )
    specific = rules.filter(pl.col("test") != "*").join(codes, on=["test", "canonical_unit"], how="inner")
    generic = rules.filter(pl.col("test") == "*").drop("test").join(codes, on="canonical_unit", how="inner")
    generic = generic.join(specific.select("test", "unit"), on=["test", "unit"], how="anti")
    merged = pl.concat([specific, generic.select(specific.columns)])
    mismatched = rules.filter(pl.col("test") != "*").join(codes, on="test", how="inner").filter(
        pl.col("canonical_unit") != pl.col("canonical_unit_right"))
    if mismatched.height:
        raise RuntimeError(f"rules/units.csv disagrees with test_codes.csv canonical units: {mismatched}")
    return merged.select("test", "unit", "canonical_unit", "factor", "offset", "source")


@cache
def reported_unit_dtype() -> pl.Enum:
    """The type of the frame's ``reported_unit`` column: every unit string of the unit table."""
    return pl.Enum(sorted(set(unit_table()["unit"].to_list()) | {""}))


@cache
def value_range_table() -> pl.DataFrame:
    ranges = table("value_ranges", numeric=("minimum", "maximum"), boolean=("integer",))
    codes = pl.DataFrame([{"test": c.code, "canonical_unit": c.unit} for c in test_codes().values()])
    specific = ranges.filter(~pl.col("test").str.starts_with("*")).join(codes, on="test", how="inner")
    by_unit = (
        ranges.filter(pl.col("test").str.starts_with("*") & (pl.col("test") != "*"))
        .with_columns(pl.col("test").str.strip_prefix("*").alias("canonical_unit"))
        .drop("test").join(codes, on="canonical_unit", how="inner")
        .join(specific.select("test"), on="test", how="anti")
    )
    taken = pl.concat([specific.select("test"), by_unit.select("test")])
    fallback_units = ("category", "points")  # dimensionless codes need their own row
    catch_all = (
        ranges.filter(pl.col("test") == "*").drop("test")
        .join(codes.filter(~pl.col("canonical_unit").is_in(fallback_units)), how="cross")
        .join(taken, on="test", how="anti")
    )
    cols = ["test", "minimum", "maximum", "integer", "source"]
    return pl.concat([specific.select(cols), by_unit.select(cols), catch_all.select(cols)])


@cache
def default_limits() -> pl.DataFrame:
    return table("reference_limits", numeric=("lower", "upper")).rename(
        {"lower": "default_lower", "upper": "default_upper", "source": "default_source"}
    )


def _rows_text(rows: list[int]) -> str:
    shown = ", ".join(str(r) for r in rows[:_SHOWN_ROWS])
    more = f" and {len(rows) - _SHOWN_ROWS} more" if len(rows) > _SHOWN_ROWS else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more}"


def _fail(file: str, bad: pl.DataFrame, column: str, problem: str, fix: str,
          collect: list[ObservationError] | None = None) -> None:
    """Raise the problem, or add it to ``collect`` when the caller reports every problem at once."""
    rows = bad["row"].to_list()
    error = ObservationError(
        f"{file}: {_rows_text(rows)} (1-based data rows), column '{column}': {problem}. {fix}",
        file=file, rows=rows, column=column,
    )
    if collect is None:
        raise error
    collect.append(error)


def _raise_all(problems: list[ObservationError]) -> None:
    """One error listing every problem found (its ``rows`` and ``column`` are the first's; every
    problem is kept in ``problems``)."""
    if not problems:
        return
    if len(problems) == 1:
        raise problems[0]
    first = problems[0]
    error = ObservationError(f"{len(problems)} problems:\n  " + "\n  ".join(str(p) for p in problems),
                             file=first.file, rows=first.rows, column=first.column)
    error.problems = problems
    raise error


def _as_float(frame: pl.DataFrame, column: str) -> tuple[pl.Expr, pl.Expr]:
    """(parsed float expression, expression true where text was present but not a number)."""
    dtype = frame.schema[column]
    if dtype.is_numeric():
        parsed = pl.col(column).cast(pl.Float64)
        return parsed.fill_nan(None), parsed.is_infinite().fill_null(False)
    if dtype == pl.Boolean:
        return pl.col(column).cast(pl.Float64), pl.lit(False)
    text = pl.col(column).cast(pl.String).str.strip_chars()
    missing = text.is_null() | text.str.to_lowercase().is_in(MISSING_TEXT)
    parsed = pl.when(missing).then(None).otherwise(text.cast(pl.Float64, strict=False))
    # "inf" parses as a number but is no measurement or day: refused like any other non-number
    return parsed.fill_nan(None), (~missing & (parsed.is_null() | parsed.is_infinite()))


@cache
def _code_list() -> tuple[str, ...]:
    return tuple(test_codes())


def _code_position(column: str = "test") -> pl.Expr:
    """Position of the row's test code in test_codes.csv (null for an unknown code): one text lookup
    per row, after which every rules table keyed by test is looked up by integer position."""
    return pl.col(column).replace_strict({c: i for i, c in enumerate(_code_list())}, default=None, return_dtype=pl.Int64)


def _lookup(frame: pl.DataFrame, table_: pl.DataFrame, keys: list[str], columns: list[str]) -> pl.DataFrame:
    """``frame.join(table_, on=keys, how="left")`` for a rules table keyed by ``["test"]`` or
    ``["test", "unit"]``, without a row-level join: each row's table position comes from its code
    position (column ``_code``) and, for units, one text lookup of the unit; the columns are
    gathered from the table. Keeps the frame's row order; several times faster than a hash join on
    tens of millions of text keys. Falls back to the join when table keys repeat."""
    small = table_.select(*keys, *columns)
    if small.select(pl.struct(keys).is_duplicated().any()).item() or any(frame.schema[k] != pl.String for k in keys):
        return frame.join(small, on=keys, how="left")
    codes = {c: i for i, c in enumerate(_code_list())}
    n_codes = len(codes)
    code_index = frame["_code"].fill_null(n_codes).to_numpy()
    table_codes = np.array([codes.get(t, n_codes) for t in small["test"].to_list()], dtype=np.int64)
    if keys == ["test"]:
        where = np.full(n_codes + 1, -1, dtype=np.int64)
        where[table_codes] = np.arange(small.height)
        where[n_codes] = -1
        position = where[code_index]
    else:
        units = {u: j for j, u in enumerate(dict.fromkeys(v for v in small["unit"].to_list() if v is not None))}
        n_units = len(units)
        unit_index = frame.select(pl.col("unit").replace_strict(units, default=n_units, return_dtype=pl.Int64)
                                  .fill_null(n_units)).to_series().to_numpy()
        where = np.full((n_codes + 1, n_units + 1), -1, dtype=np.int64)
        table_units = np.array([units.get(u, n_units) if u is not None else n_units for u in small["unit"].to_list()],
                               dtype=np.int64)
        where[table_codes, table_units] = np.arange(small.height)
        where[n_codes, :] = -1
        where[:, n_units] = -1
        position = where[code_index, unit_index]
    index = pl.Series(position).set(pl.Series(position < 0), None) if (position < 0).any() else pl.Series(position)
    return frame.with_columns([small[column].gather(index).alias(column) for column in columns])


def _has_duplicate_keys(frame: pl.DataFrame, keys: list[str]) -> bool:
    """Whether any (subject, day, test) repeats. Distinct 64-bit hashes prove there is no repeat
    (equal keys hash equally); only when two hashes coincide are the keys compared exactly."""
    if frame.select(keys).hash_rows().n_unique() == frame.height:
        return False
    return frame.select(pl.struct(keys).is_duplicated().any()).item()


def _strip(frame: pl.DataFrame, column: str) -> pl.Expr:
    """The column as text without surrounding whitespace. Whether any value has some is decided on
    the distinct values; when none has, the column is kept as it is (no copy of every string)."""
    text = pl.col(column).cast(pl.String)
    padded = frame.select(pl.col(column).unique().cast(pl.String).str.contains(r"^\s|\s$").any()).item()
    return text.str.strip_chars() if padded else text


DSDNA_FIX = ("Anti-dsDNA assays are not interconvertible, so a result in another unit (e.g. EliA U/mL) cannot "
             "be converted to IU/mL. Give the assay's positivity cut-off in 'upper' (the row is then read as "
             "the SLEDAI judgement SD_DNA), results of an assay calibrated in IU/mL, Farr binding as DSDNAFARR "
             "(%), or the SLEDAI judgement itself as SD_DNA (1 = increased above the assay's cut-off, 0 = not) "
             "(docs/clinical.md).")


def _dsdna_judged_against_cut_off(frame: pl.DataFrame, file: str, flags: list[pl.DataFrame],
                                  problems: list[ObservationError]) -> pl.DataFrame:
    """Anti-dsDNA rows in an assay unit with no factor to IU/mL (rules/sledai.toml
    ``dsdna_assay_units``): with the assay's cut-off as ``upper``, the row becomes the SLEDAI
    judgement SD_DNA (above the cut-off = 1) and is flagged; without one it is refused."""
    assay_units = settings("sledai")["dsdna_assay_units"]["units"]
    assay = (pl.col("test") == "DSDNA") & pl.col("unit").is_in(assay_units)
    if not frame.select(assay.any()).item():
        return frame
    bad = frame.filter(assay & pl.col("_upper").is_null())
    if bad.height:
        _fail(file, bad, "upper", f"anti-dsDNA in {bad['unit'][0]} without the assay's cut-off", DSDNA_FIX,
              collect=problems)
    judged = assay & pl.col("_upper").is_not_null()
    flags.append(make_flags(frame.filter(judged), "value", pl.concat_str([
        pl.lit("anti-dsDNA "), pl.col("_value").cast(pl.String), pl.lit(" "), pl.col("unit"),
        pl.lit(" judged against the assay's cut-off "), pl.col("_upper").cast(pl.String),
        pl.lit(" (upper) as SD_DNA; the value is not converted to IU/mL")])))
    code = _code_list().index("SD_DNA")
    return frame.with_columns(
        pl.when(judged).then(pl.lit("SD_DNA")).otherwise(pl.col("test")).alias("test"),
        pl.when(judged).then(pl.lit(code, pl.Int64)).otherwise(pl.col("_code")).alias("_code"),
        pl.when(judged).then(pl.lit("")).otherwise(pl.col("unit")).alias("unit"),
        pl.when(judged).then((pl.col("_value") > pl.col("_upper")).cast(pl.Float64)).otherwise(pl.col("_value"))
        .alias("_value"),
        pl.when(judged).then(None).otherwise(pl.col("_lower")).alias("_lower"),
        pl.when(judged).then(None).otherwise(pl.col("_upper")).alias("_upper"),
    )


def validate(raw: pl.DataFrame, file: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Validate and convert one observation table; returns (canonical frame, flags).

    The frame's ``value``, ``lower`` and ``upper`` are in the test's canonical unit (``unit``);
    ``reported_unit`` keeps the unit the row gave ("" when it gave none)."""
    missing_cols = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing_cols:
        raise ObservationError(
            f"{file}: missing required column(s) {missing_cols}; the observation format needs "
            f"{list(REQUIRED_COLUMNS)} and optionally {list(OPTIONAL_COLUMNS)} (see docs/clinical.md).",
            file=file, column=missing_cols[0],
        )
    unknown_cols = [c for c in raw.columns if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    frame = raw.with_row_index("row", offset=1).with_columns(pl.col("row").cast(pl.Int64), pl.lit(file).alias("file"))
    flags: list[pl.DataFrame] = []
    if unknown_cols:
        flags.append(pl.DataFrame({"file": [file], "row": [None], "column": [", ".join(unknown_cols)],
                                   "subject": [None], "test": [None], "day": [None],
                                   "problem": ["column not part of the observation format: ignored"]},
                                  schema=FLAG_SCHEMA))
    for name in ("lower", "upper"):
        if name not in frame.columns:
            frame = frame.with_columns(pl.lit(None, pl.Float64).alias(name))
    for name in ("arm", "cause"):
        if name not in frame.columns:
            frame = frame.with_columns(pl.lit(None, pl.String).alias(name))

    frame = frame.with_columns(
        _strip(frame, "subject"),
        _strip(frame, "test"),
        _strip(frame, "unit").fill_null(""),
        pl.col("arm").cast(pl.String),
        pl.col("cause").cast(pl.String).str.strip_chars().str.to_lowercase(),
    )
    problems: list[ObservationError] = []  # independent checks: every problem is reported at once
    bad = frame.filter(pl.col("subject").is_null() | (pl.col("subject") == ""))
    if bad.height:
        _fail(file, bad, "subject", "subject is empty", "Give every row a subject identifier.", collect=problems)

    day, day_bad = _as_float(frame, "day")
    frame = frame.with_columns(day.alias("_day"), day_bad.alias("_day_bad"))
    bad = frame.filter(pl.col("_day_bad") | pl.col("_day").is_null())
    if bad.height:
        _fail(file, bad, "day", f"day is missing, not a number or infinite (e.g. {bad['day'][0]!r})",
              "Give the study day relative to CAR-T infusion (day 0) as a number, e.g. -5, 0, 7.5.", collect=problems)

    codes = test_codes()
    frame = frame.with_columns(_code_position().alias("_code"))
    bad = frame.filter(pl.col("_code").is_null())
    if bad.height:
        examples = sorted({str(t) for t in bad["test"].to_list()})[:5]
        hints = [f"{t!r} -> {suggest_test_code(t)!r}" for t in examples if suggest_test_code(t)]
        _fail(file, bad, "test", f"unknown test code(s) {examples}",
              (f"Did you mean: {', '.join(hints)}? " if hints else "")
              + "Use a test code of the table in docs/run_directory.md (codes are case-sensitive; "
              "`cartwin.vocabulary.test_codes()` lists them too).", collect=problems)

    value, value_bad = _as_float(frame, "value")
    frame = frame.with_columns(value.alias("_value"), value_bad.alias("_value_bad"))
    bad = frame.filter(pl.col("_value_bad"))
    if bad.height:
        _fail(file, bad, "value", f"value is not a number or is infinite (e.g. {bad['value'][0]!r})",
              "Give a decimal number with '.' as decimal point; leave the cell empty for a missing result.", collect=problems)
    for name in ("lower", "upper"):
        parsed, parsed_bad = _as_float(frame, name)
        frame = frame.with_columns(parsed.alias(f"_{name}"), parsed_bad.alias("_limit_bad"))
        bad = frame.filter(pl.col("_limit_bad"))
        if bad.height:
            _fail(file, bad, name, f"reference limit is not a number or is infinite (e.g. {bad[name][0]!r})",
                  "Give the laboratory's limit as a number in the row's unit, or leave it empty.", collect=problems)
    for name in ("lower", "upper"):
        bad = frame.filter(pl.col(f"_{name}") < 0)
        if bad.height:
            _fail(file, bad, name, f"reference limit is negative ({bad[f'_{name}'][0]:g})",
                  "Give the laboratory's limit as a non-negative number in the row's unit, or leave it empty.", collect=problems)
    bad = frame.filter(pl.col("_lower") > pl.col("_upper"))
    if bad.height:
        _fail(file, bad, "lower", f"lower limit {bad['_lower'][0]:g} lies above the upper limit "
              f"{bad['_upper'][0]:g}", "Check the order of the lower and upper columns.", collect=problems)

    bad = frame.filter(pl.col("cause").is_not_null() & ~pl.col("cause").is_in(ALLOWED_CAUSES + MISSING_TEXT))
    if bad.height:
        _fail(file, bad, "cause", f"unknown cause {bad['cause'][0]!r}", f"Use one of {list(ALLOWED_CAUSES)} or leave it empty.", collect=problems)
    frame = frame.with_columns(
        pl.when(pl.col("cause").is_in(MISSING_TEXT)).then(None).otherwise(pl.col("cause")).alias("cause")
    )

    frame = _dsdna_judged_against_cut_off(frame, file, flags, problems)
    units = unit_table()
    frame = _lookup(frame, units, ["test", "unit"], ["canonical_unit", "factor", "offset"])
    unknown_unit = frame.filter(pl.col("factor").is_null() & (pl.col("unit") != "") & pl.col("_code").is_not_null())
    # one message per (test, unit): each names its own rows
    for (test, unit), rows in (unknown_unit.partition_by("test", "unit", as_dict=True, maintain_order=True).items()
                               if unknown_unit.height else ()):
        supported = [u for u in units.filter(pl.col("test") == test)["unit"].to_list() if u]
        fix = f"Supported units for {test}: {supported} (docs/clinical.md lists all)."
        same_letters = [u for u in supported if u.casefold() == str(unit).casefold()]
        if same_letters:  # units are case-sensitive (mg/dL, not mg/dl): say which one was meant
            fix = f"Did you mean {same_letters[0]!r}? Units are case-sensitive. " + fix
        if test == "DSDNA":
            # anti-dsDNA assays (EliA, ELISA, CLIFT, Farr) are not interconvertible: no factor exists
            fix = DSDNA_FIX
        _fail(file, rows, "unit", f"unit {unit!r} is not supported for test {test}", fix, collect=problems)
    _raise_all(problems)
    no_unit = frame.filter(pl.col("factor").is_null())
    if no_unit.height:
        flags.append(make_flags(no_unit, "unit", "unit missing for a dimensioned test: value not evaluable (admiral unit check)"))

    missing_value = frame.filter(pl.col("_value").is_null())
    if missing_value.height:
        flags.append(make_flags(missing_value, "value", "value missing: not evaluable"))

    frame = frame.with_columns(
        # The unit as reported, kept so that CTCAE criteria printed in that unit (Hb in mmol/L, g/dL,
        # g/L) are applied in it (cartwin.clinical.ctcae); an Enum costs 4 bytes a row.
        pl.col("unit").cast(reported_unit_dtype(), strict=False).alias("reported_unit"),
        (pl.col("_value") * pl.col("factor") + pl.col("offset")).alias("value"),
        (pl.col("_lower") * pl.col("factor") + pl.col("offset")).alias("lower"),
        (pl.col("_upper") * pl.col("factor") + pl.col("offset")).alias("upper"),
        # a day given as "-0" is day 0: without the sign bit, which would otherwise follow the
        # row order into the tables (a visit's day is its first row's)
        pl.when(pl.col("_day") == 0.0).then(pl.lit(0.0)).otherwise(pl.col("_day")).alias("day"),
        pl.col("canonical_unit").fill_null(
            pl.lit(pl.Series([codes[c].unit for c in _code_list()], dtype=pl.String)).gather(pl.col("_code"))).alias("unit"),
    )
    # Intermediate columns are dropped as soon as they are used: on 10^7 rows each costs ~100 MB.
    frame = frame.drop("_day", "_day_bad", "_value_bad", "_lower", "_upper", "_limit_bad", "canonical_unit", "factor", "offset")

    ranges = value_range_table()
    frame = _lookup(frame, ranges, ["test"], ["minimum", "maximum", "integer"])
    out_of_range = frame.filter(
        (pl.col("value") < pl.col("minimum")) | (pl.col("value") > pl.col("maximum"))
        | (pl.col("integer") & (pl.col("value") != pl.col("value").round(0)))
    )
    if out_of_range.height:
        first = out_of_range.row(0, named=True)
        hi = "" if first["maximum"] is None else f" to {first['maximum']:g}"
        _fail(file, out_of_range, "value",
              f"{first['test']} value {first['_value']!r} is outside its valid range "
              f"({first['minimum']:g}{hi}{', whole numbers' if first['integer'] else ''} in {first['unit']})",
              "Correct the value or its unit (rules/value_ranges.csv gives the ranges).")
    frame = frame.drop("minimum", "maximum", "integer", "_value")

    if _has_duplicate_keys(frame, ["subject", "day", "test"]):
        duplicated = frame.filter(pl.len().over("subject", "day", "test") > 1).sort("subject", "test", "day", "row")
        first = duplicated.row(0, named=True)
        _fail(file, duplicated, "test",
              f"duplicated visit rows: subject {first['subject']!r}, day {first['day']:g}, test {first['test']} "
              "appears more than once",
              "Keep one row per subject, day and test (e.g. the day's highest temperature or lowest count).")

    limits = default_limits()
    frame = _lookup(frame, limits, ["test"], ["default_lower", "default_upper"])
    has_row_limits = pl.col("lower").is_not_null() | pl.col("upper").is_not_null()
    has_default = pl.col("default_lower").is_not_null() | pl.col("default_upper").is_not_null()
    frame = frame.with_columns(
        pl.when(has_row_limits).then(pl.lit("row")).when(has_default).then(pl.lit("default"))
        .otherwise(None).alias("limit_source"),
        pl.when(has_row_limits).then(pl.col("lower")).otherwise(pl.col("default_lower")).alias("lower"),
        pl.when(has_row_limits).then(pl.col("upper")).otherwise(pl.col("default_upper")).alias("upper"),
    )
    clean = frame.select(
        "subject", pl.col("arm"), "day", "test", "value", "unit", "reported_unit", "lower", "upper", "limit_source",
        "cause", "file", "row",
    )
    flag_frame = pl.concat(flags) if flags else empty_flags()
    return clean, flag_frame


def observations_from_frame(raw: pl.DataFrame, source: str) -> Observations:
    """Validate a frame in the observation format (a real patients' file as read, every column
    as text or numbers); ``source`` names it in messages and flags."""
    frame, flags = validate(raw, str(source))
    return Observations(frame=frame, flags=flags, source=str(source))


def observations_from_run(observations: pl.DataFrame, patients: pl.DataFrame, source: str, *,
                          observations_source: str | None = None,
                          patients_source: str | None = None) -> Observations:
    """Validate a simulated run's observations against its patient table: subjects whose solve
    failed (``status`` 'failed') are not scored and are flagged. ``source`` names the run;
    ``observations_source`` and ``patients_source`` name the two tables in messages."""
    obs_name = observations_source or f"{source} (observations)"
    patients_name = patients_source or f"{source} (patients)"
    for column in ("subject", "status"):
        if column not in patients.columns:
            raise ObservationError(f"{patients_name}: column '{column}' is missing; the patient table "
                                   "needs one row per subject with status 'ok' or 'failed'.",
                                   file=patients_name, column=column)
    patients = patients.with_row_index("row", offset=1).with_columns(
        pl.col("subject").cast(pl.String), pl.col("status").cast(pl.String).str.to_lowercase())
    bad = patients.filter(~pl.col("status").is_in(["ok", "failed"]) | pl.col("status").is_null())
    if bad.height:
        _fail(patients_name, bad, "status", "status must be 'ok' or 'failed'", "Fix the run directory.")
    frame, flags = validate(observations, obs_name)
    failed = patients.filter(pl.col("status") == "failed")["subject"].to_list()
    # Subject checks on the distinct subjects first; rows are only filtered when one applies.
    distinct = frame.select(pl.col("subject").unique())
    if distinct.filter(~pl.col("subject").is_in(patients["subject"].implode())).height:
        unknown = frame.filter(~pl.col("subject").is_in(patients["subject"].implode()))
    else:
        unknown = frame.clear()
    if unknown.height:
        _fail(obs_name, unknown, "subject", f"subject {unknown['subject'][0]!r} is not in {patients_name}",
              "The run directory is inconsistent; regenerate it.")
    if distinct.filter(pl.col("subject").is_in(failed)).height:
        excluded = frame.filter(pl.col("subject").is_in(failed))
        frame = frame.filter(~pl.col("subject").is_in(failed))
    else:
        excluded = frame.clear()
    failed_flags = pl.DataFrame(
        {"file": patients_name, "row": patients.filter(pl.col("status") == "failed")["row"],
         "column": "status", "subject": failed, "test": None, "day": None,
         "problem": f"simulation status 'failed': subject not scored"},
        schema=FLAG_SCHEMA,
    ) if failed else empty_flags()
    if excluded.height:
        failed_flags = pl.concat([failed_flags, pl.DataFrame(
            {"file": [obs_name], "row": [None], "column": ["subject"], "subject": [None], "test": [None],
             "day": [None], "problem": [f"{excluded.height} observation rows of {len(failed)} failed subject(s) not scored"]},
            schema=FLAG_SCHEMA)])
    # Row-level flags of subjects that are not scored would only be noise.
    flags = flags.filter(pl.col("subject").is_null() | ~pl.col("subject").is_in(failed))
    return Observations(frame=frame, flags=pl.concat([flags, failed_flags]), source=str(source),
                        excluded_subjects=failed)


_SIMULATED_COLUMNS = ("subject", "arm", "day", "test", "value", "unit", "lower", "upper")


def _per_test(values: dict[str, object], dtype: pl.DataType) -> pl.Expr:
    """A per-row value looked up by the row's test code (a few distinct tests: one comparison of
    the categorical column per test, no text lookup per row); null for a test not in ``values``."""
    expr = pl.lit(None, dtype)
    for test, value in values.items():
        if value is not None:
            expr = pl.when(pl.col("test") == test).then(pl.lit(value, dtype)).otherwise(expr)
    return expr


def _simulated_frame(raw: pl.DataFrame, file: str) -> pl.DataFrame | None:
    """The canonical frame :func:`validate` returns for ``raw``, built from checks of whole columns
    and of the distinct (test, unit) pairs instead of expressions over every row; None unless every
    check passes and ``validate`` would return exactly this frame with no flag (then the caller
    validates row by row, which finds and words every problem).

    For frames the simulator writes (categorical test, unit and arm; numeric day and value; canonical
    units; one row per subject, day and test, subjects contiguous and days ascending within each):
    the same frame as ``validate``, at a fraction of the cost."""
    schema = raw.schema
    if any(c not in _SIMULATED_COLUMNS for c in raw.columns) or any(c not in schema for c in REQUIRED_COLUMNS):
        return None
    categorical = (pl.Categorical, pl.Enum)
    if (schema["subject"] != pl.String or schema["day"] != pl.Float64 or schema["value"] != pl.Float64
            or not isinstance(schema["test"], categorical) or not isinstance(schema["unit"], categorical)
            or ("arm" in schema and not isinstance(schema["arm"], categorical))
            or any(name in schema and schema[name] != pl.Float64 for name in ("lower", "upper"))):
        return None
    if raw.height == 0:
        return None
    limit_cols = [c for c in ("lower", "upper") if c in schema]
    # Columns as a whole: no missing subject, test or unit; day and value finite (no null, NaN or
    # infinity); limits finite or null, non-negative and in order.
    whole = raw.select(
        pl.col("subject").null_count().alias("subject_nulls"), pl.col("test").null_count().alias("test_nulls"),
        pl.col("unit").null_count().alias("unit_nulls"),
        (pl.col("day").is_finite().all() & (pl.col("day").null_count() == 0)).alias("day_ok"),
        (pl.col("value").is_finite().all() & (pl.col("value").null_count() == 0)).alias("value_ok"),
        *[(pl.col(c).is_finite() | pl.col(c).is_null()).all().alias(f"{c}_finite") for c in limit_cols],
        *[(pl.col(c) < 0).any().alias(f"{c}_negative") for c in limit_cols],
        *([(pl.col("lower") > pl.col("upper")).any().alias("limits_crossed")] if len(limit_cols) == 2 else []),
    ).row(0, named=True)
    if (whole["subject_nulls"] or whole["test_nulls"] or whole["unit_nulls"] or not whole["day_ok"]
            or not whole["value_ok"] or whole.get("limits_crossed")
            or any(not whole[f"{c}_finite"] or whole[f"{c}_negative"] for c in limit_cols)):
        return None
    # Subjects contiguous (each in one run of rows), days ascending within each: a subject's text is
    # compared with its predecessor's (no hashing of every row), and the distinct subjects are the
    # first rows of the runs.
    new_subject = pl.col("subject") != pl.col("subject").shift(1)
    runs = raw.select(new_subject.fill_null(True).alias("new"),
                      (pl.col("day") - pl.col("day").shift(1)).alias("step"))
    starts = raw.filter(runs["new"]).get_column("subject")
    if starts.n_unique() != starts.len() or not (runs["new"] | (runs["step"] >= 0)).fill_null(True).all():
        return None
    if (starts == "").any() or starts.str.contains(r"^\s|\s$").any():
        return None
    # The distinct (test, unit) pairs: known codes in their canonical unit (factor 1, offset 0), with
    # every value in the test's valid range.
    # (one lazy query: whether a value is fractional is found for every row at once and counted
    # per pair, with no intermediate frame of the selected columns; half the time of the eager calls)
    pairs = (raw.lazy().select("test", "unit", "value", (pl.col("value") != pl.col("value").round(0)).alias("fractional"))
             .group_by("test", "unit").agg(pl.col("value").min().alias("min"), pl.col("value").max().alias("max"),
                                           (pl.col("fractional").sum() > 0).alias("fractional")).collect())
    pairs = pairs.with_columns(pl.col("test").cast(pl.String), pl.col("unit").cast(pl.String))
    units = unit_table()
    ranges = value_range_table()
    limits = default_limits()
    codes = set(_code_list())
    if (units.select(pl.struct("test", "unit").is_duplicated().any()).item()
            or ranges["test"].is_duplicated().any() or limits["test"].is_duplicated().any()):
        return None
    assay_units = set(settings("sledai")["dsdna_assay_units"]["units"])  # judged against a cut-off
    unit_of = {(r["test"], r["unit"]): r for r in units.iter_rows(named=True)}
    range_of = {r["test"]: r for r in ranges.iter_rows(named=True)}
    for pair in pairs.iter_rows(named=True):
        test, unit = pair["test"], pair["unit"]
        conversion = unit_of.get((test, unit))
        if (test not in codes or conversion is None or conversion["factor"] != 1.0 or conversion["offset"] != 0.0
                or conversion["canonical_unit"] != unit or (test == "DSDNA" and unit in assay_units)):
            return None
        bounds = range_of.get(test)
        if bounds is not None and ((bounds["minimum"] is not None and pair["min"] < bounds["minimum"])
                                   or (bounds["maximum"] is not None and pair["max"] > bounds["maximum"])
                                   or (bounds["integer"] and pair["fractional"])):
            return None
    # One row per subject, day and test: within a subject's ascending days, a (subject, day) block
    # is a run of equal days; a repeated test shows as a repeated (block, test) key.
    # (A day differs from the row above's where their step is not 0: days are finite here.) Keys
    # that rise row by row are distinct without hashing them (the simulator writes a day's tests in
    # one order); others are counted.
    block = (runs["new"] | (runs["step"] != 0).fill_null(True)).cum_sum()
    tests = pairs["test"].unique().sort().to_list()
    code = raw["test"].to_physical().cast(pl.Int64)  # the categorical's integer code
    keys = block.cast(pl.Int64) * (code.max() + 1) + code
    if not (keys.diff() > 0).all() and keys.n_unique() != raw.height:
        return None
    present = set(tests)
    default_lower = {t: v for t, v in zip(limits["test"], limits["default_lower"]) if t in present}
    default_upper = {t: v for t, v in zip(limits["test"], limits["default_upper"]) if t in present}
    # What ``validate``'s value x factor + offset gives with factor 1 and offset 0, to the bit: the
    # value itself, except -0.0 + 0.0 = 0.0 (written out: Polars drops an addition of a literal 0);
    # and the day, which ``validate`` gives without the sign of a -0.0 too.
    def converted(name: str) -> pl.Expr:
        return pl.when(pl.col(name) == 0.0).then(pl.lit(0.0)).otherwise(pl.col(name))
    lower = converted("lower") if "lower" in schema else pl.lit(None, pl.Float64)
    upper = converted("upper") if "upper" in schema else pl.lit(None, pl.Float64)
    has_row_limits = lower.is_not_null() | upper.is_not_null()
    d_lower, d_upper = _per_test(default_lower, pl.Float64), _per_test(default_upper, pl.Float64)
    has_default = d_lower.is_not_null() | d_upper.is_not_null()
    return raw.with_row_index("row", offset=1).select(
        "subject",
        (pl.col("arm").cast(pl.String) if "arm" in schema else pl.lit(None, pl.String)).alias("arm"),
        converted("day").alias("day"), pl.col("test").cast(pl.String), converted("value").alias("value"),
        pl.col("unit").cast(pl.String),
        pl.col("unit").cast(reported_unit_dtype(), strict=False).alias("reported_unit"),  # every unit is in it
        pl.when(has_row_limits).then(lower).otherwise(d_lower).alias("lower"),
        pl.when(has_row_limits).then(upper).otherwise(d_upper).alias("upper"),
        pl.when(has_row_limits).then(pl.lit("row")).when(has_default).then(pl.lit("default"))
        .otherwise(None).alias("limit_source"),
        pl.lit(None, pl.String).alias("cause"), pl.lit(file).alias("file"), pl.col("row").cast(pl.Int64),
    )


def observations_from_simulation(raw: pl.DataFrame, source: str) -> Observations:
    """:func:`observations_from_frame` for a simulated run's own observations: the same frame and
    flags, checked column by column when the frame has the simulator's shape (see
    :func:`_simulated_frame`), row by row otherwise. User-supplied data goes through
    :func:`observations_from_frame`."""
    frame = _simulated_frame(raw, str(source))
    if frame is None:
        return observations_from_frame(raw, source)
    return Observations(frame=frame, flags=empty_flags(), source=str(source))
