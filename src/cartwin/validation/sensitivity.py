"""Elasticities of the clinical read-outs to the levers, on common random numbers.

Around a base arm (TyU19 1e6 cells/kg after the low-intensity Flu 25 + Cy 250 mg/m^2 x3 regimen,
refractory SLE), each lever is moved and the same virtual patients simulated again: every run has
one arm with the same id and seed, so patient i has the same covariates and random effects in
every run (cartwin's per-patient random streams). Continuous levers (dose, lymphodepletion
intensity: both drugs' mg/m^2 scaled together) are halved and doubled, and the elasticity is the
central finite difference d log y / d log x = (log y(2x) - log y(x/2)) / log 4. Switches (HLA
edits: TyU19 to the HLA-intact product; product: TyU19 to autologous) give the change in log y.
Intervals: a paired bootstrap over patients (the same resampled patients in every run).

Read-outs y, each from the clinical layer and the endpoints (``statistics.score_arms``): CAR-T peak (geometric
mean Cmax), B-cell aplasia (mean days in aplasia within follow-up, 0 without aplasia, censored
at the last measurement), remission by month 6 (SELENA-SLEDAI 0 and PGA < 1 by day 180) and
grade >= 3 neutropenia (CTCAE v5, worst grade at any time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from cartwin.validation import statistics as st
from cartwin.validation.suite import Suite

BASE = {"product": "tyu19", "cells_per_kg": 1e6, "regimen": "reduced", "population": "refractory_sle"}
FOLLOW_UP_DAYS = 730
STEP = 2.0
ARM_ID = "arm"
OUTPUTS = (
    ("cart_peak", "CAR-T peak (geometric mean Cmax)", "cells/uL"),
    ("aplasia_days", "B-cell aplasia (mean days within follow-up)", "days"),
    ("remission_m6", "remission by month 6 (SELENA-SLEDAI 0, PGA < 1)", "fraction"),
    ("neutropenia_g3", "grade >= 3 neutropenia", "fraction"),
)
BOOTSTRAP = 500


@dataclass(frozen=True)
class Lever:
    key: str
    label: str
    kind: str  # "continuous" or "switch"
    low: dict
    high: dict
    low_label: str
    high_label: str


def _regimen(scale: float) -> list[dict]:
    from cartwin.therapy.regimens import PRESETS

    grouped: dict[tuple[str, float], list[float]] = {}
    for a in PRESETS[BASE["regimen"]].administrations:
        grouped.setdefault((a.drug, a.dose_mg_m2), []).append(a.day)
    return [{"drug": drug, "dose_mg_m2": dose * scale, "days": days} for (drug, dose), days in grouped.items()]


LEVERS = (
    Lever("dose", "dose (cells/kg)", "continuous", {"cells_per_kg": BASE["cells_per_kg"] / STEP},
          {"cells_per_kg": BASE["cells_per_kg"] * STEP}, "5e5/kg", "2e6/kg"),
    Lever("intensity", "lymphodepletion intensity (both drugs' mg/m^2)", "continuous",
          {"regimen": _regimen(1 / STEP)}, {"regimen": _regimen(STEP)}, "x 0.5", "x 2"),
    Lever("hla", "HLA edits (TyU19 -> HLA-intact allogeneic)", "switch", {}, {"product": "allo_hla_intact"},
          "TyU19", "HLA-intact"),
    Lever("product", "product (TyU19 -> autologous)", "switch", {}, {"product": "autologous_cd19"},
          "TyU19", "autologous"),
)


def _protocol(suite: Suite, n: int, seed: int, **change) -> dict:
    spec = {**BASE, **change}
    arm = {"id": ARM_ID, "product": spec["product"], "dose": {"cells_per_kg": spec["cells_per_kg"]},
           "lymphodepletion": spec["regimen"], "n": n}
    return {"schema_version": 1, "study_id": "validation-sensitivity", "seed": seed,
            "follow_up_days": FOLLOW_UP_DAYS,
            "schedule": {"days": [d for d in suite.schedule if d <= FOLLOW_UP_DAYS]},
            "population": suite.populations[spec["population"]], "arms": [arm]}


def per_patient(arm: st.ArmData) -> pl.DataFrame:
    """One row per patient: the four read-outs' per-patient inputs. Aplasia days and remission by
    month 6 are the endpoints ``bcell_aplasia_days`` (onset to return, or to the last B-cell count
    when still aplastic; 0 here without aplasia) and ``remission_m6`` (``cartwin.endpoints``)."""
    p = arm.patients
    aplasia = (pl.when(pl.col("bcell_aplasia").fill_null(False)).then(pl.col("bcell_aplasia_days"))
               .otherwise(0.0))
    neut = (arm.lab_grades.filter((pl.col("term") == "Neutrophil count decreased") & pl.col("grade").is_not_null())
            .group_by("subject").agg((pl.col("grade").max() >= 3).alias("neutropenia_g3")))
    return (p.select("subject", pl.col("cart_cmax").alias("cart_peak"), aplasia.cast(pl.Float64).alias("aplasia_days"),
                     pl.col("remission_m6"))
            .join(neut, on="subject", how="left"))


def _summaries(values: dict[str, np.ndarray], idx: np.ndarray | None = None) -> dict[str, float]:
    out = {}
    for key, _, _ in OUTPUTS:
        x = values[key] if idx is None else values[key][idx]
        x = x[~np.isnan(x)]
        if x.size == 0:
            out[key] = math.nan
        elif key == "cart_peak":
            out[key] = float(np.exp(np.mean(np.log(np.maximum(x, 1e-6)))))
        else:
            out[key] = float(np.mean(x))
    return out


def _log_change(hi: float, lo: float) -> float:
    return math.log(hi / lo) if hi > 0 and lo > 0 and math.isfinite(hi) and math.isfinite(lo) else math.nan


@dataclass(frozen=True)
class Row:
    lever: Lever
    output: str
    low: float
    base: float
    high: float
    elasticity: float
    lower: float
    upper: float


def run_sensitivity(suite: Suite, n: int, seed: int, workers: int = 1, progress=None) -> list[Row]:
    from cartwin.protocol import parse_protocol
    from cartwin.run import simulate

    settings = {"base": {}}
    for lever in LEVERS:
        if lever.low:
            settings[f"{lever.key}_low"] = lever.low
        settings[f"{lever.key}_high"] = lever.high
    frames = {}
    for i, (name, change) in enumerate(settings.items()):
        if progress:
            progress(f"sensitivity run {i + 1}/{len(settings)}: {name}")
        sim = simulate(parse_protocol(_protocol(suite, n, seed, **change), f"sensitivity {name}"),
                       n_per_arm=n, seed=seed, workers=workers)
        frames[name] = per_patient(st.score_arms(sim.observations, f"sensitivity {name}")[ARM_ID])
    common = set.intersection(*(set(f["subject"].to_list()) for f in frames.values()))
    subjects = sorted(common)
    arrays = {}
    for name, f in frames.items():
        f = f.filter(pl.col("subject").is_in(subjects)).sort("subject")
        arrays[name] = {key: f[key].cast(pl.Float64).to_numpy() for key, _, _ in OUTPUTS}
    rng = np.random.default_rng(st.BOOTSTRAP_SEED)
    draws = [rng.integers(0, len(subjects), len(subjects)) for _ in range(BOOTSTRAP)]
    point = {name: _summaries(a) for name, a in arrays.items()}
    boot = {name: [_summaries(a, idx) for idx in draws] for name, a in arrays.items()}
    rows = []
    for lever in LEVERS:
        low = f"{lever.key}_low" if lever.low else "base"
        high = f"{lever.key}_high"
        scale = math.log(STEP * STEP) if lever.kind == "continuous" else 1.0
        for key, _, _ in OUTPUTS:
            e = _log_change(point[high][key], point[low][key]) / scale
            b = np.array([_log_change(h[key], l[key]) / scale for h, l in zip(boot[high], boot[low])])
            b = b[np.isfinite(b)]
            lo, hi = (float(np.quantile(b, 0.025)), float(np.quantile(b, 0.975))) if b.size else (math.nan, math.nan)
            rows.append(Row(lever, key, point[low][key], point["base"][key], point[high][key], e, lo, hi))
    return rows
