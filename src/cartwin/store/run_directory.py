"""The run directory: the contract between a run and everything that reads it.

Layout (see docs/run_directory.md)::

    DIR/run.json                 what the run computes (plan, protocol hash); written first
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
from pathlib import Path

import duckdb

from cartwin.simulate.events import EVENT_COLUMNS
from cartwin.store.atomic import write_json, write_parquet, write_text
from cartwin.vocabulary import PATIENT_COVARIATES

TABLES = ("observations", "events", "parameters", "patients")  # patients last: the chunk marker


class RunDirectoryError(ValueError):
    """The output directory cannot take this run (holds something else, or another run)."""


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
        "value": ("see unit", "simulated value"),
        "unit": ("", "unit of value (the test code's canonical unit)"),
    },
    "events": {k: ("", v) for k, v in EVENT_COLUMNS.items()},
}


class RunDirectory:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    # --- creation and checks -----------------------------------------------------------------
    @property
    def run_json(self) -> Path:
        return self.path / "run.json"

    def is_run(self) -> bool:
        return self.run_json.exists()

    def is_complete(self) -> bool:
        return (self.path / "manifest.json").exists()

    def check_new(self) -> None:
        """Raise unless the directory can hold a new run. Creates nothing."""
        if self.path.exists() and not self.path.is_dir():
            raise RunDirectoryError(f"{self.path}: exists and is not a directory; choose another --out")
        if self.path.is_dir() and any(self.path.iterdir()):
            if self.is_run():
                raise RunDirectoryError(
                    f"{self.path}: already holds a cartwin run; add --resume to continue it, or choose "
                    "an empty or new directory")
            raise RunDirectoryError(f"{self.path}: holds other files; choose an empty or new directory")

    def check_resumable(self, plan_json: dict, protocol_sha: str) -> None:
        if not self.is_run():
            raise RunDirectoryError(f"{self.path}: holds no cartwin run to resume (no run.json); "
                                    "run without --resume")
        stored = json.loads(self.run_json.read_text())
        if stored["protocol_sha256"] != protocol_sha:
            raise RunDirectoryError(f"{self.path}: the stored run used a different protocol file "
                                    "(hash differs); resume with the same file or start a new directory")
        if stored["plan"]["n_per_arm"] != plan_json["n_per_arm"] or stored["plan"]["seed"] != plan_json["seed"]:
            raise RunDirectoryError(f"{self.path}: the stored run has n per arm {stored['plan']['n_per_arm']} "
                                    f"and seed {stored['plan']['seed']}; resume with the same --n/--seed")

    def stored_plan(self) -> dict:
        return json.loads(self.run_json.read_text())["plan"]

    def start(self, plan_json: dict, protocol_text: str, protocol_sha: str, model: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_text(self.path / "protocol.toml", protocol_text)
        write_json(self.path / "dictionary.json",
                   {t: {c: {"unit": u, "description": d} for c, (u, d) in cols.items()}
                    for t, cols in DICTIONARY.items()})
        write_json(self.run_json, {"protocol_sha256": protocol_sha, "plan": plan_json, "model": model})

    # --- chunks ------------------------------------------------------------------------------
    def part(self, table: str, chunk_name: str) -> Path:
        return self.path / f"{table}.parquet" / f"{chunk_name}.parquet"

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
        into place, so no reader ever saw them)."""
        stale = [p for p in self.path.rglob(".*.tmp") if p.is_file()]
        for p in stale:
            p.unlink(missing_ok=True)
        return stale

    def finish(self, manifest: dict) -> None:
        self.remove_stale_temporaries()
        self.build_database()
        write_json(self.path / "manifest.json", manifest)

    def build_database(self) -> Path:
        target = self.path / "results.duckdb"
        tmp = self.path / ".results.duckdb.tmp"
        for stale in (tmp, Path(str(tmp) + ".wal")):
            if stale.exists():
                stale.unlink()
        con = duckdb.connect(str(tmp))
        try:
            for table in TABLES:
                glob = (self.path / f"{table}.parquet" / "*.parquet").resolve()
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
        con = duckdb.connect(str(self.path / "results.duckdb"), read_only=True)
        (stored,) = con.execute("SELECT run_directory FROM run_info").fetchone()
        if stored != str(self.path.resolve()):
            con.close()
            self.build_database()
            con = duckdb.connect(str(self.path / "results.duckdb"), read_only=True)
        return con
