"""Bad input is an error or a flag naming file, row and column; the same code scores files and run directories."""

from pathlib import Path

import duckdb
import polars as pl
import pytest

from cartwin.clinical import ObservationError
from cartwin.io.observations import read_observations
from cartwin.scoring import run_score_command, score
from cartwin.store.run_directory import RunDirectoryError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "observations_example.csv"
HEADER = "subject,day,test,value,unit,lower,upper\n"


def write(tmp_path, body, name="obs.csv"):
    path = tmp_path / name
    path.write_text(HEADER + body)
    return path


@pytest.mark.parametrize("body,column,row,words", [
    ("S1,1,NEUTRO,2.0,10^9/L,,\n", "test", 1, "unknown test code"),
    ("S1,1,NEUT,2.0,10^9/L,,\nS1,2,NEUT,2.0,mmol/L,,\n", "unit", 2, "not supported"),
    ("S1,1,C3,0.9,IU/mL,,\n", "unit", 1, "not supported"),
    ("S1,1,NEUT,two,10^9/L,,\n", "value", 1, "not a number"),
    ("S1,x,NEUT,2.0,10^9/L,,\n", "day", 1, "day"),
    ("S1,1,NEUT,2.0,10^9/L,,\nS1,1,NEUT,2.1,10^9/L,,\n", "test", 1, "duplicated"),
    ("S1,1,PGA,3.1,points,,\n", "value", 1, "outside its valid range"),
    ("S1,1,SD_ARTH,2,presence,,\n", "value", 1, "outside its valid range"),
    ("S1,1,NEUT,2.0,10^9/L,low,\n", "lower", 1, "not a number"),
    (",1,NEUT,2.0,10^9/L,,\n", "subject", 1, "subject"),
])
def test_bad_input_names_file_row_and_column(tmp_path, body, column, row, words):
    path = write(tmp_path, body)
    with pytest.raises(ObservationError) as info:
        read_observations(path)
    error = info.value
    assert error.column == column and row in error.rows and error.file == str(path)
    assert words in str(error) and str(path) in str(error) and f"'{column}'" in str(error)


def test_missing_column(tmp_path):
    path = tmp_path / "obs.csv"
    path.write_text("subject,day,test,value\nS1,1,NEUT,2\n")
    with pytest.raises(ObservationError, match="unit"):
        read_observations(path)


def test_missing_value_is_flagged_not_zero(tmp_path):
    obs = read_observations(write(tmp_path, "S1,1,NEUT,,10^9/L,1.8,\n"))
    assert obs.frame["value"][0] is None
    assert obs.flags.filter(pl.col("column") == "value")["row"].to_list() == [1]


def test_units_converted_at_the_border(tmp_path):
    obs = read_observations(write(tmp_path, "S1,1,C3,85,mg/dL,90,\nS1,1,BILI,1.0,mg/dL,,1.2\nS1,1,WBC,2900,/uL,,\n"
                                  "S1,1,TEMP,100.4,F,,\nS1,1,HGB,9.9,g/dL,,\nS1,1,CREAT,1.0,mg/dL,,\n"))
    values = dict(zip(obs.frame["test"], obs.frame["value"]))
    assert values["C3"] == pytest.approx(0.85) and values["BILI"] == pytest.approx(17.1)
    assert values["WBC"] == pytest.approx(2.9) and values["TEMP"] == pytest.approx(38.0)
    assert values["HGB"] == pytest.approx(99.0) and values["CREAT"] == pytest.approx(88.42)
    limits = dict(zip(obs.frame["test"], obs.frame["lower"]))
    assert limits["C3"] == pytest.approx(0.9)


def test_parquet_input_matches_csv(tmp_path):
    csv_obs = read_observations(EXAMPLE)
    parquet = tmp_path / "obs.parquet"
    pl.read_csv(EXAMPLE, infer_schema_length=0).with_columns(
        pl.col("day").cast(pl.Float64), pl.col("value").cast(pl.Float64)).write_parquet(parquet)
    pq_obs = read_observations(parquet)
    cols = ["subject", "day", "test", "value", "unit", "lower", "upper"]
    assert csv_obs.frame.select(cols).equals(pq_obs.frame.select(cols))


def test_score_example_writes_all_outputs(tmp_path):
    result = score(EXAMPLE, tmp_path / "out")
    for name in ("visits", "lab_grades", "patients", "adverse_events", "flags", "endpoints"):
        assert (tmp_path / "out" / f"{name}.parquet").exists()
    assert not list((tmp_path / "out").glob(".*.tmp"))
    with duckdb.connect(str(tmp_path / "out" / "results.duckdb"), read_only=True) as con:
        tables = {r[0] for r in con.execute("show tables").fetchall()}
        assert tables == {"visits", "lab_grades", "patients", "adverse_events", "flags", "endpoints", "rules"}
        ae = con.execute("select max_grade from adverse_events where subject='SLE-001' and term='Cytokine release syndrome'").fetchone()
        assert ae[0] == 2
    visits = pl.read_parquet(tmp_path / "out" / "visits.parquet")
    baseline = visits.filter((pl.col("subject") == "SLE-001") & (pl.col("day") == 0)).row(0, named=True)
    # Arthritis 4 + rash 2 + low complement 2 + anti-dsDNA 2 + proteinuria 4; leukopenia on day 0 is
    # attributed to lymphodepletion.
    assert baseline["sledai2k"] == 14 and baseline["csledai2k"] == 10
    assert "SD_LEUK" in baseline["sledai_excluded"]
    assert result.subjects_scored == 2


def test_fever_during_crs_scores_crs_not_sledai(tmp_path, obs_frame):
    from cartwin.clinical import sledai
    from cartwin.clinical.pipeline import score_observations
    from cartwin.clinical.observations import Observations, empty_flags

    rows = [{"day": 2, "test": c, "value": 0} for c in sledai.descriptor_codes() if c != "SD_FEVER"]
    rows += [{"day": 2, "test": "TEMP", "value": 38.9, "unit": "C"}, {"day": 2, "test": "HYPOTEN", "value": 0},
             {"day": 2, "test": "HYPOXIA", "value": 0}]
    tables = score_observations(Observations(obs_frame(rows), empty_flags(), "mem"))
    visit = tables["visits"].row(0, named=True)
    assert visit["crs_grade"] == 1 and visit["sledai2k"] == 0 and "SD_FEVER (crs)" in visit["sledai_excluded"]


def _run_dir(tmp_path, statuses):
    run = tmp_path / "run"
    run.mkdir()
    obs = pl.read_csv(EXAMPLE, infer_schema_length=0).with_columns(
        pl.col("day").cast(pl.Float64), pl.col("value").cast(pl.Float64)).select("subject", "arm", "day", "test", "value", "unit")
    obs.write_parquet(run / "observations.parquet")
    pl.DataFrame({"subject": list(statuses), "status": list(statuses.values())}).write_parquet(run / "patients.parquet")
    return run


def test_run_directory_scores_only_ok_subjects(tmp_path):
    run = _run_dir(tmp_path, {"SLE-001": "ok", "SLE-002": "failed"})
    message = run_score_command(run, tmp_path / "out")
    assert "1 failed subject(s) not scored: SLE-002" in message
    patients = pl.read_parquet(tmp_path / "out" / "patients.parquet")
    assert patients["subject"].to_list() == ["SLE-001"]
    flags = pl.read_parquet(tmp_path / "out" / "flags.parquet")
    assert flags.filter(pl.col("subject") == "SLE-002")["problem"].str.contains("failed").all()


def test_run_directory_missing_patients_file(tmp_path):
    run = _run_dir(tmp_path, {"SLE-001": "ok", "SLE-002": "ok"})
    (run / "patients.parquet").unlink()
    with pytest.raises(RunDirectoryError, match="missing patients.parquet"):
        score(run, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_run_directory_unknown_subject(tmp_path):
    run = _run_dir(tmp_path, {"SLE-001": "ok"})
    with pytest.raises(ObservationError, match=r"not in \S*patients.parquet"):
        score(run, tmp_path / "out")


def test_clinical_layer_does_not_import_model_or_solver():
    """The clinical layer imports itself, the vocabularies and two leaves: body size and renal
    function (cartwin.body) and the dose rules (cartwin.therapy.dosing), so that it reports the
    doses the engine gives; and nothing it reaches imports the model or the solver."""
    import ast

    src = Path(__file__).resolve().parents[2] / "src"

    def imports(module: str) -> set[str]:
        path = src / (module.replace(".", "/") + ".py")
        if not path.exists():
            path = src / module.replace(".", "/") / "__init__.py"
        out = set()
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            out |= {n for n in names if n.startswith("cartwin.")}
        return out

    allowed = ("cartwin.clinical", "cartwin.vocabulary", "cartwin.body", "cartwin.therapy.dosing")
    reached, todo = set(), []
    for source in (src / "cartwin" / "clinical").glob("*.py"):
        for name in imports(f"cartwin.clinical.{source.stem}"):
            assert name.startswith(allowed), f"{source.name} imports {name}"
            todo.append(name)
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo.extend(imports(name))
    assert not [n for n in reached if n.startswith(("cartwin.model", "cartwin.simulate"))], sorted(reached)

def test_the_rules_table_names_the_version_of_every_instrument_applied():
    """Scores name the version of each standard they applied (SLEDAI-2K, SELENA, SRI-4, DORIS,
    LLDAS, ... each by the publication that defines the rules, CTCAE by its own number) and the
    rule file's hash."""
    from cartwin.clinical.ruleset import applied_rules
    rules = applied_rules()
    assert set(rules["instrument"]) >= {"SLEDAI-2K", "SELENA-SLEDAI", "SRI", "DORIS", "LLDAS", "CTCAE"}
    missing = rules.filter((pl.col("version") == "") | pl.col("version").is_null())["instrument"].to_list()
    assert not missing, f"no version named for {missing}"
    assert rules.filter(pl.col("instrument") == "SLEDAI-2K")["version"][0] == "2002"
    assert rules.filter(pl.col("instrument") == "DORIS")["version"][0] == "2021"
    assert rules.filter(pl.col("instrument") == "CTCAE")["version"][0] == "5.0"
    assert rules["rule_file_sha256"].str.len_chars().to_list() == [64] * rules.height


BASELINE_ROWS = [
    # SLEDAI visits: arthritis + rash at screening (6), arthritis on the infusion day (4), none later
    ("-40", "SD_ARTH", "1", ""), ("-40", "SD_RASH", "1", ""), ("0", "SD_ARTH", "1", ""), ("0", "SD_RASH", "0", ""),
    ("28", "SD_ARTH", "0", ""), ("28", "SD_RASH", "0", ""),
    # ALT: normal at screening, raised by lymphodepletion on day -1, 700 U/L on day 3 (ULN 40)
    ("-6", "ALT", "20", "U/L"), ("-1", "ALT", "200", "U/L"), ("3", "ALT", "700", "U/L"),
]


def _baseline_scores(tmp_path, name, *options):
    from cartwin.vocabulary import test_codes
    given = {(d, t) for d, t, _, _ in BASELINE_ROWS}
    absent = [(d, code, "0", "") for d in ("-40", "0", "28") for code in test_codes()
              if code.startswith("SD_") and (d, code) not in given]  # every other descriptor recorded absent
    rows = ["subject,day,test,value,unit,lower,upper"] + [f"S1,{d},{t},{v},{u},,{'40' if t == 'ALT' else ''}"
                                                          for d, t, v, u in BASELINE_ROWS + absent]
    (tmp_path / "obs.csv").write_text("\n".join(rows) + "\n")
    return score(tmp_path / "obs.csv", tmp_path / name, **dict(options))


def test_the_baseline_days_can_be_chosen(tmp_path):
    """The last day that counts as baseline (SLEDAI, SRI-4, serology, endpoints; default day 0) and
    the CTCAE grading reference (default day -5, before lymphodepletion) can be chosen; the rules
    table records the days applied."""
    default = _baseline_scores(tmp_path, "default")
    chosen = _baseline_scores(tmp_path, "chosen", ("baseline_last_day", -40.0), ("lab_baseline_last_day", -1.0))
    read = lambda result, table: pl.read_parquet(result.out_dir / f"{table}.parquet")  # noqa: E731
    base = lambda result: read(result, "visits").filter(pl.col("day") == 28)["sledai2k_base"][0]  # noqa: E731
    assert base(default) == 4 and base(chosen) == 6
    alt = lambda result: read(result, "lab_grades").filter(pl.col("day") == 3).row(0, named=True)  # noqa: E731
    assert alt(default)["baseline"] == 20 and alt(default)["grade"] == 3   # 17.5 x ULN, normal baseline
    assert alt(chosen)["baseline"] == 200 and alt(chosen)["grade"] == 2    # 3.5 x an abnormal baseline
    rules = read(chosen, "rules")
    day = lambda instrument: rules.filter(pl.col("instrument") == instrument)["baseline_last_day"][0]  # noqa: E731
    assert day("CTCAE") == -1.0 and day("SLEDAI-2K") == -40.0 and day("SRI") == -40.0
    assert read(default, "rules").filter(pl.col("instrument") == "CTCAE")["baseline_last_day"][0] == -5.0


@pytest.mark.parametrize("option, value", [("--baseline-day", "nan"), ("--lab-baseline-day", "inf"),
                                           ("--baseline-day", "1000")])
def test_a_baseline_day_that_is_no_day_is_a_usage_error(tmp_path, monkeypatch, capsys, option, value):
    from tests.conftest import call_cli
    code, msg = call_cli(monkeypatch, capsys, "score", EXAMPLE, "--out", tmp_path / "s", option, value)
    assert code == 2 and option in msg and "Traceback" not in msg
    assert not (tmp_path / "s").exists()


def test_a_sledai_descriptor_without_its_input_is_flagged_naming_the_input(tmp_path):
    """Without WBC, leukopenia (SD_LEUK) cannot be judged: the SLEDAI visits become ranges, and
    the flags say which descriptor, how many visits and which input would fix it."""
    body = "".join(line for line in EXAMPLE.read_text().splitlines(keepends=True) if ",WBC," not in line)
    path = tmp_path / "no_wbc.csv"
    path.write_text(body)
    score(path, tmp_path / "out")
    flags = pl.read_parquet(tmp_path / "out" / "flags.parquet")
    leuk = flags.filter(pl.col("test") == "SD_LEUK")["problem"].to_list()
    assert len(leuk) == 1 and "(WBC)" in leuk[0] and "not evaluable at" in leuk[0], flags["problem"].to_list()
    visits = pl.read_parquet(tmp_path / "out" / "visits.parquet").filter(pl.col("sledai_visit"))
    assert visits["sledai_not_evaluable"].str.contains("SD_LEUK").all()
    # with WBC, no such flag
    score(EXAMPLE, tmp_path / "with_wbc")
    assert pl.read_parquet(tmp_path / "with_wbc" / "flags.parquet").filter(pl.col("test") == "SD_LEUK").height == 0


def test_sfi_platelet_criterion_follows_the_sledai_cytopenia_attribution(obs_frame):
    """A thrombocytopenia begun after lymphodepletion and unbroken since is the therapy's for
    SLEDAI (attribution.toml [cytopenia]) and so for the SFI's severe platelet criterion too: its
    fall below the SFI threshold on day 35 is not a severe lupus flare; the same fall in a
    thrombocytopenia already present before lymphodepletion is."""
    from cartwin.clinical import sledai
    from cartwin.clinical.pipeline import score_observations
    from cartwin.clinical.observations import Observations, empty_flags

    def sfi_at_day_35(counts):
        rows = [{"day": d, "test": c, "value": 0} for d in counts for c in sledai.descriptor_codes() if c != "SD_THROMB"]
        rows += [{"day": d, "test": "PLAT", "value": v, "unit": "10^9/L"} for d, v in counts.items()]
        visits = score_observations(Observations(obs_frame(rows), empty_flags(), "mem"))["visits"]
        return visits.filter(pl.col("day") == 35).row(0, named=True)["sfi_flare"]

    assert sfi_at_day_35({-6: 220, 0: 90, 14: 70, 28: 80, 35: 45}) != "severe"
    assert sfi_at_day_35({-6: 90, 0: 90, 14: 70, 28: 80, 35: 45}) == "severe"
