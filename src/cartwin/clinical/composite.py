"""Composite SLE endpoints on per-visit frames: PGA, SRI, BICLA, DORIS 2021, LLDAS, SELENA flare index.

Every function takes a frame with explicitly named input columns (documented per function), adds
its result columns and leaves missing inputs as not evaluable (null) unless the rule can be
decided without them. Thresholds come from ``rules/composite.toml``.
"""

from __future__ import annotations

import polars as pl

from cartwin.clinical.ruleset import settings

BILAG_DOMAINS = ("GEN", "MUC", "NEURO", "MSK", "CARD", "GI", "OPHTH", "RENAL", "HAEM")
BILAG_A, BILAG_B, BILAG_C = 1, 2, 3
_DIGITS = 10  # differences of decimal scores are compared after rounding (0.3 is not 0.30000000000000004)


def _config(name: str) -> dict:
    return settings("composite")[name]


def pga_from_line(mark_cm: float, line_cm: float) -> float:
    """PGA value from a mark on a 0-3 visual analogue line of any length."""
    config = _config("pga")
    if line_cm <= 0 or not 0 <= mark_cm <= line_cm:
        raise ValueError(f"mark {mark_cm} cm must lie on the {line_cm} cm line")
    return config["maximum"] * mark_cm / line_cm


def pga_is_valid(value: float) -> bool:
    config = _config("pga")
    return config["minimum"] <= value <= config["maximum"]


def _rise(now: str, before: str) -> pl.Expr:
    return (pl.col(now) - pl.col(before)).round(_DIGITS)


def bilag_changes(frame: pl.DataFrame) -> pl.DataFrame:
    """From BILAG_<domain> and BILAG_<domain>_base (1=A ... 5=E): new A and new B counts and whether
    every baseline A/B domain improved (BICLA). Null when any domain grade is missing."""
    present = [d for d in BILAG_DOMAINS if f"BILAG_{d}" in frame.columns and f"BILAG_{d}_base" in frame.columns]
    if len(present) < len(BILAG_DOMAINS):
        return frame.with_columns(pl.lit(None, pl.Int32).alias("bilag_new_a"), pl.lit(None, pl.Int32).alias("bilag_new_b"),
                                  pl.lit(None, pl.Boolean).alias("bilag_improved"))
    now = [pl.col(f"BILAG_{d}") for d in BILAG_DOMAINS]
    base = [pl.col(f"BILAG_{d}_base") for d in BILAG_DOMAINS]
    any_missing = pl.any_horizontal([c.is_null() for c in now + base])
    new_a = pl.sum_horizontal([((n == BILAG_A) & (b > BILAG_A)).cast(pl.Int32) for n, b in zip(now, base)])
    new_b = pl.sum_horizontal([((n == BILAG_B) & (b > BILAG_B)).cast(pl.Int32) for n, b in zip(now, base)])
    improved = pl.all_horizontal([
        pl.when(b == BILAG_A).then(n >= BILAG_B).when(b == BILAG_B).then(n >= BILAG_C).otherwise(True)
        for n, b in zip(now, base)])
    return frame.with_columns(
        pl.when(any_missing).then(None).otherwise(new_a).alias("bilag_new_a"),
        pl.when(any_missing).then(None).otherwise(new_b).alias("bilag_new_b"),
        pl.when(any_missing).then(None).otherwise(improved).alias("bilag_improved"))


def sri(frame: pl.DataFrame, reduction_points: int | None = None, missing_policy: str | None = None) -> pl.DataFrame:
    """SRI-k versus baseline. Inputs: sledai, sledai_base (SELENA-SLEDAI), pga, pga_base,
    bilag_new_a, bilag_new_b, treatment_failure (bool; null = none recorded). Optional: the
    bounds sledai_min, sledai_max, sledai_base_min, sledai_base_max of a score with descriptors
    not evaluable; where the score itself is missing, the SLEDAI component is decided when the
    bounds decide it (a fall of at least k whatever the missing descriptors, or less than k
    whatever they are)."""
    config = _config("sri")
    k = reduction_points or config["reduction_points"]
    policy = missing_policy or config["missing_policy"]
    name = f"sri{k}"
    failure = pl.col("treatment_failure").fill_null(False)
    sledai_ok = (pl.col("sledai_base") - pl.col("sledai")) >= k
    if {"sledai_min", "sledai_max", "sledai_base_min", "sledai_base_max"} <= set(frame.columns):
        least_fall = pl.col("sledai_base_min") - pl.col("sledai_max")
        most_fall = pl.col("sledai_base_max") - pl.col("sledai_min")
        from_bounds = pl.when(least_fall >= k).then(pl.lit(True)).when(most_fall < k).then(pl.lit(False))
        sledai_ok = pl.when(pl.col("sledai").is_not_null() & pl.col("sledai_base").is_not_null()).then(
            sledai_ok).otherwise(from_bounds.otherwise(pl.lit(None, pl.Boolean)))
    pga_ok = _rise("pga", "pga_base") < config["pga_worsening_below"]
    bilag_ok = (pl.col("bilag_new_a") <= config["max_new_bilag_a"]) & (pl.col("bilag_new_b") <= config["max_new_bilag_b"])
    combined = sledai_ok & pga_ok & bilag_ok  # Kleene: a false component decides, an unknown one leaves NA
    missing_sledai = sledai_ok.is_null()
    responder = (pl.when(failure).then(pl.lit(False))
                 .when(missing_sledai).then(pl.lit(False) if policy == "nri" else pl.lit(None, pl.Boolean))
                 .otherwise(combined))
    reason = (pl.when(failure).then(pl.lit("treatment failure: non-responder"))
              .when(missing_sledai).then(pl.lit("SLEDAI missing: non-responder imputation" if policy == "nri" else "SLEDAI missing: not evaluable"))
              .when(combined.is_null()).then(pl.concat_str([
                  pl.lit("a component is not evaluable ("),
                  pl.concat_list([pl.when(sledai_ok.is_null()).then(pl.lit("SLEDAI")),
                                  pl.when(pga_ok.is_null()).then(pl.lit("PGA")),
                                  pl.when(bilag_ok.is_null()).then(pl.lit("BILAG"))]).list.drop_nulls().list.join(", "),
                  pl.lit(" missing)")]))
              .otherwise(None))
    return frame.with_columns(
        sledai_ok.alias(f"{name}_sledai_component"), pga_ok.alias(f"{name}_pga_component"),
        bilag_ok.alias(f"{name}_bilag_component"), responder.alias(name), reason.alias(f"{name}_reason"))


def bicla(frame: pl.DataFrame) -> pl.DataFrame:
    """BICLA versus baseline. Inputs: bilag_improved, bilag_new_a, bilag_new_b, sledai2k,
    sledai2k_base, pga, pga_base, treatment_failure."""
    config = _config("bicla")
    responder = (
        pl.col("bilag_improved")
        & (pl.col("bilag_new_a") <= config["max_new_bilag_a"]) & (pl.col("bilag_new_b") <= config["max_new_bilag_b"])
        & (pl.col("sledai2k") <= pl.col("sledai2k_base"))
        & (_rise("pga", "pga_base") < config["pga_worsening_below"])
    )
    return frame.with_columns(
        pl.when(pl.col("treatment_failure").fill_null(False)).then(pl.lit(False)).otherwise(responder).alias("bicla"))


def _compare(column: str, operator: str, limit: float) -> pl.Expr:
    return {"<=": pl.col(column) <= limit, "<": pl.col(column) < limit}[operator]


def doris(frame: pl.DataFrame) -> pl.DataFrame:
    """DORIS 2021 remission. Inputs: csledai (clinical SLEDAI), pga, pred (mg/day), immsup,
    antimal (0/1; used for the off-therapy flag only)."""
    config = _config("doris")
    remission = ((pl.col("csledai") == config["clinical_sledai_equals"]) & (pl.col("pga") < config["pga_below"])
                 & _compare("pred", config["prednisolone_operator"], config["prednisolone_max_mg"]))
    # Off therapy: no glucocorticoid and no immunosuppressive; antimalarials allowed.
    off_therapy = remission & (pl.col("pred") == 0) & (pl.col("immsup") == 0)
    return frame.with_columns(remission.alias("doris_remission"), off_therapy.alias("doris_off_therapy"))


def lldas(frame: pl.DataFrame) -> pl.DataFrame:
    """LLDAS. Inputs: sledai2k, major_organ_activity (bool), new_activity (bool; null at the first
    visit), pga, pred, day, haemolysis, gi_activity (null = not recorded, taken as absent and noted)."""
    config = _config("lldas")
    cart_current = pl.col("day").is_between(0, config["cart_counts_as_current_until_day"], closed="left")
    met = ((pl.col("sledai2k") <= config["sledai_max"]) & ~pl.col("major_organ_activity")
           & ~pl.col("haemolysis").fill_null(False) & ~pl.col("gi_activity").fill_null(False)
           & ~pl.col("new_activity") & (pl.col("pga") <= config["pga_max"])
           & (pl.col("pred") <= config["prednisolone_max_mg"]))
    assumption = pl.concat_str([
        pl.when(pl.col("haemolysis").is_null()).then(pl.lit("haemolytic anaemia not recorded (taken as absent); ")).otherwise(pl.lit("")),
        pl.when(pl.col("gi_activity").is_null()).then(pl.lit("GI activity not recorded (taken as absent)")).otherwise(pl.lit("")),
    ]).str.strip_chars("; ").replace("", None)
    return frame.with_columns(
        pl.when(cart_current).then(pl.lit(False)).otherwise(met).alias("lldas"),
        pl.when(cart_current).then(pl.lit("CAR-T counts as current investigational therapy")).otherwise(assumption)
        .alias("lldas_note"))


def sfi(frame: pl.DataFrame) -> pl.DataFrame:
    """SELENA-SLEDAI Flare Index versus the previous visit: ``sfi_flare`` in {none, mild/moderate,
    severe}. Inputs: sledai, sledai_prev (SELENA-SLEDAI), pga, pga_prev, pred, pred_prev, weight,
    platelets_sle_new_low, haemolysis_severe, new_mild_manifestation, new_severe_manifestation,
    new_drug_mild, new_drug_severe, hospitalised. Event inputs that are null count as not having
    happened; the SLEDAI and PGA comparisons must be evaluable."""
    c = _config("sfi")
    event = lambda name: pl.col(name).fill_null(False)  # noqa: E731
    sledai_rise = pl.col("sledai") - pl.col("sledai_prev")
    severe_sledai = pl.col("sledai") > c["severe_sledai_above"]
    if c["severe_requires_rise"]:
        severe_sledai = severe_sledai & (sledai_rise > 0)
    mild_sledai = (sledai_rise >= c["mild_sledai_rise"]) & (pl.col("sledai") <= c["severe_sledai_above"])
    pga_rise = _rise("pga", "pga_prev")
    severe_pga = (pl.col("pga") > c["severe_pga_above"]) & (pga_rise > 0)
    mild_pga = (pga_rise >= c["mild_pga_rise"]) & (pl.col("pga") <= c["severe_pga_above"])
    pred_up = pl.col("pred").fill_null(0) > pl.col("pred_prev").fill_null(0)
    pred_per_kg = pl.col("pred") / pl.col("weight")
    severe_pred = (pred_up & (pred_per_kg > c["severe_prednisolone_mg_per_kg"])).fill_null(False)
    mild_pred = (pred_up & ~severe_pred).fill_null(False)
    severe = (severe_sledai.fill_null(False) | severe_pga.fill_null(False) | severe_pred
              | event("platelets_sle_new_low") | event("haemolysis_severe") | event("new_severe_manifestation")
              | event("new_drug_severe") | event("hospitalised"))
    mild = (mild_sledai.fill_null(False) | mild_pga.fill_null(False) | mild_pred
            | event("new_mild_manifestation") | event("new_drug_mild"))
    decidable = severe_sledai.is_not_null() & severe_pga.is_not_null()
    flare = (pl.when(severe).then(pl.lit("severe")).when(mild).then(pl.lit("mild/moderate"))
             .when(decidable).then(pl.lit("none")).otherwise(pl.lit(None, pl.String)))
    return frame.with_columns(flare.alias("sfi_flare"))


def serology_normalisation(frame: pl.DataFrame, direction: str) -> pl.DataFrame:
    """Serological normalisation (BLISS analyses) from value, baseline and limit columns.

    direction "low" (C3, C4): abnormal = below ``limit`` (LLN), normalised = value >= LLN.
    direction "high" (anti-dsDNA): abnormal = above ``limit`` (positivity cut-off), normalised =
    value at or below it. Defined only for patients abnormal at baseline (else null); also adds
    the percent change from baseline.
    """
    if direction == "low":
        abnormal_base, normal_now = pl.col("baseline") < pl.col("limit"), pl.col("value") >= pl.col("limit")
    elif direction == "high":
        abnormal_base, normal_now = pl.col("baseline") > pl.col("limit"), pl.col("value") <= pl.col("limit")
    else:
        raise ValueError("direction must be 'low' or 'high'")
    return frame.with_columns(
        pl.when(abnormal_base).then(normal_now).otherwise(None).alias("normalised"),
        ((pl.col("value") - pl.col("baseline")) / pl.col("baseline") * 100).alias("pct_change"))
