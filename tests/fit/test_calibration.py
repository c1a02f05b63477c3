"""Calibration to summary-level targets, and the shipped calibrated set."""

from __future__ import annotations

import json
import warnings

import pytest

from cartwin.fit import FitError
from cartwin.fit.calibration import Cohort, Target, TARGETS, apply_calibration, calibrate, latest_calibration
from cartwin.model import DEFAULT_MODEL


def test_calibration_moves_a_parameter_to_meet_a_target():
    """A target the declared model misses (B cells back at a mean of day 110, Mackensen 2022; the
    declared model gives a mean above 140 in this 8-patient cohort, its right tail of long
    aplasia included) is met by moving MTT_PRE."""
    target = Target("B cells back at 110", "autologous_cd19", "erlangen", "mean_bcell_return_day",
                    110.0, 5.0, "test target")
    record = calibrate(parameters=("MTT_PRE",), targets=(target,), n=8, seed=7, max_evaluations=25)
    entry = record["targets"][0]
    assert abs(entry["declared_model"] - 110.0) > 10  # the declared model misses it
    assert entry["calibrated_model"] == pytest.approx(110.0, abs=5.0)
    assert record["parameters"]["MTT_PRE"]["value"] != DEFAULT_MODEL.parameter("MTT_PRE").value
    assert record["objective"]["calibrated"] < record["objective"]["declared"]


def test_range_target_has_no_penalty_inside():
    t = Target("peak", "autologous_cd19", "erlangen", "mean_cart_tmax", 7.0, 1.0, "range", upper=14.0)
    assert t.residual(10.0) == 0.0 and t.residual(15.5) == 1.5 and t.residual(5.0) == -2.0


def test_shipped_calibration_meets_its_targets_and_applies():
    path = latest_calibration("lupus_cart")
    record = json.loads(path.read_text())
    for key in ("model_hash", "date", "targets", "objective", "cohort"):
        assert key in record
    assert all(t["source"] for t in record["targets"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = apply_calibration(path)
    for name, entry in record["parameters"].items():
        assert model.parameter(name).value == entry["value"]
        assert model.parameter(name).source.startswith("calibrated:")
    untouched = [p for p in DEFAULT_MODEL.parameters if p.name not in record["parameters"]]
    assert all(model.parameter(p.name).value == p.value for p in untouched)
    # The shipped calibration must still fit the default model: its cohort, simulated with the
    # calibrated values, meets every target within one SD. Made with this very model (same hash), it
    # must also reproduce the recorded statistics to rounding. A model changed since (another hash)
    # is still held to the targets rather than skipped, so a model change that breaks the fit
    # fails here and says to re-run calibrate().
    same_model = record["model_hash"] == DEFAULT_MODEL.content_hash()
    targets = {t.name: t for t in TARGETS}
    cohort = Cohort(DEFAULT_MODEL, TARGETS, record["cohort"]["n_per_scenario"], record["cohort"]["seed"])
    stats = cohort.statistics({n: e["value"] for n, e in record["parameters"].items()})
    for entry in record["targets"]:
        t = targets[entry["name"]]
        simulated = stats[(t.product, t.regimen)][t.statistic]
        if same_model:
            assert simulated == pytest.approx(entry["calibrated_model"], rel=1e-9), entry["name"]
        assert abs(t.residual(simulated)) <= 1.0, (
            f"{entry['name']}: {simulated:.4g} with the shipped calibration {path.name}"
            + ("" if same_model else f" (made for model hash {record['model_hash']}, the model is now "
                                     f"{DEFAULT_MODEL.content_hash()}); re-run calibrate()"))


def test_shipped_calibration_is_of_the_default_model_version():
    """The newest shipped calibration was made with the default model's version (a calibration of
    an older version would be applied to equations it was not fitted to)."""
    record = json.loads(latest_calibration("lupus_cart").read_text())
    assert record["model_version"] == DEFAULT_MODEL.version


def test_calibration_of_another_model_is_refused():
    from dataclasses import replace
    record = json.loads(latest_calibration("lupus_cart").read_text())
    with pytest.raises(FitError, match="not 'other'"):
        apply_calibration(record, replace(DEFAULT_MODEL, name="other"))
    with pytest.raises(FitError, match="not parameters"):
        calibrate(parameters=("NOPE",))
