"""`cartwin score` input that used to be graded silently or crash with a raw polars error:
infinite days, values and limits, a lower limit above the upper, negative limits, short rows, a
count given in the wrong unit. Each is refused with the file, the row and the column."""

from __future__ import annotations

import pytest

from cartwin.clinical import ObservationError
from cartwin.io.observations import read_observations

HEADER = "subject,day,test,value,unit,lower,upper\n"


def refused(tmp_path, rows: str) -> ObservationError:
    path = tmp_path / "obs.csv"
    path.write_text(HEADER + rows)
    with pytest.raises(ObservationError) as exc:
        read_observations(path)
    assert "obs.csv" in str(exc.value)
    return exc.value


@pytest.mark.parametrize("row, column", [
    ("P1,inf,NEUT,1.2,10^9/L,,\n", "day"),
    ("P1,-inf,NEUT,1.2,10^9/L,,\n", "day"),
    ("P1,0,NEUT,inf,10^9/L,,\n", "value"),
    ("P1,0,NEUT,1.2,10^9/L,,inf\n", "upper"),
    ("P1,0,NEUT,1.2,10^9/L,-1,\n", "lower"),
    ("P1,0,NEUT,1.2,10^9/L,,-2\n", "upper"),
    ("P1,0,NEUT,1.2,10^9/L,3,2\n", "lower"),
    # a neutrophil count in cells/uL labelled 10^9/L (1000x too large)
    ("P1,0,NEUT,400,10^9/L,,\n", "value"),
])
def test_bad_numbers_are_refused_with_row_and_column(tmp_path, row, column):
    exc = refused(tmp_path, "P1,-1,NEUT,2.0,10^9/L,,\n" + row)
    assert exc.rows == [2] and exc.column == column, str(exc)
    assert "row 2" in str(exc)


def test_a_short_row_is_refused_not_read_as_value_missing(tmp_path):
    exc = refused(tmp_path, "P1,0,NEUT,1.2,10^9/L,,\nP1,1,NEUT\nP1,2,NEUT,1.0,10^9/L,,\n")
    assert exc.rows == [2] and "fewer fields" in str(exc)


def test_a_day_with_a_trailing_space_on_a_flagged_row_is_read(tmp_path):
    path = tmp_path / "obs.csv"
    path.write_text(HEADER + "P1,0,NEUT,1.2,10^9/L,,\nP1,7 ,NEUT,,10^9/L,,\n")
    obs = read_observations(path)
    assert sorted(obs.frame["day"].to_list()) == [0.0, 7.0]
    assert obs.flags.height >= 1  # the missing value is flagged, not an error


def test_cli_never_shows_a_raw_polars_error(tmp_path, monkeypatch, capsys):
    import sys
    from cartwin import cli
    path = tmp_path / "obs.csv"
    path.write_text(HEADER + "P1,inf,NEUT,1.2,10^9/L,,\n")
    monkeypatch.setattr(sys, "argv", ["cartwin", "score", str(path), "--out", str(tmp_path / "s")])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    msg = capsys.readouterr().err
    assert exc.value.code == 2 and "row 1" in msg and "'day'" in msg
    assert "polars" not in msg.lower() and "InvalidOperation" not in msg


def test_a_row_with_a_stray_comma_is_refused_with_its_row(tmp_path):
    exc = refused(tmp_path, "P1,0,NEUT,1.2,10^9/L,,\nP1,1,NEUT,1,2,10^9/L,,\n")
    assert exc.rows == [2] and "more fields" in str(exc) and "polars" not in str(exc).lower()


def test_anti_dsdna_in_u_per_ml_without_its_cut_off_is_refused_with_the_reason_and_the_alternatives(tmp_path):
    exc = refused(tmp_path, "P1,0,DSDNA,12,U/mL,,\n")
    msg = str(exc)
    assert exc.column == "upper" and exc.rows == [1]
    assert "not interconvertible" in msg and "SD_DNA" in msg and "cut-off" in msg


def test_anti_dsdna_in_u_per_ml_is_judged_against_its_assays_cut_off(tmp_path):
    """An EliA result in U/mL (the docs' own example) with the assay's cut-off as upper limit is
    the SLEDAI judgement 'increased DNA binding' (above the testing laboratory's normal range),
    never a number converted to IU/mL; each such row is flagged."""
    from cartwin.clinical import score_observations
    path = tmp_path / "obs.csv"
    path.write_text(HEADER + "P1,0,DSDNA,45,U/mL,,10\nP1,28,DSDNA,10,U/mL,,10\nP1,56,DSDNA,12,IU/mL,,15\n")
    obs = read_observations(path)
    judged = obs.frame.sort("day")
    assert judged["test"].to_list() == ["SD_DNA", "SD_DNA", "DSDNA"]
    assert judged["value"].to_list() == [1.0, 0.0, 12.0]
    flagged = obs.flags.filter(obs.flags["problem"].str.contains("cut-off"))
    assert flagged["row"].to_list() == [1, 2]
    visits = score_observations(obs)["visits"].sort("day")
    assert visits["d_SD_DNA"].to_list()[:2] == [True, False]


def test_sd_dna_is_the_documented_way_to_give_an_eliA_result(tmp_path):
    path = tmp_path / "obs.csv"
    path.write_text(HEADER + "P1,0,SD_DNA,1,presence,,\n")
    obs = read_observations(path)
    assert obs.frame["value"].to_list() == [1.0]


def test_every_problem_of_a_file_is_reported_at_once(tmp_path):
    exc = refused(tmp_path, "P1,x,NEUT,1.2,10^9/L,,\nP1,1,NOPE,1.2,10^9/L,,\n"
                            "P1,2,NEUT,1.2,furlongs,,\nP1,3,NEUT,1.2,10^9/L,5,1\n")
    msg = str(exc)
    assert "4 problems" in msg
    assert [(p.rows, p.column) for p in exc.problems] == [([1], "day"), ([2], "test"), ([4], "lower"), ([3], "unit")]
    assert exc.rows == [1] and exc.column == "day"


def test_each_unsupported_unit_names_its_own_rows_and_a_case_slip_is_named(tmp_path):
    """Two tests each in a unit they do not have: each message names its test, its unit and its
    rows only (not every bad row under the first test's name), and a unit that differs from a
    supported one only in letter case says which was meant."""
    exc = refused(tmp_path, "P1,0,NEUT,2000,cells/L,,\nP1,0,C3,90,mg/dl,,\nP1,1,NEUT,2.0,10^9/L,,\n")
    text = str(exc)
    neut = next(line for line in text.splitlines() if "'cells/L'" in line)
    c3 = next(line for line in text.splitlines() if "'mg/dl'" in line)
    assert "row 1 " in neut and "test NEUT" in neut and "row 2" not in neut
    assert "row 2 " in c3 and "test C3" in c3 and "Did you mean 'mg/dL'?" in c3


def test_an_unknown_test_code_suggests_the_code_meant():
    """ANC (a common abbreviation), neutrophils (the name) and dnaab (the CDISC code, other case)
    are refused, each with the code a user probably meant."""
    from cartwin.vocabulary import suggest_test_code

    assert suggest_test_code("ANC") == "NEUT"
    assert suggest_test_code("neutrophils") == "NEUT"
    assert suggest_test_code("dnaab") == "DSDNA"
    assert suggest_test_code("neut") == "NEUT"
    assert suggest_test_code("XYZ") is None


def test_the_unknown_code_message_carries_the_suggestion(tmp_path):
    exc = refused(tmp_path, "P1,0,ANC,2.0,10^9/L,,\n")
    assert exc.column == "test" and "'ANC' -> 'NEUT'" in str(exc) and "src/cartwin" not in str(exc)


@pytest.mark.parametrize("row", [
    "P1,0,LYM,1500,10^9/L,,\n",        # lymphocytes per uL labelled 10^9/L
    "P1,0,PLAT,210000,10^9/L,,\n",     # platelets per uL labelled 10^9/L
    "P1,0,HGB,118,g/dL,,\n",           # g/L labelled g/dL
    "P1,0,C3,90,g/L,,\n",              # mg/dL labelled g/L
    "P1,0,C4,20,g/L,,\n",              # mg/dL labelled g/L
    "P1,0,IGG,1200,g/L,,\n",           # mg/dL labelled g/L
    "P1,0,CREAT,0.9,umol/L,,\n",       # mg/dL labelled umol/L
])
def test_a_laboratory_value_in_the_wrong_unit_is_refused_not_graded(tmp_path, row):
    """Before, these were graded as given: haemoglobin 118 g/dL read as 1180 g/L (no anaemia),
    creatinine 0.9 umol/L (never raised)."""
    exc = refused(tmp_path, "P1,-1,NEUT,2.0,10^9/L,,\n" + row)
    assert exc.rows == [2] and exc.column == "value", str(exc)
    assert "outside its valid range" in str(exc)


def test_extreme_but_real_laboratory_values_are_kept(tmp_path):
    """The bounds catch a unit slip, not a sick patient: lymphocytosis, thrombocytosis,
    polycythaemia, acute-phase complement, hypergammaglobulinaemia, cachexia and renal failure."""
    path = tmp_path / "obs.csv"
    path.write_text(HEADER + "P1,0,LYM,250,10^9/L,,\nP1,0,PLAT,2500,10^9/L,,\nP1,0,HGB,21,g/dL,,\n"
                    "P1,0,C3,2.6,g/L,,\nP1,0,C4,0.9,g/L,,\nP1,0,IGG,90,g/L,,\nP1,0,CREAT,15,umol/L,,\n"
                    "P1,1,CREAT,2000,umol/L,,\n")
    assert read_observations(path).frame.height == 8


def test_a_file_with_a_header_only_is_named_as_such(tmp_path):
    """It was refused as having 'no observations to score after excluding failed subjects', though
    an observation file has no failed subjects."""
    from cartwin.scoring import score
    path = tmp_path / "obs.csv"
    path.write_text(HEADER)
    with pytest.raises(ObservationError) as exc:
        score(path, tmp_path / "out")
    assert "no observation rows to score (a header only)" in str(exc.value)
    assert "failed subjects" not in str(exc.value)


@pytest.mark.parametrize("separator, name", [(";", "semicolons"), ("\t", "tabs")])
def test_a_file_separated_by_semicolons_or_tabs_is_named_as_such(tmp_path, separator, name):
    """A spreadsheet's CSV in a decimal-comma locale (';') or a tab-separated export was refused
    as 'missing required column(s)' every one, without saying why."""
    path = tmp_path / "obs.csv"
    path.write_text(HEADER.replace(",", separator) + "P1;0;NEUT;1,2;10^9/L;;\n".replace(";", separator))
    with pytest.raises(ObservationError) as exc:
        read_observations(path)
    message = str(exc.value)
    assert message.startswith(f"{path}: the header ") and f"is separated by {name}, not commas" in message
    assert "comma-separated CSV" in message
