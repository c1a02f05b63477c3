"""`cartwin run` with an SBML model in place of the default one (Kimmel 2021, BIOMD0000001041)."""

import json

import duckdb
import pytest

from cartwin.protocol import ProtocolError, load_protocol
from cartwin.run import run_protocol
from tests.conftest import ROOT, write_protocol

KIMMEL = ROOT / "tests" / "data" / "sbml" / "kimmel2021_BIOMD0000001041_reencoded.xml"


def kimmel_protocol(**extra):
    data = {"schema_version": 1, "study_id": "K", "seed": 3, "model": f"sbml:{KIMMEL}",
            "follow_up_days": 90, "schedule": {"days": [0, 7, 14, 28, 90]},
            "solver": {"backend": "scipy-lsoda", "rtol": 1e-8, "atol": 1e-10},
            "arms": [{"id": "k", "n": 3}]}
    data.update(extra)
    return data


def test_sbml_model_runs_through_the_engine(tmp_path):
    """Without variability every patient is the published typical course: CAR-T 30.1/uL at day 7,
    then 9.0 (d14), 2.5 (d28), 0.34 (d90); normal T 109 (d7) (an independent re-simulation of the BioModels file)."""
    path = write_protocol(tmp_path / "k.toml", kimmel_protocol())
    summary = run_protocol(load_protocol(path), tmp_path / "run", workers=1)
    assert summary.n_total == 3 and summary.n_failed == 0
    con = duckdb.connect(str(tmp_path / "run" / "results.duckdb"), read_only=True)
    cart = dict(con.execute("SELECT day, max(value) FROM observations WHERE test = 'CAR_T_cells' "
                            "GROUP BY day").fetchall())
    assert cart[7.0] == pytest.approx(30.1, rel=0.01)
    assert cart[14.0] == pytest.approx(9.0, rel=0.02)
    assert cart[28.0] == pytest.approx(2.5, rel=0.03)
    assert cart[90.0] == pytest.approx(0.34, rel=0.05)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["model"]["source_sha256"] and manifest["model"]["source"].endswith(".xml")
    # the run summary (`cartwin show`) reads a run without products or lupus read-outs
    from cartwin.store import open_run
    from cartwin.store.summary import arm_summary
    (row,) = arm_summary(open_run(tmp_path / "run"))
    assert row["n"] == 3 and row["failed"] == 0 and row["product"] == manifest["model"]["name"]
    # the model's own read-outs are summarised (peak and last value), the patients being identical
    assert row["CAR_T_cells peak"].startswith("30.1 [30.1-30.1]")
    assert row["CAR_T_cells last"] == "0.338 [0.338-0.338]"  # day 90: 0.34 in the check above


def test_variability_on_sbml_parameters_spreads_patients(tmp_path):
    path = write_protocol(tmp_path / "k.toml", kimmel_protocol(model_variability={"rho_C": 0.4}))
    run_protocol(load_protocol(path), tmp_path / "run", workers=1)
    con = duckdb.connect(str(tmp_path / "run" / "results.duckdb"), read_only=True)
    values = [v for (v,) in con.execute("SELECT value FROM observations WHERE test = 'CAR_T_cells' "
                                        "AND day = 90").fetchall()]
    assert len(set(round(v, 9) for v in values)) == 3


def test_sbml_protocol_errors(tmp_path):
    bad = kimmel_protocol(model_variability={"not_a_parameter": 0.3})
    path = write_protocol(tmp_path / "k.toml", bad)
    with pytest.raises(ProtocolError, match="unknown parameters \\['not_a_parameter'\\]"):
        run_protocol(load_protocol(path), tmp_path / "run", workers=1)
    assert not (tmp_path / "run").exists()
    bad = kimmel_protocol()
    bad["arms"][0]["product"] = "tyu19"
    path = write_protocol(tmp_path / "k2.toml", bad)
    with pytest.raises(ProtocolError, match="do not apply to an SBML model"):
        load_protocol(path)
    bad = kimmel_protocol(model="sbml:missing.xml")
    with pytest.raises(ProtocolError, match="SBML file .*missing.xml not found"):
        load_protocol(write_protocol(tmp_path / "k3.toml", bad))


def test_scoring_an_sbml_run_is_refused_before_anything_is_written(tmp_path):
    """`cartwin run --report` of an imported model: its read-outs are not the lupus read-outs the
    clinical scores grade, so the run is refused up front (it used to stop at its first scored
    chunk, leaving an unfinished run directory)."""
    path = write_protocol(tmp_path / "k.toml", kimmel_protocol())
    with pytest.raises(ProtocolError, match="imported SBML model does not give; run without --report"):
        run_protocol(load_protocol(path), tmp_path / "run", workers=1, score=True)
    assert not (tmp_path / "run").exists()


def test_an_sbml_run_beyond_the_stored_patients_keeps_the_first_and_scores_none(tmp_path):
    """More patients per arm than [store] observations_per_arm: the run stores the first ones'
    observations and drops the rest (the default model's run would score them as it streams;
    an imported model's read-outs have no clinical scores), and completes."""
    path = write_protocol(tmp_path / "k.toml", kimmel_protocol(store={"observations_per_arm": 2}))
    summary = run_protocol(load_protocol(path), tmp_path / "run", workers=1)
    assert summary.n_total == 3 and summary.n_failed == 0
    con = duckdb.connect(str(tmp_path / "run" / "results.duckdb"), read_only=True)
    assert con.execute("SELECT count(DISTINCT subject) FROM observations").fetchone()[0] == 2
    assert con.execute("SELECT count(*) FROM patients").fetchone()[0] == 3
    assert not (tmp_path / "run" / "report").exists()
    from cartwin.store import open_run
    from cartwin.store.summary import run_header
    assert "cartwin report" not in run_header(open_run(tmp_path / "run"))
