"""Summaries of replicate trials and of missing data, over per-patient endpoint values.

Replicate trials (a protocol's ``[uncertainty]``): every replicate is a whole trial with its own
population parameters. Uncertainty and variability are kept apart:

- **uncertainty across replicates**: an endpoint's per-replicate estimate (a proportion, or the
  median of a continuous endpoint), then the median and the central interval of those estimates
  across replicates (``interval``, 90% by default: the 5th and 95th percentiles);
- **variability between patients**: within each replicate, the 5th-95th percentile range of a
  continuous endpoint's patient values, its median over replicates.

Missing data (a protocol's ``[conduct]``): counts of withdrawals by reason and of missed visits,
and which endpoints impute a withdrawn patient as a non-responder (``missing_data`` in the table).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from cartwin.endpoints.table import Table, definitions


def _quantiles(values: np.ndarray, interval: float) -> dict:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {"replicates": 0, "median": None, "lower": None, "upper": None}
    tail = (1 - interval) / 2
    lo, med, hi = np.quantile(values, [tail, 0.5, 1 - tail])
    return {"replicates": int(values.size), "median": float(med), "lower": float(lo), "upper": float(hi)}


def replicate_summary(frame: pl.DataFrame, interval: float = 0.9, table: Table | None = None,
                      reported_only: bool = True) -> list[dict]:
    """Per endpoint and arm, over a per-patient frame with ``arm``, ``replicate`` and endpoint
    columns: the estimate per replicate and its median and interval across replicates.

    Binary: ``per_replicate`` lists (replicate, responders, evaluable, proportion); continuous:
    (replicate, n, median, p05, p95), and ``between_patients`` the median over replicates of the
    patients' 5th and 95th percentiles."""
    table = table or definitions()
    out = []
    for e in table.endpoints:
        if reported_only and not e.report or e.type == "time_to_event" or e.key not in frame.columns:
            continue
        for arm in frame["arm"].unique(maintain_order=True).to_list():
            rows = frame.filter(pl.col("arm") == arm)
            if e.type == "binary":
                per = (rows.group_by("replicate").agg(pl.col(e.key).sum().alias("k"), pl.col(e.key).count().alias("n"))
                       .sort("replicate").with_columns((pl.col("k") / pl.col("n")).alias("p")))
                estimates = per.filter(pl.col("n") > 0)["p"].to_numpy().astype(float)
                out.append({"endpoint": e.key, "label": e.label, "type": e.type, "unit": e.unit, "arm": arm,
                            "across_replicates": _quantiles(estimates, interval),
                            "per_replicate": per.to_dicts()})
            else:
                per = (rows.filter(pl.col(e.key).is_not_null()).group_by("replicate")
                       .agg(pl.len().alias("n"), pl.col(e.key).median().alias("median"),
                            pl.col(e.key).quantile(0.05, "linear").alias("p05"),
                            pl.col(e.key).quantile(0.95, "linear").alias("p95"))
                       .sort("replicate"))
                out.append({"endpoint": e.key, "label": e.label, "type": e.type, "unit": e.unit, "arm": arm,
                            "across_replicates": _quantiles(per["median"].to_numpy().astype(float), interval),
                            "between_patients": {"p05": _median_or_none(per["p05"]), "p95": _median_or_none(per["p95"])},
                            "per_replicate": per.to_dicts()})
    return out


def _median_or_none(column: pl.Series) -> float | None:
    values = column.drop_nulls().to_numpy().astype(float)
    return float(np.median(values)) if values.size else None


def missing_data_summary(patients: pl.DataFrame, table: Table | None = None) -> dict:
    """Per arm: patients, withdrawals by reason, median withdrawal day, missed visits; and the
    endpoints that impute withdrawal as non-response. ``patients``: the run's patients table
    (ok patients) with ``withdrawn_day``, ``withdrawal_reason`` and ``visits_missed``."""
    table = table or definitions()
    arms = {}
    for arm in patients["arm"].unique(maintain_order=True).to_list():
        rows = patients.filter(pl.col("arm") == arm)
        gone = rows.filter(pl.col("withdrawn_day").is_not_null())
        reasons = {r: int(c) for r, c in gone.group_by("withdrawal_reason").len().sort("withdrawal_reason").iter_rows()}
        arms[arm] = {"patients": rows.height, "withdrawn": gone.height, "by_reason": reasons,
                     "median_withdrawal_day": float(gone["withdrawn_day"].median()) if gone.height else None,
                     "visits_missed": int(rows["visits_missed"].sum())}
    imputed = [{"endpoint": e.key, "label": e.label,
                "rule": ("withdrawn before day %g = non-responder" % e.assessment_day) if e.assessment_day is not None
                else "any withdrawal = non-responder"}
               for e in table.endpoints if e.missing_data == "non_responder" and e.report]
    return {"arms": arms, "non_responder_imputation": imputed}
