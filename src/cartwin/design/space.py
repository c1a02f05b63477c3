"""The design space: products x CAR-T doses x a continuous lymphodepletion intensity.

Intensity runs from 0 to 1 along a path of regimens ordered from least to most lymphodepletion
(e.g. none -> reduced -> Erlangen); each step between two neighbours takes an equal share of it.
Between two neighbours every administration (drug, day) is a straight mix of the two:
``dose = (1 - w) x dose_a + w x dose_b``, an administration missing from one regimen counting as 0
there. So at intensity 0.75 on none -> reduced -> Erlangen, cyclophosphamide is 125 mg/m^2 on days
-5 and -4 and 625 mg/m^2 on day -3 (cumulative 875), fludarabine 25 mg/m^2 on days -5 to -3; the
cumulative dose of each drug grows linearly within a step (the path is checked to grow).
"""

from __future__ import annotations

from dataclasses import dataclass

from cartwin.therapy.arm import ArmTherapy, preset_product, preset_regimen
from cartwin.therapy.products import Product
from cartwin.therapy.regimens import Administration, Regimen

DRUG_ORDER = ("fludarabine", "cyclophosphamide")


def anchor_regimens(path: list[str], defined: dict) -> list[Regimen]:
    out = []
    for name in path:
        if name in defined:
            items = tuple(Administration(a.drug, float(a.dose_mg_m2), float(d), a.infusion_hours)
                          for a in defined[name] for d in a.days)
            out.append(Regimen(name, describe(items), "design spec", tuple(sorted(items, key=lambda x: (x.day, x.drug)))))
        else:
            out.append(preset_regimen(name))
    return out


def cumulative(regimen: Regimen, drug: str) -> float:
    return regimen.total_mg_m2(drug)


def describe(items) -> str:
    if not items:
        return "no lymphodepletion"
    parts = []
    for drug in DRUG_ORDER:
        doses = [a for a in items if a.drug == drug and a.dose_mg_m2 > 0]
        if doses:
            parts.append(f"{drug} " + ", ".join(f"{a.dose_mg_m2:.4g} (day {a.day:g})" for a in doses) + " mg/m^2")
    return "; ".join(parts) or "no lymphodepletion"


def interpolate(anchors: list[Regimen], t: float) -> Regimen:
    """The regimen at intensity ``t`` in [0, 1] along ``anchors``."""
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"intensity {t} outside [0, 1]")
    steps = len(anchors) - 1
    j = min(int(t * steps), steps - 1)
    w = t * steps - j
    a, b = anchors[j], anchors[j + 1]
    if w == 0.0 or w == 1.0:  # on a regimen of the path: that regimen
        return a if w == 0.0 else b
    doses: dict[tuple[str, float, float | None], float] = {}
    for weight, regimen in ((1.0 - w, a), (w, b)):
        for x in regimen.administrations:
            key = (x.drug, x.day, x.infusion_hours)
            doses[key] = doses.get(key, 0.0) + weight * x.dose_mg_m2
    items = tuple(sorted((Administration(drug, round(dose, 9), day, hours)
                          for (drug, day, hours), dose in doses.items() if dose > 1e-9),
                         key=lambda x: (x.day, x.drug)))
    return Regimen(f"intensity {t:.4g}", describe(items), f"interpolated between {a.name} and {b.name}", items)


@dataclass(frozen=True)
class Dose:
    cells_per_kg: float | None = None
    cells: float | None = None

    @property
    def label(self) -> str:
        return f"{self.cells_per_kg:.3g} cells/kg" if self.cells_per_kg is not None else f"{self.cells:.3g} cells (flat)"


@dataclass(frozen=True)
class DesignPoint:
    """One design: a product, a CAR-T dose, an intensity, and (for the report's uncertainty) model
    parameters multiplied by a factor."""

    product: str
    dose: Dose
    intensity: float
    factors: tuple[tuple[str, float], ...] = ()

    @property
    def key(self) -> str:
        extra = "".join(f"|{n}x{f:g}" for n, f in self.factors)
        return f"{self.product}|{self.dose.label}|{self.intensity:.6f}{extra}"


def grid(levels: int) -> list[float]:
    return [i / (levels - 1) for i in range(levels)]


def therapy(point: DesignPoint, arm_id: str, anchors: list[Regimen], products: dict) -> ArmTherapy:
    product = (Product.from_definition(point.product, products[point.product]) if point.product in products
               else preset_product(point.product))
    return ArmTherapy(arm_id, product, interpolate(anchors, point.intensity), point.dose.cells_per_kg, point.dose.cells)
