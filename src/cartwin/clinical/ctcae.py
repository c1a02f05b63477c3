"""CTCAE laboratory grading driven by a versioned criteria table (``rules/ctcae_v5.csv``).

Each table row is one criterion ``quantity operator factor x reference`` for a grade; a grade holds
when any of its criteria holds. Grades are tried from 4 down to 1 in three-valued logic: a
criterion whose inputs are missing is *unknown*, so a grade is only assigned when every higher
grade is known to be false. That reproduces admiral's behaviour that neutrophils 0.3 x10^9/L grade
4 without an LLN while 1.6 x10^9/L without an LLN is not gradable.

An absolute threshold names the unit CTCAE prints it in (column ``unit``). Where CTCAE prints a
term in several units whose thresholds are not exact conversions of each other (Anemia: 6.2 mmol/L
is 99.9 g/L, not 100), a row is graded against the thresholds printed for the unit it was reported
in. A row reported in a unit CTCAE does not print is graded against the thresholds of the canonical
unit (or, when CTCAE does not print that either, of the first unit listed), converted exactly. A
threshold is converted with the very factor and offset that converted the row's value, so the
comparison is the comparison in the reported unit.
"""

from __future__ import annotations

from functools import cache

import polars as pl

from cartwin.clinical.observations import unit_table
from cartwin.clinical.ruleset import settings, table
from cartwin.vocabulary import test_codes

VERSIONS = {"5.0": "ctcae_v5"}
_OPERATORS = {
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}


@cache
def criteria(version: str = "5.0") -> pl.DataFrame:
    if version not in VERSIONS:
        raise ValueError(f"CTCAE version {version!r} has no rule table; available: {sorted(VERSIONS)}")
    rules = table(VERSIONS[version], numeric=("grade", "factor"), boolean=("requires_below_lower",)).with_columns(
        pl.col("grade").cast(pl.Int8), pl.col("unit").fill_null(""))
    absolute = (pl.col("reference") == "absolute") & (pl.col("quantity") == "value")
    unitless = rules.filter(absolute & (pl.col("unit") == ""))
    if unitless.height:
        raise RuntimeError(f"rules/{VERSIONS[version]}.csv: absolute thresholds without the unit CTCAE prints them in: "
                           f"{unitless.select('test', 'grade', 'factor').rows()}")
    unconvertible = rules.filter(pl.col("unit") != "").join(unit_table(), on=["test", "unit"], how="anti")
    if unconvertible.height:
        raise RuntimeError(f"rules/{VERSIONS[version]}.csv: threshold units with no conversion in rules/units.csv: "
                           f"{unconvertible.select('test', 'unit').unique().rows()}")
    return rules


def _unit_conversion(test: str, unit: str) -> tuple[float, float]:
    """(factor, offset) from ``unit`` to the test's canonical unit, from rules/units.csv."""
    row = unit_table().filter((pl.col("test") == test) & (pl.col("unit") == unit)).row(0, named=True)
    return float(row["factor"]), float(row["offset"])


def _reported_unit(frame: pl.DataFrame) -> pl.Expr:
    """The unit each row was reported in: ``reported_unit`` of a validated frame, else ``unit``, else
    unknown (graded in the canonical unit)."""
    for name in ("reported_unit", "unit"):
        if name in frame.columns:
            return pl.col(name).cast(pl.String)
    return pl.lit(None, pl.String)


def graded_tests(version: str = "5.0") -> list[str]:
    return criteria(version)["test"].unique(maintain_order=True).to_list()


def _sig(expr: pl.Expr, digits: int) -> pl.Expr:
    return expr.round_sig_figs(digits)


def _criterion(row: dict, digits: int) -> pl.Expr:
    quantity = pl.col("value") if row["quantity"] == "value" else pl.col("pchg")
    reference = {
        "absolute": pl.lit(1.0), "lower": pl.col("lower"), "upper": pl.col("upper"),
        "baseline": pl.col("baseline"),
    }[row["reference"]]
    threshold = reference * row["factor"]
    if row["unit"]:
        # A printed threshold, converted to the canonical unit exactly as a value in that unit is
        # (validate: value * factor + offset), and applied only to rows graded in that unit.
        factor, offset = _unit_conversion(row["test"], row["unit"])
        threshold = pl.lit(row["factor"] * factor + offset)
    condition = _OPERATORS[row["operator"]](_sig(quantity, digits), _sig(threshold, digits))
    if row["unit"]:
        condition = (pl.col("_grading_unit") == row["unit"]) & condition
    status = row["baseline_status"]
    if status == "normal":
        # A missing baseline counts as normal (admiral: missing BNRIND is not "HIGH").
        condition = (pl.col("baseline").is_null() | (pl.col("baseline") <= pl.col("baseline_upper"))) & condition
    elif status == "abnormal":
        condition = pl.col("baseline").is_not_null() & (pl.col("baseline") > pl.col("baseline_upper")) & condition
    elif status == "known":
        # Baseline-relative criteria cannot hold without a baseline (false, not unknown), so the
        # ULN criteria still grade; the row is flagged.
        condition = pl.when(pl.col("baseline").is_null()).then(pl.lit(False)).otherwise(condition)
    if row["requires_below_lower"]:
        condition = (_sig(pl.col("value"), digits) < _sig(pl.col("lower"), digits)) & condition
    return condition


def _any(conditions: list[pl.Expr]) -> pl.Expr:
    result = conditions[0]
    for condition in conditions[1:]:
        result = result | condition  # Kleene OR: true wins over unknown
    return result


def add_baseline(frame: pl.DataFrame, baseline_last_day: float) -> pl.DataFrame:
    """Baseline per subject and test: last non-missing value on or before ``baseline_last_day``."""
    base = (
        frame.lazy().select("subject", "test", "day", "value", "upper")  # only the columns read are sorted
        .filter((pl.col("day") <= baseline_last_day) & pl.col("value").is_not_null())
        .sort("day")
        .group_by("subject", "test")
        .agg(pl.col("value").last().alias("baseline"), pl.col("upper").last().alias("baseline_upper"),
             pl.col("day").last().alias("baseline_day"))
        .collect()
    )
    return frame.join(base, on=["subject", "test"], how="left")


@cache
def _term_expressions(version: str, digits: int) -> tuple[tuple[str, str, str, bool, pl.Expr], ...]:
    """(term, test, direction, uses baseline, grade expression) per CTCAE term, in rule-table order;
    built once per version (expressions are immutable)."""
    out = []
    for (term,), term_rules in criteria(version).group_by("term", maintain_order=True):
        test, direction = term_rules["test"][0], term_rules["direction"][0]
        printed = term_rules.filter(pl.col("unit") != "")["unit"].unique(maintain_order=True).to_list()
        uses_baseline = bool((term_rules["reference"] == "baseline").any() or (term_rules["quantity"] == "pchg").any())
        by_grade = {
            int(g): _any([_criterion(r, digits) for r in rows.iter_rows(named=True)])
            for (g,), rows in term_rules.group_by("grade")
        }
        chain = pl.when(pl.col("value").is_null()).then(pl.lit(None, pl.Int8))
        for grade in sorted(by_grade, reverse=True):
            chain = chain.when(by_grade[grade]).then(pl.lit(grade, pl.Int8))
            chain = chain.when(by_grade[grade].is_null()).then(pl.lit(None, pl.Int8))
        out.append((term, test, direction, uses_baseline, tuple(printed), chain.otherwise(pl.lit(0, pl.Int8))))
    return tuple(out)


def _grading_unit(test: str, printed: tuple[str, ...], reported: pl.Expr) -> pl.Expr:
    """The unit whose printed thresholds grade a row: the reported unit when CTCAE prints the term
    in it, else the canonical unit when printed, else the first printed unit."""
    if not printed:
        return pl.lit(None, pl.String)
    canonical = test_codes()[test].unit
    default = canonical if canonical in printed else printed[0]
    return pl.when(reported.is_in(list(printed))).then(reported).otherwise(pl.lit(default))


def grade_labs(frame: pl.DataFrame, version: str = "5.0", lab_baseline_last_day: float | None = None) -> pl.DataFrame:
    """Grade every row whose test has CTCAE criteria.

    ``frame`` needs subject, day, test, value, lower, upper (canonical units). Columns baseline,
    baseline_upper and pchg are used when present, otherwise derived (baseline = last value on or
    before the table's ``lab_baseline_last_day``: before lymphodepletion). Returns one row per graded observation and term
    with ``grade`` (null = not evaluable) and ``grade_reason``.
    """
    config = settings(VERSIONS[version])
    digits = int(config["significant_digits"])
    rules = criteria(version)
    work = frame.filter(pl.col("test").is_in(rules["test"].unique().implode()))
    if "baseline" not in work.columns:
        work = add_baseline(work, float(config["lab_baseline_last_day"] if lab_baseline_last_day is None
                                        else lab_baseline_last_day))
    if "baseline_upper" not in work.columns:
        work = work.with_columns(pl.col("upper").alias("baseline_upper"))
    elif "baseline_upper" not in frame.columns:
        # The baseline row's own ULN decides "abnormal baseline"; without one, the current ULN.
        work = work.with_columns(pl.col("baseline_upper").fill_null(pl.col("upper")))
    if "baseline_day" not in work.columns:
        work = work.with_columns(pl.lit(None, pl.Float64).alias("baseline_day"))
    if "pchg" not in work.columns:
        work = work.with_columns(
            pl.when(pl.col("baseline") > 0).then((pl.col("value") - pl.col("baseline")) / pl.col("baseline") * 100)
            .otherwise(None).alias("pchg"))

    graded = []
    # One pass splits the rows by test (row order kept within a test) instead of a filter per term.
    by_test = work.partition_by("test", as_dict=True, maintain_order=True) if work.height else {}
    reported = _reported_unit(work)
    for term, test, direction, uses_baseline, printed, grade_expr in _term_expressions(version, digits):
        rows = by_test.get((test,), work.clear())
        # One lazy query per term: the criteria's shared parts (a value rounded to significant
        # digits, a grade's condition tested again for unknown) are computed once.
        part = rows.lazy().with_columns(_grading_unit(test, printed, reported).alias("_grading_unit")).with_columns(
            pl.lit(term).alias("term"), pl.lit(direction).alias("direction"), grade_expr.alias("grade"))
        part = part.drop("_grading_unit")
        part = part.with_columns(
            pl.when(pl.col("value").is_null()).then(pl.lit("value missing: not evaluable"))
            .when(pl.col("grade").is_null()).then(pl.lit(
                "reference limit missing and no absolute threshold decides the grade: not evaluable"))
            .otherwise(None).alias("grade_reason"),
            (pl.when(pl.lit(uses_baseline) & pl.col("baseline").is_null() & pl.col("value").is_not_null())
             .then(pl.lit("baseline missing: baseline-relative criteria not applied, baseline taken as normal"))
             .otherwise(None)).alias("baseline_flag"),
        )
        graded.append(part.collect())
    if not graded:
        return work.with_columns(pl.lit(None, pl.String).alias("term"), pl.lit(None, pl.Int8).alias("grade"))
    result = pl.concat(graded, how="diagonal_relaxed")
    return result.with_columns(pl.lit(f"CTCAE v{version}").alias("standard"))
