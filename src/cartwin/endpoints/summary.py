"""Per-arm summaries of a per-patient endpoint frame, with exact 95% intervals.

Binary: k/n with the Clopper-Pearson interval. Continuous: the median with its exact
distribution-free interval, quartiles (linear interpolation, as DuckDB's ``quantile_cont``), range.
Time to event: the Kaplan-Meier median with the Brookmeyer-Crowley interval, KM quartiles, events
and censored counts. Methods: ``cartwin.endpoints.stats``.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from cartwin.endpoints import stats
from cartwin.endpoints.table import Endpoint, Table, definitions

SUMMARY_SCHEMA = {
    "endpoint": pl.String, "type": pl.String, "label": pl.String, "unit": pl.String,
    "n": pl.Int64, "k": pl.Int64, "events": pl.Int64, "censored": pl.Int64,
    "estimate": pl.Float64, "lower": pl.Float64, "upper": pl.Float64,
    "q25": pl.Float64, "q75": pl.Float64, "min": pl.Float64, "max": pl.Float64, "method": pl.String,
}
METHODS = {"binary": "proportion; exact Clopper-Pearson 95% interval",
           "continuous": "median; exact distribution-free 95% interval (order statistics)",
           "time_to_event": "Kaplan-Meier median; Brookmeyer-Crowley 95% interval (log-log)"}


def _nan(x) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def binary_summary(k: int, n: int) -> dict:
    iv = stats.clopper_pearson(k, n)
    return {"n": n, "k": k, "estimate": _nan(iv.estimate), "lower": _nan(iv.lower), "upper": _nan(iv.upper)}


def continuous_summary(values: np.ndarray) -> dict:
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return {"n": 0}
    iv = stats.median_interval(x)
    return {"n": len(x), "estimate": _nan(iv.estimate), "lower": _nan(iv.lower), "upper": _nan(iv.upper),
            "q25": float(np.quantile(x, 0.25)), "q75": float(np.quantile(x, 0.75)),
            "min": float(x.min()), "max": float(x.max())}


def time_to_event_summary(time, event, count=None) -> dict:
    """From per-patient times and event flags, or grouped with ``count`` (what a SQL GROUP BY
    time, event gives): the report and ``summarise`` share this."""
    km = stats.kaplan_meier(time, event, count)
    if km.n == 0:
        return {"n": 0, "events": 0, "censored": 0}
    iv = km.median()
    return {"n": km.n, "events": int(km.events.sum()), "censored": int(km.censored.sum()),
            "estimate": _nan(iv.estimate), "lower": _nan(iv.lower), "upper": _nan(iv.upper),
            "q25": _nan(km.quantile(0.25)), "q75": _nan(km.quantile(0.75)),
            "min": float(km.time.min()), "max": float(km.time.max())}


def summarise_one(e: Endpoint, rows: pl.DataFrame) -> dict:
    if e.type == "binary":
        values = rows[e.key].drop_nulls()
        out = binary_summary(int(values.sum()), values.len())
    elif e.type == "continuous":
        out = continuous_summary(rows[e.key].cast(pl.Float64).to_numpy())
    else:
        known = rows.filter(pl.col(e.key).is_not_null())
        out = time_to_event_summary(known[e.key].to_numpy(), known[e.event_column].to_numpy())
    return {"endpoint": e.key, "type": e.type, "label": e.label, "unit": e.unit, "method": METHODS[e.type], **out}


def summarise(frame: pl.DataFrame, by: str | list[str] | None = "arm", table: Table | None = None) -> pl.DataFrame:
    """One row per group of ``by`` (default: arm; None: everyone) and endpoint: n, k (binary),
    events and censored (time to event), estimate with its exact 95% interval, quartiles, range
    and the method in words. ``frame``: the output of ``compute``."""
    table = table or definitions()
    keys = [] if by is None else ([by] if isinstance(by, str) else list(by))
    groups = [((), frame)] if not keys else sorted(
        frame.group_by(keys, maintain_order=True), key=lambda g: tuple((v is not None, str(v)) for v in g[0]))
    records = []
    for group, rows in groups:
        for e in table.endpoints:
            records.append({**dict(zip(keys, group)), **summarise_one(e, rows)})
    schema = {k: frame.schema[k] for k in keys} | SUMMARY_SCHEMA
    return pl.DataFrame(records, schema=schema)
