"""The output directory of ``cartwin score DATA --out DIR``: one Parquet file per result table of
the clinical layer and a DuckDB database holding them all as tables (docs/clinical.md).

The directory must be new or empty: scoring never writes into a directory it did not create, so a
user's files, or a run directory given by mistake, are never overwritten. Each file is written to
a temporary name beside it and renamed into place.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import polars as pl

from cartwin.store import layout
from cartwin.store.atomic import _temporary, write_via
from cartwin.store.run_directory import RunDirectory, RunDirectoryError


class ScoredDirectory:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def table_path(self, table: str) -> Path:
        return self.path / f"{table}{layout.SCORED_SUFFIX}"

    @property
    def database_path(self) -> Path:
        return self.path / layout.SCORED_DATABASE

    def check_new(self) -> None:
        """Raise :class:`RunDirectoryError` unless the directory is new or empty. Creates nothing."""
        p = self.path
        if p.is_symlink() and not p.exists():
            raise RunDirectoryError(f"{p}: is a symbolic link to nothing; give --out a new or empty directory")
        if p.exists() and not p.is_dir():
            raise RunDirectoryError(f"{p}: exists and is not a directory; give --out a new or empty directory")
        if p.is_dir() and any(p.iterdir()):
            rd = RunDirectory(p)
            if rd.is_run() or rd.is_complete() or rd.table_path("patients").is_dir():
                raise RunDirectoryError(
                    f"{p}: is a cartwin run directory; scores are written to a new or empty directory "
                    "(`cartwin report RUN` scores a run inside it)")
            if self.database_path.exists() and self.table_path("visits").exists():
                raise RunDirectoryError(f"{p}: holds an earlier `cartwin score` output; scoring writes only to a "
                                        "new or empty directory (it never overwrites results): give another "
                                        "--out, or delete this one first")
            raise RunDirectoryError(f"{p}: holds other files; give --out a new or empty directory "
                                    "(scoring never overwrites files it did not create)")

    def write(self, tables: dict[str, pl.DataFrame]) -> dict[str, Path]:
        """Write every table as ``<name>.parquet`` and all of them into ``results.duckdb``; return
        the paths by table name (and ``duckdb``). Checks the directory is new or empty first."""
        self.check_new()
        self.path.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name, frame in tables.items():
            path = self.table_path(name)
            write_via(path, frame.write_parquet)
            paths[name] = path
        paths["duckdb"] = self.database_path
        _write_duckdb_tables(tables, self.database_path)
        return paths

    def read(self, tables: list[str] | tuple[str, ...]) -> dict[str, pl.DataFrame]:
        """Read result tables back (e.g. to export them); names the missing file otherwise."""
        out = {}
        for name in tables:
            path = self.table_path(name)
            if not path.exists():
                raise RunDirectoryError(f"{self.path}: not a scored-output directory of `cartwin score` "
                                        f"({path.name} missing)")
            try:
                out[name] = pl.read_parquet(path)
            except (pl.exceptions.PolarsError, OSError) as exc:
                raise RunDirectoryError(f"{path}: cannot be read as Parquet ({exc})") from None
        return out


def _write_duckdb_tables(tables: dict[str, pl.DataFrame], path: Path) -> None:
    fd, tmp = _temporary(path)
    os.close(fd)
    Path(tmp).unlink()  # duckdb must create the file itself
    try:
        with duckdb.connect(tmp) as con:
            for name, frame in tables.items():
                arrow = frame.to_arrow()  # noqa: F841  (referenced by name in the SQL below)
                con.execute(f"CREATE TABLE {name} AS SELECT * FROM arrow")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        Path(tmp + ".wal").unlink(missing_ok=True)
        raise
