"""MAGIC acute GvHD, NIH chronic GvHD global severity, and the fludarabine dose a patient receives.

Body size and renal function (BSA, creatinine clearance, eGFR) are not computed here: they live
once in :mod:`cartwin.body`, and the fludarabine renal rule in :mod:`cartwin.therapy.dosing`.
Both are leaves that import nothing of the model or the solver, so the clinical layer may use
them and still report exactly what the engine doses.
"""

from __future__ import annotations

import polars as pl

from cartwin.clinical.haematotox import band_value
from cartwin.clinical.ruleset import settings, table
from cartwin.therapy.dosing import FLUDARABINE_POLICY, fludarabine_renal_factor


def magic_stages(frame: pl.DataFrame) -> pl.DataFrame:
    """Organ stages and overall MAGIC grade (0-4 for 0, I-IV). Inputs (null = not recorded):
    rash_bsa_pct, bullae (0/1), bilirubin_umol_l, persistent_nausea (0/1), stool_ml, stool_episodes,
    severe_pain_or_bloody (0/1), weight_kg."""
    config = settings("magic_agvhd")
    bands = table("magic_agvhd", numeric=("lower", "upper", "stage"), boolean=("lower_inclusive", "upper_inclusive"))
    for name in ("rash_bsa_pct", "bullae", "bilirubin_umol_l", "persistent_nausea", "stool_ml", "stool_episodes",
                 "severe_pain_or_bloody", "weight_kg"):
        if name not in frame.columns:
            frame = frame.with_columns(pl.lit(None, pl.Float64).alias(name))
    frame = frame.with_columns(
        (pl.col("bilirubin_umol_l") / config["bilirubin_umol_per_mg_dl"]).alias("bilirubin_mg_dl"),
        (pl.col("stool_ml") / pl.col("weight_kg")).alias("stool_ml_per_kg"))

    def stage(organ: str, measure: str) -> pl.Expr:
        rows = bands.filter((pl.col("organ") == organ) & (pl.col("measure") == measure))
        return band_value(pl.col(measure), rows, "stage")

    adult = pl.col("weight_kg").is_null() | (pl.col("weight_kg") > config["adult_weight_above_kg"])
    lower_adult = pl.max_horizontal(stage("lower_gi_adult", "stool_ml"), stage("lower_gi_adult", "stool_episodes"))
    lower_child = pl.max_horizontal(stage("lower_gi_child", "stool_ml_per_kg"), stage("lower_gi_child", "stool_episodes"))
    severe_gi = stage("lower_gi_any", "severe_pain_or_bloody")
    frame = frame.with_columns(
        pl.max_horizontal(stage("skin", "rash_bsa_pct"), stage("skin", "bullae")).alias("skin"),
        stage("liver", "bilirubin_mg_dl").alias("liver"),
        stage("upper_gi", "persistent_nausea").alias("upper_gi"),
        pl.max_horizontal(pl.when(adult).then(lower_adult).otherwise(lower_child), severe_gi).alias("lower_gi"),
    )
    grade = pl.lit(0, pl.Int8)
    for rule in sorted(config["grade"], key=lambda g: g["grade"]):
        condition = pl.any_horizontal([pl.col(o).fill_null(0).is_between(lo, hi) for o, lo, hi in rule["any"]])
        grade = pl.when(condition).then(pl.lit(rule["grade"], pl.Int8)).otherwise(grade)
    none_recorded = pl.all_horizontal([pl.col(o).is_null() for o in ("skin", "liver", "upper_gi", "lower_gi")])
    return frame.with_columns(pl.when(none_recorded).then(None).otherwise(grade).alias("magic_grade"))


def nih_cgvhd_severity(scores: dict[str, int]) -> str:
    """NIH 2014 global severity from organ scores 0-3 (missing organs count as 0)."""
    c = settings("nih_cgvhd")
    unknown = set(scores) - set(c["organs"])
    if unknown:
        raise ValueError(f"unknown cGvHD organ(s) {sorted(unknown)}; expected {c['organs']}")
    values = {o: int(scores.get(o, 0)) for o in c["organs"]}
    involved = [o for o, s in values.items() if s > 0]
    lung = values["lungs"]
    if not involved:
        return "none"
    if any(s >= c["severe_min_score"] for s in values.values()) or lung >= c["severe_min_lung"]:
        return "severe"
    if (sum(1 for s in values.values() if s >= 1) >= c["moderate_min_organs_at_1"]
            or any(s == 2 for o, s in values.items() if o != "lungs") or lung == c["moderate_lung"]):
        return "moderate"
    if len(involved) <= c["mild_max_organs"] and max(values.values()) <= c["mild_max_score"] and lung == 0:
        return "mild"
    return "moderate"


def fludarabine_dose(dose_mg_m2: float, bsa_m2: float, crcl_ml_min: float, policy: str | None = None) -> dict:
    """Daily fludarabine dose after renal adjustment: fraction, mg/m2 and mg, or the reason none is
    given. The rule is the engine's (:func:`cartwin.therapy.dosing.fludarabine_renal_factor`), so
    the dose reported here is the dose a simulated patient receives; BSA and creatinine clearance
    come from :mod:`cartwin.body`."""
    fraction, label = fludarabine_renal_factor(crcl_ml_min, policy or FLUDARABINE_POLICY)
    if not fraction:  # withheld (0) or left to the protocol (None)
        return {"fraction": None, "mg_m2": None, "mg": None, "note": label}
    note = None if fraction == 1.0 else label
    return {"fraction": fraction, "mg_m2": dose_mg_m2 * fraction, "mg": dose_mg_m2 * fraction * bsa_m2, "note": note}
