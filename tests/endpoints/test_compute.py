"""Expected-output tests of every endpoint (admiral style): small hand-built clinical frames in, the
per-patient values a reader works out by hand from the endpoint's definition out."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cartwin import endpoints
from cartwin.endpoints.compute import endpoint_inputs

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "observations_example.csv"

# The clinical layer's per-visit scores (only the columns the endpoints read). Day 0 is baseline.
VISITS = pl.DataFrame(
    [
        # subject, day, sledai_visit, selena, selena_min, pga, sri4, doris, doris_off, lldas, sfi_flare
        ("A", 0.0, True, 12, 12, 2.0, None, False, False, False, None),
        ("A", 28.0, True, 4, 4, 1.2, True, False, False, False, "none"),
        ("A", 84.0, True, 0, 0, 0.5, True, True, False, True, "none"),
        ("A", 112.0, True, 3, 3, 1.5, False, False, False, True, "mild/moderate"),
        ("B", 0.0, True, 10, 10, 2.0, None, False, False, False, None),
        ("B", 112.0, True, 0, 0, 1.0, True, False, False, False, "none"),   # PGA 1.0 is not < 1
        ("B", 150.0, True, 0, 0, 0.8, None, None, None, False, "none"),     # SRI-4 and DORIS not evaluable
        ("C", 0.0, True, None, 8, 2.0, None, False, False, False, None),
        ("C", 60.0, True, None, 0, 0.2, False, False, False, False, None),  # only the lower bound is known
        ("D", 0.0, True, 0, 0, 0.5, None, True, True, False, None),          # remission at baseline only
        ("D", 90.0, True, 4, 4, 1.0, False, None, None, False, "severe"),
        ("D", 200.0, True, 4, 4, 1.0, False, True, True, False, "none"),
        ("E", 0.0, True, 6, 6, 1.5, None, False, False, False, None),
        ("E", 30.0, False, None, None, 0.5, True, None, None, None, None),   # not a SLEDAI visit
    ],
    schema={"subject": pl.String, "day": pl.Float64, "sledai_visit": pl.Boolean, "selena": pl.Int32,
            "selena_min": pl.Int32, "pga": pl.Float64, "sri4": pl.Boolean, "doris_remission": pl.Boolean,
            "doris_off_therapy": pl.Boolean, "lldas": pl.Boolean, "sfi_flare": pl.String},
    orient="row",
).with_columns(pl.lit("arm1").alias("arm"))
# Day-180 rows carrying only the SLEDAI-2K lower bound (no other endpoint reads them: they are no
# SLEDAI visit): C scores 2, E scores 0.
VISITS = pl.concat([VISITS, pl.DataFrame(
    {"subject": ["C", "E"], "day": [180.0, 180.0], "sledai_visit": [False, False], "sledai2k_min": [2, 0],
     "arm": ["arm1", "arm1"]}, schema_overrides={"sledai2k_min": pl.Int32})], how="diagonal")

# The clinical layer's CTCAE grade per lab row (only the columns the endpoints read).
LAB_GRADES = pl.DataFrame(
    [
        ("A", 0.0, "NEUT", 4), ("A", 7.0, "NEUT", 2),     # grade 4 at baseline does not count
        ("B", 10.0, "NEUT", 3),
        ("C", 7.0, "PLAT", 4),                             # no neutrophil count graded
        ("E", 5.0, "NEUT", 0), ("E", 14.0, "NEUT", 4),
    ],
    schema={"subject": pl.String, "day": pl.Float64, "test": pl.String, "grade": pl.Int64}, orient="row")

# The clinical layer's per-patient kinetics.
PATIENTS = pl.DataFrame(
    [
        # subject, bcell_aplasia, onset, return, last B-cell count, Cmax, Tmax, AUC 0-28, early ICAHT grade
        ("A", True, 7.0, 77.0, 365.0, 12.5, 14.0, 150.0, 2),
        ("B", True, 10.0, None, 365.0, 20.0, 10.0, 300.0, 1),   # still aplastic at the last count
        ("C", False, None, None, 365.0, 0.0, 0.0, 0.0, 0),
        ("D", None, None, None, None, None, None, None, None),      # no B-cell or CAR-T counts
        ("E", True, 5.0, 40.0, 180.0, 8.0, 7.0, 90.0, 4),
    ],
    schema={"subject": pl.String, "bcell_aplasia": pl.Boolean, "bcell_aplasia_onset_day": pl.Float64,
            "bcell_return_day": pl.Float64, "bcell_last_measured_day": pl.Float64, "cart_cmax": pl.Float64,
            "cart_tmax": pl.Float64, "cart_auc_0_28": pl.Float64, "icaht_early": pl.Int8},
    orient="row",
).with_columns(pl.lit("arm1").alias("arm"))

# Serology observations: C3 and C4 against their lower limit, anti-dsDNA against its cut-off.
OBSERVATIONS = pl.DataFrame(
    [
        ("A", -6.0, "C3", 0.5, 0.9, None), ("A", 0.0, "C3", 0.6, 0.9, None), ("A", 180.0, "C3", 0.95, 0.9, None),
        ("B", 0.0, "C3", 1.0, 0.9, None), ("B", 180.0, "C3", 0.7, 0.9, None),   # normal at baseline
        ("C", 0.0, "C3", 0.5, 0.9, None), ("C", 180.0, "C3", 0.7, 0.9, None),
        ("A", 0.0, "C4", 0.05, 0.1, None), ("A", 180.0, "C4", 0.08, 0.1, None),
        ("A", 0.0, "DSDNA", 200.0, None, 30.0), ("A", 180.0, "DSDNA", 20.0, None, 30.0),
        ("C", 0.0, "DSDNA", 90.0, None, 30.0), ("C", 180.0, "DSDNA", 31.0, None, 30.0),
        ("E", 0.0, "DSDNA", None, None, 30.0),
        ("D", 0.0, "PGA", 0.5, None, None),
        # CAR-T against a detection limit of 1 cell/uL (E: no limit given). A: last detectable on day
        # 14 (4), below on day 28 (0.25): log-linear crossing at 14 + 14 x ln 4 / ln 16 = day 21; the
        # day -6 count is before infusion. B: detectable at its last count (day 28). C: never.
        ("A", -6.0, "CART", 50.0, 1.0, None), ("A", 0.0, "CART", 0.5, 1.0, None), ("A", 7.0, "CART", 10.0, 1.0, None),
        ("A", 14.0, "CART", 4.0, 1.0, None), ("A", 28.0, "CART", 0.25, 1.0, None),
        ("B", 0.0, "CART", 2.0, 1.0, None), ("B", 28.0, "CART", 3.0, 1.0, None),
        ("C", 7.0, "CART", 0.5, 1.0, None), ("C", 14.0, "CART", 0.2, 1.0, None),
        ("E", 7.0, "CART", 5.0, None, None),
    ],
    schema={"subject": pl.String, "day": pl.Float64, "test": pl.String, "value": pl.Float64,
            "lower": pl.Float64, "upper": pl.Float64},
    orient="row",
)

SUBJECTS = ["A", "B", "C", "D", "E"]
# Expected per-patient values, worked out by hand from each endpoint's definition.
EXPECTED = {
    # first post-baseline SLEDAI visit with SELENA 0 and PGA < 1 on or before day 90 / 180; evaluable
    # with at least one fully evaluable SELENA-SLEDAI after baseline
    "remission_m3": [True, False, None, False, None],
    "remission_m6": [True, True, None, False, None],
    # the same on the lower bound; evaluable with any SLEDAI visit after baseline
    "remission_m3_lb": [True, False, True, False, None],
    "remission_m6_lb": [True, True, True, False, None],
    # SRI-4 at the last post-baseline SLEDAI visit (E's day-30 row is no SLEDAI visit)
    "sri4": [False, None, False, False, None],
    # at any post-baseline SLEDAI visit; unknown at one visit and never met = not evaluable; a patient
    # whose only SLEDAI visit is at baseline has no visit meeting it (E: false)
    "doris": [True, None, False, True, False],
    "doris_off_therapy": [False, None, False, True, False],
    "lldas": [True, False, False, False, False],
    "sfi_severe_flare": [False, False, None, True, False],
    # abnormal at baseline (last value on or before day 0) -> normal at the last measurement
    "c3_normalised": [True, None, False, None, None],
    "c4_normalised": [False, None, None, None, None],  # 0.05 -> 0.08, still below 0.1
    "dsdna_seroconverted": [True, None, False, None, None],
    "bcell_aplasia": [True, True, False, None, True],
    # aplasia: onset to return, or censored at the last B-cell count
    "bcell_aplasia_days": [70.0, 355.0, None, None, 35.0],
    "bcell_aplasia_days_event": [True, False, None, None, True],
    # B cells back: days from infusion to return, or censored at the last B-cell count
    "bcell_return_time": [77.0, 365.0, None, None, 40.0],
    "bcell_return_time_event": [True, False, None, None, True],
    # first mild/moderate or severe flare after baseline, else censored at the last SLEDAI visit
    "time_to_first_flare": [112.0, 150.0, 60.0, 90.0, None],
    "time_to_first_flare_event": [True, False, False, True, None],
    "cart_cmax": [12.5, 20.0, 0.0, None, 8.0],
    "cart_tmax": [14.0, 10.0, 0.0, None, 7.0],
    "cart_auc_0_28": [150.0, 300.0, 0.0, None, 90.0],
    # last CAR-T day at or above the limit, interpolated to the crossing (see OBSERVATIONS)
    "cart_persistence": [21.0, 28.0, 0.0, None, None],
    # SLEDAI-2K lower bound 0 on day 180 (only C and E have a day-180 row)
    "sledai0_month6": [None, None, False, None, True],
    # CTCAE grade >= 3 neutrophil count decreased after day 0 (C: none graded)
    "neutropenia_grade3": [False, True, None, None, True],
    # early ICAHT grade >= 2 (ANC <= 500/uL on 7 days or more); D has no grade
    "icaht_early_grade2": [True, False, False, None, True],
}


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return endpoints.compute({"visits": VISITS, "patients": PATIENTS, "lab_grades": LAB_GRADES}, OBSERVATIONS).sort("subject")


def test_every_endpoint_has_an_expected_output():
    table = endpoints.definitions()
    columns = {e.key for e in table.endpoints} | {e.event_column for e in table.of_type("time_to_event")}
    assert columns == set(EXPECTED)


@pytest.mark.parametrize("column", sorted(EXPECTED))
def test_endpoint_values_per_patient(frame, column):
    dtype = pl.Boolean if isinstance(next(v for v in EXPECTED[column] if v is not None), bool) else pl.Float64
    expected = pl.DataFrame({"subject": SUBJECTS, column: EXPECTED[column]}, schema={"subject": pl.String, column: dtype})
    assert_frame_equal(frame.select("subject", column), expected)


def test_variables_the_swimmer_plot_draws(frame):
    assert frame["remission_day"].to_list() == [84.0, 150.0, None, None, None]
    assert frame["remission_lower_bound_day"].to_list() == [84.0, 150.0, 60.0, None, None]
    assert frame["last_sledai_day"].to_list() == [112.0, 150.0, 60.0, 200.0, None]


def test_one_row_per_clinical_patient_in_their_order():
    patients = PATIENTS.reverse()
    out = endpoints.compute({"visits": VISITS, "patients": patients}, OBSERVATIONS)
    assert out["subject"].to_list() == patients["subject"].to_list()
    assert out.columns[:2] == ["subject", "arm"]


def test_text_subjects_coded_inside_give_the_same_endpoints_as_coded_ones():
    """compute codes text subjects as one Enum while it works and gives text back: the same values
    as for frames whose subjects the caller coded, with rows shuffled and a patient (F) found in
    no other frame, in the patients' order."""
    no_counts = PATIENTS.filter(pl.col("subject") == "D").with_columns(pl.lit("F").alias("subject"))
    patients = pl.concat([PATIENTS, no_counts]).reverse()
    frames = {"visits": VISITS.sample(fraction=1.0, shuffle=True, seed=1), "patients": patients,
              "lab_grades": LAB_GRADES.reverse()}
    text = endpoints.compute(frames, OBSERVATIONS.sample(fraction=1.0, shuffle=True, seed=2))
    enum = pl.Enum(sorted([*SUBJECTS, "F"]))
    coded = {name: f.with_columns(pl.col("subject").cast(enum)) for name, f in frames.items()}
    by_caller = endpoints.compute(coded, OBSERVATIONS.with_columns(pl.col("subject").cast(enum)))
    assert text.schema["subject"] == pl.String and text["subject"].to_list() == patients["subject"].to_list()
    assert_frame_equal(text, by_caller.with_columns(pl.col("subject").cast(pl.String)))
    f = text.filter(pl.col("subject") == "F").row(0, named=True)  # no rows of F anywhere else: unknown
    assert [f[c] for c in ("c3_normalised", "cart_persistence", "remission_m6", "neutropenia_grade3")] == [None] * 4


def test_a_test_never_observed_makes_its_endpoints_not_evaluable():
    out = endpoints.compute({"visits": VISITS, "patients": PATIENTS.select("subject", "arm")},
                            OBSERVATIONS.filter(pl.col("test") != "C3"))
    for column in ("bcell_aplasia", "bcell_aplasia_days", "cart_cmax", "c3_normalised", "neutropenia_grade3"):
        assert out[column].null_count() == out.height, column


def test_keys_compute_only_those_endpoints_and_their_variables():
    """What calibration and sensitivity ask for: the same values as the whole table gives."""
    keys = ["bcell_return_time", "cart_persistence", "neutropenia_grade3"]
    out = endpoints.compute({"visits": VISITS, "patients": PATIENTS, "lab_grades": LAB_GRADES}, OBSERVATIONS,
                            keys=keys).sort("subject")
    assert out.columns == ["subject", "arm", "worst_neutropenia_grade", "cart_detectable_until_day",
                           "bcell_return_time", "bcell_return_time_event", "cart_persistence",
                           "neutropenia_grade3"]
    whole = endpoints.compute({"visits": VISITS, "patients": PATIENTS, "lab_grades": LAB_GRADES}, OBSERVATIONS)
    assert_frame_equal(out, whole.select(out.columns).sort("subject"))


def test_every_column_the_table_reads_exists_in_the_clinical_layer():
    """A misspelt column in the table would silently read as never observed: every column an
    endpoint or variable reads must be one the clinical layer writes when its tests are observed."""
    from cartwin.clinical import score_observations
    from cartwin.io.observations import read_observations

    obs = read_observations(EXAMPLE)
    tables = score_observations(obs)
    table = endpoints.definitions()
    visit_columns, patient_columns = set(tables["visits"].columns), set(tables["patients"].columns)
    lab_columns = set(tables["lab_grades"].columns)
    variables = {v.name for v in table.variables}
    for v in table.variables:
        if v.source == "visits":
            read = {c.column for c in (*v.rows, *v.where, *v.of)} | ({v.column} if v.column else set())
            assert read <= visit_columns, (v.name, read - visit_columns)
        if v.source == "lab_grades":
            read = {c.column for c in (*v.rows, *v.where)} | {v.column}
            assert read <= lab_columns, (v.name, read - lab_columns)
    for e in table.endpoints:
        missing = endpoint_inputs(e) - patient_columns - variables
        assert not missing, (e.key, missing)


@pytest.mark.parametrize("text,words", [
    ('version = "1"\n[[endpoint]]\nkey = "x"\ntype = "binary"\n', "field 'label' is required"),
    ('version = "1"\n[[endpoint]]\nkey = "x"\ntype = "ordinal"\n' + "".join(
        f'{f} = "t"\n' for f in ("label", "standard", "standard_version", "definition", "population", "censoring",
                                 "unit")), "type 'ordinal' is not one of"),
    ('version = "1"\n[[variable]]\nname = "v"\ndescription = "d"\nfrom = "visits"\nstatistic = "last"\n',
     "statistic 'last' needs field 'column'"),
    ('version = "1"\n[[variable]]\nname = "v"\ndescription = "d"\nfrom = "visits"\nstatistic = "first_day"\n'
     'where = [{ column = "day", op = "~" }]\n', "op '~' is not one of"),
    ('version = "1"\n[[variable]]\nname = "v"\ndescription = "d"\nfrom = "visits"\nstatistic = "first_day"\n'
     'where = [{ column = "day", op = ">" }]\n', "op '>' needs a value"),
    ('version = "1"\n[[variable]]\nname = "v"\ndescription = "d"\nfrom = "labs"\nstatistic = "first_day"\n',
     "from 'labs' is not one of"),
    ('[[variable]]\n', "'version' (text) is required"),
    ('version = 1\nextra = 2\n', "unknown field(s) extra"),
])
def test_a_bad_table_is_an_error_naming_record_and_field(text, words):
    with pytest.raises(endpoints.EndpointTableError) as info:
        endpoints.parse(text, "mine.toml")
    assert words in str(info.value) and "mine.toml" in str(info.value)


def test_every_shipped_endpoint_says_what_it_is():
    for e in endpoints.definitions().endpoints:
        for field in ("label", "standard", "standard_version", "definition", "population", "censoring", "unit"):
            assert getattr(e, field).strip(), (e.key, field)
    aplasia = endpoints.definitions().endpoint("bcell_aplasia_days")
    assert aplasia.type == "time_to_event" and "censored" in aplasia.censoring and "Kaplan-Meier" in aplasia.censoring


def test_summarise_by_arm(frame):
    from scipy.stats import binomtest

    two_arms = pl.concat([frame, frame.with_columns(pl.lit("arm2").alias("arm"), pl.lit(None, pl.Boolean).alias("sri4"))])
    summary = endpoints.summarise(two_arms, by="arm")
    row = lambda arm, key: summary.filter((pl.col("arm") == arm) & (pl.col("endpoint") == key)).row(0, named=True)  # noqa: E731
    r = row("arm1", "remission_m6")
    ci = binomtest(2, 3).proportion_ci(method="exact")
    assert (r["k"], r["n"]) == (2, 3) and math.isclose(r["lower"], ci.low) and math.isclose(r["upper"], ci.high)
    assert row("arm2", "sri4")["n"] == 0 and row("arm2", "sri4")["estimate"] is None
    # B-cell aplasia: returns at 35 and 70, one censored at 355 -> S = 2/3, 1/3: median 70
    r = row("arm1", "bcell_aplasia_days")
    assert (r["n"], r["events"], r["censored"], r["estimate"]) == (3, 2, 1, 70.0)
    r = row("arm1", "cart_cmax")
    assert (r["n"], r["estimate"], r["min"], r["max"]) == (4, 10.25, 0.0, 20.0)
    assert r["lower"] is None  # 4 values cannot give a 95% distribution-free interval
    assert set(summary["endpoint"]) == {e.key for e in endpoints.definitions().endpoints}
