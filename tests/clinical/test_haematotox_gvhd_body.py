"""ICAHT, CAR-HEMATOTOX, MAGIC, NIH cGvHD, body size and renal dosing: scoring_cases.md K-O."""

import polars as pl
import pytest

from cartwin.clinical import gvhd_body as gb
from cartwin.clinical import haematotox as ht


def anc_series(episodes, last_day=30, baseline=1000.0):
    """Daily ANC (/uL) days 0..last_day: ``baseline`` outside the listed (first, last, value) spans."""
    days = list(range(0, last_day + 1))
    values = []
    for d in days:
        v = baseline
        for first, last, level in episodes:
            if first <= d <= last:
                v = level
        values.append(float(v))
    return pl.DataFrame({"subject": ["S"] * len(days), "day": [float(d) for d in days], "anc_per_ul": values})


@pytest.mark.parametrize("case,episodes,last_day,counting,expected", [
    ("ICA-01", [], 30, None, 0),
    ("ICA-02", [(3, 8, 400)], 30, None, 1),
    ("ICA-03", [(3, 9, 400)], 30, None, 2),
    ("ICA-04", [(3, 16, 400)], 30, None, 3),
    ("ICA-05a", [(3, 9, 500)], 30, None, 2),
    ("ICA-05b", [(3, 9, 501)], 30, None, 0),
    ("ICA-06", [(3, 12, 400), (4, 10, 50)], 30, None, 3),
    ("ICA-07", [(2, 15, 50)], 30, None, 4),
    ("ICA-08", [(0, 30, 400)], 30, None, 4),
    ("ICA-09", [(0, 29, 400)], 30, None, 3),
    ("ICA-10-cumulative", [(2, 6, 400), (9, 12, 400)], 30, "cumulative", 2),
    ("ICA-10-longest", [(2, 6, 400), (9, 12, 400)], 30, "longest", 2),
    ("ICA-11-cumulative", [(2, 6, 400), (17, 21, 400)], 30, "cumulative", 2),
    ("ICA-11-longest", [(2, 6, 400), (17, 21, 400)], 30, "longest", 1),
    ("ICA-12", [(2, 12, 400)], 12, None, 4),
])
def test_early_icaht(case, episodes, last_day, counting, expected):
    assert ht.early_icaht(anc_series(episodes, last_day), counting)["icaht_early"][0] == expected


def test_early_icaht_interpolates_sparse_sampling():
    sparse = pl.DataFrame({"subject": ["S"] * 4, "day": [0.0, 3.0, 10.0, 30.0], "anc_per_ul": [2000.0, 300.0, 300.0, 2000.0]})
    row = ht.early_icaht(sparse).row(0, named=True)
    assert row["icaht_early"] == 2  # about 9 interpolated days at or below 500
    assert "interpolated" in row["icaht_early_flag"]


def test_early_icaht_interpolates_across_the_window_edges():
    """A window day before the first or after the last measurement inside days 0-30 is
    interpolated from the nearest measurement outside the window; measurements farther out do
    not count, and a year of them gives the same grade as the nearest two."""
    edges = pl.DataFrame({"subject": ["S"] * 4, "day": [-4.0, 5.0, 20.0, 40.0],
                          "anc_per_ul": [2000.0, 100.0, 100.0, 1500.0]})
    year = pl.DataFrame({"subject": ["S"] * 12, "day": [-9.0, -6.0, -4.0, 5.0, 20.0, 40.0, 60.0, 90.0, 120.0, 180.0, 270.0, 365.0],
                         "anc_per_ul": [50.0, 50.0, 2000.0, 100.0, 100.0, 1500.0, 50.0, 50.0, 50.0, 50.0, 50.0, 50.0]})
    by_edges, by_year = ht.early_icaht(edges), ht.early_icaht(year)
    # linear in the series' rows (days -4, 0, 1, ..., 5): 2000 -> 100, at or below 500 from day 4;
    # 100 to day 20 (16 days at or below 100: grade 4); then rows 21, ..., 30, 40: 100 -> 1500, at or
    # below 500 to day 23: 20 days
    assert by_edges["days_le500_cumulative"][0] == 20 and by_edges["days_le100_cumulative"][0] == 16
    assert by_edges["icaht_early"][0] == 4
    assert by_year.select(by_edges.columns).drop("icaht_early_flag").equals(by_edges.drop("icaht_early_flag"))


@pytest.mark.parametrize("case,values,expected", [
    ("ICA-13", [1400, 1450], 1), ("ICA-14", [1000, 1300], 2), ("ICA-15", [1001, 1200], 1),
    ("ICA-16", [450, 1600], 0), ("ICA-17", [90, 300], 4), ("ICA-18", [800], 2), ("ICA-19", [1501, 1600], 0),
])
def test_late_icaht(case, values, expected):
    frame = pl.DataFrame({"subject": ["S"] * len(values), "day": [40.0 + 10 * i for i in range(len(values))],
                          "anc_per_ul": [float(v) for v in values]})
    row = ht.late_icaht(frame).row(0, named=True)
    assert row["icaht_late"] == expected
    if case == "ICA-18":
        assert "single" in row["icaht_late_flag"]


NORMAL = dict(PLAT=200.0, NEUT=2.0, HGB=120.0, CRP=5.0, FERRITIN=300.0)


@pytest.mark.parametrize("case,changes,score,risk", [
    ("HTX-01", {}, 0, "low"),
    ("HTX-02", dict(PLAT=150.0), 1, "low"),
    ("HTX-03", dict(PLAT=150.0, FERRITIN=700.0), 2, "high"),
    ("HTX-04", dict(PLAT=60.0), 2, "high"),
    ("HTX-05", dict(PLAT=60.0, NEUT=1.0, HGB=85.0, CRP=40.0, FERRITIN=2500.0), 7, "high"),
    ("HTX-06", dict(CRP=25.0), 0, "low"),
    ("HTX-07-ferritin-2000", dict(FERRITIN=2000.0), 1, "low"),
    ("HTX-07-ferritin-2001", dict(FERRITIN=2001.0), 2, "high"),
    ("HTX-07-plat-175", dict(PLAT=175.0), 1, "low"),
    ("HTX-07-plat-176", dict(PLAT=176.0), 0, "low"),
    ("HTX-07-plat-75", dict(PLAT=75.0), 1, "low"),
    ("HTX-07-plat-74", dict(PLAT=74.0), 2, "high"),
    ("HTX-08", dict(NEUT=1.2), 1, "low"),
    ("Hb-9.0-edge", dict(HGB=90.0), 1, "low"),
    ("CRP-3.0-edge", dict(CRP=30.0), 1, "low"),
])
def test_hematotox(case, changes, score, risk):
    row = ht.hematotox(pl.DataFrame([{**NORMAL, **changes}])).row(0, named=True)
    assert (row["hematotox"], row["hematotox_risk"]) == (score, risk)


def test_hematotox_missing_variable_gives_range_and_decided_risk():
    row = ht.hematotox(pl.DataFrame([{"PLAT": 60.0, "NEUT": 2.0, "HGB": 120.0}])).row(0, named=True)
    assert row["hematotox"] is None and (row["hematotox_min"], row["hematotox_max"]) == (2, 5)
    assert row["hematotox_risk"] == "high"  # decided even though CRP and ferritin are missing


def magic(**kw):
    return gb.magic_stages(pl.DataFrame([kw])).row(0, named=True)


MGDL = 17.1


@pytest.mark.parametrize("case,kw,stage,grade", [
    ("GVH-01", dict(rash_bsa_pct=30.0), ("skin", 2), 1),
    ("GVH-02", dict(rash_bsa_pct=60.0), ("skin", 3), 2),
    ("GVH-03", dict(rash_bsa_pct=20.0, bilirubin_umol_l=2.5 * MGDL), ("liver", 1), 2),
    ("GVH-04", dict(stool_ml=1200.0), ("lower_gi", 2), 3),
    ("GVH-05", dict(bilirubin_umol_l=16 * MGDL), ("liver", 4), 4),
    ("GVH-06", dict(persistent_nausea=1.0), ("upper_gi", 1), 2),
    ("GVH-07", dict(rash_bsa_pct=80.0, bullae=1.0), ("skin", 4), 4),
    ("GVH-08a", dict(bilirubin_umol_l=3.0 * MGDL), ("liver", 1), 2),
    ("GVH-08b", dict(bilirubin_umol_l=3.05 * MGDL), ("liver", 2), 3),
    ("GVH-09a", dict(stool_ml=499.0, stool_episodes=2.0), ("lower_gi", 0), 0),
    ("GVH-09b", dict(stool_ml=500.0), ("lower_gi", 1), 2),
    ("GVH-10", dict(bilirubin_umol_l=60.0), ("liver", 2), 3),
    ("GVH-11", dict(stool_ml=600.0, weight_kg=25.0), ("lower_gi", 2), 3),
    ("GVH-12", dict(stool_ml=300.0, severe_pain_or_bloody=1.0), ("lower_gi", 4), 4),
])
def test_magic(case, kw, stage, grade):
    row = magic(**kw)
    assert row[stage[0]] == stage[1]
    assert row["magic_grade"] == grade


@pytest.mark.parametrize("case,scores,expected", [
    ("CGV-01", dict(skin=1, mouth=1), "mild"), ("CGV-02", dict(skin=1, mouth=1, eyes=1), "moderate"),
    ("CGV-03", dict(lungs=1), "moderate"), ("CGV-04", dict(joints_fascia=2), "moderate"),
    ("CGV-05", dict(lungs=2), "severe"), ("CGV-06", dict(eyes=3), "severe"), ("CGV-07", {}, "none"),
])
def test_nih_cgvhd(case, scores, expected):
    assert gb.nih_cgvhd_severity(scores) == expected


@pytest.mark.parametrize("case,crcl,policy,fraction,mg", [
    ("FLU-01", 87.5, None, 1.0, 45.45), ("FLU-02", 59.52, None, 0.8, 36.36), ("FLU-03a", 70.0, None, 0.8, None),
    ("FLU-03b", 70.01, None, 1.0, None), ("FLU-04a", 30.0, None, 0.8, None), ("FLU-04b", 29.9, None, None, None),
    ("FLU-05", 50.0, "eu_smpc", None, None),
])
def test_fludarabine(case, crcl, policy, fraction, mg):
    dose = gb.fludarabine_dose(25.0, 1.8181, crcl, policy)
    assert dose["fraction"] == fraction
    if mg is not None:
        assert dose["mg"] == pytest.approx(mg, abs=0.01)
    if fraction is None:
        assert dose["note"]


def test_magic_organ_stages_and_grade_are_reported_per_visit():
    """MAGIC 2016 organ stages and the overall grade of each visit in the visits table (not only the
    worst grade per patient): skin 30% BSA is stage 2, 800 mL stool a day lower-GI stage 1, which
    makes grade II; a visit without GvHD inputs has no stages."""
    from cartwin.clinical import observations_from_frame, score_observations
    rows = [("7", "GVHD_SKIN", "30", "%BSA"), ("7", "STOOL", "800", "mL/day"), ("14", "GVHD_SKIN", "10", "%BSA"),
            ("14", "STOOL", "200", "mL/day"), ("21", "TEMP", "36.8", "C")]
    raw = pl.DataFrame({"subject": ["S"] * len(rows), "day": [r[0] for r in rows], "test": [r[1] for r in rows],
                        "value": [r[2] for r in rows], "unit": [r[3] for r in rows]})
    visits = score_observations(observations_from_frame(raw, "gvhd.csv"))["visits"].sort("day")
    columns = ["magic_skin_stage", "magic_liver_stage", "magic_upper_gi_stage", "magic_lower_gi_stage", "magic_grade"]
    by_day = {row["day"]: row for row in visits.select("day", *columns).iter_rows(named=True)}
    assert by_day[7.0] == {"day": 7.0, "magic_skin_stage": 2, "magic_liver_stage": None, "magic_upper_gi_stage": None,
                           "magic_lower_gi_stage": 1, "magic_grade": 2}
    assert by_day[14.0]["magic_skin_stage"] == 1 and by_day[14.0]["magic_lower_gi_stage"] == 0
    assert by_day[14.0]["magic_grade"] == 1
    assert by_day[21.0]["magic_grade"] is None


def test_visits_have_the_magic_columns_without_gvhd_inputs():
    from cartwin.clinical import observations_from_frame, score_observations
    raw = pl.DataFrame({"subject": ["S"], "day": ["7"], "test": ["TEMP"], "value": ["37"], "unit": ["C"]})
    visits = score_observations(observations_from_frame(raw, "t.csv"))["visits"]
    assert visits["magic_grade"].to_list() == [None]
