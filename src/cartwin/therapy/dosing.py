"""Body size, renal function and the dose rules that use them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CREATININE_UMOL_PER_MG_DL = 88.42  # 1 mg/dL creatinine = 88.42 umol/L (MW 113.12 g/mol)


def bsa_mosteller(height_cm, weight_kg):
    """Body surface area, m^2: sqrt(height cm x weight kg / 3600) (Mosteller, NEJM 1987;317:1098)."""
    return np.sqrt(np.asarray(height_cm, float) * np.asarray(weight_kg, float) / 3600.0)


def crcl_cockcroft_gault(age_y, weight_kg, creatinine_umol_l, female):
    """Creatinine clearance, mL/min (Cockcroft & Gault, Nephron 1976;16:31), with actual body
    weight and serum creatinine converted from umol/L to mg/dL; x 0.85 for women."""
    scr_mg_dl = np.asarray(creatinine_umol_l, float) / CREATININE_UMOL_PER_MG_DL
    crcl = (140.0 - np.asarray(age_y, float)) * np.asarray(weight_kg, float) / (72.0 * scr_mg_dl)
    return crcl * np.where(np.asarray(female, bool), 0.85, 1.0)


# Fludarabine renal adjustment, from the US prescribing information of fludarabine phosphate
# (Fludara, "Dosage and administration: renal impairment"): creatinine clearance 30-70 mL/min,
# reduce the dose by 20%; below 30 mL/min, do not give. The EU SmPC allows "up to 50%"
# reduction for 30-70 mL/min; we take the US rule because CAR-T lymphodepletion protocols
# (e.g. the tisagenlecleucel and lisocabtagene labels) follow it.
FLUDARABINE_RENAL_RULE = (
    # (CrCl lower bound inclusive, upper bound exclusive, dose factor, label)
    (70.0, math.inf, 1.0, "no adjustment"),
    (30.0, 70.0, 0.8, "CrCl 30-70 mL/min: dose reduced by 20%"),
    (0.0, 30.0, 0.0, "CrCl < 30 mL/min: fludarabine withheld"),
)


def fludarabine_renal_factor(crcl_ml_min: float) -> tuple[float, str]:
    for low, high, factor, label in FLUDARABINE_RENAL_RULE:
        if low <= crcl_ml_min < high:
            return factor, label
    raise ValueError(f"creatinine clearance {crcl_ml_min} mL/min outside the rule table")


@dataclass(frozen=True)
class Dose:
    """One administration for one patient, in the amount unit of its route (mg or cells)."""

    route: str  # the model's dose input name
    day: float
    amount: float
    duration_days: float = 0.0
    drug: str = ""
    note: str = ""
