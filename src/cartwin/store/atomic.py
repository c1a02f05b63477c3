"""Atomic file writes: a reader sees the old file or the whole new one, never half of one."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cartwin.store.layout import TEMPORARY_INFIX, TEMPORARY_SUFFIX


def current_umask() -> int:
    """The process's file-creation mask, read without changing it where the system allows
    (``/proc/self/status``); otherwise set and restored at once."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(fd_or_path) -> None:
    """Give a file made by ``tempfile.mkstemp`` (always 0600) the mode an ordinary new file
    would have: 0666 less the umask. Outputs are then as readable as the user's other files."""
    mode = 0o666 & ~current_umask()
    if isinstance(fd_or_path, int):
        os.fchmod(fd_or_path, mode)
    else:
        os.chmod(fd_or_path, mode)


def _temporary(path: Path) -> tuple[int, str]:
    """A new temporary file beside ``path``, named so that it is recognisably cartwin's own
    (``.<name>.cartwin-<random>.tmp``): a resumed run deletes only such files. Its mode follows
    the umask, as the final file's should."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{TEMPORARY_INFIX}", suffix=TEMPORARY_SUFFIX)
    follow_umask(fd)
    return fd, tmp


def _replace_from_temp(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temporary(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_via(path: Path, write) -> None:
    """Atomic write for libraries that want a file name: ``write(tmp_name)`` writes a temporary
    file beside ``path``, which then replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temporary(path)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(path: Path, data: bytes) -> None:
    _replace_from_temp(path, lambda fh: fh.write(data))


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def _text_columns(table: pa.Table) -> list[str]:
    """Columns of text or categories: subjects, tests, units, arms (few distinct values each)."""
    text = (pa.types.is_string, pa.types.is_large_string, pa.types.is_dictionary,
            getattr(pa.types, "is_string_view", lambda _: False))  # string_view: pyarrow >= 16
    return [f.name for f in table.schema if any(is_(f.type) for is_ in text)]


NO_STATISTICS = ("test", "unit")


def write_parquet(path: Path, table: pa.Table) -> None:
    # Dictionary encoding only where it pays, for text and categories: the writer tries it on a
    # float column too and falls back page by page, which cost about 40% of writing a run's
    # observations, for a larger file (benchmarks: docs/performance.md). The values read back
    # are the same either way.
    # Column statistics (each row group's minimum and maximum, which let a reader skip row groups
    # and files) for every column but the tests and units: a part of a run's tables holds every
    # test and unit, so theirs skip nothing, and the writer computes them from every row (a
    # ninth of the time of writing a run's observations).
    statistics = [name for name in table.column_names if name not in NO_STATISTICS]
    _replace_from_temp(path, lambda fh: pq.write_table(table, fh, compression="zstd",
                                                       use_dictionary=_text_columns(table),
                                                       write_statistics=statistics or False))
