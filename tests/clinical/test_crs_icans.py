"""ASTCT CRS and ICANS: scoring_cases.md sections I and J."""

import polars as pl
import pytest

from cartwin.clinical import crs_icans


def crs_day(temp=None, hypoten=None, hypoxia=None, anticyt=None, day=2.0):
    frame = pl.DataFrame({"subject": ["S"], "day": [day], "TEMP": [temp], "HYPOTEN": [hypoten], "HYPOXIA": [hypoxia],
                          "ANTICYT": [anticyt]}, schema_overrides={c: pl.Float64 for c in ("TEMP", "HYPOTEN", "HYPOXIA", "ANTICYT")})
    return crs_icans.grade_crs(frame).row(0, named=True)


@pytest.mark.parametrize("case,kw,expected", [
    ("CRS-01", dict(temp=37.9, hypoten=0, hypoxia=0), 0),
    ("CRS-02", dict(temp=38.0, hypoten=0, hypoxia=0), 1),
    ("CRS-03", dict(temp=38.5, hypoten=1, hypoxia=0), 2),
    ("CRS-04", dict(temp=38.5, hypoten=0, hypoxia=crs_icans.hypoxia_category("nasal_cannula", 6)), 2),
    ("CRS-05", dict(temp=38.5, hypoten=0, hypoxia=crs_icans.hypoxia_category("nasal_cannula", 7)), 3),
    ("CRS-06", dict(temp=38.5, hypoten=0, hypoxia=crs_icans.hypoxia_category("facemask")), 3),
    ("CRS-07", dict(temp=39, hypoten=crs_icans.hypotension_category(True, ["norepinephrine", "vasopressin"]), hypoxia=0), 3),
    ("CRS-08", dict(temp=39, hypoten=crs_icans.hypotension_category(True, ["norepinephrine", "phenylephrine"]), hypoxia=0), 4),
    ("CRS-09", dict(temp=39, hypoten=0, hypoxia=crs_icans.hypoxia_category("cpap")), 4),
    ("CRS-10", dict(temp=39, hypoten=2, hypoxia=1), 3),
    ("CRS-12", dict(temp=37.0, hypoten=1, hypoxia=0), 0),
    ("CRS-13", dict(temp=38.3, hypoten=0, hypoxia=0), 1),
    ("outside-window", dict(temp=39.0, hypoten=0, hypoxia=0, day=20.0), None),
    ("nothing-recorded", dict(), None),
])
def test_crs_daily(case, kw, expected):
    row = crs_day(**kw)
    assert row["crs_grade"] == expected
    if case == "CRS-12":
        assert "review" in row["crs_reason"]


def test_crs11_no_fever_needed_after_tocilizumab():
    frame = pl.DataFrame({"subject": ["S", "S"], "day": [2.0, 3.0], "TEMP": [39.0, 37.0], "HYPOTEN": [0.0, 2.0],
                          "HYPOXIA": [0.0, 0.0], "ANTICYT": [1.0, None]})
    assert crs_icans.grade_crs(frame)["crs_grade"].to_list() == [1, 3]


def test_crs14_episode_maximum():
    frame = pl.DataFrame({"subject": ["S"] * 4, "day": [1.0, 2.0, 3.0, 4.0], "TEMP": [38.5] * 4,
                          "HYPOTEN": [0.0, 1.0, 2.0, 1.0], "HYPOXIA": [0.0] * 4})
    graded = crs_icans.grade_crs(frame)
    assert graded["crs_grade"].to_list() == [1, 2, 3, 2]
    assert crs_icans.episode_maximum(graded, "crs_grade")["crs_grade_max"][0] == 3


def icans_day(ice=None, loc=None, seiz=None, motor=None, icp=None, cause=None):
    frame = pl.DataFrame({"subject": ["S"], "day": [5.0], "ICE": [ice], "ICANS_LOC": [loc], "ICANS_SEIZ": [seiz],
                          "ICANS_MOTOR": [motor], "ICANS_ICP": [icp], "icans_cause": [cause]},
                         schema_overrides={c: pl.Float64 for c in ("ICE", "ICANS_LOC", "ICANS_SEIZ", "ICANS_MOTOR", "ICANS_ICP")}
                         | {"icans_cause": pl.String})
    return crs_icans.grade_icans(frame).row(0, named=True)


@pytest.mark.parametrize("case,kw,expected", [
    ("ICN-01", dict(ice=10, loc=0), 0),
    ("ICN-02a", dict(ice=9), 1), ("ICN-02b", dict(ice=7), 1),
    ("ICN-03a", dict(ice=6), 2), ("ICN-03b", dict(ice=3), 2),
    ("ICN-04", dict(ice=2), 3),
    ("ICN-05", dict(ice=0, loc=0), 3),
    ("ICN-06", dict(loc=4), 4),
    ("ICN-07", dict(ice=9, loc=2), 2),
    ("ICN-08", dict(ice=8, seiz=1), 3),
    ("ICN-09", dict(seiz=2), 4),
    ("ICN-10a", dict(ice=10, icp=1), 3), ("ICN-10b", dict(ice=10, icp=2), 4),
    ("ICN-11", dict(motor=1), 4),
    ("ICN-12", dict(ice=10), 0),
    ("ICN-13", dict(ice=crs_icans.ice_score(3, 3, 1, 0, 1)), 1),
    ("ICN-14", dict(loc=4, cause="sedation"), None),
])
def test_icans(case, kw, expected):
    row = icans_day(**kw)
    assert row["icans_grade"] == expected
    if case == "ICN-14":
        assert "another cause" in row["icans_reason"]


def test_ice_items_are_checked():
    assert crs_icans.ice_score(4, 3, 1, 1, 1) == 10
    with pytest.raises(ValueError):
        crs_icans.ice_score(5, 3, 1, 1, 1)


def _crs_from_rows(rows):
    from cartwin.clinical import observations_from_frame, score_observations
    raw = pl.DataFrame({"subject": ["S"] * len(rows), "day": [r[0] for r in rows], "test": [r[1] for r in rows],
                        "value": [r[2] for r in rows], "unit": [r[3] for r in rows]})
    visits = score_observations(observations_from_frame(raw, "crs.csv"))["visits"].sort("day")
    return dict(zip(visits["day"].to_list(), visits["crs_grade"].to_list()))


def test_crs_is_graded_from_oxygen_flow_and_vasopressors_as_recorded():
    """ASTCT 2019 from what a chart records: oxygen device and flow, the number of vasopressors
    (vasopressin not counted) and fluid boluses, instead of pre-set HYPOXIA/HYPOTEN categories.
    Nasal cannula <= 6 L/min is low flow (grade 2), above is high flow (grade 3); one vasopressor
    grade 3, two grade 4; positive pressure grade 4; fluids alone grade 2."""
    fever = lambda day: (day, "TEMP", "38.9", "C")  # noqa: E731
    grades = _crs_from_rows([
        fever("1"), ("1", "O2_DEVICE", "1", "category"), ("1", "O2_FLOW", "6", "L/min"),
        fever("2"), ("2", "O2_DEVICE", "1", "category"), ("2", "O2_FLOW", "8", "L/min"),
        fever("3"), ("3", "FLUIDS", "1", ""),
        fever("4"), ("4", "VASOPRESS", "1", "count"), ("4", "FLUIDS", "1", ""),
        fever("5"), ("5", "VASOPRESS", "2", "count"),
        fever("6"), ("6", "O2_DEVICE", "7", "category"),
        fever("7"), ("7", "O2_DEVICE", "0", "category"), ("7", "VASOPRESS", "0", "count"),
        fever("8"), ("8", "O2_DEVICE", "3", "category"),
    ])
    assert grades == {1.0: 2, 2.0: 3, 3.0: 2, 4.0: 3, 5.0: 4, 6.0: 4, 7.0: 1, 8.0: 3}


def test_a_nasal_cannula_without_its_flow_is_not_guessed():
    grades = _crs_from_rows([("1", "TEMP", "38.9", "C"), ("1", "O2_DEVICE", "1", "category")])
    assert grades == {1.0: None}


def test_a_recorded_category_is_kept_over_the_raw_inputs():
    grades = _crs_from_rows([("1", "TEMP", "38.9", "C"), ("1", "HYPOXIA", "3", "category"),
                             ("1", "O2_DEVICE", "1", "category"), ("1", "O2_FLOW", "2", "L/min")])
    assert grades == {1.0: 4}
