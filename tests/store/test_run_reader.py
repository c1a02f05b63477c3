"""The store reads a run directory back as it was written: tables, filters, parts, manifest and
failures; it names what is missing; a resumed run deletes only cartwin's own temporary files."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import polars as pl
import pytest

from cartwin.protocol import load_protocol
from cartwin.run import run_protocol
from cartwin.store import atomic, layout
from cartwin.store.run_directory import RunDirectory, RunDirectoryError, open_run
from tests.conftest import BASE_PROTOCOL, write_protocol


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> tuple[Path, Path]:
    """A complete run of 3 + 2 patients in chunks of 2 (three observation parts)."""
    import copy

    protocol = copy.deepcopy(BASE_PROTOCOL)
    protocol["arms"][0]["n"], protocol["arms"][1]["n"] = 3, 2
    base = tmp_path_factory.mktemp("store")
    path = write_protocol(base / "p.toml", protocol)
    out = base / "run"
    run_protocol(load_protocol(path), out, workers=1, chunk_size=2)
    return path, out


def _on_disk(run: Path, folder: str) -> pl.DataFrame:
    # the documented way a user reads a table (docs/run_directory.md), independent of the store
    return pl.read_parquet(str(run / folder / "*.parquet"))


def test_reader_gives_the_tables_the_run_wrote(small_run):
    protocol, run = small_run
    rd = open_run(run)
    assert rd.patients().equals(_on_disk(run, "patients.parquet"))
    assert rd.parameters().equals(_on_disk(run, "parameters.parquet"))
    assert rd.events().equals(_on_disk(run, "events.parquet"))
    assert rd.observations().collect().equals(_on_disk(run, "observations.parquet"))
    assert rd.patients().height == 5
    assert rd.manifest() == json.loads((run / "manifest.json").read_text())
    assert rd.run_info() == json.loads((run / "run.json").read_text())
    assert rd.protocol_text() == protocol.read_text()


def test_observations_are_lazy_and_filtered_by_test_arm_and_subject(small_run):
    _, run = small_run
    rd = open_run(run)
    everything = _on_disk(run, "observations.parquet").with_columns(
        pl.col("arm").cast(pl.String), pl.col("test").cast(pl.String))
    chosen = rd.observations(tests=["CART", "BCELL"], arms=["tyu19"])
    assert isinstance(chosen, pl.LazyFrame)
    got = chosen.collect()
    expected = everything.filter(pl.col("test").is_in(["CART", "BCELL"]) & (pl.col("arm") == "tyu19"))
    assert got.height == expected.height > 0
    assert set(got["test"].cast(pl.String).unique()) == {"CART", "BCELL"}
    assert set(got["arm"].cast(pl.String).unique()) == {"tyu19"}
    one = rd.observations(subjects=["auto-000001"]).collect()
    assert set(one["subject"].cast(pl.String).unique()) == {"auto-000001"}
    assert rd.observations(tests=["HGB"]).collect().height == 0  # a known code the run does not hold


def test_a_lone_name_filters_by_that_name_and_a_typo_is_refused(small_run):
    """tests="CART" was read letter by letter and gave no rows; tests=["Cart"] or an arm the run
    does not hold gave an empty frame, as if the run had no data."""
    _, run = small_run
    rd = open_run(run)
    assert rd.observations(tests="CART", arms="tyu19").collect().equals(
        rd.observations(tests=["CART"], arms=["tyu19"]).collect())
    with pytest.raises(RunDirectoryError, match=r"unknown test \['Cart'\] \(did you mean 'CART'\?\)"):
        rd.observations(tests=["Cart"])
    with pytest.raises(RunDirectoryError, match=r"unknown arm \['tyu'\] .*this run's arms: \['auto', 'tyu19'\]"):
        rd.observations(arms=["tyu"])


def test_parts_stamps_and_duckdb_relation(small_run):
    _, run = small_run
    rd = open_run(run)
    names = sorted(p.name for p in (run / "observations.parquet").glob("*.parquet"))
    assert rd.parts("observations") == names and len(names) == 3  # auto: 2 + 1, tyu19: 2
    assert list(rd.part_stamps("observations")) == names
    first = rd.read_part("observations", names[0])
    assert first.equals(pl.read_parquet(run / "observations.parquet" / names[0]))
    con = duckdb.connect()
    assert rd.relation("patients", con).aggregate("count(*)").fetchall() == [(5,)]
    with rd.connect() as db:  # the run's own database: views over the same parts
        assert db.execute("SELECT count(*) FROM observations").fetchone()[0] == rd.observations().collect().height


def test_failures_come_from_the_patient_table(tmp_path):
    run = tmp_path / "hand"
    (run / "patients.parquet").mkdir(parents=True)
    pl.DataFrame({"subject": ["A-1", "A-2", "B-1"], "arm": ["A", "A", "B"], "status": ["ok", "failed", "ok"],
                  "failure_reason": ["", "excess work done", ""]}).write_parquet(run / "patients.parquet" / "part-0.parquet")
    failed = open_run(run, complete=False, tables=("patients",)).failures()
    assert failed.to_dicts() == [{"subject": "A-2", "arm": "A", "failure_reason": "excess work done"}]


def test_open_run_names_what_is_missing(tmp_path):
    with pytest.raises(RunDirectoryError, match="no such run directory"):
        open_run(tmp_path / "nowhere")
    (tmp_path / "half" / "patients.parquet").mkdir(parents=True)
    (tmp_path / "half" / "observations.parquet").mkdir()
    with pytest.raises(RunDirectoryError, match=r"not a completed cartwin run directory \(missing events.parquet, "
                                                 r"parameters.parquet, manifest.json\)"):
        open_run(tmp_path / "half")
    # an interrupted run's stored tables can still be read
    assert open_run(tmp_path / "half", complete=False, tables=("patients", "observations")).path == tmp_path / "half"
    with pytest.raises(RunDirectoryError, match="no manifest.json"):
        RunDirectory(tmp_path / "half").manifest()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "run.json").write_text("{not json")
    with pytest.raises(RunDirectoryError, match="run.json: not valid JSON"):
        RunDirectory(tmp_path / "bad").run_info()


def test_atomic_writes_use_names_a_resume_recognises(tmp_path):
    fd, tmp = atomic._temporary(tmp_path / "part-000-000000000.parquet")
    import os
    os.close(fd)
    assert layout.TEMPORARY_PATTERN.fullmatch(Path(tmp).name)
    # the user's own hidden temporaries do not look like cartwin's
    for name in (".notes.tmp", ".part-000.parquet.1234abcd.tmp", ".cartwin-x.tmp"):
        assert not layout.TEMPORARY_PATTERN.fullmatch(name)


def test_resume_deletes_only_cartwins_own_temporaries(small_run, tmp_path):
    import shutil

    protocol, run = small_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    ours = [copy / ".manifest.json.cartwin-k2j4h5g6.tmp",
            copy / "observations.parquet" / ".part-000-000000000.parquet.cartwin-abc_1234.tmp"]
    users = [copy / ".notes.tmp", copy / ".patients.parquet.draft.tmp",
             copy / "mine" / ".part.parquet.cartwin-abc_1234.tmp",  # not a folder cartwin writes
             copy / "observations.parquet" / ".scratch.tmp"]
    for path in ours + users:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    summary = run_protocol(load_protocol(protocol), copy, workers=1, resume=True)
    assert summary.chunks_computed == 0 and summary.n_total == 5
    assert not any(p.exists() for p in ours)
    assert all(p.read_text() == "x" for p in users)


def test_resume_refuses_a_solver_other_than_the_recorded_one(small_run, tmp_path):
    """run.json records the solver a run was made with (backend, rtol, atol as resolved: the
    default RODAS4 for a protocol that names none); resuming under another would mix two solvers'
    numbers in one run and is refused with both named. A run that recorded none was started by a
    version whose default was numba-bdf at rtol 1e-6, atol 1e-9, which the protocol (naming no
    solver) then meant: refused too, where the protocol file alone would have let it through."""
    import shutil

    protocol, run = small_run
    recorded = json.loads((run / layout.RUN_JSON).read_text())["solver"]
    assert recorded == {"backend": "numba-rodas4", "rtol": 1e-5, "atol": 1e-8}
    manifest = json.loads((run / "manifest.json").read_text())["solver"]
    assert recorded == {key: manifest[key] for key in ("backend", "rtol", "atol")}
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    info = json.loads((copy / layout.RUN_JSON).read_text())
    info["solver"] = {"backend": "numba-bdf", "rtol": 1e-6, "atol": 1e-9}
    (copy / layout.RUN_JSON).write_text(json.dumps(info))
    refusal = r"solved with numba-bdf \(rtol 1e-06, atol 1e-09\).*numba-rodas4 \(rtol 1e-05, atol 1e-08\)"
    with pytest.raises(RunDirectoryError, match=refusal):
        run_protocol(load_protocol(protocol), copy, workers=1, resume=True)
    del info["solver"]  # started by an earlier version
    (copy / layout.RUN_JSON).write_text(json.dumps(info))
    with pytest.raises(RunDirectoryError, match=refusal):
        run_protocol(load_protocol(protocol), copy, workers=1, resume=True)
    info["solver"] = recorded
    (copy / layout.RUN_JSON).write_text(json.dumps(info))
    assert run_protocol(load_protocol(protocol), copy, workers=1, resume=True).n_total == 5


@pytest.mark.parametrize("kind", ["file", "dangling symlink"])
def test_a_new_run_refuses_an_out_that_is_not_a_directory(tmp_path, kind):
    out = tmp_path / "out"
    if kind == "file":
        out.write_text("notes")
    else:
        out.symlink_to(tmp_path / "gone")
    with pytest.raises(RunDirectoryError, match="not a directory" if kind == "file" else "symbolic link to nothing"):
        RunDirectory(out).check_new()
    assert out.read_text() == "notes" if kind == "file" else not out.exists()


def _stopped_while_starting(small_run, tmp_path, keep: tuple[str, ...]) -> Path:
    """A run directory as a kill during ``start`` leaves it: some of cartwin's start files, no run.json."""
    protocol, run = small_run
    out = tmp_path / "stopped"
    out.mkdir()
    for name in keep:
        (out / name).write_bytes((run / name).read_bytes())
    return out


@pytest.mark.parametrize("resume", [False, True])
@pytest.mark.parametrize("keep", [(layout.DICTIONARY,), (layout.DICTIONARY, layout.PROTOCOL)])
def test_a_run_stopped_while_starting_can_be_started_or_resumed(small_run, tmp_path, keep, resume):
    """Killed after its first files but before run.json, a run directory used to be refused both
    ways: no run to resume, and files in the way of a new run."""
    protocol, run = small_run
    out = _stopped_while_starting(small_run, tmp_path, keep)
    (out / ".patients.cartwin-abc123.tmp").write_text("half")
    run_protocol(load_protocol(protocol), out, workers=1, chunk_size=2, resume=resume)
    assert _on_disk(out, "patients.parquet").sort("subject").equals(_on_disk(run, "patients.parquet").sort("subject"))


def test_a_users_protocol_toml_alone_is_not_taken_for_a_stopped_run(small_run, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / layout.PROTOCOL).write_text("# my own notes\n")
    with pytest.raises(RunDirectoryError, match="holds other files"):
        RunDirectory(out).check_new()
    assert (out / layout.PROTOCOL).read_text() == "# my own notes\n"
