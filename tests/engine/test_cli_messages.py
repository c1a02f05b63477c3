"""The CLI's own messages say what is wrong: a missing path is called missing, and commands that
grade lupus read-outs say they are not available for runs of imported SBML models."""

from __future__ import annotations

import sys

import pytest

from cartwin import cli
from cartwin.protocol import load_protocol
from cartwin.run import run_protocol
from tests.conftest import write_protocol
from tests.engine.test_sbml_run import kimmel_protocol


def call(monkeypatch, capsys, *args) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["cartwin", *map(str, args)])
    with pytest.raises(SystemExit) as exc:
        cli.main()
        raise SystemExit(0)
    captured = capsys.readouterr()
    return exc.value.code or 0, captured.err + captured.out


def test_show_of_a_missing_path_says_it_does_not_exist(tmp_path, monkeypatch, capsys):
    code, msg = call(monkeypatch, capsys, "show", tmp_path / "nonexistent")
    assert code == 2 and "no such directory" in msg and "--resume" not in msg


def test_report_and_score_say_they_do_not_apply_to_sbml_runs(tmp_path, monkeypatch, capsys):
    path = write_protocol(tmp_path / "k.toml", kimmel_protocol(arms=[{"id": "k", "n": 1}]))
    run_protocol(load_protocol(path), tmp_path / "run", workers=1)
    for command in (["report", tmp_path / "run"], ["score", tmp_path / "run", "--out", tmp_path / "s"]):
        code, msg = call(monkeypatch, capsys, *command)
        assert code == 2 and "not available for SBML runs" in msg, msg
        assert "Traceback" not in msg
    assert not (tmp_path / "s").exists()
    assert call(monkeypatch, capsys, "show", tmp_path / "run")[0] == 0
