"""SLEDAI-2K / SELENA-SLEDAI / hybrid: scoring_cases.md sections A and P, and the attribution rules."""

import polars as pl
import pytest

from cartwin.clinical import sledai
from cartwin.clinical.composite import serology_normalisation

VISIT = 60  # a visit day outside every CAR-T attribution window
CODES = sledai.descriptor_codes()


def absent_except(day, present=(), lab_derived=()):
    """Every descriptor explicitly absent at ``day`` except those scored present or left to labs."""
    rows = []
    for code in CODES:
        if code in lab_derived:
            continue
        rows.append({"day": day, "test": code, "value": 1 if code in present else 0})
    return rows


def run(obs_frame, rows, visit=VISIT, window=None, icans=None):
    frame = obs_frame(rows)
    events = sledai.descriptor_events(frame, icans)
    visits = pl.DataFrame({"subject": ["S1"], "day": [float(visit)]})
    return sledai.score_visits(events, visits, window_days=window).row(0, named=True)


def test_sle01_nothing_present(obs_frame):
    assert run(obs_frame, absent_except(VISIT))["sledai2k"] == 0


def test_sle02_everything_present(obs_frame):
    r = run(obs_frame, absent_except(VISIT, present=CODES))
    assert (r["sledai2k"], r["csledai2k"], r["selena"], r["hybrid"]) == (105, 101, 105, 105)


def test_sle03_mixed_clinical_and_serology(obs_frame):
    rows = absent_except(VISIT, present={"SD_ARTH", "SD_RASH"}, lab_derived={"SD_LOWCOMP", "SD_DNA"})
    rows += [{"day": VISIT, "test": "C3", "value": 0.8, "unit": "g/L", "lower": 0.9},
             {"day": VISIT, "test": "C4", "value": 0.2, "unit": "g/L", "lower": 0.16},
             {"day": VISIT, "test": "DSDNA", "value": 80, "unit": "IU/mL", "upper": 30}]
    r = run(obs_frame, rows)
    assert (r["sledai2k"], r["csledai2k"]) == (10, 6)


def test_sle04(obs_frame):
    rows = absent_except(VISIT, present={"SD_VASC", "SD_PERIC"}, lab_derived={"SD_THROMB"})
    rows += [{"day": VISIT, "test": "PLAT", "value": 99, "unit": "10^9/L"}]
    assert run(obs_frame, rows)["sledai2k"] == 11


@pytest.mark.parametrize("case,test,value,unit,cause,day,expected", [
    ("SLE-05", "UPROT", 0.50, "g/24h", None, VISIT, 0),
    ("SLE-06", "UPROT", 0.51, "g/24h", None, VISIT, 4),
    ("SLE-08", "PLAT", 100, "10^9/L", None, VISIT, 0),
    ("SLE-09", "PLAT", 99, "10^9/L", None, VISIT, 1),
    ("SLE-10", "WBC", 2.9, "10^9/L", None, 10, 0),
    ("SLE-11a", "WBC", 2.9, "10^9/L", "sle", 10, 1),
    ("SLE-11b", "WBC", 3.0, "10^9/L", "sle", 10, 0),
    ("SLE-12", "TEMP", 38.0, "C", None, VISIT, 0),
    ("SLE-13a", "TEMP", 38.1, "C", None, VISIT, 1),
    ("SLE-13b", "TEMP", 38.6, "C", None, 2, 0),
    ("SLE-14a", "URBC", 5, "cells/hpf", None, VISIT, 0),
    ("SLE-14b", "URBC", 6, "cells/hpf", None, VISIT, 4),
    ("SLE-14c", "URBC", 12, "cells/hpf", "infection", VISIT, 0),
    ("SLE-15", "UWBC", 8, "cells/hpf", "infection", VISIT, 0),
    ("WBC-upper-edge", "WBC", 2.999, "10^9/L", None, VISIT, 1),
    ("PLAT-above", "PLAT", 100.001, "10^9/L", None, VISIT, 0),
    ("FEVER-just-above", "TEMP", 38.001, "C", None, VISIT, 1),
    ("PROT-just-below", "UPROT", 0.499, "g/24h", None, VISIT, 0),
    ("cytopenia-window-end", "WBC", 2.9, "10^9/L", None, 30, 0),
    ("cytopenia-after-window", "WBC", 2.9, "10^9/L", None, 31, 1),
    ("fever-window-end", "TEMP", 38.6, "C", None, 14, 0),
    ("fever-after-window", "TEMP", 38.6, "C", None, 15, 1),
    ("fever-before-infusion", "TEMP", 38.6, "C", None, -1, 1),
])
def test_single_lab_descriptor(obs_frame, case, test, value, unit, cause, day, expected):
    code = {"UPROT": "SD_PROT", "PLAT": "SD_THROMB", "WBC": "SD_LEUK", "TEMP": "SD_FEVER",
            "URBC": "SD_HEMAT", "UWBC": "SD_PYUR"}[test]
    rows = absent_except(day, lab_derived={code}) + [{"day": day, "test": test, "value": value, "unit": unit, "cause": cause}]
    assert run(obs_frame, rows, visit=day)["sledai2k"] == expected


def test_sle07_complement_scored_once(obs_frame):
    rows = absent_except(VISIT, lab_derived={"SD_LOWCOMP"}) + [
        {"day": VISIT, "test": "C3", "value": 0.5, "unit": "g/L", "lower": 0.9},
        {"day": VISIT, "test": "C4", "value": 0.05, "unit": "g/L", "lower": 0.16}]
    assert run(obs_frame, rows)["sledai2k"] == 2


@pytest.mark.parametrize("window,expected", [(10, 0), (30, 2)])
def test_sle16_lookback_window(obs_frame, window, expected):
    # Rash seen 20 days before and recorded absent at the visit itself.
    rows = [{"day": VISIT - 20, "test": "SD_RASH", "value": 1}] + absent_except(VISIT)
    assert run(obs_frame, rows, window=window)["sledai2k"] == expected


def test_window_must_be_allowed(obs_frame):
    with pytest.raises(ValueError):
        run(obs_frame, absent_except(VISIT), window=14)


def test_sle17_missing_serology_gives_bounds(obs_frame):
    rows = absent_except(VISIT, present={"SD_ARTH"}, lab_derived={"SD_DNA"})
    r = run(obs_frame, rows)
    assert r["sledai2k"] is None
    assert (r["csledai2k"], r["sledai2k_min"], r["sledai2k_max"]) == (4, 4, 6)
    assert "SD_DNA" in r["sledai_not_evaluable"]


@pytest.mark.parametrize("case,before,now,expected", [
    ("SLE-18", 1.2, 1.2, (4, 0, 4)),
    ("SLE-19", 0.4, 1.0, (4, 4, 4)),
    ("SLE-20", 0.8, 1.2, (4, 0, 4)),
])
def test_proteinuria_by_instrument(obs_frame, case, before, now, expected):
    rows = absent_except(VISIT, lab_derived={"SD_PROT"}) + [
        {"day": VISIT - 30, "test": "UPROT", "value": before, "unit": "g/24h"},
        {"day": VISIT, "test": "UPROT", "value": now, "unit": "g/24h"}]
    r = run(obs_frame, rows)
    assert (r["sledai2k"], r["selena"], r["hybrid"]) == expected


def test_first_proteinuria_measurement_is_not_new_for_selena(obs_frame):
    # Nothing before it to be new against: SLEDAI-2K and hybrid score it, SELENA-SLEDAI does not.
    rows = absent_except(VISIT, lab_derived={"SD_PROT"}) + [{"day": VISIT, "test": "UPROT", "value": 1.2, "unit": "g/24h"}]
    r = run(obs_frame, rows)
    assert (r["sledai2k"], r["selena"], r["hybrid"]) == (4, 0, 4)


def test_explicit_new_proteinuria_scores_at_the_first_visit(obs_frame):
    rows = absent_except(VISIT) + [{"day": VISIT, "test": "UPROT", "value": 1.2, "unit": "g/24h"}]
    rows = [dict(r, value=1) if r["test"] == "SD_PROT" else r for r in rows]
    r = run(obs_frame, rows)
    assert (r["sledai2k"], r["selena"], r["hybrid"]) == (4, 4, 4)


def test_persistent_proteinuria_scores_alike_at_baseline_and_follow_up(obs_frame):
    """Stable proteinuria of 1.6 g/24h from screening on: each instrument gives the same score at the
    baseline visit and at follow-up, so no instrument shows a fall that did not happen."""
    days = (-6, -3, 0, 60, 90)
    rows = [r for d in (0, 90) for r in absent_except(d, lab_derived={"SD_PROT"})]
    rows += [{"day": d, "test": "UPROT", "value": 1.6, "unit": "g/24h"} for d in days]
    events = sledai.descriptor_events(obs_frame(rows))
    visits = pl.DataFrame({"subject": ["S1", "S1"], "day": [0.0, 90.0]})
    scored = sledai.score_visits(events, visits).sort("day")
    assert scored["sledai2k"].to_list() == [4, 4]
    assert scored["hybrid"].to_list() == [4, 4]
    assert scored["selena"].to_list() == [0, 0]


@pytest.mark.parametrize("joints,expected", [(1, (0, 0)), (2, (4, 0)), (3, (4, 4))])
def test_sle21_arthritis_joint_count(obs_frame, joints, expected):
    rows = absent_except(VISIT, lab_derived={"SD_ARTH"}) + [{"day": VISIT, "test": "JOINTS", "value": joints, "unit": "count"}]
    r = run(obs_frame, rows)
    assert (r["sledai2k"], r["selena"]) == expected


def test_sle22_seizure_during_icans_does_not_score(obs_frame):
    icans = pl.DataFrame({"subject": ["S1"], "day": [6.0], "icans_grade": [3]}, schema_overrides={"icans_grade": pl.Int8})
    rows = absent_except(6, present={"SD_SEIZ"})
    assert run(obs_frame, rows, visit=6, icans=icans)["sledai2k"] == 0
    rows_sle = [dict(r, cause="sle") if r["test"] == "SD_SEIZ" else r for r in rows]
    assert run(obs_frame, rows_sle, visit=6, icans=icans)["sledai2k"] == 8


def test_sle23_organic_brain_syndrome_needs_two_features():
    assert sledai.organic_brain_syndrome(True, 1) is False
    assert sledai.organic_brain_syndrome(True, 2) is True
    assert sledai.organic_brain_syndrome(False, 3) is False


@pytest.mark.parametrize("scheme,score,label", [
    ("ard", 4, "low"), ("ard", 5, "moderate"), ("ard", 10, "moderate"), ("ard", 11, "high"), ("ard", 0, "none"),
    ("griffiths", 5, "mild"), ("griffiths", 6, "moderate"), ("griffiths", 20, "very high"), ("griffiths", 19, "high"),
])
def test_sle24_25_activity_categories(scheme, score, label):
    frame = pl.DataFrame({"s": [score]})
    assert frame.select(sledai.activity_category(pl.col("s"), scheme).alias("label"))["label"][0] == label


def test_sle26_alopecia_weighs_two(obs_frame):
    assert run(obs_frame, absent_except(VISIT, present={"SD_ALOP"}))["sledai2k"] == 2


def test_weights_sum_to_105():
    assert sum(sledai.weights().values()) == 105 and len(sledai.weights()) == 24


@pytest.mark.parametrize("case,test,value,unit,lower,upper,expected", [
    ("REF-01", "C3", 0.85, "g/L", 0.90, None, 2),
    ("REF-02", "C3", 0.90, "g/L", 0.90, None, 0),
    ("REF-03a", "C4", 0.12, "g/L", 0.10, None, 0),
    ("REF-03b", "C4", 0.12, "g/L", 0.16, None, 2),
    ("REF-04", "C3", 85, "mg/dL", 90, None, 2),
    ("REF-05", "DSDNA", 35, "IU/mL", None, 30, 2),
    ("REF-07-positivity-cutoff", "DSDNA", 12, "IU/mL", None, 15, 0),
    ("REF-07-normal-range", "DSDNA", 12, "IU/mL", None, 10, 2),
    ("REF-10a", "DSDNAFARR", 30, "%", None, None, 2),
    ("REF-10b", "DSDNAFARR", 25, "%", None, None, 0),
])
def test_reference_limits(obs_frame, case, test, value, unit, lower, upper, expected):
    code = "SD_LOWCOMP" if test in ("C3", "C4") else "SD_DNA"
    rows = absent_except(VISIT, lab_derived={code}) + [
        {"day": VISIT, "test": test, "value": value, "unit": unit, "lower": lower, "upper": upper}]
    partner = {"C3": ("C4", 0.3, 0.16), "C4": ("C3", 1.2, 0.9)}
    if test in partner:  # the other complement component normal so that only this one decides
        other, v, lln = partner[test]
        rows.append({"day": VISIT, "test": other, "value": v, "unit": "g/L", "lower": lln})
    assert run(obs_frame, rows)["sledai2k"] == expected


@pytest.mark.parametrize("case,direction,baseline,value,limit,normalised,pct", [
    ("REF-06", "high", 35, 29, 30, True, None),
    ("REF-08", "low", 1.1, 1.2, 0.9, None, None),
    ("REF-09", "low", 0.70, 0.88, 0.90, False, 25.714),
])
def test_serology_normalisation(case, direction, baseline, value, limit, normalised, pct):
    frame = pl.DataFrame({"baseline": [float(baseline)], "value": [float(value)], "limit": [float(limit)]})
    r = serology_normalisation(frame, direction).row(0, named=True)
    assert r["normalised"] == normalised
    if pct is not None:
        assert r["pct_change"] == pytest.approx(pct, abs=1e-3)


def test_explicit_descriptor_wins_over_lab(obs_frame):
    rows = absent_except(VISIT) + [{"day": VISIT, "test": "PLAT", "value": 50, "unit": "10^9/L"}]
    assert run(obs_frame, rows)["sledai2k"] == 0  # SD_THROMB=0 recorded by the investigator


def _fever_course(temps):
    """TEMP rows on the given days (C) with every other descriptor absent at the last day."""
    last = max(temps)
    rows = absent_except(last, lab_derived={"SD_FEVER"})
    return rows + [{"day": d, "test": "TEMP", "value": t, "unit": "C"} for d, t in temps.items()]


def test_fever_of_a_crs_episode_begun_in_the_window_is_not_lupus_fever(obs_frame):
    """attribution.toml [fever]: an unbroken febrile episode that began by day +14 is CRS
    (ASTCT, Lee 2019: CRS lasts until its fever resolves), so on day 17 it is not SLEDAI-2K
    item 22 (fever due to lupus, Gladman 2002)."""
    r = run(obs_frame, _fever_course({10: 38.6, 14: 38.4, 17: 38.3}), visit=17)
    assert r["sledai2k"] == 0
    assert "SD_FEVER (crs)" in r["sledai_excluded"]


def test_fever_that_returns_after_an_afebrile_visit_is_scored(obs_frame):
    """The episode broke on day 14, so fever on day 17 is a new fever and scores 1 point."""
    r = run(obs_frame, _fever_course({10: 38.6, 14: 37.2, 17: 38.3}), visit=17)
    assert r["sledai2k"] == 1


def test_fever_starting_after_the_window_is_scored(obs_frame):
    """New-onset CRS after day +14 is not expected (0/475, Blood Adv 2024;8:5346): a fever that
    starts on day 15 is scored unless the investigator records another cause."""
    r = run(obs_frame, _fever_course({14: 37.0, 15: 38.6, 17: 38.6}), visit=17)
    assert r["sledai2k"] == 1


def test_missing_inputs_tell_serology_from_clinical_descriptors():
    """Leaving out C3 and anti-dsDNA makes only the serological items ranges (the clinical SLEDAI
    stays exact); leaving out WBC touches a clinical item (leukopenia)."""
    from cartwin.clinical.sledai import input_tests, missing_inputs

    offered = set(input_tests())
    missing, clinical = missing_inputs(offered - {"C3", "DSDNA"}, offered)
    assert missing == ["C3", "DSDNA"] and clinical is False
    missing, clinical = missing_inputs(offered - {"WBC"}, offered)
    assert missing == ["WBC"] and clinical is True


def _wbc_course(counts):
    """Leukopenia read from WBC counts (10^9/L) by day, every other descriptor absent at the last."""
    last = max(counts)
    rows = absent_except(last, lab_derived={"SD_LEUK"})
    return rows + [{"day": d, "test": "WBC", "value": v, "unit": "10^9/L"} for d, v in counts.items()]


def test_leukopenia_unbroken_since_lymphodepletion_is_not_lupus_after_day_30(obs_frame):
    """attribution.toml [cytopenia]: a leukopenia that began in the lymphodepletion window and has
    not recovered is still the therapy's on day 35 (EHA/EBMT ICAHT: cytopenia beyond day +30 is
    late ICAHT), so it does not score SLEDAI-2K item 24 (leukopenia, exclude drug causes)."""
    r = run(obs_frame, _wbc_course({-6: 5.0, 0: 1.5, 14: 1.1, 28: 2.6, 35: 2.4}), visit=35)
    assert r["sledai2k"] == 0
    assert "SD_LEUK (lymphodepletion/CAR-T)" in r["sledai_excluded"]


def test_leukopenia_that_returns_after_recovery_is_scored(obs_frame):
    """The counts recovered on day 28, so leukopenia on day 35 is a new one and scores 1 point;
    so does one first seen after day +30 (the existing window-end cases), and one present
    before lymphodepletion that persists beyond the window (it did not begin in it)."""
    assert run(obs_frame, _wbc_course({0: 1.5, 14: 1.1, 28: 3.4, 35: 2.4}), visit=35)["sledai2k"] == 1
    assert run(obs_frame, _wbc_course({-8: 2.5, 0: 1.5, 14: 1.1, 28: 2.6, 35: 2.4}), visit=35)["sledai2k"] == 1


def test_cytopenia_present_on_the_first_day_of_lymphodepletion_began_before_it(obs_frame):
    """Day -5's count is the pre-treatment one: a leukopenia already there is lupus's, and stays
    scored after day +30 however long it lasts."""
    r = run(obs_frame, _wbc_course({-5: 2.5, 0: 1.5, 14: 1.1, 28: 2.6, 35: 2.4}), visit=35)
    assert r["sledai2k"] == 1


def test_a_missing_count_does_not_end_a_cytopenia_episode(obs_frame):
    """A visit whose WBC was not measured (no value) is not a visit without leukopenia."""
    rows = _wbc_course({-6: 5.0, 0: 1.5, 14: 1.1, 35: 2.4})
    rows.append({"day": 28, "test": "WBC", "value": None, "unit": "10^9/L"})
    assert run(obs_frame, rows, visit=35)["sledai2k"] == 0
