"""Load the versioned rule tables under ``rules/``: every threshold the engines use lives there."""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from typing import Any

import polars as pl

_PACKAGE = "cartwin.clinical.rules"


def _text(name: str) -> str:
    return resources.files(_PACKAGE).joinpath(name).read_text()


@cache
def settings(name: str) -> dict[str, Any]:
    """A TOML rule file by stem, e.g. ``settings("sledai")``."""
    return tomllib.loads(_text(f"{name}.toml"))


@cache
def _table_cached(name: str) -> pl.DataFrame:
    from io import StringIO

    return pl.read_csv(StringIO(_text(f"{name}.csv")), infer_schema_length=0)


def table(name: str, numeric: tuple[str, ...] = (), boolean: tuple[str, ...] = ()) -> pl.DataFrame:
    """A CSV rule table by stem, every column text unless listed as numeric or boolean."""
    frame = _table_cached(name)
    casts = [pl.col(c).cast(pl.Float64) for c in numeric]
    casts += [(pl.col(c).str.to_lowercase() == "true") for c in boolean]
    return frame.with_columns(casts) if casts else frame


def rule_files() -> list[str]:
    return sorted(p.name for p in resources.files(_PACKAGE).iterdir() if p.name.endswith((".csv", ".toml")))
