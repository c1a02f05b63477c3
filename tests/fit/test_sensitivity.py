"""Sobol indices: parameters that cannot reach an endpoint get none, the driver gets most."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from cartwin.fit import FitError
from cartwin.fit.sensitivity import sensitivity
from cartwin.protocol import parse_protocol


def _protocol(follow_up=200):
    from cartwin.fit.synthetic import DESIGN_POPULATION
    return parse_protocol({
        "schema_version": 1, "study_id": "sobol-check", "seed": 4, "follow_up_days": follow_up,
        "schedule": {"days": [-6, 0, 7, 14, 28]}, "population": DESIGN_POPULATION,
        "arms": [{"id": "auto", "product": "autologous_cd19", "dose": {"cells_per_kg": 1e6},
                  "lymphodepletion": "erlangen", "n": 1}]})


@pytest.fixture(scope="module")
def analysis(tmp_path_factory):
    out = tmp_path_factory.mktemp("sobol") / "out"
    # SLOPE_N_F (fludarabine kill of neutrophil precursors) has no path to CAR-T or B cells in the
    # model's equations; RHO (CAR-T proliferation) drives Cmax.
    result = sensitivity(_protocol(), outputs=["cart_cmax", "bcell_aplasia_days", "neutropenia_grade3"],
                         parameters=["RHO", "K_E", "SLOPE_N_F"], n=16, seed=2, out=out)
    return result, out


def test_indices_follow_the_model_structure(analysis):
    result, _ = analysis
    st = {o: dict(zip(result.parameters, result.indices[o]["ST"])) for o in result.outputs}
    assert st["cart_cmax"]["SLOPE_N_F"] == pytest.approx(0.0, abs=1e-9)
    assert st["bcell_aplasia_days"]["SLOPE_N_F"] == pytest.approx(0.0, abs=1e-9)
    assert st["cart_cmax"]["RHO"] > 0.5
    assert st["cart_cmax"]["RHO"] > st["cart_cmax"]["K_E"]


def test_default_ranges_are_the_iiv_95_percent_range(analysis):
    result, out = analysis
    # RHO: typical 2.1 1/day, omega 0.15 -> 2.1 x exp(-/+ 1.96 x 0.15) = 1.5651 .. 2.8177
    k = result.parameters.index("RHO")
    assert result.bounds[k] == pytest.approx([1.5651, 2.8177], rel=1e-4)
    assert result.samples[:, k].min() >= result.bounds[k, 0] and result.samples[:, k].max() <= result.bounds[k, 1]
    assert result.n_runs == 16 * (3 + 2)
    meta = json.loads((out / "sensitivity.json").read_text())
    assert meta["n_runs"] == result.n_runs and meta["arm"] == "auto"
    table = pl.read_parquet(out / "sobol_indices.parquet")
    assert table.height == 3 * 3
    runs = pl.read_parquet(out / "runs.parquet")
    assert runs.height == result.n_runs and np.isfinite(runs["cart_cmax"].to_numpy()).all()
    assert (out / "sobol.png").stat().st_size > 0


@pytest.mark.parametrize("kwargs, message", [
    ({"outputs": ["cmax"]}, "unknown outputs ['cmax']"),
    ({"parameters": ["RHO", "NOPE"]}, "['NOPE'] are not parameters"),
    ({"parameters": ["RHO", "N15"]}, "N15 has no declared IIV"),
    ({"parameters": ["RHO", "K_E"], "ranges": {"K_E": (0.3, 0.1)}}, "need 0 < LOW < HIGH"),
    ({"parameters": ["RHO", "K_E"], "n": 12}, "power of 2"),
    ({"parameters": ["RHO", "K_E"], "arm": "other"}, "arm 'other' is not in the protocol"),
])
def test_bad_input_is_named(kwargs, message):
    with pytest.raises(FitError) as exc:
        sensitivity(_protocol(), **kwargs)
    assert message in str(exc.value)


def test_month6_endpoint_needs_follow_up_to_month_6():
    with pytest.raises(FitError, match="needs follow-up to day 180"):
        sensitivity(_protocol(follow_up=120), outputs=["sledai0_month6"], parameters=["RHO", "K_E"])
