"""The fit's data path against the engine, and its answers to bad input."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from cartwin.fit import FitError
from cartwin.fit.data import load_fit_data
from cartwin.fit.predict import Predictor
from cartwin.model import DEFAULT_MODEL


def _engine_run(n=3):
    from cartwin.fit.synthetic import DESIGN_POPULATION
    from cartwin.protocol import parse_protocol
    from cartwin.run import simulate
    protocol = parse_protocol({
        "schema_version": 1, "study_id": "fit-engine-check", "seed": 11, "follow_up_days": 200,
        "schedule": {"days": [-6, 0, 2, 7, 14, 28, 56, 112, 200]}, "population": DESIGN_POPULATION,
        "arms": [{"id": "standard", "product": "tyu19", "dose": {"cells_per_kg": 2e6},
                  "lymphodepletion": "standard", "n": n}],
        # the fit's predictor solves with BDF at these tolerances: the same solver, the same numbers
        "solver": {"backend": "numba-bdf", "rtol": 1e-6, "atol": 1e-9}})
    return simulate(protocol)


def test_predictions_equal_the_engine_for_the_engine_patients():
    """Given each engine patient's own parameters, the fit's predictor rebuilds doses (BSA, renal
    rule, cells/kg) and covariates from the subject table and reproduces the engine's values."""
    sim = _engine_run()
    obs = sim.observations.filter(pl.col("test").is_in(["CART", "BCELL", "NEUT"]))
    data = load_fit_data(obs, DEFAULT_MODEL, subjects=sim.patients)
    predictor = Predictor(DEFAULT_MODEL, data, ("RHO",), rtol=1e-6, atol=1e-9)
    params = sim.parameters.sort("subject")
    assert list(params["subject"]) == list(data.subjects)
    predictor.typical = params.select(DEFAULT_MODEL.parameter_names).to_numpy()
    phi = np.log(params["RHO"].to_numpy())[:, None]
    logs, ok = predictor.log_predictions(phi)
    assert ok.all()
    predicted = np.exp(np.concatenate(logs))
    expected = data.obs_value
    np.testing.assert_allclose(predicted, expected, rtol=1e-9)


def _tiny():
    obs = pl.DataFrame({"subject": ["a", "a", "b"], "day": [1.0, 7.0, 7.0], "test": ["CART"] * 3,
                        "value": [1.0, 5.0, 3.0], "unit": ["cells/uL"] * 3})
    subjects = pl.DataFrame({"subject": ["a", "b"], "product": ["autologous_cd19"] * 2,
                             "regimen": ["erlangen"] * 2, "dose_cells_per_kg": [1e6, 1e6], "sex": ["F", "M"],
                             "AGE": [30.0, 40.0], "WT": [60.0, 80.0], "HT": [165.0, 180.0],
                             "CREAT": [60.0, 80.0], "DSDNA0": [100.0, 50.0], "C3_0": [0.6, 0.7],
                             "C4_0": [0.08, 0.1], "UPROT0": [0.5, 0.2], "PGA0": [2.0, 1.5]})
    return obs, subjects


@pytest.mark.parametrize("change, message", [
    (lambda o, s: (o, s.drop("CREAT")), "lacks columns ['CREAT']"),
    (lambda o, s: (o, s.with_columns(pl.lit("car-x").alias("product"))), "unknown product 'car-x'"),
    (lambda o, s: (o, s.with_columns(pl.lit("X").alias("sex"))), "column 'sex' holds ['X']"),
    (lambda o, s: (o, s.filter(pl.col("subject") == "a")), "subjects ['b'] have observations but no row"),
    (lambda o, s: (o.with_columns(pl.lit("cells/mL").alias("unit")), s), "CART in 'cells/mL'"),
    (lambda o, s: (o, s.with_columns(pl.lit(-1.0).alias("dose_cells_per_kg"))), "must be a positive number"),
])
def test_bad_data_is_named(change, message):
    obs, subjects = change(*_tiny())
    with pytest.raises(FitError) as exc:
        load_fit_data(obs, DEFAULT_MODEL, subjects=subjects)
    assert message in str(exc.value)


def test_bad_parameters_tests_and_output_directory(tmp_path):
    from cartwin.fit import fit
    obs, subjects = _tiny()
    with pytest.raises(FitError, match=r"tests \['IL7'\] are not observables"):
        load_fit_data(obs, DEFAULT_MODEL, subjects=subjects, tests=["IL7"])
    with pytest.raises(FitError, match=r"no observations of tests \['BCELL'\]"):
        load_fit_data(obs, DEFAULT_MODEL, subjects=subjects, tests=["BCELL"])
    data = load_fit_data(obs, DEFAULT_MODEL, subjects=subjects)
    with pytest.raises(FitError, match=r"parameters \['RHOO'\] are not parameters"):
        Predictor(DEFAULT_MODEL, data, ("RHOO",))
    (tmp_path / "x").write_text("something")
    with pytest.raises(FitError, match="not empty"):
        fit(obs, ["RHO"], subjects=subjects, out=tmp_path)
    with pytest.raises(FitError, match="at least one parameter"):
        fit(obs, [], subjects=subjects)


def test_cli_bad_input_exits_2(tmp_path, monkeypatch, capsys):
    from cartwin import cli
    obs, subjects = _tiny()
    obs.write_csv(tmp_path / "obs.csv")
    subjects.write_csv(tmp_path / "subjects.csv")
    for argv in (["fit", str(tmp_path / "obs.csv"), "--subjects", str(tmp_path / "subjects.csv"),
                  "--estimate", "NOPE", "--out", str(tmp_path / "o1")],
                 ["fit", str(tmp_path / "obs.csv"), "--subjects", str(tmp_path / "subjects.csv"),
                  "--estimate", "RHO", "--lloq", "CART", "--out", str(tmp_path / "o2")],
                 ["fit", str(tmp_path / "missing.csv"), "--estimate", "RHO", "--out", str(tmp_path / "o3")]):
        monkeypatch.setattr("sys.argv", ["cartwin", *argv])
        with pytest.raises(SystemExit) as exc:
            cli.main()
        assert exc.value.code == 2, argv
    err = capsys.readouterr().err
    assert "NOPE" in err and "expected NAME=NUMBER" in err and "missing.csv" in err
    assert not (tmp_path / "o1").exists()


def test_nonmem_dataset_gives_the_same_fit_data_as_its_run(tmp_path):
    """``cartwin export nonmem`` of a run, read back by the fit, holds the run's observations."""
    import tomli_w

    from cartwin.fit.synthetic import DESIGN_POPULATION
    from cartwin.io.nonmem import export_nonmem
    from cartwin.protocol import load_protocol
    from cartwin.run import run_protocol
    path = tmp_path / "p.toml"
    path.write_bytes(tomli_w.dumps({
        "schema_version": 1, "study_id": "nm", "seed": 2, "follow_up_days": 120,
        "schedule": {"days": [-6, 0, 3, 7, 14, 28, 60, 120]}, "population": DESIGN_POPULATION,
        "arms": [{"id": "a", "product": "autologous_cd19", "dose": {"cells_per_kg": 1e6},
                  "lymphodepletion": "erlangen", "n": 3}]}).encode())
    run_protocol(load_protocol(path), tmp_path / "run", workers=1)
    export_nonmem(tmp_path / "run", tmp_path / "nm.csv", ["CART", "BCELL"])
    from_nonmem = load_fit_data(tmp_path / "nm.csv", DEFAULT_MODEL, subjects=tmp_path / "run" / "patients.parquet")
    from_run = load_fit_data(tmp_path / "run", DEFAULT_MODEL, tests=["BCELL", "CART"])
    assert from_nonmem.subjects == from_run.subjects and from_nonmem.tests == from_run.tests
    np.testing.assert_array_equal(from_nonmem.obs_day, from_run.obs_day)
    np.testing.assert_allclose(from_nonmem.obs_value, from_run.obs_value, rtol=1e-6)
