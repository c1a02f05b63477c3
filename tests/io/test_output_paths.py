"""Safe by default: no command writes where the user did not ask it to. An output that is a
dangling symbolic link, an existing file where a directory is wanted, a user's own file of the
same name or a directory of the user's own files is refused with exit code 2 and left untouched;
a command may replace only its own earlier output. Outputs follow the umask."""

from __future__ import annotations

import os
import stat

import pytest

from tests.conftest import call_cli as call




def test_export_sdtm_replaces_its_own_output_but_not_a_users_directory(tmp_path, run_dir, monkeypatch, capsys):
    out = tmp_path / "sdtm"
    assert call(monkeypatch, capsys, "export", "sdtm", run_dir, "--out", out)[0] == 0
    code, msg = call(monkeypatch, capsys, "export", "sdtm", run_dir, "--out", out)
    assert code == 0, msg  # its own earlier export (define.json) is replaced
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "dm.csv").write_text("my,own\n1,2\n")
    code, msg = call(monkeypatch, capsys, "export", "sdtm", run_dir, "--out", mine)
    assert code == 2 and "define.json" in msg and str(mine) in msg
    assert sorted(os.listdir(mine)) == ["dm.csv"] and (mine / "dm.csv").read_text() == "my,own\n1,2\n"


def test_export_nonmem_replaces_its_own_output_but_not_a_users_file(tmp_path, run_dir, monkeypatch, capsys):
    out = tmp_path / "nm.csv"
    assert call(monkeypatch, capsys, "export", "nonmem", run_dir, "--out", out)[0] == 0
    assert call(monkeypatch, capsys, "export", "nonmem", run_dir, "--out", out)[0] == 0
    users = tmp_path / "data.csv"
    users.write_text("ID,TIME\n1,0\n")
    code, msg = call(monkeypatch, capsys, "export", "nonmem", run_dir, "--out", users)
    assert code == 2 and "did not write" in msg
    assert users.read_text() == "ID,TIME\n1,0\n"


def test_export_sbml_replaces_its_own_output_but_not_a_users_file(tmp_path, monkeypatch, capsys):
    """An earlier SBML export (its notes say cartwin exported it) is replaced; any other file of
    that name is refused and left as it was (it used to be overwritten)."""
    out = tmp_path / "model.xml"
    assert call(monkeypatch, capsys, "export", "sbml", "--out", out)[0] == 0
    code, msg = call(monkeypatch, capsys, "export", "sbml", "--cells-per-kg", "2e6", "--out", out)
    assert code == 0, msg
    assert "CAR-T dose: 2e+06 cells/kg" in out.read_text()
    users = tmp_path / "notes.md"
    users.write_text("# my notes\n")
    code, msg = call(monkeypatch, capsys, "export", "sbml", "--out", users)
    assert code == 2 and "not an earlier cartwin SBML export" in msg and str(users) in msg
    assert users.read_text() == "# my notes\n"


@pytest.mark.parametrize("command", [
    ["run", "PROTOCOL"], ["score", "RUN"], ["export", "sdtm", "RUN"], ["export", "nonmem", "RUN"],
    ["export", "sbml"], ["fit", "RUN", "--estimate", "RHO"], ["sensitivity", "PROTOCOL"]])
def test_out_on_a_dangling_link_is_refused_and_the_link_kept(tmp_path, run_dir, monkeypatch, capsys, command):
    link = tmp_path / "dangling"
    link.symlink_to(tmp_path / "nowhere")
    args = [str(run_dir / "protocol.toml") if a == "PROTOCOL" else str(run_dir) if a == "RUN" else a
            for a in command]
    code, msg = call(monkeypatch, capsys, *args, "--out", link)
    assert code == 2, msg
    assert "symbolic link" in msg and "Traceback" not in msg
    assert link.is_symlink() and not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("command", [["run", "PROTOCOL"], ["score", "RUN"], ["export", "sdtm", "RUN"],
                                     ["fit", "RUN", "--estimate", "RHO"], ["sensitivity", "PROTOCOL"]])
def test_out_on_an_existing_file_is_refused(tmp_path, run_dir, monkeypatch, capsys, command):
    existing = tmp_path / "notes.txt"
    existing.write_text("mine")
    args = [str(run_dir / "protocol.toml") if a == "PROTOCOL" else str(run_dir) if a == "RUN" else a
            for a in command]
    code, msg = call(monkeypatch, capsys, *args, "--out", existing)
    assert code == 2, msg
    assert "not a directory" in msg and existing.read_text() == "mine"


def test_outputs_follow_the_umask(tmp_path, run_dir, monkeypatch, capsys):
    old = os.umask(0o022)
    try:
        assert call(monkeypatch, capsys, "score", run_dir, "--out", tmp_path / "s")[0] == 0
        assert call(monkeypatch, capsys, "export", "nonmem", run_dir, "--out", tmp_path / "nm.csv")[0] == 0
        assert call(monkeypatch, capsys, "export", "sbml", "--out", tmp_path / "model.xml")[0] == 0
    finally:
        os.umask(old)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files
    modes = {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode) for p in files}
    assert all(m == 0o644 for m in modes.values()), modes
    # the shared run directory was written under the test's umask too
    run_modes = {stat.S_IMODE(p.stat().st_mode) for p in run_dir.rglob("*") if p.is_file()}
    assert run_modes == {0o666 & ~old}, run_modes


def test_exports_make_a_new_folder_for_their_file_as_other_outputs_do(tmp_path, run_dir, monkeypatch, capsys):
    """`export nonmem` and `export sbml` write into a folder that does not exist yet (they used to
    refuse it while `run`, `report` and `export sdtm` made theirs); a parent that is a file is
    refused with exit code 2, naming it."""
    code, msg = call(monkeypatch, capsys, "export", "nonmem", run_dir, "--out", tmp_path / "new" / "nm" / "data.csv")
    assert code == 0, msg
    assert (tmp_path / "new" / "nm" / "data.csv").is_file() and (tmp_path / "new" / "nm" / "data.dictionary.json").is_file()
    code, msg = call(monkeypatch, capsys, "export", "sbml", "--out", tmp_path / "models" / "m.xml")
    assert code == 0, msg
    assert "<sbml" in (tmp_path / "models" / "m.xml").read_text()
    blocker = tmp_path / "plain"
    blocker.write_text("a file\n")
    for command in (["export", "nonmem", run_dir], ["export", "sbml"]):
        code, msg = call(monkeypatch, capsys, *command, "--out", blocker / "x.out")
        assert code == 2 and str(blocker) in msg and "not a folder" in msg, msg
        assert blocker.read_text() == "a file\n"
