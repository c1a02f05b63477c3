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


# The instruments a scoring applies, each with its rule file and section (None: the file's top).
_INSTRUMENTS = (
    ("SLEDAI-2K", "sledai", "sledai2k"), ("SELENA-SLEDAI", "sledai", "selena"),
    ("PGA", "composite", "pga"), ("SRI", "composite", "sri"), ("BICLA", "composite", "bicla"),
    ("DORIS", "composite", "doris"), ("LLDAS", "composite", "lldas"), ("SFI", "composite", "sfi"),
    ("CTCAE", "ctcae_v5", None), ("ASTCT CRS", "crs_icans", "crs"), ("ASTCT ICANS", "crs_icans", "icans"),
    ("ICAHT", "icaht", None), ("CAR-HEMATOTOX", "hematotox", None), ("MAGIC aGvHD", "magic_agvhd", None),
)


def applied_rules() -> pl.DataFrame:
    """One row per clinical instrument: the standard's name and version as applied (``name``,
    ``version``, ``source`` of the rule file) and the rule file with its SHA-256, so that a scored
    output names exactly which rules made it."""
    import hashlib  # noqa: PLC0415
    rows = []
    for instrument, stem, section in _INSTRUMENTS:
        text = _text(f"{stem}.toml")
        block = settings(stem) if section is None else settings(stem).get(section, {})
        name = block.get("name") or block.get("standard") or instrument
        if stem == "composite" and section == "sri":
            name = f"{name} (SRI-{block.get('reduction_points', 4)})"
        rows.append({"instrument": instrument, "name": name, "version": str(block.get("version", "")),
                     "source": block.get("source", ""), "rule_file": f"{stem}.toml",
                     "rule_file_sha256": hashlib.sha256(text.encode()).hexdigest()})
    return pl.DataFrame(rows)
