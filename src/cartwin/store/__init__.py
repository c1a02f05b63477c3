"""The one reader and writer of cartwin's output directories.

- :func:`open_run` / :class:`RunDirectory`: a run directory (docs/run_directory.md): tables as
  Polars frames, lazy frames or DuckDB relations; manifest; chunk parts; the report's score cache.
- :class:`ScoredDirectory`: the output directory of ``cartwin score``.
- :mod:`cartwin.store.layout`: every file and folder name, declared once.

Attributes are imported on first use, so that ``cartwin.store.layout`` stays cheap to import.
"""

from __future__ import annotations

_EXPORTS = {
    "RunDirectory": "cartwin.store.run_directory",
    "RunDirectoryError": "cartwin.store.run_directory",
    "open_run": "cartwin.store.run_directory",
    "ScoredDirectory": "cartwin.store.scored",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cartwin.store' has no attribute {name!r}")
