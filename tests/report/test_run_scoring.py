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
