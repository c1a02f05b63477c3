"""Lymphodepletion regimens: named presets and user-defined lists of drug administrations."""

from __future__ import annotations

from dataclasses import dataclass

DRUGS = {
    # drug: (model dose input, default infusion duration in hours, source of the duration)
    "fludarabine": ("FLUDARABINE", 0.5, "Fludara prescribing information: IV over 30 minutes"),
    "cyclophosphamide": ("CYCLOPHOSPHAMIDE", 1.0, "common CAR-T protocols: IV over 1 hour"),
}


@dataclass(frozen=True)
class Administration:
    drug: str
    dose_mg_m2: float
    day: float
    infusion_hours: float | None = None

    @property
    def duration_hours(self) -> float:
        return DRUGS[self.drug][1] if self.infusion_hours is None else self.infusion_hours


@dataclass(frozen=True)
class Regimen:
    name: str
    description: str
    source: str
    administrations: tuple[Administration, ...]

    def total_mg_m2(self, drug: str) -> float:
        return sum(a.dose_mg_m2 for a in self.administrations if a.drug == drug)


def _daily(drug: str, dose: float, days: tuple[int, ...]) -> tuple[Administration, ...]:
    return tuple(Administration(drug, dose, d) for d in days)


PRESETS: dict[str, Regimen] = {
    r.name: r
    for r in (
        Regimen("erlangen", "fludarabine 25 mg/m^2 days -5 to -3 + cyclophosphamide 1000 mg/m^2 "
                "day -3", "Mackensen 2022 Nat Med (Erlangen SLE protocol; the same regimen is "
                "verified for rese-cel/RESET, EULAR 2025 OP0338)",
                _daily("fludarabine", 25, (-5, -4, -3)) + _daily("cyclophosphamide", 1000, (-3,))),
        Regimen("standard", "fludarabine 30 + cyclophosphamide 500 mg/m^2 days -5 to -3",
                "tisagenlecleucel/axicabtagene labels; CTX110 CARBON (Flu 30 + Cy 500 x 3)",
                _daily("fludarabine", 30, (-5, -4, -3)) + _daily("cyclophosphamide", 500, (-5, -4, -3))),
        Regimen("reduced", "fludarabine 25 + cyclophosphamide 250 mg/m^2 days -5 to -3",
                "relma-cel in SLE (NCT05765006, EULAR 2024 POS0054: Cy 250 + Flu 25 mg/m^2/day; "
                "three days assumed as in the standard schedule)",
                _daily("fludarabine", 25, (-5, -4, -3)) + _daily("cyclophosphamide", 250, (-5, -4, -3))),
        Regimen("none", "no lymphodepletion", "TyU19 SLE (Wang D 2025, Med): benefit without "
                "lymphodepletion", ()),
    )
}
