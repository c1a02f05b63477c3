"""`cartwin score DATA --out DIR` writes only into a new or empty directory: a user's files and run
directories are refused with exit code 2 before anything is read, scored or written."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import polars as pl
import pytest

from cartwin import cli

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "observations_example.csv"


def _score(capsys, monkeypatch, *args) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["cartwin", "score", *map(str, args)])
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_score_into_a_new_or_empty_directory(tmp_path, capsys, monkeypatch):
    code, text = _score(capsys, monkeypatch, EXAMPLE, "--out", tmp_path / "new" / "scores")
    assert code == 0, text
    assert "Scored 2 subject(s)" in text
    assert pl.read_parquet(tmp_path / "new" / "scores" / "patients.parquet").height == 2
    (tmp_path / "empty").mkdir()
    code, text = _score(capsys, monkeypatch, EXAMPLE, "--out", tmp_path / "empty")
    assert code == 0, text
    assert sorted(os.listdir(tmp_path / "empty")) == ["adverse_events.parquet", "endpoints.parquet", "flags.parquet",
                                                      "lab_grades.parquet", "patients.parquet", "results.duckdb",
                                                      "rules.parquet", "visits.parquet"]
    rules = pl.read_parquet(tmp_path / "empty" / "rules.parquet")
    named = dict(zip(rules["instrument"], rules["name"] + " | " + rules["source"]))
    # the output names the standard and version of every instrument it applied
    assert "Gladman" in named["SLEDAI-2K"] and "2002" in named["SLEDAI-2K"]
    assert "SELENA" in named["SELENA-SLEDAI"] and "SRI-4" in named["SRI"]
    assert "2021" in named["DORIS"] and "Franklyn" in named["LLDAS"]
    assert rules["rule_file_sha256"].str.len_chars().to_list() == [64] * rules.height


def test_score_refuses_a_directory_holding_a_users_files(tmp_path, capsys, monkeypatch):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "patients.parquet").write_bytes(b"the user's own table")
    (out / "results.duckdb").write_bytes(b"the user's own database")
    before = _listing(out)
    code, text = _score(capsys, monkeypatch, EXAMPLE, "--out", out)
    assert code == 2 and "holds other files" in text and str(out) in text
    assert "Traceback" not in text
    assert _listing(out) == before


def test_score_refuses_a_run_directory(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    (run / "patients.parquet").mkdir(parents=True)
    (run / "run.json").write_text("{}")
    before = _listing(run)
    code, text = _score(capsys, monkeypatch, EXAMPLE, "--out", run)
    assert code == 2 and "is a cartwin run directory" in text
    assert _listing(run) == before


@pytest.mark.parametrize("kind", ["file", "dangling symlink"])
def test_score_refuses_an_out_that_is_not_a_directory(tmp_path, capsys, monkeypatch, kind):
    out = tmp_path / "out"
    if kind == "file":
        out.write_text("notes")
    else:
        out.symlink_to(tmp_path / "gone")
    code, text = _score(capsys, monkeypatch, EXAMPLE, "--out", out)
    assert code == 2, text
    assert ("not a directory" if kind == "file" else "symbolic link to nothing") in text
    assert (out.read_text() == "notes") if kind == "file" else not out.exists()


def test_commands_on_the_wrong_kind_of_directory_say_what_it_is(tmp_path):
    """A `cartwin score` output given where a run is needed, or given again as --out, is named
    for what it is, with advice that fits (no `--resume` for something that is not a run)."""
    import polars as pl
    import pytest

    from cartwin.store.run_directory import RunDirectory, RunDirectoryError
    from cartwin.store.scored import ScoredDirectory

    scored = ScoredDirectory(tmp_path / "scored")
    scored.write({"visits": pl.DataFrame({"subject": ["S1"], "day": [0.0]})})
    with pytest.raises(RunDirectoryError) as exc:
        RunDirectory(scored.path).manifest()
    assert "output of `cartwin score`" in str(exc.value) and "--resume" not in str(exc.value)
    with pytest.raises(RunDirectoryError) as exc:
        ScoredDirectory(scored.path).check_new()
    assert "earlier `cartwin score` output" in str(exc.value)
    # a run stopped before its manifest is told to resume
    run = RunDirectory(tmp_path / "run")
    run.start({"n_per_arm": {}, "chunk_size": 1, "seed": 1}, "", "0" * 64, {})
    with pytest.raises(RunDirectoryError) as exc:
        run.manifest()
    assert "--resume" in str(exc.value) and "has not finished" in str(exc.value)


def test_show_on_a_score_output_says_what_it_is(tmp_path, monkeypatch, capsys):
    """`cartwin show` given a `cartwin score` output names it, without advice to resume a run."""
    import polars as pl

    from cartwin.store.scored import ScoredDirectory
    from tests.conftest import call_cli

    ScoredDirectory(tmp_path / "scored").write({"visits": pl.DataFrame({"subject": ["S1"], "day": [0.0]})})
    code, text = call_cli(monkeypatch, capsys, "show", tmp_path / "scored")
    text = " ".join(text.split())
    assert code == 2 and "output of `cartwin score`" in text and "--resume" not in text
