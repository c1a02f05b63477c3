"""The run directory: the contract between a run and everything that reads it.

This module is the one reader and writer of run directories: a run writes its chunks, database
and manifest through :class:`RunDirectory`, and the clinical callers, exporters, the report and
fitting read them through :func:`open_run` (tables as Polars frames or lazy frames, DuckDB
relations, the manifest as a dict). The file names live in :mod:`cartwin.store.layout`.

Layout (see docs/run_directory.md)::

    DIR/run.json                 what the run computes (plan, protocol hash); written before any chunk
    DIR/protocol.toml            a copy of the protocol file
    DIR/patients.parquet/        one Parquet part per chunk: one row per patient
    DIR/parameters.parquet/      individual model parameters, one row per patient
    DIR/observations.parquet/    long table: subject, arm, day, test, value, unit
    DIR/events.parquet/          NONMEM-style event records (doses and sampling times)
    DIR/dictionary.json          column meanings and units of every table
    DIR/manifest.json            version, hashes, seed, solver, timings, counts; written last
    DIR/results.duckdb           views over the Parquet parts

Each part is written atomically; a chunk counts as done when its ``patients`` part exists
(written last), so an interrupted run resumes without recomputing or duplicating a patient.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import duckdb
import polars as pl

from cartwin.simulate.events import EVENT_COLUMNS
from cartwin.store import layout
from cartwin.store.atomic import write_json, write_parquet, write_text
from cartwin.vocabulary import PATIENT_COVARIATES

TABLES = layout.TABLES


class RunDirectoryError(ValueError):
    """A run or scored-output directory cannot be written or read as asked: it holds something
    else or another run, or lacks what a reader needs. The message names the directory and the fix."""


DICTIONARY = {
    "patients": {
        "subject": ("", "subject identifier: ARM-NNNNNN for virtual patients, ARM-ID for explicit ones"),
        "arm": ("", "arm identifier from the protocol"),
        "index": ("", "position of the patient in its arm (0-based); with the seed it fixes the random stream"),
        "product": ("", "CAR-T product"),
        "regimen": ("", "lymphodepletion regimen"),
        "dose_cells_per_kg": ("cells/kg", "CAR-T dose per kg (empty for a flat dose)"),
        "dose_cells": ("cells", "CAR-T cells infused"),
        "sex": ("", "F or M"),
        # the patient covariates of the vocabulary (SEXF is written as 'sex')
        **{c.name: (c.unit, c.description + (" (SLEDAI descriptor, 1/0)" if c.kind == "descriptor" else ""))
           for c in PATIENT_COVARIATES.values() if c.name != "SEXF"},
        "status": ("", "ok, or failed (the solver could not integrate this patient)"),
        "failure_reason": ("", "why the patient failed; empty when ok"),
        # only in runs whose protocol asks for them (docs/protocol.md)
        "replicate": ("", "replicate trial, 1 to R (runs with [uncertainty] only)"),
        "withdrawn_day": ("day", "last scheduled visit before the patient withdrew; empty when the patient "
                                 "stayed (runs with [conduct] only)"),
        "withdrawal_reason": ("", "toxicity, lack_of_efficacy or other; empty when the patient stayed "
                                  "(runs with [conduct] only)"),
        "visits_missed": ("", "scheduled visits missed while in the trial (runs with [conduct] only)"),
    },
    "parameters": {
        "subject": ("", "subject identifier"),
        "<parameter>": ("see docs/model.md", "individual value of each model parameter"),
    },
    "observations": {
        "subject": ("", "subject identifier"),
        "arm": ("", "arm identifier"),
        "day": ("day", "day relative to the CAR-T infusion (day 0); negative before it; a sample on a "
                       "dose day is taken before the dose"),
        "test": ("", "test code (docs/run_directory.md, test codes)"),
        "value": ("see unit", "simulated value; with the observation model on, the observed value "
                              "(assay error applied; may lie below the LLOQ: see blq)"),
        "unit": ("", "unit of value (the test code's canonical unit)"),
        # present only when the protocol turns the observation model on
        layout.OBSERVATION_TRUE_VALUE: ("see unit", "observation model on: the model's value before assay error"),
        layout.OBSERVATION_LLOQ: ("see unit", "observation model on: the assay's lower limit of quantification "
                                              "(empty for tests without one)"),
        layout.OBSERVATION_BLQ: ("", "observation model on: true when value < lloq (below the limit of "
                                     "quantification: a laboratory reports '<LLOQ', not the number)"),
    },
    "events": {k: ("", v + (f" (values are in {layout.OBSERVATIONS})" if k == "DV" else ""))
               for k, v in EVENT_COLUMNS.items()},
}


class RunDirectory:
    """A run directory, for the run that writes it and for everyone who reads it.

    Readers normally get one from :func:`open_run`, which checks that the directory holds a
    (complete) run first."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDirectory({str(self.path)!r})"

    # --- where things are ---------------------------------------------------------------------
    @property
    def run_json(self) -> Path:
        return self.path / layout.RUN_JSON

    @property
    def manifest_path(self) -> Path:
        return self.path / layout.MANIFEST

    @property
    def protocol_path(self) -> Path:
        return self.path / layout.PROTOCOL

    @property
    def database_path(self) -> Path:
        return self.path / layout.DATABASE

    def table_path(self, table: str) -> Path:
        """The folder of a table's part files (a single Parquet file is read as well)."""
        return self.path / layout.table_folder(table)

    def table_glob(self, table: str) -> str:
        """``DIR/<table>.parquet/*.parquet``: every part of a table, for DuckDB or Polars."""
        return str(self.table_path(table) / f"*{layout.PART_SUFFIX}")

    @property
    def report_dir(self) -> Path:
        """Where the report of this run goes (``DIR/report``)."""
        return self.path / layout.REPORT

    @property
    def scores_dir(self) -> Path:
        """Clinical scores cached per observation part by the report (``DIR/report/scores``)."""
        return self.report_dir / layout.SCORES

    @property
    def scores_fingerprint(self) -> Path:
        return self.scores_dir / layout.SCORE_FINGERPRINT

    def score_part(self, table: str, part_name: str) -> Path:
        return self.scores_dir / table / part_name

    def scores_glob(self, table: str) -> str:
        return str(self.scores_dir / table / f"*{layout.PART_SUFFIX}")

    # --- creation and checks -----------------------------------------------------------------
    def is_run(self) -> bool:
        return self.run_json.exists()

    def is_complete(self) -> bool:
        return self.manifest_path.exists()

    def stopped_while_starting(self) -> bool:
        """Whether a run was stopped while it was starting (``start``): no run.json, and nothing but
        cartwin's first files, its dictionary (written first) and the protocol copy, and its own
        temporaries. Nothing was computed there; the run can start again in it. A protocol.toml
        without cartwin's dictionary may be the user's own and does not count."""
        if not self.path.is_dir() or self.path.is_symlink() or self.is_run():
            return False
        names = {entry.name for entry in self.path.iterdir() if entry.is_file() and not entry.is_symlink()}
        if len(names) != sum(1 for _ in self.path.iterdir()):
            return False  # a folder or a link: not from a start
        started = names - {n for n in names if layout.TEMPORARY_PATTERN.fullmatch(n)}
        if not started:
            return bool(names)
        if not started <= {layout.DICTIONARY, layout.PROTOCOL} or layout.DICTIONARY not in started:
            return False
        try:
            written = json.loads((self.path / layout.DICTIONARY).read_text())
        except (OSError, ValueError):
            return False
        return isinstance(written, dict) and set(written) == set(DICTIONARY)

    def check_new(self) -> None:
        """Raise unless the directory can hold a new run (empty, new, or a run stopped while it
        was starting). Creates nothing."""
        if self.path.is_symlink() and not self.path.exists():
            raise RunDirectoryError(f"{self.path}: is a symbolic link to nothing; choose another --out")
        if self.path.exists() and not self.path.is_dir():
            raise RunDirectoryError(f"{self.path}: exists and is not a directory; choose another --out")
        if self.path.is_dir() and any(self.path.iterdir()) and not self.stopped_while_starting():
            if self.is_run():
                raise RunDirectoryError(
                    f"{self.path}: already holds a cartwin run; add --resume to continue it, or choose "
                    "an empty or new directory")
            raise RunDirectoryError(f"{self.path}: holds other files; choose an empty or new directory")

    def check_resumable(self, plan_json: dict, protocol_sha: str, solver: dict | None = None,
                        solver_unrecorded: dict | None = None) -> None:
        """Whether the stored run can be continued with this plan, protocol file and solver
        (``solver``: backend, rtol and atol as resolved now; ``solver_unrecorded``: the solver a run
        that recorded none was made with, one started by a version before the record)."""
        if not self.is_run():
            raise RunDirectoryError(f"{self.path}: holds no cartwin run to resume (no {layout.RUN_JSON}); "
                                    "run without --resume")
        stored = self.run_info()
        if stored["protocol_sha256"] != protocol_sha:
            raise RunDirectoryError(f"{self.path}: the stored run used a different protocol file "
                                    "(hash differs); resume with the same file or start a new directory")
        was = stored.get("solver", solver_unrecorded)
        if solver is not None and was is not None and was != solver:
            raise RunDirectoryError(
                f"{self.path}: the stored run was solved with {was['backend']} (rtol {was['rtol']:g}, atol "
                f"{was['atol']:g}), this version of cartwin would solve the rest with {solver['backend']} "
                f"(rtol {solver['rtol']:g}, atol {solver['atol']:g}); resume it with the version that started "
                "it, or start the run again in a new directory")
        if stored["plan"]["n_per_arm"] != plan_json["n_per_arm"] or stored["plan"]["seed"] != plan_json["seed"]:
            raise RunDirectoryError(f"{self.path}: the stored run has n per arm {stored['plan']['n_per_arm']} "
                                    f"and seed {stored['plan']['seed']}; resume with the same --n/--seed")

    def stored_plan(self) -> dict:
        return self.run_info()["plan"]

    def start(self, plan_json: dict, protocol_text: str, protocol_sha: str, model: dict,
              scoring: dict | None = None, solver: dict | None = None) -> None:
        # the dictionary first: a directory stopped before run.json is recognised by it
        # (stopped_while_starting) and can start again
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.path / layout.DICTIONARY,
                   {t: {c: {"unit": u, "description": d} for c, (u, d) in cols.items()}
                    for t, cols in DICTIONARY.items()})
        write_text(self.protocol_path, protocol_text)
        info = {"protocol_sha256": protocol_sha, "plan": plan_json, "model": model}
        if scoring is not None:
            info["scoring"] = scoring
        if solver is not None:
            info["solver"] = solver
        write_json(self.run_json, info)

    # --- chunks ------------------------------------------------------------------------------
    def part(self, table: str, chunk_name: str) -> Path:
        return self.table_path(table) / f"{chunk_name}{layout.PART_SUFFIX}"

    def chunk_done(self, chunk_name: str) -> bool:
        return self.part("patients", chunk_name).exists()

    def write_chunk(self, result) -> dict:
        for table in TABLES:
            write_parquet(self.part(table, result.spec.name), getattr(result, table))
        failed = [(s, r) for s, st, r in zip(result.patients["subject"].to_pylist(),
                                             result.patients["status"].to_pylist(),
                                             result.patients["failure_reason"].to_pylist())
                  if st == "failed"]
        return {"chunk": result.spec.name, "arm": result.spec.arm_id,
                "n": result.patients.num_rows, "failed": failed}

    # --- finishing ---------------------------------------------------------------------------
    def remove_stale_temporaries(self) -> list[Path]:
        """Delete temporary files left by a process killed mid-write (they were never renamed
        into place, so no reader ever saw them). Only cartwin's own temporaries are touched: names
        of the form ``.<name>.cartwin-<random>.tmp`` (:mod:`cartwin.store.atomic`), in the folders
        cartwin writes (the top, the table folders and the report's); a user's files stay."""
        folders = [self.path, *(self.table_path(t) for t in TABLES)]
        if self.report_dir.is_dir():
            folders += [self.report_dir, *(p for p in self.report_dir.rglob("*") if p.is_dir() and not p.is_symlink())]
        stale = [p for folder in folders if folder.is_dir() and not folder.is_symlink()
                 for p in folder.iterdir()
                 if layout.TEMPORARY_PATTERN.fullmatch(p.name) and p.is_file() and not p.is_symlink()]
        for p in stale:
            p.unlink(missing_ok=True)
        return stale

    def finish(self, manifest: dict) -> None:
        self.remove_stale_temporaries()
        self.build_database()
        write_json(self.manifest_path, manifest)

    def build_database(self) -> Path:
        target = self.database_path
        tmp = self.path / f".{layout.DATABASE}{layout.TEMPORARY_SUFFIX}"
        for stale in (tmp, Path(str(tmp) + ".wal")):
            if stale.exists():
                stale.unlink()
        con = duckdb.connect(str(tmp))
        try:
            for table in TABLES:
                glob = str(Path(self.table_glob(table)).resolve())
                con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{glob}')")
            con.execute("CREATE VIEW run_info AS SELECT '{}' AS run_directory".format(
                str(self.path.resolve()).replace("'", "''")))
        finally:
            con.close()
        os.replace(tmp, target)
        return target

    def connect(self) -> duckdb.DuckDBPyConnection:
        """Read-only connection; a directory that was moved gets its views rebuilt first (they
        hold absolute paths)."""
        con = duckdb.connect(str(self.database_path), read_only=True)
        (stored,) = con.execute("SELECT run_directory FROM run_info").fetchone()
        if stored != str(self.path.resolve()):
            con.close()
            self.build_database()
            con = duckdb.connect(str(self.database_path), read_only=True)
        return con

    # --- reading -----------------------------------------------------------------------------
    def require(self, tables: Iterable[str] = TABLES, *, complete: bool = True) -> "RunDirectory":
        """Raise :class:`RunDirectoryError` naming what is missing unless the directory holds
        ``tables`` (and, with ``complete``, the manifest a finished run writes last)."""
        if not self.path.is_dir():
            raise RunDirectoryError(f"{self.path}: no such run directory; run `cartwin run PROTOCOL "
                                    f"--out {self.path}` first")
        needed = [layout.table_folder(t) for t in tables] + ([layout.MANIFEST] if complete else [])
        missing = [name for name in needed if not (self.path / name).exists()]
        if missing:
            what = "a completed cartwin run directory" if complete else "a cartwin run directory"
            raise RunDirectoryError(f"{self.path}: not {what} (missing {', '.join(missing)}); {self._what_to_do()}")
        return self

    def _what_to_do(self) -> str:
        """Advice for a directory that is not the complete run a command needs, by what it is."""
        if self.is_run():
            return (f"the run has not finished; finish it with `cartwin run PROTOCOL --out {self.path} "
                    "--resume` (the same protocol)")
        if (self.path / layout.SCORED_DATABASE).exists() and (self.path / f"visits{layout.SCORED_SUFFIX}").exists():
            return (f"it is the output of `cartwin score` (clinical tables as Parquet and {layout.SCORED_DATABASE}), "
                    "not a run: query its tables directly, and give commands on runs the --out directory "
                    "of `cartwin run`")
        return "give the --out directory of `cartwin run PROTOCOL --out DIR`"

    def run_info(self) -> dict:
        """What the run computes (``run.json``): protocol hash, plan, model."""
        return _read_json(self.run_json)

    def imported_model(self) -> str | None:
        """The name of the run's model when it is an imported SBML model's (whose read-outs the
        clinical layer does not grade), else None; None too where this is no readable run. A
        complete run names its model in the manifest, an interrupted one in run.json."""
        for path in (self.manifest_path, self.run_json):
            if self.path.is_dir() and path.is_file():
                try:
                    model = json.loads(path.read_text()).get("model", {})
                except (OSError, ValueError, AttributeError):
                    return None
                return str(model.get("name", "?")) if layout.is_imported_model(model) else None
        return None

    def arm_order(self) -> list[str]:
        """The run's arm ids in the protocol's order (``run.json``'s plan)."""
        return list(self.stored_plan()["n_per_arm"])

    def scoring_baselines(self) -> tuple[float | None, float | None]:
        """The baseline days the run's patients are scored with (``run.json``'s ``scoring``:
        ``baseline_last_day``, ``lab_baseline_last_day``); None where the run chose none (the rule
        tables' own)."""
        scoring = self.run_info().get("scoring") or {}
        return scoring.get("baseline_last_day"), scoring.get("lab_baseline_last_day")

    def manifest(self) -> dict:
        """What made the run (``manifest.json``); a run without one is not complete."""
        if not self.is_complete():
            raise RunDirectoryError(f"{self.path}: not a completed cartwin run (no {layout.MANIFEST}); "
                                    f"{self._what_to_do()}")
        return _read_json(self.manifest_path)

    def protocol_text(self) -> str:
        """The copy of the protocol file the run was made from."""
        return self.protocol_path.read_text()

    def source(self, table: str) -> str:
        """How messages name a table: the path of its folder."""
        return str(self.table_path(table))

    def scan(self, table: str) -> pl.LazyFrame:
        """A table as a Polars lazy frame over its parts (nothing read until collected)."""
        path = self.table_path(table)
        if not path.exists():
            raise RunDirectoryError(f"{self.path}: {path.name} is missing; not a complete cartwin run directory")
        try:
            return pl.scan_parquet(self.table_glob(table) if path.is_dir() else path)
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise RunDirectoryError(f"{path}: cannot be read as Parquet ({exc})") from None

    def read(self, table: str) -> pl.DataFrame:
        """A whole table as a Polars frame, parts in chunk order."""
        try:
            return self.scan(table).collect()
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise RunDirectoryError(f"{self.table_path(table)}: cannot be read as Parquet ({exc})") from None

    def patients(self) -> pl.DataFrame:
        """One row per patient: arm, therapy, covariates, ``status`` and ``failure_reason``."""
        return self.read("patients")

    def parameters(self) -> pl.DataFrame:
        """One row per patient: the individual value of every model parameter."""
        return self.read("parameters")

    def events(self) -> pl.DataFrame:
        """NONMEM-style event records (doses and sampling times) of every patient."""
        return self.read("events")

    def failures(self) -> pl.DataFrame:
        """Patients whose solve failed: ``subject``, ``arm`` and ``failure_reason``."""
        return (self.scan("patients").filter(pl.col("status") == "failed")
                .select("subject", "arm", "failure_reason").collect())

    def observations(self, *, tests: Iterable[str] | None = None, arms: Iterable[str] | None = None,
                     subjects: Iterable[str] | None = None) -> pl.LazyFrame:
        """The observations (subject, arm, day, test, value, unit) as a lazy frame, optionally
        only of some tests, arms or subjects (each a name or a list of names): the filters are
        pushed into the Parquet scan, so a large run is never read whole for a few read-outs. An
        arm the run does not hold, or a test code cartwin does not know, is refused: a typo would
        otherwise read as a run without data."""
        frame = self.scan("observations")
        for column, values in (("test", tests), ("arm", arms), ("subject", subjects)):
            if values is not None:
                # a lone name, not its letters ("CART" is not ["C", "A", "R", "T"])
                names = [values] if isinstance(values, str) else list(values)
                self._refuse_unknown(column, names)
                frame = frame.filter(pl.col(column).cast(pl.String).is_in(names))
        return frame

    def _refuse_unknown(self, column: str, names: list) -> None:
        import difflib  # noqa: PLC0415
        if column == "arm":
            known, where = self.arm_order(), "this run's arms"
        elif column == "test" and self.imported_model() is None:
            from cartwin.vocabulary import test_codes  # noqa: PLC0415
            known, where = sorted(test_codes()), "codes are case-sensitive; cartwin.vocabulary.test_codes() lists them"
        else:
            return  # subjects are many, and an imported model names its own read-outs
        unknown = [n for n in names if n not in known]
        if not unknown:
            return
        close = ([k for k in known if k.lower() == str(unknown[0]).lower()]
                 or difflib.get_close_matches(str(unknown[0]), known, n=1))
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        shown = known if column == "arm" else []
        raise RunDirectoryError(f"{self.path}: observations({column}s=...): unknown {column} {unknown}{hint}; "
                                f"{where}{': ' + str(shown) if shown else ''}")

    def parts(self, table: str = "observations") -> list[str]:
        """Names of a table's part files (one per chunk), sorted."""
        path = self.table_path(table)
        return sorted(p.name for p in path.glob(f"*{layout.PART_SUFFIX}")) if path.is_dir() else []

    def part_stamps(self, table: str = "observations") -> dict[str, list[int]]:
        """Size and modification time of each part: parts are written once, atomically, so a part
        rewritten (a rerun into the same directory) gets a new stamp."""
        stamps = {}
        for name in self.parts(table):
            st = (self.table_path(table) / name).stat()
            stamps[name] = [st.st_size, st.st_mtime_ns]
        return stamps

    def part_source(self, table: str, part_name: str) -> str:
        """How messages and flags name one part file."""
        return str(self.table_path(table) / part_name)

    def read_part(self, table: str, part_name: str) -> pl.DataFrame:
        """One part (whole patients of one chunk) of a table."""
        path = self.table_path(table) / part_name
        try:
            return pl.read_parquet(path)
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise RunDirectoryError(f"{path}: cannot be read as Parquet ({exc})") from None

    def relation(self, table: str, con: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyRelation:
        """A table as a DuckDB relation over its parts (in ``con``, default an in-memory one)."""
        return (con or duckdb.connect()).read_parquet(self.table_glob(table), union_by_name=True)

    # --- the report's cache of clinical scores ----------------------------------------------
    def scores(self, table: str) -> pl.LazyFrame:
        """Clinical scores the report cached per part (``visits``, ``patients``,
        ``adverse_events``), as one lazy frame."""
        return pl.scan_parquet(self.scores_glob(table))

    def score_parts(self, table: str) -> list[str]:
        """Names of the cached score parts of a table (each named as its observation part)."""
        folder = self.scores_dir / table
        return sorted(p.name for p in folder.glob(f"*{layout.PART_SUFFIX}")) if folder.is_dir() else []

    def write_score_part(self, table: str, part_name: str, frame: pl.DataFrame) -> Path:
        path = self.score_part(table, part_name)
        write_parquet(path, frame.to_arrow())
        return path


def open_run(path: str | Path, *, complete: bool = True,
             tables: Iterable[str] = TABLES) -> RunDirectory:
    """A run directory to read, checked first: it must hold ``tables`` and, with ``complete``,
    the manifest that a finished run writes last. Raises :class:`RunDirectoryError` otherwise."""
    return RunDirectory(path).require(tables, complete=complete)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunDirectoryError(f"{path}: missing; not a cartwin run directory") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunDirectoryError(f"{path}: not valid JSON ({exc}); the run directory is damaged") from None
