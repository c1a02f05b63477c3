"""A user's cohort table: real patients' baseline characteristics, one row per patient, from which
virtual patients are resampled (``population.cohort`` in a protocol).

The CSV has a header row and the columns of an explicit patient (docs/protocol.md): ``id``,
``sex`` (F or M), ``age``, ``weight``, ``height``, ``creatinine``, ``dsdna``, ``c3``, ``c4``,
``proteinuria``, ``pga``; optionally ``creatinine_unit`` and ``complement_unit`` (default the
canonical units) and ``descriptors`` (the SLEDAI descriptors active at baseline, separated by
``;``). Every problem is reported with the file, the line, the patient id and the column, and
what would fix it; all problems of the file at once.
"""

from __future__ import annotations

import csv
import math
import os
import re
from functools import lru_cache
from pathlib import Path

from cartwin.protocol.schema import ExplicitPatient
from cartwin.vocabulary import BY_FIELD, DESCRIPTORS

NUMERIC = ("age", "weight", "height", "creatinine", "dsdna", "c3", "c4", "proteinuria", "pga")
REQUIRED = ("id", "sex") + NUMERIC
OPTIONAL = ("creatinine_unit", "complement_unit", "descriptors")
MAX_PROBLEMS = 50
_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


class CohortError(ValueError):
    def __init__(self, path: str, problems: list[str]):
        self.path = path
        self.problems = problems
        shown = problems[:MAX_PROBLEMS]
        more = f"\n  ... and {len(problems) - MAX_PROBLEMS} more" if len(problems) > MAX_PROBLEMS else ""
        super().__init__(f"cohort file {path}:" + "".join(f"\n  {p}" for p in shown) + more)


def read_cohort(path: str | Path) -> tuple[ExplicitPatient, ...]:
    """The patients of a cohort CSV, checked; raises :class:`CohortError` naming every problem."""
    path = Path(path)
    stat = _stat(path)
    return _read(str(path), stat)


def _stat(path: Path) -> tuple[int, int]:
    try:
        s = os.stat(path)
    except OSError:
        raise CohortError(str(path), ["file not found; population.cohort names a CSV file relative "
                                      "to the protocol file"]) from None
    return s.st_mtime_ns, s.st_size


@lru_cache(maxsize=8)
def _read(path: str, stamp: tuple[int, int]) -> tuple[ExplicitPatient, ...]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CohortError(path, [f"cannot read the file as CSV: {exc}"]) from None
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise CohortError(path, ["the file is empty; it needs a header row and one row per patient"])
    header = [h.strip() for h in rows[0]]
    problems = []
    missing = [c for c in REQUIRED if c not in header]
    unknown = [c for c in header if c not in REQUIRED + OPTIONAL]
    if missing:
        problems.append(f"line 1 (header): missing column(s) {missing}; the header needs {list(REQUIRED)}")
    if unknown:
        problems.append(f"line 1 (header): unknown column(s) {unknown}; allowed: {list(REQUIRED + OPTIONAL)}")
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        problems.append(f"line 1 (header): column(s) {dupes} given twice")
    if problems:
        raise CohortError(path, problems)
    patients, ids = [], {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue  # a blank line
        if len(row) != len(header):
            problems.append(f"line {line}: {len(row)} values for {len(header)} columns")
            continue
        record = {h: cell.strip() for h, cell in zip(header, row)}
        patient, row_problems = _patient(record, line)
        problems += row_problems
        if patient is not None:
            if patient.id in ids:
                problems.append(f"line {line}, column id: patient id {patient.id!r} is also on line "
                                f"{ids[patient.id]}; ids must be unique")
            ids.setdefault(patient.id, line)
            patients.append(patient)
    if not patients and not problems:
        problems.append("no patient rows after the header")
    if problems:
        raise CohortError(path, problems)
    return tuple(patients)


def _patient(record: dict[str, str], line: int) -> tuple[ExplicitPatient | None, list[str]]:
    pid = record["id"]
    where = f"line {line} (id {pid or '?'})"
    problems = []
    if not pid:
        problems.append(f"line {line}, column id: missing; give each patient an id")
    elif not _ID.match(pid):
        problems.append(f"{where}, column id: {pid!r} may hold only letters, digits, _ . -")
    sex = record["sex"].upper()
    if sex not in ("F", "M"):
        problems.append(f"{where}, column sex: {record['sex']!r} is not F or M")
    values: dict[str, float] = {}
    for col in NUMERIC:
        text = record[col]
        if text == "":
            problems.append(f"{where}, column {col}: missing value; every patient needs one "
                            "(drop the row, or fill it in)")
            continue
        try:
            v = float(text)
        except ValueError:
            problems.append(f"{where}, column {col}: {text!r} is not a number")
            continue
        if not math.isfinite(v):
            problems.append(f"{where}, column {col}: {text!r} is not a finite number")
            continue
        values[col] = v
    units = {"creatinine_unit": record.get("creatinine_unit") or BY_FIELD["creatinine"].unit,
             "complement_unit": record.get("complement_unit") or BY_FIELD["c3"].unit}
    factors = {}
    for col, field in (("creatinine_unit", "creatinine"), ("complement_unit", "c3")):
        accepted = BY_FIELD[field].unit_factors
        if units[col] not in accepted:
            problems.append(f"{where}, column {col}: unknown unit {units[col]!r}; use one of {sorted(accepted)}")
        else:
            factors[field] = accepted[units[col]]
    for col, v in values.items():
        c = BY_FIELD[col]
        unit_field = {"creatinine": "creatinine", "c3": "c3", "c4": "c3"}.get(col)
        if unit_field and unit_field not in factors:
            continue  # its unit was already reported unknown
        factor = factors.get(unit_field, 1.0) if unit_field else 1.0
        lo, hi = c.range
        if lo is not None and not lo <= v * factor <= hi:
            unit = units["creatinine_unit"] if col == "creatinine" else units["complement_unit"] if unit_field else c.unit
            problems.append(f"{where}, column {col}: {v:g} {unit} is implausible (outside the physiologic "
                            f"range {lo / factor:g}-{hi / factor:g} {unit}); check the value and its unit")
    descriptors = [d.strip() for d in record.get("descriptors", "").split(";") if d.strip()]
    unknown = [d for d in descriptors if d not in DESCRIPTORS]
    if unknown:
        problems.append(f"{where}, column descriptors: unknown descriptor(s) {unknown}; known: {list(DESCRIPTORS)}, "
                        "separated by ';'")
    if problems:
        return None, problems
    return ExplicitPatient(id=pid, sex=sex, creatinine_unit=units["creatinine_unit"],
                           complement_unit=units["complement_unit"], descriptors=descriptors, **values), []
