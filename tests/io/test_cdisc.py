"""CDISC-like SDTM and ADaM domains: structure, the clinical layer's grades, and read-back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cartwin.clinical import score_observations
from cartwin.io.observations import read_observations
from cartwin.io import CdiscExportError
from cartwin.io.cdisc import ADAM_DATASETS, SDTM_DOMAINS, export_cdisc, read_xpt

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
        if x.dtype.is_numeric():
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


def test_toxicity_grades_are_the_clinical_layers(exported, scored):
    adlb = exported.datasets["ADLB"]
    grades = scored["lab_grades"].filter(pl.col("grade").is_not_null())
    assert grades.height > 0
    checked = 0
    for subject, day, direction, grade in grades.select("subject", "day", "direction", "grade").iter_rows():
        row = adlb.filter((pl.col("USUBJID") == f"TEST-001-SIM-{subject}") & (pl.col("NRRLT") == day)
                          & (pl.col("ATOXGRL" if direction == "low" else "ATOXGRH").is_not_null()))
        column = "ATOXGRL" if direction == "low" else "ATOXGRH"
        assert grade in row[column].to_list()
        checked += 1
    assert checked == grades.height
    low = adlb.filter(pl.col("ATOXGRL") > 0)
    assert low.height > 0  # lymphodepletion makes cytopenias: the sign convention is exercised
    assert (low.filter(pl.col("ATOXGRH").fill_null(0) == 0)["ATOXGR"] == -low.filter(pl.col("ATOXGRH").fill_null(0) == 0)["ATOXGRL"]).all()
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
