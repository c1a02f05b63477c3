"""What the Read pages show of a completed, reported run: numbers for the charts and the tables.

Everything comes from the rooms that own it: the time courses (quantiles per arm, test and day)
and the swimmer lanes from the report's aggregation in DuckDB (:mod:`cartwin.report.aggregate`),
the endpoint table with its exact intervals from :func:`cartwin.endpoints.summarise` over the
run's per-patient endpoint values (the score parts the report wrote), the per-patient
trajectories from the store. Nothing here scores or simulates.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

from cartwin.store.run_directory import RunDirectory

MAX_TRAJECTORIES_PER_ARM = 60


def _finite(x):
    if x is None:
        return None
    try:
        x = float(x)
    except (TypeError, ValueError):
        return x
    return x if math.isfinite(x) else None


def _protocol_arms(rundir: RunDirectory) -> list[dict]:
    try:
        return tomllib.loads(rundir.protocol_path.read_text()).get("arms", [])
    except (OSError, tomllib.TOMLDecodeError):
        return []


def header(run_dir: Path) -> dict:
    rundir = RunDirectory(run_dir)
    manifest = rundir.manifest()
    return {"study_id": manifest.get("study_id"), "seed": manifest.get("seed"),
            "n_per_arm": manifest.get("n_per_arm", {}), "counts": manifest.get("counts", {}),
            "model": manifest.get("model", {}), "created": manifest.get("created_utc"),
            "failed": manifest.get("failed", []), "timings": manifest.get("timings_s", {})}


def charts(run_dir: Path) -> dict:
    """The report's figures as numbers: the time courses (median and 5-95% band per arm and day),
    the swimmer lanes of the arms small enough to draw patient by patient, and each arm's
    differences from the first arm with their 95% intervals (the report's aggregation)."""
    from cartwin.report import aggregate as agg

    rundir = RunDirectory(run_dir)
    db = agg.Database(rundir.path)
    try:
        aggregates = agg.aggregate(db, _protocol_arms(rundir))
        _, source, note = agg.time_courses(db)
    finally:
        db.close()
    swimmers = {arm: [{k: (v if k in ("subject", "events") else _finite(v)) for k, v in lane.items()}
                      for lane in lanes] for arm, lanes in aggregates.swimmer.items()}
    readouts = []
    for r in agg.READOUTS:
        rows = [{k: (_finite(v) if k in ("day", "q05", "q50", "q95") else v) for k, v in row.items()}
                for row in aggregates.time_course.get(r.key, [])]
        title = r.title if r.key != "sledai" else source
        readouts.append({"key": r.key, "title": title, "unit": r.unit, "scale": r.scale, "tests": list(r.tests),
                         "rows": rows})
    labels = {a.id: a.label for a in aggregates.arms}
    differences = [{"arm": d["arm"], "arm_label": labels.get(d["arm"], d["arm"]), "reference": d["reference"],
                    "endpoint": d["endpoint"], "label": d["label"], "kind": d["kind"],
                    "estimate": _finite(d["interval"].estimate), "lower": _finite(d["interval"].lower),
                    "upper": _finite(d["interval"].upper)} for d in agg.differences(aggregates)]
    return {"arms": [{"id": a.id, "label": a.label, "n": a.n, "ok": a.ok, "failed": a.failed} for a in aggregates.arms],
            "readouts": readouts, "sledai_note": note, "swimmers": swimmers,
            "swimmer_max": agg.SWIMMER_MAX_PATIENTS, "differences": differences,
            "reference_label": aggregates.arms[0].label if aggregates.arms else ""}


def tests(run_dir: Path) -> list[dict]:
    rundir = RunDirectory(run_dir)
    con = rundir.connect()
    try:
        rows = con.execute("SELECT CAST(test AS VARCHAR), any_value(CAST(unit AS VARCHAR)) FROM observations "
                           "GROUP BY ALL ORDER BY 1").fetchall()
    finally:
        con.close()
    return [{"test": t, "unit": u} for t, u in rows]


def trajectories(run_dir: Path, test: str, per_arm: int = MAX_TRAJECTORIES_PER_ARM) -> dict:
    """Each patient's values of ``test`` over time (the first ``per_arm`` patients of each arm)."""
    import polars as pl

    rundir = RunDirectory(run_dir)
    frame = (rundir.observations(tests=[test]).select("subject", "arm", "day", "value", "unit")
             .with_columns(pl.col("arm").cast(pl.String), pl.col("unit").cast(pl.String))
             .sort("arm", "subject", "day").collect())
    series, shown, total = [], {}, {}
    for (subject,), rows in frame.group_by(["subject"], maintain_order=True):
        arm = rows["arm"][0]
        total[arm] = total.get(arm, 0) + 1
        if shown.get(arm, 0) >= per_arm:
            continue
        shown[arm] = shown.get(arm, 0) + 1
        series.append({"subject": subject, "arm": arm, "day": rows["day"].to_list(),
                       "value": [_finite(v) for v in rows["value"].to_list()]})
    unit = frame["unit"][0] if frame.height else ""
    return {"test": test, "unit": unit, "series": series, "shown": shown, "total": total}


def _pct(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def _num(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3g}"


def endpoint_table(run_dir: Path) -> dict:
    """Per endpoint of the endpoint table and arm: the estimate with its exact 95% interval
    (:func:`cartwin.endpoints.summarise`), formatted for the page, with the raw numbers beside."""
    from cartwin.endpoints import definitions, summarise

    rundir = RunDirectory(run_dir)
    frame = rundir.scores("patients").collect()
    arm_order = [a["id"] for a in _protocol_arms(rundir)]
    summary = summarise(frame, by="arm")
    arms = sorted({r for r in summary["arm"].to_list()}, key=lambda a: (arm_order.index(a) if a in arm_order else 99, a))
    table = definitions()
    rows = []
    for e in table.endpoints:
        cells = []
        for arm in arms:
            match = summary.filter((summary["arm"] == arm) & (summary["endpoint"] == e.key)).to_dicts()
            s = match[0] if match else {"n": 0}
            cells.append({"arm": arm, **_cell(e.type, s), "raw": {k: _finite(s.get(k)) for k in
                                                                 ("n", "k", "events", "censored", "estimate",
                                                                  "lower", "upper")}})
        rows.append({"key": e.key, "label": e.label, "unit": e.unit, "type": e.type, "cells": cells,
                     "method": summary.filter(summary["endpoint"] == e.key)["method"][0]
                     if summary.filter(summary["endpoint"] == e.key).height else ""})
    return {"arms": arms, "rows": rows, "version": table.version}


def _cell(kind: str, s: dict) -> dict:
    n = s.get("n") or 0
    if not n:
        return {"text": "not evaluable", "detail": ""}
    if kind == "binary":
        return {"text": f"{s['k']}/{n} ({_pct(s['estimate'])})",
                "detail": f"[{_pct(s['lower'])}\u2013{_pct(s['upper'])}]"}
    if kind == "continuous":
        return {"text": f"{_num(s['estimate'])} [{_num(s['lower'])}\u2013{_num(s['upper'])}]",
                "detail": f"IQR {_num(s['q25'])}\u2013{_num(s['q75'])}; n = {n}"}
    median = "not reached" if s.get("estimate") is None else _num(s["estimate"])
    return {"text": f"{median} [{_num(s.get('lower'))}\u2013{_num(s.get('upper'))}]",
            "detail": f"{s.get('events', 0)}/{n} events; {s.get('censored', 0)} censored"}
