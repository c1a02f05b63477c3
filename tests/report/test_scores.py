"""Part-by-part scoring: the same numbers as scoring the run whole, and a cache that knows when it is stale."""

from __future__ import annotations

import os
import shutil

import polars as pl
from polars.testing import assert_frame_equal

from cartwin.endpoints.scoring import SCORE_TABLES, score_run


def test_part_wise_scores_equal_whole_run_scores(reported_twin, clinical_scores):
    run_dir, _, _ = reported_twin
    scores = run_dir / "report" / "scores"
    for table, key in (("patients", ["subject"]), ("adverse_events", ["subject", "term"]),
                       ("visits", ["subject", "day"])):
        parts = pl.read_parquet(scores / table / "*.parquet").sort(key)
        whole = pl.read_parquet(clinical_scores / f"{table}.parquet").sort(key)
        shared = [c for c in whole.columns if c in parts.columns]
        assert len(shared) >= (5 if table == "visits" else whole.width), table
        assert_frame_equal(parts.select(shared), whole.select(shared))


def test_scores_are_reused_until_a_part_or_the_rules_change(reported_twin, tmp_path, monkeypatch):
    run_dir, _, _ = reported_twin
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    parts = sorted((copy / "observations.parquet").glob("*.parquet"))
    kept = score_run(copy, workers=1)  # copytree keeps sizes and modification times: so do the scores
    assert (kept.parts, kept.rescored) == (len(parts), 0)

    stat = parts[0].stat()
    os.utime(parts[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert score_run(copy, workers=1).rescored == 1

    monkeypatch.setattr("cartwin.endpoints.scoring.clinical_fingerprint", lambda: "other rules")
    assert score_run(copy, workers=1).rescored == len(parts)
    for table in SCORE_TABLES:
        assert sorted(p.name for p in (copy / "report" / "scores" / table).glob("*.parquet")) == [p.name for p in parts]
