"""Dose rules: the fludarabine renal adjustment, and the record of one administration.

Body size and renal function themselves (BSA, creatinine clearance) come from
:mod:`cartwin.body`; this module holds what a drug's label does with them. The clinical layer
reports the same rule (``clinical.gvhd_body.fludarabine_dose``) by calling
:func:`fludarabine_renal_factor`, so a dose given and a dose reported cannot disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class RenalRule:
    """A renal dose adjustment: full dose above ``full_dose_above_ml_min``; between
    ``reduced_from_ml_min`` and ``full_dose_above_ml_min``, both ends included, the dose times
    ``reduced_fraction`` (None where the label gives no single value and the protocol must);
    below ``reduced_from_ml_min``, not given."""

    source: str
    full_dose_above_ml_min: float
    reduced_from_ml_min: float
    reduced_fraction: float | None
    reduced_label: str
    withheld_label: str


# Fludarabine renal adjustment. US prescribing information of fludarabine phosphate for
# injection ("Renal insufficiency"): "creatinine clearance 30 to 70 mL/min/1.73 m2 ... 20% dose
# reduction", not to be given below 30. "30 to 70" includes both ends, so 70 mL/min is reduced
# and 70.01 is not (scoring_standards 8.4, case FLU-03). The label's unit is mL/min/1.73 m2; CAR-T
# lymphodepletion protocols apply Cockcroft-Gault in mL/min directly, and so do we. The EU SmPC
# says "reduce by up to 50%" for 30-70: not a single value, so a protocol using it must give its
# own fraction. CAR-T protocols (and the engine) follow the US label.
FLUDARABINE_RENAL_RULES: dict[str, RenalRule] = {
    "us_label": RenalRule(
        "Fludarabine phosphate for injection, US prescribing information (renal insufficiency)",
        70.0, 30.0, 0.8, "CrCl 30-70 mL/min: dose reduced by 20%", "CrCl < 30 mL/min: fludarabine withheld"),
    "eu_smpc": RenalRule(
        "Fludara SmPC (EU), posology in renal impairment",
        70.0, 30.0, None, "CrCl 30-70 mL/min: reduce by up to 50% (EU SmPC); the protocol must supply "
        "the fraction", "CrCl < 30 mL/min: fludarabine contraindicated (EU SmPC)"),
}
FLUDARABINE_POLICY = "us_label"


def fludarabine_renal_factor(crcl_ml_min: float, policy: str = FLUDARABINE_POLICY) -> tuple[float | None, str]:
    """The fraction of the fludarabine dose given at this creatinine clearance (mL/min), and why:
    1.0 (no adjustment), the reduced fraction (None where the policy leaves it to the protocol),
    or 0.0 (withheld)."""
    try:
        rule = FLUDARABINE_RENAL_RULES[policy]
    except KeyError:
        raise ValueError(f"unknown fludarabine renal policy {policy!r}; known: "
                         f"{sorted(FLUDARABINE_RENAL_RULES)}") from None
    if not (math.isfinite(crcl_ml_min) and crcl_ml_min >= 0):
        raise ValueError(f"creatinine clearance {crcl_ml_min} mL/min outside the rule table")
    if crcl_ml_min > rule.full_dose_above_ml_min:
        return 1.0, "no adjustment"
    if crcl_ml_min >= rule.reduced_from_ml_min:
        return rule.reduced_fraction, rule.reduced_label
    return 0.0, rule.withheld_label


@dataclass(frozen=True)
class Dose:
    """One administration for one patient, in the amount unit of its route (mg or cells)."""

    route: str  # the model's dose input name
    day: float
    amount: float
    duration_days: float = 0.0
    drug: str = ""
    note: str = ""
    rule: str = ""  # the protocol rule that gave this dose ("" for a planned dose)
