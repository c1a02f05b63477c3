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
