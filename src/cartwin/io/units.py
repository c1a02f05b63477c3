"""cartwin unit strings as SBML unit definitions.

A model declares units as short strings ("cells/uL", "L/mg/day", "IU/mL/day per cell"). Here
each becomes a factor times a product of SBML base units, so that an SBML file states what a
number means. Some units have no SBML base: international units (IU) are assay-specific and
are written as dimensionless; degrees Celsius cannot be written (SBML Level 3 dropped the
``celsius`` kind and has no offsets), so a Celsius quantity is dimensionless with its unit in
the element's notes. An unknown token is an error: a new unit must be added to the table below
rather than exported without meaning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import libsbml

from cartwin.io.errors import SBMLExportError

# token -> (factor, {SBML base kind: exponent}); factors relative to the kinds' SI-style bases
_TOKENS: dict[str, tuple[float, dict[str, int]]] = {
    "L": (1.0, {"litre": 1}), "dL": (0.1, {"litre": 1}), "mL": (1e-3, {"litre": 1}),
    "uL": (1e-6, {"litre": 1}),
    "kg": (1e3, {"gram": 1}), "g": (1.0, {"gram": 1}), "mg": (1e-3, {"gram": 1}),
    "ug": (1e-6, {"gram": 1}), "ng": (1e-9, {"gram": 1}), "pg": (1e-12, {"gram": 1}),
    "s": (1.0, {"second": 1}), "min": (60.0, {"second": 1}), "h": (3600.0, {"second": 1}),
    "24h": (86400.0, {"second": 1}), "day": (86400.0, {"second": 1}), "d": (86400.0, {"second": 1}),
    "year": (365.25 * 86400.0, {"second": 1}), "years": (365.25 * 86400.0, {"second": 1}),
    "week": (7 * 86400.0, {"second": 1}),
    "cell": (1.0, {"item": 1}), "cells": (1.0, {"item": 1}),
    "m": (1.0, {"metre": 1}), "cm": (1e-2, {"metre": 1}),
    "mol": (1.0, {"mole": 1}), "mmol": (1e-3, {"mole": 1}), "umol": (1e-6, {"mole": 1}),
    "nmol": (1e-9, {"mole": 1}),
    # enzyme unit: 1 umol/min
    "U": (1e-6 / 60.0, {"katal": 1}),
    # assay-defined international units: no SBML kind
    "IU": (1.0, {}),
    "1": (1.0, {}),
}
# whole strings that are dimensionless by meaning (scores, flags, ratios of like quantities)
_DIMENSIONLESS = {"1", "fold baseline", "presence", "points", "category", "count", "mg/mg",
                  "L/h per L/h CrCl", "C", "%", "grade", "%BSA", "episodes/day"}
_NOTE_ONLY = {"C": "degree Celsius (no SBML Level 3 unit; written as dimensionless)",
              "IU/mL": "international units per mL (IU has no SBML kind; written as 1/mL)"}


@dataclass(frozen=True)
class Decomposed:
    factor: float
    kinds: tuple[tuple[str, int], ...]  # sorted (kind, exponent), zero exponents dropped

    @property
    def is_dimensionless(self) -> bool:
        return not self.kinds and abs(self.factor - 1.0) < 1e-15


def _mul(a: Decomposed, b: Decomposed, sign: int = 1) -> Decomposed:
    kinds = dict(a.kinds)
    for k, e in b.kinds:
        kinds[k] = kinds.get(k, 0) + sign * e
    return Decomposed(a.factor * b.factor ** sign, tuple(sorted((k, e) for k, e in kinds.items() if e)))


_ONE = Decomposed(1.0, ())


def _token(tok: str, text: str) -> Decomposed:
    tok = tok.removesuffix("-eq")  # "cells/uL-eq": blood-equivalent, same unit
    m = re.fullmatch(r"10\^(-?\d+)", tok)
    if m:
        return Decomposed(10.0 ** int(m.group(1)), ())
    m = re.fullmatch(r"([A-Za-z0-9]+)\^(-?\d+)", tok)
    power = 1
    if m:
        tok, power = m.group(1), int(m.group(2))
    if tok not in _TOKENS:
        raise SBMLExportError(f"unit {text!r}: unknown unit token {tok!r}; add it to cartwin.io.units")
    factor, kinds = _TOKENS[tok]
    return Decomposed(factor ** power, tuple(sorted((k, e * power) for k, e in kinds.items())))


def decompose(text: str) -> Decomposed:
    """'L/mg/day' -> factor and base kinds. 'A per B' means A / (B)."""
    text = text.strip()
    if text in _DIMENSIONLESS:
        return _ONE
    if text.startswith("per "):
        return _mul(_ONE, decompose(text[4:]), -1)
    if " per " in text:
        left, right = text.split(" per ", 1)
        return _mul(decompose(left), decompose(right), -1)
    parts = re.split(r"([/*])", text.replace(" ", "*"))
    out, sign = _ONE, 1
    for part in parts:
        if part == "/":
            sign = -1
        elif part == "*":
            sign = 1
        elif part:
            out = _mul(out, _token(part, text), sign)
    return out


def unit_id(text: str) -> str:
    """A readable SBML UnitSId for a unit string."""
    s = text.strip().replace(" per ", "_per_").replace("/", "_per_").replace("^", "")
    s = re.sub(r"[^A-Za-z0-9_]", "_", s)
    s = re.sub(r"_+", "_", s).strip("_")
    return "u_" + (s or "one")


def note_for(text: str) -> str | None:
    return _NOTE_ONLY.get(text.strip())


class UnitTable:
    """Unit definitions of one SBML model, created on demand and shared by equal units."""

    def __init__(self, model: libsbml.Model):
        self.model = model
        self._ids: dict[Decomposed, str] = {}

    def id_for(self, text: str) -> str:
        dec = decompose(text)
        if dec.is_dimensionless:
            return "dimensionless"
        if dec in self._ids:
            return self._ids[dec]
        uid = unit_id(text)
        taken = set(self._ids.values())
        base, n = uid, 2
        while uid in taken:
            uid, n = f"{base}_{n}", n + 1
        ud = self.model.createUnitDefinition()
        _check(ud.setId(uid), f"unit {text}")
        ud.setName(text)
        kinds = list(dec.kinds) or [("dimensionless", 1)]
        for i, (kind, exponent) in enumerate(kinds):
            u = ud.createUnit()
            u.setKind(libsbml.UnitKind_forName(kind))
            u.setExponent(float(exponent))
            u.setScale(0)
            # (multiplier * kind)^exponent: the whole factor rides on the first unit
            u.setMultiplier(dec.factor ** (1.0 / exponent) if i == 0 else 1.0)
        self._ids[dec] = uid
        return uid


def _check(code: int, what: str) -> None:
    if code != libsbml.LIBSBML_OPERATION_SUCCESS:
        raise SBMLExportError(f"libsbml refused {what}: {libsbml.OperationReturnValue_toString(code)}")
