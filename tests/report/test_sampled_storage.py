"""`[store] observations_per_arm`: a large run keeps the observations of the first patients of each
arm only, scores every patient as it streams, and its report and endpoints equal those of a run that
stores everything."""

from __future__ import annotations

import tomllib

import polars as pl
import tomli_w

from cartwin.endpoints.scoring import score_run
from cartwin.protocol import load_protocol
from cartwin.report import write_report
from cartwin.run import run_protocol
from cartwin.store.run_directory import open_run
from tests.report.conftest import ROOT


def _run(tmp_path, name, store, chunk_size=3):
    protocol = tomllib.loads((ROOT / "examples" / "nct05988216.toml").read_text())
    protocol["store"] = {"observations_per_arm": store}
    path = tmp_path / f"{name}.toml"
    path.write_text(tomli_w.dumps(protocol))
    out = tmp_path / name
    run_protocol(load_protocol(path), out, n_per_arm=5, chunk_size=chunk_size, workers=1)
    return out


def _scores(out, table):
    return pl.read_parquet(out / "report" / "scores" / table / "*.parquet").sort(pl.all())


def test_sampled_run_stores_the_first_patients_and_scores_everyone(tmp_path):
    # other chunks than the full run's: the in-stream scores must not depend on the chunking
    sampled = _run(tmp_path, "sampled", 2, chunk_size=2)
    full = _run(tmp_path, "full", "all")
    run = open_run(sampled)
    assert run.manifest()["store"] == {"observations_per_arm": 2, "sampled": True}
    patients = run.patients()
    stored = set(patients.filter(pl.col("index") < 2)["subject"])
    assert set(run.read("observations")["subject"].unique()) == stored
    events = run.events()
    assert set(events.filter(pl.col("EVID") == 0)["ID"].unique()) == stored
    assert set(events.filter(pl.col("EVID") == 1)["ID"].unique()) == set(patients["subject"])
    # the stored observations are those of the full run, and every patient was scored as the run
    # streamed, with the same numbers (bit for bit) as scoring the full run's stored observations
    # afterwards
    full_obs = open_run(full).read("observations").filter(pl.col("subject").is_in(list(stored)))
    assert run.read("observations").sort(pl.all()).equals(full_obs.sort(pl.all()))
    assert score_run(full, workers=1).rescored > 0
    assert score_run(sampled, workers=1).rescored == 0
    for table in ("patients", "adverse_events"):
        assert _scores(sampled, table).equals(_scores(full, table)), table
    visits = _scores(full, "visits").filter(pl.col("subject").is_in(list(stored)))
    assert _scores(sampled, "visits").equals(visits)
    html = write_report(sampled, workers=1)
    assert html.exists()


def test_arms_within_the_limit_store_everything(tmp_path):
    out = _run(tmp_path, "small", 5)
    run = open_run(out)
    assert run.manifest()["store"] == {"observations_per_arm": 5, "sampled": False}
    assert run.read("observations")["subject"].n_unique() == run.patients().height


def test_stale_scores_of_a_sampled_run_are_kept_when_it_cannot_be_rescored(tmp_path):
    import json

    import pytest

    from cartwin.store.run_directory import RunDirectoryError

    out = _run(tmp_path, "sampled", 2)
    fingerprint = out / "report" / "scores" / "fingerprint.json"
    stored = json.loads(fingerprint.read_text())
    # as after an upgrade of the clinical layer: the stored scores no longer match its fingerprint
    fingerprint.write_text(json.dumps({**stored, "clinical": "0" * 16}))
    before = {t: sorted(p.name for p in (out / "report" / "scores" / t).glob("*.parquet"))
              for t in ("patients", "adverse_events", "visits")}
    assert all(before.values())
    with pytest.raises(RunDirectoryError, match="observations_per_arm"):
        score_run(out, workers=1)
    # the only record of the unstored patients is not deleted by the refusal
    after = {t: sorted(p.name for p in (out / "report" / "scores" / t).glob("*.parquet")) for t in before}
    assert after == before


def test_a_report_over_per_patient_tables_read_into_memory_equals_one_over_the_parts(tmp_path, monkeypatch):
    """A run of many parts has its per-patient tables read once into memory (report.aggregate);
    the report's numbers are those of the Parquet views a small run uses."""
    from cartwin.report import aggregate

    out = _run(tmp_path, "sampled", 2, chunk_size=2)
    write_report(out, workers=1)
    over_parts = (out / "report" / "endpoints.json").read_text()
    monkeypatch.setattr(aggregate, "MATERIALISE_PARTS", 0)
    read = []
    original = aggregate._read_parts
    monkeypatch.setattr(aggregate, "_read_parts", lambda glob: read.append(glob) or original(glob))
    write_report(out, workers=1)
    assert len(read) == len(aggregate.PER_PATIENT)  # the in-memory path was taken
    assert (out / "report" / "endpoints.json").read_text() == over_parts
