"""CDISC-like SDTM and ADaM domains: structure, the clinical layer's grades, and read-back."""

from __future__ import annotations

import json
import shutil
import tomllib
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import tomli_w

from cartwin.clinical import score_observations
from cartwin.io.observations import read_observations
from cartwin.io import CdiscExportError
from cartwin.io import cdisc_rules
from cartwin.io.cdisc import ADAM_DATASETS, SDTM_DOMAINS, _unique_codes, export_cdisc, read_xpt
from cartwin.io.cdisc_rules import check_conformance, rules

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    return export_cdisc(run_dir, tmp_path_factory.mktemp("cdisc") / "sdtm")


@pytest.fixture(scope="module")
def scored(run_dir):
    return score_observations(read_observations(run_dir))


def _same(a: pl.DataFrame, b: pl.DataFrame, name: str) -> None:
    assert a.columns == b.columns, name
    assert a.height == b.height, name
    for c in a.columns:
        x, y = a[c], b[c]
        if x.dtype == pl.Date:
            assert x.to_list() == y.cast(pl.Date).to_list(), f"{name}.{c}"
        elif x.dtype.is_numeric():
            np.testing.assert_allclose(x.cast(pl.Float64).to_numpy(), y.cast(pl.Float64).to_numpy(),
                                       rtol=1e-12, equal_nan=True, err_msg=f"{name}.{c}")
        else:
            # XPORT has no missing character value: empty text comes back for null
            assert x.fill_null("").to_list() == y.cast(pl.String).fill_null("").to_list(), f"{name}.{c}"


def test_every_dataset_reads_back_from_xpt_and_csv(exported):
    assert set(exported.datasets) == set(SDTM_DOMAINS) | set(ADAM_DATASETS)
    for name, frame in exported.datasets.items():
        assert frame.height > 0, name
        xpt, meta = read_xpt(exported.out_dir / f"{name.lower()}.xpt")
        assert meta["table_name"] == name
        assert all(len(c) <= 8 for c in xpt.columns)
        assert all(len(label) <= 40 for label in meta["labels"].values())
        _same(frame, xpt, f"{name}.xpt")
        csv = pl.read_csv(exported.out_dir / f"{name.lower()}.csv", schema=frame.schema)
        _same(frame, csv, f"{name}.csv")
    define = json.loads((exported.out_dir / "define.json").read_text())
    assert define["provenance"]["simulated"] is True and define["provenance"]["seed"] == 7


def test_identifiers_and_timing(exported, run_dir):
    dm, lb = exported.datasets["DM"], exported.datasets["LB"]
    patients = pl.read_parquet(str(run_dir / "patients.parquet" / "*.parquet"))
    assert dm.height == patients.height and dm["USUBJID"].n_unique() == dm.height
    assert dm["STUDYID"].unique().to_list() == ["TEST-001-SIM"]
    # SDTM has no study day 0: the infusion day is day 1, the day before it day -1
    assert 0 not in lb["LBDY"].to_list()
    by_visit = dict(lb.select("VISIT", "LBDY").unique().iter_rows())
    assert by_visit["DAY 0"] == 1 and by_visit["DAY 1"] == 2 and by_visit["DAY -3"] == -3
    assert all(len(c) <= 8 and c[0].isalpha() for c in lb["LBTESTCD"].unique())
    # one baseline per subject and test, before the first lymphodepleting dose
    flagged = lb.filter(pl.col("LBLOBXFL") == "Y")
    assert flagged.group_by(["USUBJID", "LBTESTCD"]).len()["len"].max() == 1
    assert flagged["LBDY"].max() < -5 + 1
    # ISO 8601 dates: no [study] start_date in the protocol, so the nominal 2000-01-01 is the
    # study's earliest protocol day (day -6, the screening sample); the infusion is six days later
    assert by_visit["DAY -6"] == -6
    assert dict(lb.select("VISIT", "LBDTC").unique().iter_rows())["DAY -6"] == "2000-01-01"
    assert dm["RFSTDTC"].unique().to_list() == ["2000-01-07"]
    assert dm["RFXSTDTC"].unique().to_list() == ["2000-01-02"]  # the first fludarabine dose, day -5
    assert dm["RFENDTC"].unique().to_list() == ["2000-05-06"]  # day 120
    assert dm["AGE"].dtype == pl.Int64
    np.testing.assert_array_equal(dm["AGE"].to_numpy(), np.floor(patients.sort("subject")["AGE"].to_numpy()))
    assert set(dm["COUNTRY"]) == {"ZZZ"} and set(dm["RACE"]) == set(dm["ETHNIC"]) == {"NOT REPORTED"}


def test_exposure_matches_the_run(exported, run_dir):
    ex = exported.datasets["EX"]
    events = pl.read_parquet(str(run_dir / "events.parquet" / "*.parquet")).filter(pl.col("EVID") == 1)
    assert ex.height == events.height
    cart = ex.filter(pl.col("EXCAT") == "CAR-T CELL THERAPY")
    patients = pl.read_parquet(str(run_dir / "patients.parquet" / "*.parquet"))
    assert cart.height == patients.height
    doses = dict(zip("TEST-001-SIM-" + patients["subject"], patients["dose_cells"]))
    for usubjid, dose, unit, day in cart.select("USUBJID", "EXDOSE", "EXDOSU", "EXSTDY").iter_rows():
        assert dose == pytest.approx(doses[usubjid], rel=1e-12) and unit == "cells" and day == 1
    assert set(ex.filter(pl.col("EXCAT") != "CAR-T CELL THERAPY")["EXDUR"]) <= {"PT0.5H", "PT1H"}
    # a 30-minute fludarabine infusion on day -5 (2000-01-02): start and end as ISO 8601 date/times
    flu = ex.filter(pl.col("EXTRT") == "FLUDARABINE").row(0, named=True)
    assert (flu["EXSTDTC"], flu["EXENDTC"], flu["EXDOSFRQ"]) == ("2000-01-02", "2000-01-02T00:30", "ONCE")
    assert ex["VISITNUM"].null_count() == 0
    # VISITNUM orders one visit list across EX and LB
    visits = pl.concat([ex.select("VISIT", "VISITNUM"), exported.datasets["LB"].select("VISIT", "VISITNUM")]).unique()
    assert visits["VISIT"].n_unique() == visits["VISITNUM"].n_unique() == visits.height


def test_toxicity_grades_are_the_clinical_layers(exported, scored):
    adlb = exported.datasets["ADLB"]
    grades = scored["lab_grades"].filter(pl.col("grade").is_not_null())
    assert grades.height > 0
    checked = 0
    for subject, day, direction, grade in grades.select("subject", "day", "direction", "grade").iter_rows():
        column = "ATOXGRL" if direction == "low" else "ATOXGRH"
        row = adlb.filter((pl.col("USUBJID") == f"TEST-001-SIM-{subject}") & (pl.col("NRRLT") == day)
                          & (pl.col(column) != ""))
        assert str(grade) in row[column].to_list()
        checked += 1
    assert checked == grades.height
    # toxicity grades are character (ADaMIG, admiral); the low direction is negative in ATOXGR
    assert all(adlb.schema[c] == pl.String for c in ("ATOXGR", "ATOXGRL", "ATOXGRH", "BTOXGR"))
    low = adlb.filter(pl.col("ATOXGRL").is_in(["1", "2", "3", "4"]) & pl.col("ATOXGRH").is_in(["", "0"]))
    assert low.height > 0  # lymphodepletion makes cytopenias: the sign convention is exercised
    assert (low["ATOXGR"] == "-" + low["ATOXGRL"]).all()
    ae = exported.datasets["AE"]
    expected = scored["adverse_events"].filter(pl.col("max_grade") >= 1)
    assert ae.height == expected.height
    assert sorted(ae["AETOXGR"].cast(pl.Int64).to_list()) == sorted(expected["max_grade"].to_list())


def test_baseline_and_change(exported):
    adlb = exported.datasets["ADLB"]
    base = adlb.filter(pl.col("ABLFL") == "Y")
    assert base.group_by(["USUBJID", "PARAMCD"]).len()["len"].max() == 1
    np.testing.assert_allclose(base["CHG"].to_numpy(), 0.0)
    np.testing.assert_allclose(adlb["CHG"].to_numpy(), (adlb["AVAL"] - adlb["BASE"]).to_numpy())


def test_disease_activity_domain_carries_sledai_bounds(exported, scored):
    rs = exported.datasets["RS"]
    low = rs.filter(pl.col("RSTESTCD") == "SLEDLOW")
    expected = scored["visits"].filter(pl.col("sledai2k_min").is_not_null())
    assert low.height == expected.height
    assert sorted(low["RSSTRESN"].to_list()) == sorted(expected["sledai2k_min"].cast(pl.Float64).to_list())


def test_real_observation_file_exports_without_exposure(tmp_path):
    out = export_cdisc(ROOT / "examples" / "observations_example.csv", tmp_path / "real", study_id="SLE-REAL")
    assert "EX" not in out.datasets
    assert out.datasets["DM"]["STUDYID"].unique().to_list() == ["SLE-REAL"]
    assert out.datasets["ADSL"]["SIMFL"].unique().to_list() == ["N"]
    xpt, _ = read_xpt(tmp_path / "real" / "lb.xpt")
    assert xpt.height == out.datasets["LB"].height > 0


def test_bad_destinations_and_sources(tmp_path, run_dir):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(CdiscExportError, match="holds other files"):
        export_cdisc(run_dir, tmp_path / "busy")
    with pytest.raises(CdiscExportError, match="no such file"):
        export_cdisc(tmp_path / "missing.csv", tmp_path / "out")


def test_one_baseline_across_lb_and_adlb(exported, run_dir):
    """LBLOBXFL and ABLFL flag the same records: the last result before the first lymphodepleting
    dose (day -5 here, so the screening sample of day -6), never the infusion day."""
    lb, adlb = exported.datasets["LB"], exported.datasets["ADLB"]
    lb_flags = set(lb.filter(pl.col("LBLOBXFL") == "Y").select("USUBJID", "LBSEQ").iter_rows())
    adlb_flags = set(adlb.filter(pl.col("ABLFL") == "Y").select("USUBJID", "SRCSEQ").iter_rows())
    assert lb_flags == adlb_flags and len(lb_flags) > 0
    screening = (pl.read_parquet(str(run_dir / "observations.parquet" / "*.parquet"))
                 .with_columns(pl.col("test").cast(pl.String))
                 .filter((pl.col("test") == "LYM") & (pl.col("day") == -6.0)))
    expected = dict(zip("TEST-001-SIM-" + screening["subject"], screening["value"]))
    lym = adlb.filter(pl.col("PARAMCD") == "LYM").group_by("USUBJID").agg(pl.col("BASE").unique())
    assert {u: b for u, b in lym.iter_rows()} == {u: [v] for u, v in expected.items()}
    # baseline indicators and grade come from the baseline record
    flagged = adlb.filter(pl.col("ABLFL") == "Y")
    assert (flagged["BNRIND"] == flagged["ANRIND"]).all() and (flagged["BTOXGR"] == flagged["ATOXGR"]).all()
    assert set(adlb["ANRIND"]) <= {"LOW", "NORMAL", "HIGH", ""} and "LOW" in set(adlb["ANRIND"])
    # on-treatment records are those after the first dose
    assert adlb.filter(pl.col("NRRLT") <= -5)["ONTRTFL"].unique().to_list() == [""]
    assert adlb.filter(pl.col("NRRLT") > -5)["ONTRTFL"].unique().to_list() == ["Y"]


def test_analysis_datasets_carry_treatment_and_sequence(exported):
    adsl, adlb = exported.datasets["ADSL"], exported.datasets["ADLB"]
    assert (adsl["TRT01A"] == adsl["TRT01P"]).all() and (adsl["TRT01AN"] == adsl["TRT01PN"]).all()
    assert (adsl["ACTARM"] == adsl["ARM"]).all()
    assert adsl["TRTSDT"].dtype == pl.Date and adsl["TRTSDT"].unique().to_list() == [date(2000, 1, 2)]
    assert adsl["TRTEDT"].unique().to_list() == [date(2000, 1, 7)]
    treatment = dict(adsl.select("USUBJID", "TRT01P").iter_rows())
    assert (adlb["TRTP"] == adlb["USUBJID"].replace_strict(treatment)).all() and (adlb["TRTA"] == adlb["TRTP"]).all()
    assert adlb.select("USUBJID", "ASEQ").is_unique().all()
    assert adlb.group_by("USUBJID").agg(pl.col("ASEQ").min())["ASEQ"].unique().to_list() == [1]


def test_adverse_events_have_start_end_and_outcome(exported, scored):
    ae = exported.datasets["AE"]
    assert "AEDY" not in ae.columns  # the day of the maximum grade is not a collection day
    assert ae["AESTDY"].null_count() == 0 and (ae["AESTDTC"] != "").all()
    assert (ae["AEBODSYS"] != "").all() and set(ae["AESER"]) <= {"Y", "N"}
    assert "ICAHT early" in set(ae["AETERM"])  # the events that had no onset day before
    ended = ae.filter(pl.col("AEENDY").is_not_null())
    assert ended.height > 0 and (ended["AEENDY"] > ended["AESTDY"]).all()
    assert set(ended["AEOUT"]) == {"RECOVERED/RESOLVED"} and (ended["AEENDTC"] != "").all()
    open_ = ae.filter(pl.col("AEENDY").is_null())
    assert (open_["AEENDTC"] == "").all() and "RECOVERED/RESOLVED" not in set(open_["AEOUT"])
    assert (ae.filter(pl.col("AESER") == "Y")["AETOXGR"].cast(pl.Int64) >= 4).all()
    # a resolved CRS: onset at the first day with grade >= 1, end at the next day graded 0 (ASTCT grades of the clinical layer)
    crs = ae.filter(pl.col("AETERM") == "Cytokine release syndrome")
    for usubjid, start, end in crs.select("USUBJID", "AESTDY", "AEENDY").iter_rows():
        daily = scored["visits"].filter(pl.col("subject") == usubjid.removeprefix("TEST-001-SIM-")).sort("day")
        graded = daily.filter(pl.col("crs_grade") >= 1)["day"]
        assert start == graded.min() + 1  # study day of a protocol day >= 0
        if end is not None:
            after = daily.filter((pl.col("day") > graded.max()) & (pl.col("crs_grade") == 0))["day"]
            assert end == after.min() + 1


def test_export_passes_the_conformance_rules(exported):
    findings = check_conformance(exported.datasets)
    assert findings == [], "\n".join(map(str, findings))
    xpt = {name: read_xpt(exported.out_dir / f"{name.lower()}.xpt")[0] for name in exported.datasets}
    findings = check_conformance(xpt)
    assert findings == [], "\n".join(map(str, findings))
    define = json.loads((exported.out_dir / "define.json").read_text())
    assert define["conformance"]["findings"] == [] and define["conformance"]["rules"] == len(rules())


def _mutate(datasets, name, **columns):
    out = dict(datasets)
    out[name] = datasets[name].with_columns(**columns)
    return out


@pytest.mark.parametrize("name, change, rule", [
    ("DM", {"COUNTRY": pl.lit("")}, "CG0014B"),
    ("DM", {"ARMCD": pl.lit("A_VERY_LONG_ARM_CODE_X")}, "CG0153"),
    ("DM", {"ARMCD": pl.lit("SAME")}, "FB0902"),
    ("DM", {"AGE": pl.lit(28.5)}, "DMAGE"),
    ("DM", {"RACE": pl.lit("CAUCASIAN")}, "CT-RACE"),
    ("LB", {"LBDTC": pl.lit("01/02/2000")}, "ISO8601"),
    ("LB", {"LBDY": pl.col("LBDY") + 1}, "CG0006"),
    ("LB", {"LBLOBXFL": pl.lit("Y")}, "FB2603"),
    ("LB", {"LBSEQ": pl.lit(1)}, "CG0028"),
    ("LB", {"LBSTRESC": pl.col("LBORRES")}, "FB3102"),  # 6 significant figures no longer equal LBSTRESN
    ("AE", {"AESTDY": pl.lit(None, pl.Int64)}, "AESTDY"),
    ("AE", {"AEOUT": pl.lit("RECOVERED/RESOLVED"), "AEENDTC": pl.lit("")}, "FB3410"),
    ("AE", {"AESER": pl.lit("Y")}, "CG0042"),
    ("AE", {"AESEQ": pl.int_range(pl.len(), 0, -1).over("USUBJID")}, "CG0620"),
    ("ADSL", {"TRTSDT": pl.lit("2000-01-02")}, "ADSL-DT"),
    ("ADLB", {"ATOXGR": pl.lit(1)}, "ADLB-TOXGR"),
    ("ADLB", {"BASE": pl.col("AVAL")}, "ADLB-BASE"),
    ("ADLB", {"ABLFL": pl.when(pl.col("ABLFL") == "Y").then(pl.lit("")).otherwise(pl.col("ABLFL"))}, "SAME-BASE"),
    ("ADLB", {"TRTP": pl.lit("something else")}, "ADLB-TRT"),
])
def test_the_conformance_rules_catch_what_they_name(exported, name, change, rule):
    findings = check_conformance(_mutate(exported.datasets, name, **change))
    assert rule in {f.rule.id for f in findings}


def test_every_rule_has_a_source_and_a_known_check(exported):
    assert len(rules()) >= 60
    for rule in rules():
        assert rule.id and rule.standard in ("SDTMIG 3.4", "ADaMIG 1.3", "cartwin") and rule.source and rule.text
    broken = rules()[0].__class__(**{**rules()[0].__dict__, "check": "no_such_check"})
    with pytest.raises(ValueError, match="unknown check kind"):
        cdisc_rules._check(broken, "DM", exported.datasets["DM"], exported.datasets)


def _copy_run(run_dir, dest, arms: dict[str, str], study: dict) -> None:
    """A copy of the run with its arms renamed (patients and protocol) and a [study] table."""
    shutil.copytree(run_dir, dest)
    for part in (dest / "patients.parquet").glob("*.parquet"):
        frame = pl.read_parquet(part)
        frame.with_columns(pl.col("arm").replace(arms)).write_parquet(part)
    protocol = tomllib.loads((dest / "protocol.toml").read_text())
    for arm in protocol["arms"]:
        arm["id"] = arms[arm["id"]]
    protocol["study"] = study
    (dest / "protocol.toml").write_text(tomli_w.dumps(protocol))


def test_arms_sharing_twenty_characters_keep_apart_and_dates_follow_the_protocol(run_dir, tmp_path):
    arms = {"auto": "expansion_cohort_dose_level_a", "tyu19": "expansion_cohort_dose_level_b"}
    _copy_run(run_dir, tmp_path / "run", arms, {"start_date": date(2024, 3, 4), "country": "DEU"})
    out = export_cdisc(tmp_path / "run", tmp_path / "sdtm")
    dm, adsl = out.datasets["DM"], out.datasets["ADSL"]
    codes = dict(dm.select("SUBJID", "ARMCD").iter_rows())
    assert codes["auto-000001"] != codes["tyu19-000001"]
    assert all(len(c) <= 20 for c in codes.values())
    assert dm.select("ARMCD", "ARM").unique().height == 2 == adsl["TRT01PN"].n_unique()
    assert set(dm["ARM"]) == {"autologous_cd19 1e6 cells/kg after erlangen lymphodepletion",
                              "tyu19 1e6 cells/kg after reduced lymphodepletion"}
    assert set(dm["COUNTRY"]) == {"DEU"}
    # 2024-03-04 is day -6; the infusion (day 0) is 2024-03-10
    assert set(dm["RFSTDTC"]) == {"2024-03-10"} and set(adsl["TRTSDT"]) == {date(2024, 3, 5)}
    assert check_conformance(out.datasets) == []
    # an explicit start date wins over the protocol's; a bad one is named
    assert set(export_cdisc(tmp_path / "run", tmp_path / "b", start_date="2025-01-01").datasets["DM"]["RFSTDTC"]) == {"2025-01-07"}
    with pytest.raises(CdiscExportError, match="not an ISO 8601 date"):
        export_cdisc(tmp_path / "run", tmp_path / "c", start_date="01/02/2025")


def test_arms_with_the_same_description_get_distinct_arm_text():
    arms = pl.DataFrame({"arm": ["dose_escalation_level_1_a", "dose_escalation_level_1_b", "x"],
                         "ARM": ["tyu19 1e6 cells/kg after reduced lymphodepletion"] * 2 + ["other"]})
    out = _unique_codes(arms)
    assert out["ARMCD"].to_list() == ["DOSE_ESCALATION_LEVE", "DOSE_ESCALATION_LE_2", "X"]
    assert out["ARM"].n_unique() == 3 and out["ARM"][0].endswith("(dose_escalation_level_1_a)")


def test_every_adverse_event_term_of_the_clinical_layer_has_a_body_system():
    """A new CTCAE term in the clinical rule table needs its system organ class here too."""
    from cartwin.clinical.ruleset import table
    from cartwin.io.cdisc import ae_body_systems
    terms = set(table("ctcae_v5")["term"]) | {
        "Cytokine release syndrome", "Immune effector cell-associated neurotoxicity syndrome",
        "ICAHT early", "ICAHT late", "Acute graft-versus-host disease"}
    assert terms <= set(ae_body_systems()), sorted(terms - set(ae_body_systems()))


def test_real_data_baseline_is_the_ctcae_grading_reference(tmp_path):
    """Without dosing records, LB's baseline flag marks the value CTCAE grades against (the last
    one before lymphodepletion), not a value taken during the chemotherapy."""
    rows = ["subject,arm,day,test,value,unit,lower,upper,cause"]
    rows += [f"S1,a,{d},ALT,{v},U/L,,40," for d, v in ((-7, 20), (-1, 900), (0, 850), (7, 300))]
    (tmp_path / "obs.csv").write_text("\n".join(rows) + "\n")
    out = export_cdisc(tmp_path / "obs.csv", tmp_path / "real", study_id="SLE-REAL")
    lb = out.datasets["LB"].filter(pl.col("LBTESTCD") == "ALT")
    flagged = lb.filter(pl.col("LBLOBXFL") == "Y")
    assert flagged.height == 1 and flagged["LBSTRESN"][0] == 20.0
    adlb = out.datasets["ADLB"].filter(pl.col("PARAMCD") == "ALT")
    assert adlb["BASE"].unique().to_list() == [20.0]


def test_a_finding_over_many_rows_says_how_many():
    """A row check lists five rows and then '... N more rows'; the finding's text cut that last
    entry to 'and 1 more', so 4,000 empty RFENDTC read as six."""
    from cartwin.io.cdisc_rules import Finding, _rows, rules
    frame = pl.DataFrame({"USUBJID": [f"S{k}" for k in range(4000)], "RFENDTC": [""] * 4000})
    finding = Finding(rules()[0], "DM", _rows(frame, frame["RFENDTC"] == "", ["RFENDTC"]))
    assert "3995 more rows" in str(finding) and "and 1 more" not in str(finding)
    many = Finding(rules()[0], "DM", [f"problem {k}" for k in range(8)])
    assert str(many).endswith("problem 4; and 3 more")


def test_patients_whose_observations_the_run_did_not_store_are_left_out_and_counted(tmp_path, sampled_run_dir):
    """A run keeps the observations of the first [store] observations_per_arm patients of each
    arm. The others were exported in DM and EX with no LB, RS or AE record (read as patients with
    no adverse event) and an empty RFENDTC, which the export's own conformance check flagged."""
    from cartwin.io.cdisc import export_cdisc
    result = export_cdisc(sampled_run_dir, tmp_path / "sdtm", formats=("csv",))
    assert result.findings == ()
    assert result.datasets["DM"]["SUBJID"].sort().to_list() == ["auto-000001", "auto-000002"]
    assert set(result.datasets["EX"]["USUBJID"]) == set(result.datasets["DM"]["USUBJID"])
    assert result.n_without_observations == 3
    define = json.loads((tmp_path / "sdtm" / "define.json").read_text())
    assert define["provenance"]["subjects_without_observations"]["count"] == 3
