"""CAR-T cellular kinetics (Cmax, Tmax, AUC 0-28, last detectable day) and B-cell aplasia."""

from __future__ import annotations

import polars as pl

from cartwin.clinical._frames import shifted_within_subject, sort_by_subject_day
from cartwin.clinical.ruleset import settings


def cart_kinetics(cart: pl.DataFrame) -> pl.DataFrame:
    """Per subject from (subject, day, value, lower) of CART in cells/uL.

    AUC: linear trapezoids clipped to [auc_first_day, auc_last_day], values at the window edges
    interpolated between the bracketing measurements; a window not covered by measurements is
    flagged rather than extrapolated. Detection limit: the row's lower limit.
    """
    config = settings("kinetics")["cart"]
    a, b = config["auc_first_day"], config["auc_last_day"]
    data = sort_by_subject_day(cart.filter(pl.col("value").is_not_null()))
    prev_day, prev_val = shifted_within_subject("day"), shifted_within_subject("value")  # the previous measurement
    lo = pl.max_horizontal(prev_day, pl.lit(a))
    hi = pl.min_horizontal(pl.col("day"), pl.lit(b))
    slope = (pl.col("value") - prev_val) / (pl.col("day") - prev_day)
    v_lo = prev_val + slope * (lo - prev_day)
    v_hi = prev_val + slope * (hi - prev_day)
    segment = pl.when(prev_day.is_not_null() & (hi > lo)).then((hi - lo) * (v_lo + v_hi) / 2).otherwise(0.0)
    post = pl.col("day") >= 0
    detectable = pl.col("value") >= pl.col("lower")
    summary = data.with_columns(segment.alias("_auc")).group_by("subject").agg(
        pl.col("value").filter(post).max().alias("cart_cmax"),
        pl.col("day").filter(post).sort_by(pl.col("value").filter(post), descending=True).first().alias("cart_tmax"),
        pl.col("_auc").sum().alias("cart_auc_0_28"),
        pl.col("day").filter(post & detectable).max().alias("cart_last_detectable_day"),
        pl.col("day").filter(post).max().alias("cart_last_measured_day"),
        pl.col("day").min().alias("_first"), pl.col("day").max().alias("_last"),
        pl.col("lower").filter(post).first().alias("cart_detection_limit"),
    )
    return summary.with_columns(
        pl.when((pl.col("_first") > a) | (pl.col("_last") < b))
        .then(pl.concat_str([pl.lit("AUC covers only days "), pl.max_horizontal(pl.col("_first"), pl.lit(a)).cast(pl.String),
                             pl.lit(" to "), pl.min_horizontal(pl.col("_last"), pl.lit(b)).cast(pl.String)]))
        .otherwise(None).alias("cart_auc_flag"),
        pl.when(pl.col("cart_last_detectable_day") == pl.col("cart_last_measured_day"))
        .then(pl.lit("detectable at the last measurement: last detectable day is censored")).otherwise(None)
        .alias("cart_detectable_flag"),
    ).drop("_first", "_last")


def bcell_aplasia(bcell: pl.DataFrame) -> pl.DataFrame:
    """Per subject from (subject, day, value) of BCELL in cells/uL: aplasia onset (first day
    after infusion below the threshold), the day B cells return (first later day at or above) and
    the last measured day. The duration of aplasia, censored where B cells have not returned, is
    an endpoint (cartwin.endpoints, ``bcell_aplasia_days``)."""
    config = settings("kinetics")["bcell"]
    threshold = config["aplasia_below_cells_per_ul"]
    data = sort_by_subject_day(bcell.filter(pl.col("value").is_not_null() & (pl.col("day") >= config["first_day"])))
    below = pl.col("value") < threshold
    onset = pl.col("day").filter(below).min()
    summary = data.group_by("subject").agg(
        onset.alias("bcell_aplasia_onset_day"),
        pl.col("day").max().alias("bcell_last_measured_day"),
    )
    returned = (data.join(summary.select("subject", "bcell_aplasia_onset_day"), on="subject")
                .filter((pl.col("day") > pl.col("bcell_aplasia_onset_day")) & (pl.col("value") >= threshold))
                .group_by("subject").agg(pl.col("day").min().alias("bcell_return_day")))
    out = summary.join(returned, on="subject", how="left")
    return out.with_columns(
        pl.col("bcell_aplasia_onset_day").is_not_null().alias("bcell_aplasia"),
        pl.when(pl.col("bcell_aplasia_onset_day").is_not_null() & pl.col("bcell_return_day").is_null())
        .then(pl.lit("B cells not returned by the last measurement: censored")).otherwise(None).alias("bcell_flag"),
        pl.lit(threshold).alias("bcell_aplasia_threshold"),
    )
