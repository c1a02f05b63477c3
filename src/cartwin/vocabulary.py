"""The controlled vocabulary of observation test codes shared by every layer.

Simulated and real patients meet the clinical layer in one long table whose ``test`` column
uses these codes, each with one canonical unit. The table lives in ``data/test_codes.csv`` so
that documentation and validation read the same source.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class TestCode:
    code: str
    name: str
    unit: str
    kind: str  # lab | vital | clinical | descriptor
    cdisc_lbtestcd: str
    description: str


@cache
def test_codes() -> dict[str, TestCode]:
    text = resources.files("cartwin.data").joinpath("test_codes.csv").read_text()
    return {row["code"]: TestCode(**row) for row in csv.DictReader(text.splitlines())}


def canonical_unit(code: str) -> str:
    return test_codes()[code].unit
