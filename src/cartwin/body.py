"""Body size and renal function: the one home of their formulas and constants.

Body surface area (Mosteller, DuBois), creatinine clearance (Cockcroft-Gault), eGFR (CKD-EPI
2021) and the creatinine unit conversion are written here and nowhere else. The population
derives its ``BSA`` and ``CRCL`` covariates with them, the dose rules of ``therapy/`` take their
results, the exporters and the fit derive what a subject table lacks, and the clinical layer
reports them; a test scans the package for these constants so that no room grows a copy.

Why a top-level module and not ``therapy/dosing.py``: these are functions of the patient alone,
needed by rooms that may not import ``therapy`` (``population`` may import only the model's
metadata; the clinical layer takes nothing of the engine). A leaf that imports nothing of
cartwin can be imported by every room without bending the room table of ``design.md``. What a
drug's label does with a clearance (the fludarabine renal rule) is a dose rule and lives in
``therapy/dosing.py``.

Creatinine is in umol/L, the canonical unit of the ``CREAT`` covariate and test code; convert a
value in mg/dL with :func:`creatinine_umol_l`. Every function takes scalars or arrays.
"""

from __future__ import annotations

import numpy as np

# 1 mg/dL creatinine = 10 mg/L / 113.12 g/mol = 88.40 umol/L; SI conversion tables print 88.4
# or 88.42 (a 0.02% difference, far below assay precision). We keep 88.42, the value the engine
# has always used, and use it everywhere: covariates, dose rules and the observation unit table
# (clinical/rules/units.csv, pinned to this constant by a test).
CREATININE_UMOL_PER_MG_DL = 88.42


def creatinine_mg_dl(umol_per_l):
    """Serum creatinine umol/L -> mg/dL."""
    return np.asarray(umol_per_l, float) / CREATININE_UMOL_PER_MG_DL


def creatinine_umol_l(mg_per_dl):
    """Serum creatinine mg/dL -> umol/L."""
    return np.asarray(mg_per_dl, float) * CREATININE_UMOL_PER_MG_DL


def _capped(value, cap: float | None):
    return value if cap is None else np.minimum(value, cap)


def bsa_mosteller(height_cm, weight_kg, cap: float | None = None):
    """Body surface area, m^2: sqrt(height cm x weight kg / 3600) (Mosteller RD, NEJM
    1987;317:1098). ``cap``: a protocol's BSA ceiling in m^2 (e.g. 2.0), none by default."""
    return _capped(np.sqrt(np.asarray(height_cm, float) * np.asarray(weight_kg, float) / 3600.0), cap)


def bsa_dubois(height_cm, weight_kg, cap: float | None = None):
    """Body surface area, m^2: 0.007184 x weight^0.425 x height^0.725 (DuBois D, DuBois EF, Arch
    Intern Med 1916;17:863)."""
    return _capped(0.007184 * np.asarray(weight_kg, float) ** 0.425 * np.asarray(height_cm, float) ** 0.725,
                   cap)


def crcl_cockcroft_gault(age_y, weight_kg, creatinine_umol_l, female):
    """Creatinine clearance, mL/min, not normalised to BSA (Cockcroft DW, Gault MH, Nephron
    1976;16:31): (140 - age) x weight / (72 x creatinine mg/dL), x 0.85 for women; actual body
    weight; creatinine given in umol/L."""
    scr_mg_dl = creatinine_mg_dl(creatinine_umol_l)
    crcl = (140.0 - np.asarray(age_y, float)) * np.asarray(weight_kg, float) / (72.0 * scr_mg_dl)
    return crcl * np.where(np.asarray(female, bool), 0.85, 1.0)


def egfr_ckd_epi_2021(age_y, creatinine_umol_l, female):
    """Race-free CKD-EPI 2021 eGFR, mL/min/1.73 m^2 (Inker LA et al., NEJM 2021;385:1737):
    142 x min(S/k, 1)^a x max(S/k, 1)^-1.200 x 0.9938^age [x 1.012 female], S in mg/dL,
    k 0.7 (F) / 0.9 (M), a -0.241 (F) / -0.302 (M)."""
    female = np.asarray(female, bool)
    ratio = creatinine_mg_dl(creatinine_umol_l) / np.where(female, 0.7, 0.9)
    alpha = np.where(female, -0.241, -0.302)
    value = (142.0 * np.minimum(ratio, 1.0) ** alpha * np.maximum(ratio, 1.0) ** -1.200
             * 0.9938 ** np.asarray(age_y, float))
    return value * np.where(female, 1.012, 1.0)
