"""Haematotoxicity after CAR-T: ICAHT (EHA/EBMT 2023) and CAR-HEMATOTOX (Rejeski 2021).

ANC is taken from NEUT (10^9/L) and handled in cells/uL, as the standards write it.
"""

from __future__ import annotations

import polars as pl

from cartwin.clinical._frames import in_subject_day_order
from cartwin.clinical.ruleset import settings, table

CELLS_PER_UL_PER_10E9_L = 1000.0


def band_value(value: pl.Expr, bands: pl.DataFrame, result_column: str) -> pl.Expr:
    """Look a value up in a band table with lower/upper bounds and inclusivity flags."""
    expr = pl.when(value.is_null()).then(pl.lit(None, pl.Int8))
    for band in bands.iter_rows(named=True):
        condition = pl.lit(True)
        if band["lower"] is not None:
            condition = condition & ((value >= band["lower"]) if band["lower_inclusive"] else (value > band["lower"]))
        if band["upper"] is not None:
            condition = condition & ((value <= band["upper"]) if band["upper_inclusive"] else (value < band["upper"]))
        expr = expr.when(condition).then(pl.lit(int(band[result_column]), pl.Int8))
    return expr.otherwise(pl.lit(None, pl.Int8))


def _bands_from_lower(count: pl.Expr, lowers: list[int], grades: list[int]) -> pl.Expr:
    expr = pl.lit(0, pl.Int8)
    for lower, grade in sorted(zip(lowers, grades)):
        expr = pl.when(count >= lower).then(pl.lit(grade, pl.Int8)).otherwise(expr)
    return expr


def early_icaht(anc: pl.DataFrame, counting: str | None = None) -> pl.DataFrame:
    """Early ICAHT grade per subject from (subject, day, anc_per_ul).

    Days without a measurement are linearly interpolated; gaps of up to ``bridge_gap_days``
    above 500/uL between two days at or below it count as days at or below (non-stable recovery).
    """
    config = settings("icaht")["early"]
    counting = counting or config["counting"]
    if counting not in ("cumulative", "longest"):
        raise ValueError("ICAHT counting must be 'cumulative' or 'longest'")
    measured = (anc.filter(pl.col("anc_per_ul").is_not_null())
                .select("subject", pl.col("day").round(0).cast(pl.Int64), "anc_per_ul"))
    # the lowest ANC of the day; rows already one per subject and day (whole days, ascending, as a
    # run's daily counts) are their own lowest
    daily = (measured if in_subject_day_order(measured)
             else measured.group_by("subject", "day").agg(pl.col("anc_per_ul").min()))
    span = daily.group_by("subject").agg(pl.col("day").min().alias("first_obs"), pl.col("day").max().alias("last_obs"),
                                         pl.col("day").sort().diff().max().alias("max_gap"))
    grid = span.with_columns(
        pl.int_ranges(pl.max_horizontal(pl.col("first_obs"), pl.lit(config["first_day"])),
                      pl.min_horizontal(pl.col("last_obs"), pl.lit(config["last_day"])) + 1).alias("day")
    ).explode("day").drop_nulls("day")
    # The interpolation at a window day reads the nearest measurements before and after it, and
    # every row between those two is a window day: the measurements in the window and, per subject,
    # the last one before it and the first one after it give the same series as all of them (a
    # year of daily counts is not joined, sorted and interpolated for a 31-day window).
    lo, hi = config["first_day"], config["last_day"]
    nearest = daily.filter((pl.col("day") < lo) | (pl.col("day") > hi)).group_by("subject").agg(
        pl.col("day").filter(pl.col("day") < lo).max().alias("_before"),
        pl.col("day").filter(pl.col("day") > hi).min().alias("_after"))
    near = (daily.join(nearest, on="subject", how="left")
            .filter(pl.col("day").is_between(lo, hi) | (pl.col("day") == pl.col("_before"))
                    | (pl.col("day") == pl.col("_after")))
            .select(daily.columns))
    window_points = pl.concat([grid.select("subject", "day"), near.select("subject", "day")]).unique()
    series = (window_points.join(near, on=["subject", "day"], how="left").sort("subject", "day")
              .with_columns(pl.col("anc_per_ul").interpolate().over("subject"))
              .join(grid.select("subject", "day"), on=["subject", "day"], how="semi"))
    results = []
    for threshold_key, suffix in (("anc_threshold_per_ul", "500"), ("severe_threshold_per_ul", "100")):
        threshold = config[threshold_key]
        below = series.with_columns((pl.col("anc_per_ul") <= threshold).alias("below"))
        below = below.with_columns(pl.col("below").rle_id().over("subject").alias("run"))
        runs = below.group_by("subject", "run").agg(pl.col("below").first(), pl.len().alias("length"),
                                                    pl.col("day").min().alias("start"), pl.col("day").max().alias("end"))
        runs = runs.sort("subject", "run").with_columns(
            pl.col("below").shift(1).over("subject").alias("below_before"),
            pl.col("below").shift(-1).over("subject").alias("below_after"))
        bridged = (~pl.col("below") & (pl.col("length") <= config["bridge_gap_days"])
                   & pl.col("below_before").fill_null(False) & pl.col("below_after").fill_null(False))
        runs = runs.with_columns((pl.col("below") | bridged).alias("counted"))
        runs = runs.with_columns((pl.col("counted") != pl.col("counted").shift(1).over("subject")).fill_null(True)
                                 .cum_sum().over("subject").alias("episode"))
        episodes = runs.filter(pl.col("counted")).group_by("subject", "episode").agg(
            pl.col("length").sum().alias("days"), pl.col("start").min().alias("start"), pl.col("end").max().alias("end"))
        summary = episodes.group_by("subject").agg(
            pl.col("days").sum().alias(f"days_le{suffix}_cumulative"),
            pl.col("days").max().alias(f"days_le{suffix}_longest"),
            pl.col("start").min().alias(f"onset_le{suffix}"),
            pl.col("end").max().alias(f"last_le{suffix}"),
            pl.col("start").sort_by("end").last().alias(f"final_episode_start_le{suffix}"))
        results.append(summary)
    out = span.join(results[0], on="subject", how="left").join(results[1], on="subject", how="left")
    for suffix in ("500", "100"):
        for kind in ("cumulative", "longest"):
            out = out.with_columns(pl.col(f"days_le{suffix}_{kind}").fill_null(0))
    days500 = pl.col(f"days_le500_{counting}")
    days100 = pl.col(f"days_le100_{counting}")
    by_duration = pl.max_horizontal(
        _bands_from_lower(days500, config["days_500_lower"], config["days_500_grade"]),
        _bands_from_lower(days100, config["days_100_lower"], config["days_100_grade"]))
    grid_end = pl.min_horizontal(pl.col("last_obs"), pl.lit(config["last_day"]))
    no_recovery = ((pl.col("last_le500") == grid_end) & (pl.col("last_obs") == grid_end)
                   & (pl.col("final_episode_start_le500") <= config["no_recovery_onset_last_day"]))
    covers_window = pl.col("last_obs") >= config["first_day"]
    out = out.with_columns(
        pl.when(~covers_window).then(pl.lit(None, pl.Int8))
        .when(no_recovery).then(pl.lit(4, pl.Int8)).otherwise(by_duration).alias("icaht_early"),
        pl.lit(counting).alias("icaht_early_counting"),
        pl.concat_str([
            pl.when(no_recovery & (by_duration < 4)).then(pl.lit("grade 4 by the no-recovery rule (onset day 0-3, ANC <=500 to the last measurement); "))
            .otherwise(pl.lit("")),
            pl.when(pl.col("max_gap") > config["interpolation_flag_gap_days"]).then(
                pl.concat_str([pl.lit("ANC interpolated across a gap of "), pl.col("max_gap").cast(pl.String), pl.lit(" days; ")]))
            .otherwise(pl.lit("")),
            pl.when(pl.col("last_obs") < config["last_day"]).then(pl.lit("follow-up ends before day 30; ")).otherwise(pl.lit("")),
        ]).str.strip_chars("; ").replace("", None).alias("icaht_early_flag"),
    )
    return out.select("subject", "icaht_early", "icaht_early_counting", "days_le500_cumulative", "days_le500_longest",
                      "days_le100_cumulative", "days_le100_longest", "icaht_early_flag")


def late_icaht(anc: pl.DataFrame) -> pl.DataFrame:
    """Late ICAHT per subject: nadir in the late window, given a non-transient second value."""
    config = settings("icaht")["late"]
    window = anc.filter(pl.col("day").is_between(config["first_day"], config["last_day"]) & pl.col("anc_per_ul").is_not_null())
    summary = window.group_by("subject").agg(
        pl.col("anc_per_ul").min().alias("late_nadir"),
        pl.col("anc_per_ul").sort().get(1, null_on_oob=True).alias("late_second_lowest"),
        pl.len().alias("late_n"))
    grade = pl.lit(0, pl.Int8)
    for upper, value in sorted(zip(config["nadir_upper"], config["nadir_grade"]), reverse=True):
        grade = pl.when(pl.col("late_nadir") <= upper).then(pl.lit(value, pl.Int8)).otherwise(grade)
    transient = pl.col("late_second_lowest").is_not_null() & (pl.col("late_second_lowest") > config["second_lowest_max"])
    return summary.with_columns(
        pl.when(transient).then(pl.lit(0, pl.Int8)).otherwise(grade).alias("icaht_late"),
        pl.when(pl.col("late_n") == 1).then(pl.lit("single ANC value after day 30: graded on it alone"))
        .when(transient).then(pl.lit("transient: second-lowest ANC above 1500/uL")).otherwise(None).alias("icaht_late_flag"),
    ).select("subject", "icaht_late", "late_nadir", "late_second_lowest", "late_n", "icaht_late_flag")


def icaht(anc: pl.DataFrame, counting: str | None = None) -> pl.DataFrame:
    """Early and late ICAHT per subject (missing when no ANC in the window)."""
    subjects = anc.select("subject").unique()
    return (subjects.join(early_icaht(anc, counting), on="subject", how="left")
            .join(late_icaht(anc), on="subject", how="left")
            .with_columns(pl.max_horizontal("icaht_early", "icaht_late").alias("icaht_max")))


def hematotox(values: pl.DataFrame) -> pl.DataFrame:
    """CAR-HEMATOTOX per subject from wide pre-lymphodepletion values (columns PLAT, NEUT, HGB,
    CRP, FERRITIN in canonical units). Missing variables give a score range; the risk group is
    still reported when the range decides it."""
    config = settings("hematotox")
    bands = table("hematotox", numeric=("lower", "upper", "points"), boolean=("lower_inclusive", "upper_inclusive"))
    points, maxima = [], []
    for (variable,), var_bands in bands.group_by("variable", maintain_order=True):
        test = var_bands["test"][0]
        if test not in values.columns:
            values = values.with_columns(pl.lit(None, pl.Float64).alias(test))
        points.append(band_value(pl.col(test), var_bands, "points").alias(f"htx_{variable}"))
        maxima.append((f"htx_{variable}", int(var_bands["points"].max())))
    scored = values.with_columns(points)
    low = pl.sum_horizontal([pl.col(c).fill_null(0) for c, _ in maxima])
    high = pl.sum_horizontal([pl.col(c).fill_null(m) for c, m in maxima])
    cut = config["high_risk_at_least"]
    return scored.with_columns(
        low.alias("hematotox_min"), high.alias("hematotox_max"),
        pl.when(low == high).then(low).otherwise(None).alias("hematotox"),
        pl.when(low >= cut).then(pl.lit("high")).when(high < cut).then(pl.lit("low")).otherwise(None).alias("hematotox_risk"),
    )
