"""`cartwin run --report` scores each chunk in the worker that stored it; the report then only
aggregates, and the scores equal those of scoring the finished run."""

from __future__ import annotations

import shutil
import tomllib

import polars as pl
import tomli_w

from cartwin.protocol import load_protocol
from cartwin.endpoints.scoring import SCORE_TABLES, score_run
from cartwin.run import run_protocol
from tests.report.conftest import ROOT


def test_scores_written_during_the_run_are_reused_and_equal(tmp_path):
    protocol = tomllib.loads((ROOT / "examples" / "nct05988216.toml").read_text())
    path = tmp_path / "twin.toml"
    path.write_text(tomli_w.dumps(protocol))
    out = tmp_path / "run"
    run_protocol(load_protocol(path), out, n_per_arm=8, chunk_size=3, workers=2, score=True)
    # every part was scored in the run: a report rescoring finds nothing to do
    assert score_run(out, workers=1).rescored == 0
    # ... and the stored scores equal scoring the finished run afresh
    fresh = tmp_path / "fresh"
    shutil.copytree(out, fresh, ignore=shutil.ignore_patterns("report"))
    assert score_run(fresh, workers=1).rescored == 3
    for table in SCORE_TABLES:
        a = pl.read_parquet(out / "report" / "scores" / table / "*.parquet").sort(pl.all())
        b = pl.read_parquet(fresh / "report" / "scores" / table / "*.parquet").sort(pl.all())
        assert a.equals(b), table


def test_a_run_is_scored_with_the_baseline_days_its_protocol_chooses(tmp_path):
    """[scoring] baseline_day / lab_baseline_day reach every score of a run (as it streams and when
    a report rescores it), are recorded in run.json and the manifest, and give the same scores as
    the clinical layer called with those days."""
    import json

    from cartwin.clinical import observations_from_run, score_observations
    from cartwin.store import open_run

    protocol = tomllib.loads((ROOT / "examples" / "nct05988216.toml").read_text())
    runs = {}
    for name, scoring in (("default", None), ("chosen", {"baseline_day": 84.0, "lab_baseline_day": -3.0})):
        if scoring:
            protocol["scoring"] = scoring
        path = tmp_path / f"{name}.toml"
        path.write_text(tomli_w.dumps(protocol))
        runs[name] = tmp_path / name
        run_protocol(load_protocol(path), runs[name], n_per_arm=4, workers=1, score=True)
    recorded = {"baseline_last_day": 84.0, "lab_baseline_last_day": -3.0}
    assert json.loads((runs["chosen"] / "run.json").read_text())["scoring"] == recorded
    assert json.loads((runs["chosen"] / "manifest.json").read_text())["scoring"] == {**recorded, "notes": []}
    assert json.loads((runs["default"] / "manifest.json").read_text())["scoring"] == {
        "baseline_last_day": 0.0, "lab_baseline_last_day": -5.0, "notes": []}

    def scored(run):
        return pl.read_parquet(run / "report" / "scores" / "patients" / "*.parquet").sort("subject")

    chosen = scored(runs["chosen"])
    # the clinical layer called directly with the chosen days gives the run's scores
    run = open_run(runs["chosen"])
    obs = observations_from_run(run.read("observations"), run.read("patients"), "run")
    direct = score_observations(obs, baseline_last_day=84.0, lab_baseline_last_day=-3.0)["patients"].sort("subject")
    assert chosen["sledai2k_baseline"].to_list() == direct["sledai2k_baseline"].to_list()
    # every other door scores the run with its days too: `cartwin.score` and `cartwin score`
    import cartwin
    from cartwin.scoring import score as score_to_files
    front = cartwin.score(runs["chosen"])["patients"].sort("subject")
    assert front["sledai2k_baseline"].to_list() == direct["sledai2k_baseline"].to_list()
    score_to_files(runs["chosen"], tmp_path / "scored")
    files = pl.read_parquet(tmp_path / "scored" / "patients.parquet").sort("subject")
    assert files["sledai2k_baseline"].to_list() == direct["sledai2k_baseline"].to_list()
    # ... and the choice matters: the day-84 SLEDAI-2K (past the 30-day window of the pre-treatment visits) is not the pre-treatment one
    assert chosen["sledai2k_baseline"].to_list() != scored(runs["default"])["sledai2k_baseline"].to_list()
    # a report reuses the scores made with the run's days, says which days they are, and
    # rescoring afresh gives them again
    assert score_run(runs["chosen"], workers=1).rescored == 0
    html = cartwin.write_report(runs["chosen"]).read_text()
    assert 'id="scoring-baselines"' in html and "last baseline day 84" in html and "last day -3" in html
    fresh = tmp_path / "fresh"
    shutil.copytree(runs["chosen"], fresh, ignore=shutil.ignore_patterns("report"))
    assert score_run(fresh, workers=1).rescored > 0
    assert scored(fresh).equals(chosen)
    # scores made with other days are not reused: a copy whose run.json records the default days
    # (its stored scores kept) is scored again, and gives the default run's baselines
    other = tmp_path / "other"
    shutil.copytree(runs["chosen"], other)
    info = json.loads((other / "run.json").read_text())
    info["scoring"] = {"baseline_last_day": 0.0, "lab_baseline_last_day": -5.0}
    (other / "run.json").write_text(json.dumps(info))
    assert score_run(other, workers=1).rescored > 0
    assert scored(other)["sledai2k_baseline"].to_list() == scored(runs["default"])["sledai2k_baseline"].to_list()


def test_a_baseline_day_outside_a_year_is_refused_naming_the_field(tmp_path):
    from cartwin.protocol import ProtocolError

    protocol = tomllib.loads((ROOT / "examples" / "nct05988216.toml").read_text())
    protocol["scoring"] = {"baseline_day": 400}
    path = tmp_path / "bad.toml"
    path.write_text(tomli_w.dumps(protocol))
    try:
        load_protocol(path)
    except ProtocolError as exc:
        message = str(exc)
    else:
        raise AssertionError("a baseline day of 400 was accepted")
    assert "scoring" in message and "baseline_day" in message and "365" in message


def test_a_run_whose_outputs_leave_out_sledai_inputs_says_so_in_its_report(tmp_path):
    """The note `cartwin run` prints reaches the manifest and the report's study summary."""
    import json

    import cartwin

    protocol = tomllib.loads((ROOT / "examples" / "nct05988216.toml").read_text())
    protocol["outputs"] = ["CART", "BCELL", "NEUT", "PGA"]
    path = tmp_path / "few.toml"
    path.write_text(tomli_w.dumps(protocol))
    summary = run_protocol(load_protocol(path), tmp_path / "run", n_per_arm=2, workers=1)
    assert summary.notes and "SD_ARTH" in summary.notes[0]
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["scoring"]["notes"] == summary.notes
    html = cartwin.write_report(tmp_path / "run").read_text()
    assert 'class="warn scoring-note"' in html and "outputs leave out" in html
