"""Drugs that protocol rules may give in reaction to a simulated patient (supportive care,
rescue therapy, a second CAR-T infusion): the model dose input each one enters, its amount
unit, its usual label dose and where it is recorded in a CDISC export (EX for study
treatment, CM for concomitant medication)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RuleDrug:
    name: str  # as written in a protocol and in the event table's DRUG column
    route: str  # the model's dose input
    unit: str  # amount unit of the route
    domain: str  # CDISC domain: "EX" (study treatment) or "CM" (concomitant medication)
    infusion_hours: float  # 0 = bolus
    usual: str  # the usual dose, with its source
    cdisc_route: str = "INTRAVENOUS"  # CDISC route of administration (controlled terminology)


RULE_DRUGS: dict[str, RuleDrug] = {d.name: d for d in (
    RuleDrug("tocilizumab", "TOCILIZUMAB", "mg", "CM", 1.0,
             "8 mg/kg IV over 1 h, at most 800 mg; repeat after 8 h if needed, at most 3 doses in 24 h "
             "(Actemra US prescribing information, CRS; Le et al., Oncologist 2018;23:943)"),
    RuleDrug("dexamethasone", "DEXAMETHASONE", "mg", "CM", 0.0,
             "10 mg IV every 6 h for CRS grade >= 2 not responding to tocilizumab (Lee et al., Biol "
             "Blood Marrow Transplant 2019;25:625; Neelapu et al., Nat Rev Clin Oncol 2018;15:47)"),
    RuleDrug("methylprednisolone", "METHYLPREDNISOLONE", "mg", "CM", 1.0,
             "pulse of 250-1000 mg IV daily for 3 days for a severe lupus flare (EULAR 2023 SLE "
             "recommendations, Fanouriakis et al., Ann Rheum Dis 2024;83:15)"),
    RuleDrug("filgrastim", "FILGRASTIM", "ug", "CM", 0.0,
             "5 ug/kg daily subcutaneously until neutrophil recovery (Neupogen US prescribing "
             "information)", "SUBCUTANEOUS"),
    RuleDrug("car-t", "CART", "cells", "EX", 0.0,
             "a second infusion of the arm's own product, in cells/kg or cells"),
)}


def concomitant_drugs() -> dict[str, str]:
    """Drugs a rule gives that a CDISC export records as concomitant medication (CM), with route."""
    return {d.name: d.cdisc_route for d in RULE_DRUGS.values() if d.domain == "CM"}
