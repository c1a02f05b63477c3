"""`cartwin validate-model` end to end on a few targets and tiny cohorts."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from cartwin.validation import sensitivity
from cartwin.validation.command import validate_model
from cartwin.validation.suite import evaluate, load_suite, simulate_scenario

ONLY = ["mackensen_bcell_return", "mackensen_crs_any", "tyu19_tmax"]  # in the suite's order


def test_validate_model_writes_the_report_for_the_targets_asked(tmp_path):
    """Three targets on two scenarios, 8 patients per arm: the report has a row per target with a
    value and interval, the summary counts them, and the CSV matches."""
    outcome = validate_model(n=8, seed=5, out=tmp_path, only=ONLY, sensitivity=False)
    assert [r.target.id for r in outcome.results] == ONLY
    assert all(r.estimate is not None and r.status in ("pass", "fail") for r in outcome.results)
    text = (tmp_path / "validation.md").read_text()
    for target in ONLY:
        assert f"**{target}**" in text
    assert "| all targets | 3 |" in text
    assert "cartwin validate-model --n 8 --seed 5 --only " in text
    with open(tmp_path / "validation_results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["id"] for r in rows] == ONLY
    assert {r["calibration"] for r in rows} == {"yes"}


def test_the_bcma_scenarios_are_simulated_with_the_bcma_presets(tmp_path):
    """The two BCMA-directed scenarios name the catalogue's presets and give a value, not "not simulable"."""
    suite = load_suite()
    assert [a["product"] for a in suite.scenarios["bcma_cd19_ccar"].arms] == ["bcma_cd19_ccar"]
    assert [a["dose"] for a in suite.scenarios["bcma_cd19_ccar"].arms] == [{"cells_per_kg": 3e6}]
    assert [a["product"] for a in suite.scenarios["bcma_lupus_nephritis"].arms] == ["bcma_car"]
    outcome = validate_model(n=4, seed=5, out=tmp_path, only=["bcma_bcell_return_3m"], sensitivity=False)
    (result,) = outcome.results
    assert result.status != "not simulable", result.reason


def test_a_scenario_the_catalogue_cannot_express_is_reported_not_simulable():
    suite = load_suite()
    scenario = suite.scenarios["bcma_lupus_nephritis"]
    unknown = replace(scenario, arms=tuple({**a, "product": "no_such_product"} for a in scenario.arms))
    run = simulate_scenario(suite, unknown, n=4, seed=5)
    (target,) = [t for t in suite.targets if t.id == "bcma_bcell_return_3m"]
    result = evaluate(target, run)
    assert result.status == "not simulable" and "no_such_product" in result.reason


def test_intensity_lever_scales_both_drugs_and_keeps_the_days():
    base = sensitivity._regimen(1.0)
    doubled = sensitivity._regimen(2.0)
    assert [a["days"] for a in base] == [a["days"] for a in doubled]
    assert [2 * a["dose_mg_m2"] for a in base] == [a["dose_mg_m2"] for a in doubled]
    assert {a["drug"] for a in base} == {"fludarabine", "cyclophosphamide"}


def test_cli_runs_in_process(tmp_path):
    from typer.testing import CliRunner

    from cartwin.cli import app
    result = CliRunner().invoke(app, ["validate-model", "--n", "6", "--only", "tyu19_tmax", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "all targets: " in result.output and (tmp_path / "validation.md").exists()


def test_cli_maps_an_unknown_target_id_to_exit_code_2(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    bad = subprocess.run([sys.executable, "-m", "cartwin.cli", "validate-model", "--n", "6", "--only",
                          "no_such_target", "--out", str(tmp_path)], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "no_such_target" in bad.stderr


def test_an_unknown_target_id_is_told_the_close_one_and_the_list():
    """A typo in --only names the id it is close to, and the message lists the suite's ids."""
    from cartwin.validation.suite import SuiteError, load_suite, run_suite
    with pytest.raises(SuiteError, match="'tyu19_tmx': did you mean 'tyu19_tmax'\\?") as info:
        run_suite(load_suite(), n=4, only=["tyu19_tmx"])
    assert "mackensen_bcell_return" in str(info.value)


def test_same_seed_same_numbers(tmp_path):
    """Same suite and seed, same table, bootstrap intervals included (a ratio of means)."""
    only = ["yts109_activity_m6", "yts109_sri4_m3"]
    validate_model(n=8, seed=11, out=tmp_path / "a", only=only, sensitivity=False)
    validate_model(n=8, seed=11, out=tmp_path / "b", only=only, sensitivity=False)
    assert (tmp_path / "a" / "validation_results.csv").read_text() == (tmp_path / "b" / "validation_results.csv").read_text()


def test_sensitivity_reads_the_aplasia_and_remission_endpoints():
    """Per patient: aplasia days are the endpoint's time (censored ones included), 0 without
    aplasia; remission by month 6 is the endpoint (null outside its denominator)."""
    import polars as pl

    from cartwin.validation import statistics as st

    patients = pl.DataFrame({"subject": ["p1", "p2", "p3"], "cart_cmax": [10.0, 20.0, 5.0],
                             "bcell_aplasia": [True, True, False], "bcell_aplasia_days": [93.0, 355.0, None],
                             "remission_m6": [True, False, None]})
    labs = pl.DataFrame({"subject": ["p1", "p2"], "term": ["Neutrophil count decreased"] * 2, "grade": [4, 1]})
    empty = pl.DataFrame({"subject": pl.Series([], dtype=pl.String)})
    out = sensitivity.per_patient(st.ArmData("arm", patients, empty, labs, empty, empty)).sort("subject")
    assert out["aplasia_days"].to_list() == [93.0, 355.0, 0.0]
    assert out["remission_m6"].to_list() == [True, False, None]
    assert out["neutropenia_g3"].to_list() == [True, False, None]


def test_a_users_file_of_the_reports_name_is_refused_before_the_suite_runs(tmp_path):
    """--out may be a folder of other files (docs/ holds the shipped report), but a file named
    validation.md or validation_results.csv that is not an earlier report is never replaced; an
    earlier report is."""
    from cartwin.validation.suite import SuiteError
    notes = tmp_path / "validation.md"
    notes.write_text("# my own notes\n")
    (tmp_path / "other.txt").write_text("kept\n")
    with pytest.raises(SuiteError, match="validation.md: names an existing file that is not an earlier report"):
        validate_model(n=4, seed=5, out=tmp_path, only=["tyu19_tmax"], sensitivity=False)
    assert notes.read_text() == "# my own notes\n"
    notes.unlink()
    validate_model(n=4, seed=5, out=tmp_path, only=["tyu19_tmax"], sensitivity=False)
    first = (tmp_path / "validation_results.csv").read_bytes()
    validate_model(n=4, seed=5, out=tmp_path, only=["tyu19_tmax"], sensitivity=False)  # its own: replaced
    assert (tmp_path / "validation_results.csv").read_bytes() == first
    assert (tmp_path / "other.txt").read_text() == "kept\n"
