"""ASTCT 2019 consensus grading of CRS and ICANS (Lee et al., BBMT 2019;25:625-38).

Inputs per subject and day (canonical observation codes): TEMP (highest of the day, C), HYPOTEN
and HYPOXIA categories, ANTICYT (antipyretic/anti-cytokine given), ICE, ICANS_LOC, ICANS_SEIZ,
ICANS_MOTOR, ICANS_ICP. The categories may instead be given as recorded at the bedside: the oxygen
device O2_DEVICE with the flow O2_FLOW of a nasal cannula, the number of vasopressors VASOPRESS and
FLUIDS. The category-to-grade maps live in ``rules/crs_icans.toml``.
"""

from __future__ import annotations

import polars as pl

from cartwin.clinical._frames import sort_by_subject_day
from cartwin.clinical.ruleset import settings


def _map(column: str, mapping: dict) -> pl.Expr:
    return pl.col(column).cast(pl.Int64).replace_strict({int(k): v for k, v in mapping.items()}, default=None,
                                                        return_dtype=pl.Int8)


def hypoxia_category(device: str, flow_l_per_min: float | None = None) -> int:
    """HYPOXIA category from the oxygen device; nasal cannula splits on flow (ASTCT: <=6 L/min is low flow)."""
    config = settings("crs_icans")["crs"]
    if device == "nasal_cannula":
        if flow_l_per_min is None:
            raise ValueError("nasal cannula needs the flow in L/min to tell low from high flow")
        low = config["nasal_cannula"]["low_flow_max_l_per_min"]
        return config["oxygen_devices"]["low_flow_nasal_cannula" if flow_l_per_min <= low else "high_flow_nasal_cannula"]
    if device == "none":
        return 0
    return config["oxygen_devices"][device]


def hypotension_category(fluids: bool, vasopressors: list[str]) -> int:
    """HYPOTEN category: 0 none, 1 fluids only, 2 one vasopressor (vasopressin not counted), 3 several."""
    ignored = settings("crs_icans")["crs"]["vasopressors"]["not_counted"]
    counted = {v.lower() for v in vasopressors} - set(ignored)
    if len(counted) >= 2:
        return 3
    if len(counted) == 1:
        return 2
    return 1 if (fluids or vasopressors) else 0


def ice_score(orientation: int, naming: int, command: int, writing: int, attention: int) -> int:
    """ICE score 0-10 from its five items, each checked against its maximum."""
    limits = settings("crs_icans")["ice"]
    items = {"orientation": orientation, "naming": naming, "command": command, "writing": writing, "attention": attention}
    for name, points in items.items():
        if not 0 <= points <= limits[f"{name}_max"]:
            raise ValueError(f"ICE {name} points {points} outside 0-{limits[f'{name}_max']}")
    return sum(items.values())


RECORDED_INPUTS = ("O2_DEVICE", "O2_FLOW", "VASOPRESS", "FLUIDS")


def categories_from_recorded(daily: pl.DataFrame) -> pl.DataFrame:
    """HYPOXIA from O2_DEVICE (a nasal cannula by its O2_FLOW) and HYPOTEN from VASOPRESS and FLUIDS,
    on days where the category itself was not recorded; ``_o2_undecided`` marks a nasal cannula
    without its flow (low or high flow, grade 2 or 3, cannot be told)."""
    config = settings("crs_icans")["crs"]
    for column in ("HYPOTEN", "HYPOXIA", *RECORDED_INPUTS):
        if column not in daily.columns:
            daily = daily.with_columns(pl.lit(None, pl.Float64).alias(column))
    devices = {int(code): name for code, name in config["oxygen_device_codes"].items()}
    cannula = next(code for code, name in devices.items() if name == "nasal_cannula")
    category = {code: 0 if name == "none" else config["oxygen_devices"][name]
                for code, name in devices.items() if name != "nasal_cannula"}
    device = pl.col("O2_DEVICE").cast(pl.Int64)
    flow, low = pl.col("O2_FLOW"), config["nasal_cannula"]["low_flow_max_l_per_min"]
    from_device = (
        pl.when(device == cannula).then(
            pl.when(flow <= low).then(pl.lit(config["oxygen_devices"]["low_flow_nasal_cannula"]))
            .when(flow > low).then(pl.lit(config["oxygen_devices"]["high_flow_nasal_cannula"])))
        .otherwise(device.replace_strict(category, default=None, return_dtype=pl.Int64))
    ).cast(pl.Float64)
    pressors, fluids = pl.col("VASOPRESS"), pl.col("FLUIDS")
    from_pressors = (
        pl.when(pressors >= config["vasopressors"]["several_from"]).then(3.0).when(pressors >= 1).then(2.0)
        .when(fluids == 1).then(1.0).when(pressors.is_not_null() | fluids.is_not_null()).then(0.0)
    )
    return daily.with_columns(
        pl.coalesce(pl.col("HYPOXIA"), from_device).alias("HYPOXIA"),
        pl.coalesce(pl.col("HYPOTEN"), from_pressors).alias("HYPOTEN"),
        (pl.col("HYPOXIA").is_null() & (device == cannula) & flow.is_null()).fill_null(False).alias("_o2_undecided"),
    )


def grade_crs(daily: pl.DataFrame) -> pl.DataFrame:
    """Add ``crs_grade`` (ASTCT) and ``crs_reason`` to a frame with subject, day and any of
    TEMP, HYPOTEN, HYPOXIA, ANTICYT columns, or the recorded inputs the categories come from
    (:func:`categories_from_recorded`); missing columns are not evaluable."""
    config = settings("crs_icans")["crs"]
    for column in ("TEMP", "HYPOTEN", "HYPOXIA", "ANTICYT"):
        if column not in daily.columns:
            daily = daily.with_columns(pl.lit(None, pl.Float64).alias(column))
    added = [c for c in RECORDED_INPUTS if c not in daily.columns]
    daily = categories_from_recorded(daily)
    daily = sort_by_subject_day(daily)
    # Fever is no longer required once antipyretic or anti-cytokine therapy has been given.
    treated_before = (pl.col("ANTICYT").fill_null(0) == 1).cum_max().over("subject")
    fever = pl.col("TEMP") >= config["fever_at_least_c"]
    hypo_grade = _map("HYPOTEN", config["hypotension_grade"])
    oxy_grade = _map("HYPOXIA", config["hypoxia_grade"])
    organ = pl.max_horizontal(hypo_grade, oxy_grade)  # worse of hypotension and hypoxia
    undecided_o2 = pl.col("_o2_undecided")  # a nasal cannula without its flow: hypoxia grade 2 or 3
    organ_support = (pl.col("HYPOTEN").fill_null(0) > 0) | (pl.col("HYPOXIA").fill_null(0) > 0) | undecided_o2
    in_window = pl.col("day").is_between(config["first_day"], config["last_day"])
    all_missing = (pl.col("TEMP").is_null() & pl.col("HYPOTEN").is_null() & pl.col("HYPOXIA").is_null()
                   & ~undecided_o2)
    # grade 2 or 3 from the cannula decides nothing only when hypotension already gives 3 or more
    undecided = undecided_o2 & (fever.fill_null(False) | treated_before) & (hypo_grade.fill_null(0) < 3)
    grade = (
        pl.when(~in_window).then(pl.lit(None, pl.Int8))
        .when(all_missing).then(pl.lit(None, pl.Int8))
        .when(undecided).then(pl.lit(None, pl.Int8))
        .when(fever).then(pl.max_horizontal(pl.lit(1, pl.Int8), organ.fill_null(1)))
        .when(treated_before & organ_support).then(organ)
        .when(fever.is_null() & ~treated_before & organ_support).then(pl.lit(None, pl.Int8))
        .otherwise(pl.lit(0, pl.Int8))
    )
    reason = (
        pl.when(~in_window).then(pl.lit("outside the CRS grading window"))
        .when(all_missing).then(pl.lit("no temperature, hypotension or hypoxia recorded: not evaluable"))
        .when(undecided).then(pl.lit("nasal cannula without O2_FLOW: low or high flow (grade 2 or 3) cannot be told; "
                                     "not evaluable"))
        .when(fever.is_null() & ~treated_before & organ_support).then(
            pl.lit("temperature missing with hypotension/hypoxia: not evaluable"))
        .when(~fever.fill_null(False) & ~treated_before & organ_support).then(
            pl.lit("hypotension/hypoxia without fever and without prior anti-cytokine therapy: not CRS by ASTCT, review"))
        .otherwise(None)
    )
    return daily.with_columns(grade.cast(pl.Int8).alias("crs_grade"), reason.alias("crs_reason")).drop(
        "_o2_undecided", *added)


def grade_icans(daily: pl.DataFrame) -> pl.DataFrame:
    """Add ``icans_grade`` (ASTCT) and ``icans_reason``; columns ICE, ICANS_LOC, ICANS_SEIZ,
    ICANS_MOTOR, ICANS_ICP and optional ``icans_cause`` (a non-ICANS cause makes it not gradable)."""
    config = settings("crs_icans")["icans"]
    domains = ("ICE", "ICANS_LOC", "ICANS_SEIZ", "ICANS_MOTOR", "ICANS_ICP")
    for column in domains:
        if column not in daily.columns:
            daily = daily.with_columns(pl.lit(None, pl.Float64).alias(column))
    if "icans_cause" not in daily.columns:
        daily = daily.with_columns(pl.lit(None, pl.String).alias("icans_cause"))
    ice_grade = pl.lit(None, pl.Int8)
    for lower, grade in sorted(zip(config["ice_band_lower"], config["ice_band_grade"])):
        ice_grade = pl.when(pl.col("ICE") >= lower).then(pl.lit(grade, pl.Int8)).otherwise(ice_grade)
    ice_grade = pl.when(pl.col("ICE").is_null()).then(None).otherwise(ice_grade)
    grades = [
        ice_grade,
        _map("ICANS_LOC", config["consciousness_grade"]),
        _map("ICANS_SEIZ", config["seizure_grade"]),
        _map("ICANS_MOTOR", config["motor_grade"]),
        _map("ICANS_ICP", config["icp_grade"]),
    ]
    in_window = pl.col("day").is_between(config["first_day"], config["last_day"])
    other_cause = pl.col("icans_cause").is_not_null() & (pl.col("icans_cause") != "icans")
    any_known = pl.any_horizontal([pl.col(d).is_not_null() for d in domains])
    grade = (pl.when(~in_window | other_cause | ~any_known).then(pl.lit(None, pl.Int8))
             .otherwise(pl.max_horizontal(grades)))
    reason = (pl.when(~in_window).then(pl.lit("outside the ICANS grading window"))
              .when(other_cause).then(pl.concat_str([pl.lit("attributable to another cause ("), pl.col("icans_cause"),
                                                     pl.lit("): not gradable as ICANS")]))
              .when(~any_known).then(pl.lit("no ICANS domain recorded: not evaluable"))
              .otherwise(None))
    return daily.with_columns(grade.cast(pl.Int8).alias("icans_grade"), reason.alias("icans_reason"))


def episode_maximum(daily: pl.DataFrame, grade_column: str) -> pl.DataFrame:
    """Maximum daily grade per subject (project convention for reporting an episode)."""
    return daily.group_by("subject").agg(pl.col(grade_column).max().alias(f"{grade_column}_max"))
