"""The scoring fast paths (chunks of subjects, Enum subjects, the scatter pivot) give the same tables
as scoring the whole frame at once with plain Polars calls."""

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cartwin.io.observations import read_observations
from cartwin.clinical import pipeline
from cartwin.clinical._frames import pivot_first

EXAMPLE = Path(__file__).parents[2] / "examples" / "observations_example.csv"


def _frame(dtype):
    rng = np.random.default_rng(3)
    rows = [(s, d, t) for s in ("b", "a", "c") for d in (-1.0, 0.0, 2.5, 7.0) for t in ("X", "Y", "Z") if rng.random() < 0.8]
    values = rng.normal(size=len(rows))
    frame = pl.DataFrame({"subject": [r[0] for r in rows], "day": [r[1] for r in rows], "test": [r[2] for r in rows],
                          "value": values})
    frame = frame.with_columns(pl.when(pl.col("value") > 1).then(None).otherwise(pl.col("value")).alias("value"))
    if dtype == pl.Boolean:
        frame = frame.with_columns(pl.col("value") > 0)
    return frame.with_columns(pl.col("subject").cast(pl.Enum(["a", "b", "c"])))


@pytest.mark.parametrize("dtype", [pl.Float64, pl.Boolean])
def test_pivot_first_matches_pivot(dtype):
    frame = _frame(dtype)
    expected = frame.pivot(on="test", index=["subject", "day"], values="value", aggregate_function="first").sort("subject", "day")
    assert pivot_first(frame, "test", "value").equals(expected)


def test_pivot_first_with_repeated_keys_is_the_pivot():
    frame = _frame(pl.Float64)
    doubled = pl.concat([frame, frame.with_columns(pl.col("value") + 1)])
    expected = doubled.pivot(on="test", index=["subject", "day"], values="value", aggregate_function="first")
    assert pivot_first(doubled, "test", "value").equals(expected)


@pytest.mark.parametrize("chunk_rows", [1, 40])
def test_chunked_scoring_matches_whole_frame(monkeypatch, chunk_rows):
    obs = read_observations(EXAMPLE)
    whole = pipeline.score_observations(obs)
    monkeypatch.setattr(pipeline, "CHUNK_ROWS", chunk_rows)
    chunked = pipeline.score_observations(obs)
    assert list(chunked) == list(whole)
    for name in whole:
        if name == "flags":  # the per-test "default limits used" rows come from a group_by: any order
            assert chunked[name].sort(pl.all(), nulls_last=True).equals(whole[name].sort(pl.all(), nulls_last=True))
        else:
            assert chunked[name].equals(whole[name]), name


def test_scoring_without_flags_gives_the_same_tables():
    """The in-stream scoring (``flags=False``) skips the flag table and the sort of the lab grades:
    every other table is the same, and the lab grades are the same rows."""
    obs = read_observations(EXAMPLE)
    whole = pipeline.score_observations(obs)
    lean = pipeline.score_observations(obs, flags=False)
    assert "flags" not in lean and whole["flags"].height  # the example has flags to skip
    for name in ("visits", "patients", "adverse_events"):
        assert lean[name].equals(whole[name]), name
    columns = whole["lab_grades"].columns
    assert lean["lab_grades"].select(columns).sort(pl.all(), nulls_last=True).equals(
        whole["lab_grades"].sort(pl.all(), nulls_last=True))


def test_streamed_scoring_codes_subjects_once_and_gives_the_same_tables_and_endpoints():
    """score_and_compute without flags (as a run streams) codes the subjects once for the clinical
    layer and the endpoints: the same tables and endpoints, with text subjects, as the scoring with
    flags; a run's withdrawal columns join as before, a patient without observations among them."""
    from cartwin.endpoints.scoring import score_and_compute

    obs = read_observations(EXAMPLE)
    subjects = obs.frame["subject"].unique().sort().to_list()
    withdrawal = pl.DataFrame({"subject": [subjects[0], "no-observations"], "withdrawn_day": [20.0, 3.0]})
    whole, whole_endpoints = score_and_compute(obs, patient_columns=withdrawal)
    lean, lean_endpoints = score_and_compute(obs, flags=False, patient_columns=withdrawal)
    for name in ("visits", "patients", "adverse_events"):
        assert lean[name].schema["subject"] == pl.String and lean[name].equals(whole[name]), name
    assert lean_endpoints.equals(whole_endpoints) and lean_endpoints.schema["subject"] == pl.String
    assert lean["patients"].filter(pl.col("subject") == subjects[0])["withdrawn_day"].to_list() == [20.0]


def test_surrounding_whitespace_is_stripped_and_clean_text_kept(tmp_path):
    from cartwin.clinical.observations import validate

    raw = pl.DataFrame({"subject": [" S1", "S1 ", "S2"], "day": ["0", "1", "0"], "test": ["NEUT ", "NEUT", "NEUT"],
                        "value": ["1.5", "2", "3"], "unit": ["10^9/L", " 10^9/L", "10^9/L"]})
    frame, _ = validate(raw, "ws.csv")
    assert frame["subject"].to_list() == ["S1", "S1", "S2"]
    assert frame["test"].to_list() == ["NEUT"] * 3 and frame["unit"].to_list() == ["10^9/L"] * 3
    clean, _ = validate(raw.with_columns(pl.col(c).str.strip_chars() for c in ("subject", "test", "unit")), "ws.csv")
    assert clean.equals(frame)
