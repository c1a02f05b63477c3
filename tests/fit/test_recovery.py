"""Parameter recovery: a population fit of simulated patients finds the parameters they were
simulated with, and writes its report."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
from recovery_design import LLOQ, OMEGA, SIGMA, START, TRUTH


def test_fixed_effects_inside_their_95_percent_intervals(fitted):
    result, _ = fitted
    assert result.converged
    lo, hi = result.typical_interval()
    for k, name in enumerate(result.estimate):
        assert lo[k] <= TRUTH[name] <= hi[k], (name, lo[k], TRUTH[name], hi[k])


def test_intervals_are_informative_and_estimates_moved_from_the_start(fitted):
    """An interval as wide as the parameter space would contain anything."""
    result, _ = fitted
    lo, hi = result.typical_interval()
    for k, name in enumerate(result.estimate):
        assert hi[k] / lo[k] < 1.35, name  # RSE below about 8%
        assert abs(np.log(result.typical[k] / TRUTH[name])) < abs(np.log(START[name] / TRUTH[name])) / 3


def test_variability_and_residual_error_recovered(fitted):
    result, _ = fitted
    for k, name in enumerate(result.estimate):
        assert OMEGA[name] / 1.5 < result.omega[k] < OMEGA[name] * 1.5, name
    for j, test in enumerate(result.tests):
        assert SIGMA[test] / 1.25 < result.sigma[j] < SIGMA[test] * 1.25, test


def test_individual_estimates_track_the_true_individual_parameters(fitted, study):
    result, _ = fitted
    order = [list(study.subjects["subject"]).index(s) for s in result.data.subjects]
    true_phi = study.true_phi[order]
    for k, name in enumerate(result.estimate):
        assert np.corrcoef(result.phi[:, k], true_phi[:, k])[0, 1] > 0.8, name


def test_output_directory_holds_estimates_tables_and_plots(fitted, study):
    result, out = fitted
    for name in ("estimates.json", "individual.parquet", "predictions.parquet", "gof.png", "vpc.png",
                 "report.html"):
        assert (out / name).stat().st_size > 0, name
    est = json.loads((out / "estimates.json").read_text())
    lo, hi = result.typical_interval()
    by_name = {p["parameter"]: p for p in est["population"]}
    for k, name in enumerate(result.estimate):
        assert by_name[name]["ci95"] == [lo[k], hi[k]]
    assert est["n_subjects"] == 50
    # the 100 pre-infusion CAR-T samples (2 visits x 50), and late samples of patients whose
    # CAR-T have gone, are below the LLOQ and left out
    cart = next(r for r in est["residual"] if r["test"] == "CART")
    assert cart["n_below_lloq_left_out"] == int((study.observations.filter(
        pl.col("test") == "CART")["value"] <= LLOQ["CART"]).sum()) >= 100
    individual = pl.read_parquet(out / "individual.parquet")
    assert individual.height == 50 and set(TRUTH) <= set(individual.columns)
    predictions = pl.read_parquet(out / "predictions.parquet")
    assert predictions.height == est["n_observations"]
    # the VPC: observed percentiles mostly inside the simulated 90% bands of a correct model
    for test in SIGMA:
        assert est["vpc"][test]["observed_percentiles_inside_90pct_band"] >= 0.7, test
    assert "<img src=\"vpc.png\"" in (out / "report.html").read_text()
