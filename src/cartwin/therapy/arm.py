"""An arm's therapy resolved from the protocol, and the doses it gives one patient."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cartwin.therapy.dosing import Dose, fludarabine_renal_factor
from cartwin.therapy.products import PRODUCTS, Product
from cartwin.therapy.regimens import DRUGS, PRESETS, Administration, Regimen


@dataclass(frozen=True)
class ArmTherapy:
    arm: str
    product: Product
    regimen: Regimen
    cells_per_kg: float | None
    flat_cells: float | None

    def __post_init__(self) -> None:
        if (self.cells_per_kg is None) == (self.flat_cells is None):
            raise UnknownTherapy(f"arm {self.arm!r}: give the CAR-T dose either per kg or as flat cells")
        dose = self.cells_per_kg if self.cells_per_kg is not None else self.flat_cells
        if not (isinstance(dose, (int, float)) and math.isfinite(dose) and dose > 0):
            raise UnknownTherapy(f"arm {self.arm!r}: CAR-T dose must be a positive number of cells "
                                 f"(per kg or flat), got {dose!r}")

    def patient_doses(self, covariates) -> list[list[Dose]]:
        """The doses of each patient of a covariate table (arrays or scalars by vocabulary name:
        body surface area ``BSA``, weight ``WT``, creatinine clearance ``CRCL``)."""
        bsa, weight, crcl = (np.atleast_1d(np.asarray(covariates[c], float)) for c in ("BSA", "WT", "CRCL"))
        return [self.doses(float(bsa[i]), float(weight[i]), float(crcl[i])) for i in range(bsa.size)]

    def doses(self, bsa_m2: float, weight_kg: float, crcl_ml_min: float) -> list[Dose]:
        out = []
        for a in self.regimen.administrations:
            route, _, _ = DRUGS[a.drug]
            amount, note = a.dose_mg_m2 * bsa_m2, f"{a.dose_mg_m2:g} mg/m^2 x {bsa_m2:.3f} m^2"
            if a.drug == "fludarabine":
                factor, label = fludarabine_renal_factor(crcl_ml_min)
                if factor != 1.0:  # a withheld dose stays in the record with amount 0
                    amount *= factor
                    note += f"; {label}"
            out.append(Dose(route, a.day, amount, a.duration_hours / 24.0, a.drug, note))
        if self.cells_per_kg is not None:
            cells, note = self.cells_per_kg * weight_kg, f"{self.cells_per_kg:g} cells/kg x {weight_kg:.1f} kg"
        else:
            cells, note = self.flat_cells, "flat dose"
        out.append(Dose("CART", 0.0, cells, 0.0, self.product.name, note))
        return out


class UnknownTherapy(ValueError):
    """A product or regimen name that is neither a preset nor defined, or an impossible dose."""


def preset_product(name: str | Product) -> Product:
    if isinstance(name, Product):
        return name
    try:
        return PRODUCTS[name]
    except KeyError:
        raise UnknownTherapy(f"unknown product {name!r}; presets: {sorted(PRODUCTS)}") from None


def preset_regimen(name: str | Regimen) -> Regimen:
    if isinstance(name, Regimen):
        return name
    try:
        return PRESETS[name]
    except KeyError:
        raise UnknownTherapy(f"unknown lymphodepletion regimen {name!r}; presets: {sorted(PRESETS)}") from None


def preset_therapy(product: str | Product, regimen: str | Regimen, cells_per_kg: float | None = None,
                   flat_cells: float | None = None, arm: str = "") -> ArmTherapy:
    """A therapy of preset (or given) product and regimen, outside any protocol."""
    return ArmTherapy(arm, preset_product(product), preset_regimen(regimen),
                      None if cells_per_kg is None else float(cells_per_kg),
                      None if flat_cells is None else float(flat_cells))


def resolve_arm(protocol, arm) -> ArmTherapy:
    """An arm's therapy: the protocol's own products and regimens first, then the presets."""
    if arm.product in protocol.products:
        product = Product.from_definition(arm.product, protocol.products[arm.product])
    else:
        product = preset_product(arm.product)
    ld = arm.lymphodepletion
    if isinstance(ld, str) and ld in protocol.regimens:
        regimen = _user_regimen(ld, protocol.regimens[ld])
    elif isinstance(ld, str):
        regimen = preset_regimen(ld)
    else:
        regimen = _user_regimen(f"{arm.id}-custom", ld)
    per_kg = getattr(arm.dose, "cells_per_kg", None)
    flat = getattr(arm.dose, "cells", None)
    return ArmTherapy(arm.id, product, regimen, per_kg, flat)


def _user_regimen(name: str, admins) -> Regimen:
    items = tuple(Administration(a.drug, a.dose_mg_m2, float(d), a.infusion_hours)
                  for a in admins for d in a.days)
    description = "; ".join(f"{a.drug} {a.dose_mg_m2:g} mg/m^2 days {', '.join(f'{d:g}' for d in a.days)}"
                            for a in admins)
    return Regimen(name, description, "protocol file", tuple(sorted(items, key=lambda x: x.day)))
