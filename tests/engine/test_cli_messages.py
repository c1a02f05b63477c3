"""The CLI's own messages say what is wrong: a missing path is called missing, and commands that
grade lupus read-outs say they are not available for runs of imported SBML models."""

from __future__ import annotations


import pytest

from cartwin import cli
from tests.conftest import call_cli as call
from cartwin.protocol import load_protocol
from cartwin.run import run_protocol
from tests.conftest import write_protocol
from tests.engine.test_sbml_run import kimmel_protocol




def test_show_of_a_missing_path_says_it_does_not_exist(tmp_path, monkeypatch, capsys):
    code, msg = call(monkeypatch, capsys, "show", tmp_path / "nonexistent")
    assert code == 2 and "no such directory" in msg and "--resume" not in msg


def test_report_score_and_sdtm_export_say_they_do_not_apply_to_sbml_runs(tmp_path, monkeypatch, capsys):
    path = write_protocol(tmp_path / "k.toml", kimmel_protocol(arms=[{"id": "k", "n": 1}]))
    run_protocol(load_protocol(path), tmp_path / "run", workers=1)
    for command in (["report", tmp_path / "run"], ["score", tmp_path / "run", "--out", tmp_path / "s"],
                    ["export", "sdtm", tmp_path / "run", "--out", tmp_path / "sdtm"]):
        code, msg = call(monkeypatch, capsys, *command)
        assert code == 2 and "not available for SBML runs" in msg, msg
        assert "Traceback" not in msg
    assert not (tmp_path / "s").exists()
    assert call(monkeypatch, capsys, "show", tmp_path / "run")[0] == 0


def test_show_keeps_protocol_order_and_whole_arm_names(tmp_path, monkeypatch, capsys):
    from rich.console import Console
    from tests.conftest import BASE_PROTOCOL
    import copy
    protocol = copy.deepcopy(BASE_PROTOCOL)
    protocol["follow_up_days"] = 14
    protocol["schedule"] = {"days": [0, 7, 14]}
    names = [f"zeta_high_dose_arm_{k}" for k in range(9, 0, -1)]  # protocol order is reverse-alphabetical
    protocol["arms"] = [{"id": name, "product": "autologous_cd19", "dose": {"cells_per_kg": 1e6},
                         "lymphodepletion": "erlangen", "n": 1} for name in names]
    run_protocol(load_protocol(write_protocol(tmp_path / "p.toml", protocol)), tmp_path / "run", workers=1)
    from cartwin.store.run_directory import RunDirectory
    from cartwin.store.summary import arm_summary
    values = {str(v) for row in arm_summary(RunDirectory(tmp_path / "run")) for v in row.values()}
    for width in (100, 80):  # 80: a terminal's usual width, and rich's when the output is piped
        monkeypatch.setattr(cli, "out", Console(width=width, soft_wrap=False, force_terminal=False))
        code, text = call(monkeypatch, capsys, "show", tmp_path / "run")
        assert code == 0
        positions = [text.find(name) for name in names]
        assert all(p >= 0 for p in positions), text
        assert positions == sorted(positions), text
        # every name and value whole on a line of the table (one table squeezed to the width
        # folded each cell to a character or two per line)
        cells = {c.strip() for line in text.splitlines() for c in line.replace("┃", "│").split("│")}
        assert values <= cells, (values - cells, text)
        assert max(len(line) for line in text.splitlines() if "│" in line) <= width


@pytest.mark.parametrize("command", [[], ["run"], ["score"], ["export", "sdtm"], ["export", "nonmem"], ["fit"]])
def test_help_shows_flags_without_a_type_and_keeps_bracketed_text(monkeypatch, capsys, command):
    code, text = call(monkeypatch, capsys, *command, "--help")
    assert code == 0 and "Usage:" in text
    assert "<bool>" not in text
    if command == ["run"]:
        assert "cartwin[cluster]" in text  # not swallowed as markup


def test_progress_knows_its_total_before_the_first_chunk_ends(tmp_path, protocol_dict):
    protocol_dict["arms"][0]["n"], protocol_dict["arms"][1]["n"] = 2, 1
    calls = []
    run_protocol(load_protocol(write_protocol(tmp_path / "p.toml", protocol_dict)), tmp_path / "run",
                 workers=1, chunk_size=1, progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, 3) and calls[-1] == (3, 3)


@pytest.mark.parametrize("command", ["validate", "run"])
def test_validate_and_run_list_schema_errors_with_the_cross_field_checks(tmp_path, monkeypatch, capsys, protocol_dict,
                                                                        command):
    """Schema errors, the schedule against the follow-up, a plausibility check and a missing
    cohort file in one message, each naming its field, exit 2 and nothing written."""
    protocol_dict["seed"] = "seven"
    protocol_dict["schedule"] = {"days": [0, 7, 150]}
    protocol_dict["arms"][1]["dose"] = {"cells_per_kg": 1e12}
    protocol_dict["population"] = {"cohort": "missing.csv"}
    for arm in protocol_dict["arms"]:
        arm["n"] = 2
    path = write_protocol(tmp_path / "trial.toml", protocol_dict)
    args = [command, path] + (["--out", tmp_path / "run"] if command == "run" else [])
    code, msg = call(monkeypatch, capsys, *args)
    assert code == 2, msg
    assert "seed: Input should be a valid integer (given 'seven', text)" in msg
    assert "schedule: days [150.0] lie after follow_up_days = 120; extend the follow-up or drop those days" in msg
    assert "arms[1] (tyu19).dose.cells_per_kg" in msg
    assert "population.cohort:" in msg and "missing.csv" in msg
    assert "Traceback" not in msg
    assert not (tmp_path / "run").exists()


def test_outputs_that_leave_out_what_sledai_reads_are_noted(tmp_path, monkeypatch, capsys):
    """A protocol whose outputs drop the SLEDAI descriptors validates, with a note that SLEDAI-based
    endpoints will not be evaluable; keeping every read-out gives no note."""
    import tomllib

    import tomli_w

    from tests.conftest import ROOT, call_cli

    protocol = tomllib.loads((ROOT / "benchmarks" / "million.toml").read_text())
    path = tmp_path / "few_outputs.toml"
    path.write_text(tomli_w.dumps(protocol))
    code, text = call_cli(monkeypatch, capsys, "validate", path)
    text = " ".join(text.split())  # the console wraps long lines
    assert code == 0 and "note" in text and "SD_ARTH" in text and "(remission, LLDAS, DORIS;" in text
    del protocol["outputs"]
    path.write_text(tomli_w.dumps(protocol))
    code, text = call_cli(monkeypatch, capsys, "validate", path)
    assert code == 0 and "note" not in text


def test_names_with_brackets_are_printed_as_written(tmp_path, monkeypatch, capsys):
    """A file name such as trial[v2].toml was printed as 'trial.toml': the console read '[v2]' as
    a style tag."""
    import shutil
    from tests.conftest import ROOT
    path = tmp_path / "trial[v2].toml"
    shutil.copy(ROOT / "examples" / "nct05988216.toml", path)
    code, text = call(monkeypatch, capsys, "validate", path)
    assert code == 0 and "trial[v2].toml" in text, text
    code, text = call(monkeypatch, capsys, "design", ROOT / "examples" / "design_least_ld.toml", "--check")
    assert code == 0 and "ok " in text and "[green]" not in text


@pytest.mark.parametrize("error, shown, code", [
    (PermissionError(13, "Permission denied", "/data/out/.visits.parquet.cartwin-k2j4.tmp"),
     "error: /data/out/visits.parquet: Permission denied; check its permissions", 2),
    (OSError(30, "Read-only file system", "/mnt/ro/scores"), "error: /mnt/ro/scores: Read-only file system", 2),
    (OSError(28, "No space left on device", "/data/out/x"), "failed: OSError: [Errno 28]", 1),  # not the input's fault
    (PermissionError(13, "Permission denied", "/data/out/.a.cartwin-b.cartwin-k2j4.tmp"),
     "error: /data/out/a.cartwin-b: Permission denied", 2),  # a name holding the infix is kept whole
    (PermissionError(13, "Permission denied"), "failed: PermissionError", 1),  # no path the user could change
])
def test_a_path_the_user_may_not_write_is_bad_input_named_as_given(tmp_path, monkeypatch, capsys, error, shown, code):
    """Writing where the user may not exited 1 with 'failed: PermissionError: ... /.NAME.cartwin-XXXX.tmp':
    it is an output path to change (exit 2), named as the user gave it."""
    import cartwin.scoring

    def refuse(*args, **kwargs):
        raise error
    monkeypatch.setattr(cartwin.scoring, "run_score_command", refuse)
    data = tmp_path / "obs.csv"
    data.write_text("subject,day,test,value,unit\nP1,0,NEUT,2.0,10^9/L\n")
    got, text = call(monkeypatch, capsys, "score", data, "--out", tmp_path / "scored")
    assert got == code and shown in text, text
    assert "Traceback" not in text


@pytest.mark.parametrize("tests", [",", "", " , "])
def test_export_nonmem_tests_naming_no_code_is_refused(tmp_path, monkeypatch, capsys, tests):
    """'--tests ,' exported every test, as if the option had not been given."""
    (tmp_path / "run").mkdir()
    code, text = call(monkeypatch, capsys, "export", "nonmem", tmp_path / "run", "--out", tmp_path / "d.csv",
                      "--tests", tests)
    assert code == 2 and "names no test code" in text, text
    assert not (tmp_path / "d.csv").exists()


def test_a_compiled_code_cache_the_user_may_not_write_names_the_setting_that_moves_it(tmp_path, monkeypatch, capsys):
    """The compiled-code cache is a path the user did not name: refused writes there say which
    setting moves it, not 'choose another path'."""
    import cartwin.scoring

    monkeypatch.setenv("CARTWIN_CACHE_DIR", str(tmp_path / "cache"))

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "cache" / "models" / "x.nbi"))
    monkeypatch.setattr(cartwin.scoring, "run_score_command", refuse)
    data = tmp_path / "obs.csv"
    data.write_text("subject,day,test,value,unit\nP1,0,NEUT,2.0,10^9/L\n")
    got, text = call(monkeypatch, capsys, "score", data, "--out", tmp_path / "scored")
    assert got == 2 and "set CARTWIN_CACHE_DIR to a folder you may write" in text, text
