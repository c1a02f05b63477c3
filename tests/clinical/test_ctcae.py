"""CTCAE v5 grading: scoring_cases.md section H and the admiral v5 test expectations."""

import polars as pl
import pytest

from cartwin.clinical.ctcae import criteria, grade_labs
from cartwin.clinical.observations import validate

from ._cases import expected_grade, num, read_cases

SCORING = read_cases("ctcae_scoring_cases.csv")
ADMIRAL = read_cases("ctcae_admiral_v5.csv")


def _grade_case(case: dict) -> tuple[int | None, pl.DataFrame]:
    rows = [{"subject": "S", "day": "1", "test": case["test"], "value": case["value"] or "", "unit": case["unit"],
             "lower": "" if case["lower"] in (None, "NOLIMIT") else case["lower"],
             "upper": "" if case["upper"] in (None, "NOLIMIT") else case["upper"]}]
    if case["baseline"]:
        # Screening, before lymphodepletion: the CTCAE grading reference (ctcae_v5.toml).
        rows.append({**rows[0], "day": "-7", "value": case["baseline"]})
    raw = pl.DataFrame(rows, schema={k: pl.String for k in rows[0]})
    frame, _ = validate(raw, "cases.csv")
    # "NOLIMIT" cases test a missing laboratory limit, so the default table must not fill it.
    if case["lower"] == "NOLIMIT":
        frame = frame.with_columns(pl.lit(None, pl.Float64).alias("lower"))
    if case["upper"] == "NOLIMIT":
        frame = frame.with_columns(pl.lit(None, pl.Float64).alias("upper"))
    graded = grade_labs(frame).filter(pl.col("day") == 1)
    assert graded.height == 1
    return graded["grade"][0], graded


@pytest.mark.parametrize("case", SCORING, ids=[c["case"] for c in SCORING])
def test_scoring_cases(case):
    grade, graded = _grade_case(case)
    assert grade == expected_grade(case["expected"])
    if grade is None:
        assert graded["grade_reason"][0]


def _admiral_frame(case: dict) -> pl.DataFrame:
    lower, upper = num(case["lower"]), num(case["upper"])
    return pl.DataFrame(
        {"subject": ["S"], "day": [5.0], "test": [case["test"]], "value": [float(case["value"])],
         "lower": [lower], "upper": [upper], "baseline": [num(case["baseline"])],
         "baseline_upper": [num(case["baseline_upper"])]},
        schema={"subject": pl.String, "day": pl.Float64, "test": pl.String, "value": pl.Float64, "lower": pl.Float64,
                "upper": pl.Float64, "baseline": pl.Float64, "baseline_upper": pl.Float64})


@pytest.mark.parametrize("case", ADMIRAL, ids=[f"{c['admiral_test']}-{c['test']}-{c['value']}-{i}" for i, c in enumerate(ADMIRAL)])
def test_admiral_cross_check(case):
    grade = grade_labs(_admiral_frame(case))["grade"][0]
    assert grade == expected_grade(case["cartwin_grade"])
    if case["admiral_grade"] != case["cartwin_grade"]:
        assert case["note"].startswith("DECISION"), "every deviation from admiral must be a recorded decision"


def test_missing_unit_is_not_evaluable():
    raw = pl.DataFrame({"subject": ["S"], "day": ["1"], "test": ["NEUT"], "value": ["2.0"], "unit": [""], "lower": ["2"]})
    frame, flags = validate(raw, "x.csv")
    assert grade_labs(frame)["grade"][0] is None  # CTC-05
    assert flags.filter(pl.col("column") == "unit").height == 1


def test_every_term_of_the_issue_is_graded():
    terms = set(criteria()["term"])
    for term in ["Neutrophil count decreased", "Lymphocyte count decreased", "White blood cell decreased",
                 "Platelet count decreased", "Anemia", "Alanine aminotransferase increased",
                 "Aspartate aminotransferase increased", "Blood bilirubin increased", "Alkaline phosphatase increased",
                 "GGT increased", "Creatinine increased", "Fibrinogen decreased"]:
        assert term in terms


@pytest.mark.parametrize("rule", criteria().filter(pl.col("reference") == "absolute").filter(pl.col("quantity") == "value").to_dicts(),
                         ids=lambda r: f"{r['test']}-G{r['grade']}-{r['unit']}")
def test_absolute_thresholds_at_and_either_side(rule):
    """At, just inside and just outside every absolute threshold, reported in the unit CTCAE prints
    it in (LLN near zero and ULN huge so only it decides)."""
    t, eps = rule["factor"], 1e-6 * max(1.0, abs(rule["factor"]))
    low = rule["direction"] == "low"
    inside = t - eps if low else t + eps
    outside = t + eps if low else t - eps
    raw = pl.DataFrame({"subject": ["S"] * 3, "day": ["1", "2", "3"], "test": [rule["test"]] * 3,
                        "value": [repr(v) for v in (inside, t, outside)], "unit": [rule["unit"]] * 3,
                        "lower": ["1e-9" if low else ""] * 3, "upper": ["" if low else "1e9"] * 3})
    rows, _ = validate(raw, "thresholds.csv")
    grades = grade_labs(rows).sort("day")["grade"].to_list()
    assert grades[0] >= rule["grade"]
    assert grades[2] < rule["grade"]
    strict = rule["operator"] in ("<", ">")
    assert (grades[1] < rule["grade"]) == strict


def test_lymphodepletion_injury_is_graded_against_the_screening_value():
    """A transaminase rise during lymphodepletion (day -1, the infusion day) must be graded as a
    rise from the pre-treatment value: with the day-0 value as "baseline" the rise would be an
    abnormal baseline and a grade-3 injury would read as grade 0-1."""
    rows = [{"subject": "S", "day": d, "test": "ALT", "value": v, "unit": "U/L", "lower": "", "upper": "40"}
            for d, v in (("-6", "20"), ("-1", "1200"), ("0", "1150"), ("3", "700"))]
    frame, _ = validate(pl.DataFrame(rows, schema={k: pl.String for k in rows[0]}), "cases.csv")
    graded = grade_labs(frame).sort("day")
    assert graded["baseline"].unique().to_list() == [20.0]
    # CTCAE v5 ALT, normal baseline: > 5-20 x ULN grade 3, > 20 x ULN grade 4.
    assert graded.filter(pl.col("day") == 3)["grade"][0] == 3
    assert graded.filter(pl.col("day") == -1)["grade"][0] == 4


@pytest.mark.parametrize(("value", "unit", "expected"), [
    # CTCAE v5 Anemia prints each grade in three units: grade 1 <LLN - 10.0 g/dL, <LLN - 6.2 mmol/L,
    # <LLN - 100 g/L; grade 2 <10.0 - 8.0 g/dL, <6.2 - 4.9 mmol/L, <100 - 80 g/L; grade 3 <8.0 g/dL,
    # <4.9 mmol/L, <80 g/L. 6.2 mmol/L is 99.9 g/L, 4.9 mmol/L is 79.0 g/L: converted to g/L they
    # would read a grade too high.
    ("6.2", "mmol/L", 1), ("6.19", "mmol/L", 2), ("4.9", "mmol/L", 2), ("4.89", "mmol/L", 3),
    ("6.21", "mmol/L", 1), ("7.5", "mmol/L", 0),
    ("10.0", "g/dL", 1), ("9.99", "g/dL", 2), ("8.0", "g/dL", 2), ("7.99", "g/dL", 3),
    ("100", "g/L", 1), ("99.9", "g/L", 2), ("80", "g/L", 2), ("79.9", "g/L", 3),
])
def test_haemoglobin_is_graded_against_the_thresholds_printed_for_its_unit(value, unit, expected):
    lln = {"mmol/L": "7.4", "g/dL": "12.0", "g/L": "120"}[unit]
    raw = pl.DataFrame({"subject": ["S"], "day": ["3"], "test": ["HGB"], "value": [value], "unit": [unit],
                        "lower": [lln], "upper": [""]})
    frame, _ = validate(raw, "hb.csv")
    graded = grade_labs(frame)
    assert graded["grade"].to_list() == [expected]
    assert graded["reported_unit"].to_list() == [unit]


def test_scored_lab_grades_name_the_reported_unit():
    from cartwin.clinical import observations_from_frame, score_observations

    raw = pl.DataFrame({"subject": ["S", "S"], "day": ["-7", "3"], "test": ["HGB", "HGB"], "value": ["8.1", "4.9"],
                        "unit": ["mmol/L", "mmol/L"], "lower": ["7.4", "7.4"], "upper": ["", ""]})
    grades = score_observations(observations_from_frame(raw, "hb.csv"))["lab_grades"].sort("day")
    assert grades["reported_unit"].to_list() == ["mmol/L", "mmol/L"]
    assert grades["unit"].to_list() == ["g/L", "g/L"]
    assert grades["grade"].to_list() == [0, 2]
