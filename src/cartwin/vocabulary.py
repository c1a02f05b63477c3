"""The controlled vocabularies shared by every layer: observation test codes, patient covariates
and the study days a baseline may be chosen on.

Simulated and real patients meet the clinical layer in one long table whose ``test`` column
uses the test codes, each with one canonical unit. The table lives in ``data/test_codes.csv`` so
that documentation and validation read the same source.

Patients are described by the covariates of :data:`PATIENT_COVARIATES` (below), declared once.
This module imports nothing of cartwin but :mod:`cartwin.body` (a leaf), so every room may use it.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

from cartwin import body


# A chosen last baseline day (a protocol's [scoring], `cartwin score --baseline-day`) is a study day
# relative to the CAR-T infusion within a year of it.
BASELINE_DAY_LIMIT = 365


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


# Abbreviations common in laboratory exports and the literature, for suggestions only: an
# observation file must use the codes themselves (a silent mapping could hide a wrong column).
# (CDISC LBTESTCD codes, e.g. CD19 or DNAAB, are matched from the table itself.)
COMMON_ABBREVIATIONS = {"ANC": "NEUT", "ALC": "LYM", "PLT": "PLAT", "HB": "HGB", "CD19B": "BCELL",
                        "ANTIDSDNA": "DSDNA", "ALAT": "ALT", "ASAT": "AST", "TBILI": "BILI", "CREA": "CREAT",
                        "IL-6": "IL6", "TEMPERATURE": "TEMP", "UPCR": "UPROT"}


def suggest_test_code(text: str) -> str | None:
    """The test code a user probably meant by ``text`` (another case, a name, a CDISC LBTESTCD or a
    common abbreviation), or None."""
    codes = test_codes()
    key = str(text).strip().casefold()
    for code, row in codes.items():
        if key in (code.casefold(), row.name.casefold()):
            return code
    by_cdisc = [code for code, row in codes.items() if row.cdisc_lbtestcd and row.cdisc_lbtestcd.casefold() == key]
    if by_cdisc:
        return by_cdisc[0]
    return COMMON_ABBREVIATIONS.get(str(text).strip().upper())


# --- the patient vocabulary ----------------------------------------------------------------------
# Every per-patient covariate and baseline disease descriptor, declared once: its column name
# (in patients.parquet, in a model's covariate list, in a subject table and, renamed only where a
# format demands it, in NONMEM and ADaM files), canonical unit, meaning, the protocol field that
# supplies it, the physiologic range a protocol value must lie in, the units a protocol may give,
# and whether it is derived from the others. The protocol schema, the population generator, the
# model, the store, the exporters and the fit read this table. Adding a covariate is an entry here
# and its field in protocol/schema.py (a test checks that the two agree); a derived one also needs
# its formula in cartwin/body.py and a line in with_derived. A new drawn covariate takes one more
# uniform from each patient's stream, before the descriptors' uniforms: the same seed then gives
# other virtual patients' descriptors, so say so when adding one.


@dataclass(frozen=True)
class PatientCovariate:
    name: str  # column and model name, e.g. "WT"
    unit: str  # canonical unit
    description: str
    field: str  # the protocol's word for it: population.<field>, an explicit patient's <field>
    #             or a descriptor key; "" for a derived covariate
    kind: str  # demographic | body | renal | disease | descriptor
    low: float | None = None  # physiologic range in the canonical unit (None: not checked)
    high: float | None = None
    units: tuple[tuple[str, float], ...] = ()  # other accepted units: (unit, factor to canonical)
    derived_from: tuple[str, ...] = ()  # the covariates it is computed from (cartwin.body)

    @property
    def derived(self) -> bool:
        return bool(self.derived_from)

    @property
    def unit_factors(self) -> dict[str, float]:
        """Accepted units -> factor to the canonical unit (the canonical unit itself included)."""
        return {self.unit: 1.0, **dict(self.units)}

    @property
    def range(self) -> tuple[float, float]:
        return self.low, self.high


# Physiologic ranges: the limits of the adult and adolescent lupus populations the default model
# was built for, not reference intervals. Draws are truncated to them (intersected with any
# bounds the protocol gives) and an explicit patient outside them is rejected.
_COVARIATES = (
    PatientCovariate("SEXF", "1", "1 female, 0 male", "sex", "demographic"),
    PatientCovariate("AGE", "years", "age", "age", "demographic", 12.0, 90.0),
    PatientCovariate("WT", "kg", "body weight", "weight", "body", 30.0, 250.0),
    PatientCovariate("HT", "cm", "height", "height", "body", 120.0, 220.0),
    PatientCovariate("CREAT", "umol/L", "serum creatinine", "creatinine", "renal", 20.0, 1500.0,
                     (("mg/dL", body.CREATININE_UMOL_PER_MG_DL),)),
    # a derived covariate's range is what its inputs' ranges give (Mosteller over HT and WT;
    # Cockcroft-Gault over AGE, WT, CREAT and sex), for a value given in its place
    PatientCovariate("BSA", "m^2", "body surface area (Mosteller)", "", "body", 1.0, 3.91,
                     derived_from=("HT", "WT")),
    PatientCovariate("CRCL", "mL/min", "creatinine clearance (Cockcroft-Gault)",
                     "", "renal", 1.0, 1970.0, derived_from=("AGE", "WT", "CREAT", "SEXF")),
    PatientCovariate("DSDNA0", "IU/mL", "baseline anti-dsDNA", "dsdna", "disease", 0.0, 10000.0),
    PatientCovariate("C3_0", "g/L", "baseline C3", "c3", "disease", 0.05, 3.0, (("mg/dL", 0.01),)),
    PatientCovariate("C4_0", "g/L", "baseline C4", "c4", "disease", 0.005, 1.0, (("mg/dL", 0.01),)),
    PatientCovariate("UPROT0", "g/24h", "baseline proteinuria", "proteinuria", "disease", 0.0, 20.0,
                     (("mg/24h", 0.001),)),
    PatientCovariate("PGA0", "points", "baseline physician global assessment (0-3)", "pga", "disease",
                     0.0, 3.0),
)

# SLEDAI clinical descriptors active at baseline: (protocol key, flag covariate, name).
_DESCRIPTORS = (
    ("arthritis", "ARTH0", "arthritis"),
    ("rash", "RASH0", "rash"),
    ("alopecia", "ALOP0", "alopecia"),
    ("vasculitis", "VASC0", "vasculitis"),
    ("mucosal_ulcers", "MUC0", "mucosal ulcers"),
    ("pleurisy", "PLEUR0", "pleurisy"),
    ("pericarditis", "PERIC0", "pericarditis"),
    ("myositis", "MYOS0", "myositis"),
    ("urinary_casts", "CASTS0", "urinary casts"),
    ("hematuria", "HEMAT0", "haematuria"),
    ("pyuria", "PYUR0", "pyuria"),
)
DESCRIPTOR_FLAGS: dict[str, str] = {key: flag for key, flag, _ in _DESCRIPTORS}
"""Protocol descriptor key -> flag covariate (1 active at baseline, 0 not)."""
DESCRIPTORS: tuple[str, ...] = tuple(DESCRIPTOR_FLAGS)

PATIENT_COVARIATES: dict[str, PatientCovariate] = {c.name: c for c in _COVARIATES} | {
    flag: PatientCovariate(flag, "presence", f"{name} at baseline", key, "descriptor")
    for key, flag, name in _DESCRIPTORS}
"""Every patient covariate by name, in the order of the patients table."""

BY_FIELD: dict[str, PatientCovariate] = {c.field: c for c in PATIENT_COVARIATES.values() if c.field}
"""The same, by the protocol's word for each (``"weight"`` -> ``WT``)."""


def covariate(name: str) -> PatientCovariate:
    try:
        return PATIENT_COVARIATES[name]
    except KeyError:
        raise KeyError(f"unknown patient covariate {name!r}; known: {list(PATIENT_COVARIATES)}") from None


def with_derived(cov: dict, keep_given: bool = False) -> dict:
    """``cov`` with the derived covariates (BSA, CRCL) computed from the others by
    :mod:`cartwin.body`; ``keep_given`` keeps a derived value that ``cov`` already holds."""
    out = dict(cov)
    if not (keep_given and "BSA" in out):
        out["BSA"] = body.bsa_mosteller(out["HT"], out["WT"])
    if not (keep_given and "CRCL" in out):
        out["CRCL"] = body.crcl_cockcroft_gault(out["AGE"], out["WT"], out["CREAT"], np.asarray(out["SEXF"]) > 0.5)
    return out
