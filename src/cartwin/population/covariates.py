"""The patient covariate vocabulary: what a population supplies to any model.

A model declares the covariates it needs by these names; the population layer produces them
for virtual patients (drawn) and for explicit patients (given), in these units.
"""

from __future__ import annotations

PATIENT_COVARIATES: dict[str, tuple[str, str]] = {
    # name: (unit, meaning)
    "SEXF": ("1", "1 female, 0 male"),
    "AGE": ("years", "age"),
    "WT": ("kg", "body weight"),
    "HT": ("cm", "height"),
    "CREAT": ("umol/L", "serum creatinine"),
    "BSA": ("m^2", "body surface area (Mosteller)"),
    "CRCL": ("mL/min", "creatinine clearance (Cockcroft-Gault, actual body weight)"),
    "DSDNA0": ("IU/mL", "baseline anti-dsDNA"),
    "C3_0": ("g/L", "baseline C3"),
    "C4_0": ("g/L", "baseline C4"),
    "UPROT0": ("g/24h", "baseline proteinuria"),
    "PGA0": ("points", "baseline physician global assessment (0-3)"),
}

DESCRIPTOR_FLAGS: dict[str, str] = {
    "arthritis": "ARTH0",
    "rash": "RASH0",
    "alopecia": "ALOP0",
    "vasculitis": "VASC0",
    "mucosal_ulcers": "MUC0",
    "pleurisy": "PLEUR0",
    "pericarditis": "PERIC0",
    "myositis": "MYOS0",
    "urinary_casts": "CASTS0",
    "hematuria": "HEMAT0",
    "pyuria": "PYUR0",
}
for _d, _flag in DESCRIPTOR_FLAGS.items():
    PATIENT_COVARIATES[_flag] = ("presence", f"{_d.replace('_', ' ')} active at baseline")
