"""What ``cartwin design`` writes: ``design.json`` (every number), ``points.csv`` (each evaluated
design point with its estimates), ``outcomes.parquet`` (per virtual patient and point, the endpoint
values) and ``design.html`` (the design report, figures inline; PNG and SVG beside it)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import polars as pl

import cartwin
from cartwin.design.evaluate import success
from cartwin.design.run import DesignResult, Estimate, binary_estimate, counts
from cartwin.design.space import cumulative, interpolate
from cartwin.store import atomic


class DesignOutputError(ValueError):
    """The output directory cannot be written."""


def _nan_to_none(x):
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_nan_to_none(v) for v in x]
    return x


def point_rows(result: DesignResult) -> pl.DataFrame:
    """One row per evaluated design point (with the most patients it saw): the requirements' and
    the toxicity endpoints' estimates with 95% Clopper-Pearson intervals."""
    ev = result.evaluator
    spec = result.loaded.spec
    rows = []
    for point in ev.points:
        frame = ev.outcomes.get(point.key)
        if frame is None:
            continue
        regimen = interpolate(result.anchors, point.intensity)
        row = {"product": point.product, "dose": point.dose.label,
               "cells_per_kg": point.dose.cells_per_kg, "cells": point.dose.cells,
               "intensity": point.intensity, "fludarabine_mg_m2": cumulative(regimen, "fludarabine"),
               "cyclophosphamide_mg_m2": cumulative(regimen, "cyclophosphamide"),
               "parameters": ";".join(f"{n}x{f:g}" for n, f in point.factors), "patients": frame.height,
               "failed": int(frame["failed"].sum())}
        for r, (k, n) in zip(result.requirements, counts(frame, result.requirements)):
            iv = Estimate(k, n).interval
            row |= {f"{r.endpoint}_k": k, f"{r.endpoint}_n": n, r.endpoint: iv.estimate,
                    f"{r.endpoint}_lower": iv.lower, f"{r.endpoint}_upper": iv.upper}
        for e in spec.goal.toxicity:
            if e in {r.endpoint for r in result.requirements}:
                continue
            est = binary_estimate(frame, e)
            iv = est.interval
            row |= {f"{e}_k": est.k, f"{e}_n": est.n, e: iv.estimate, f"{e}_lower": iv.lower, f"{e}_upper": iv.upper}
        rows.append(row)
    return pl.DataFrame(rows, infer_schema_length=None).sort("product", "cells_per_kg", "cells", "parameters", "intensity",
                                                              nulls_last=True)


def summary(result: DesignResult) -> dict:
    spec = result.loaded.spec
    n = spec.patients
    searches = []
    for s in result.searches:
        entry = {"product": s.product, "dose": s.dose.label,
                 "least_intensity": None if s.search.answer is None else result.levels[s.search.answer],
                 "patients_simulated": s.search.patients_simulated, "looks": len(s.search.looks),
                 "trace": [{"intensity": result.levels[lk.level], "patients": lk.patients, "counts": lk.counts,
                            "decision": lk.decision} for lk in s.search.looks]}
        if s.grid is not None:
            entry["grid"] = {"least_intensity": None if s.grid.answer is None else result.levels[s.grid.answer],
                             "patients": s.grid.patients_simulated, "same_answer": s.grid.answer == s.search.answer}
        searches.append(entry)
    recs = []
    for r in result.recommendations:
        d = dataclasses.asdict(r)
        d["dose"] = None if r.dose is None else r.dose.label
        d["trials"] = [dataclasses.asdict(t) | {"question": t.question} for t in r.trials]
        recs.append(d)
    return _nan_to_none({
        "cartwin_version": cartwin.__version__, "design_id": spec.design_id, "title": spec.title,
        "spec": result.loaded.source, "protocol": str(result.loaded.protocol_path), "seed": result.seed,
        "patients_per_point": n, "intensity_levels": result.levels,
        "intensity_path": spec.space.intensity_path,
        "requirements": [dataclasses.asdict(r) | {"text": r.text} for r in result.requirements],
        "goal": spec.goal.model_dump(), "search": spec.search.model_dump(),
        "searches": searches, "recommendations": recs,
        "patients_simulated": result.evaluator.simulated,
        "grid_patients": len(result.levels) * n * len(result.searches),
        "seconds": round(result.seconds, 2),
    })


def write_design(result: DesignResult, out: str | Path) -> Path:
    """Write the outputs into ``out`` (created; an existing non-empty directory is refused unless it
    holds an earlier design's outputs); returns the path of design.html."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / "design.json").exists():
        raise DesignOutputError(f"{out}: exists and is not empty (and holds no earlier design); give a new directory")
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_json(out / "design.json", summary(result))
    points = point_rows(result)
    atomic.write_text(out / "points.csv", points.write_csv())
    frames = []
    for i, point in enumerate(result.evaluator.points):
        frame = result.evaluator.outcomes.get(point.key)
        if frame is not None:
            frames.append(frame.with_columns(pl.lit(point.product).alias("product"), pl.lit(point.dose.label).alias("dose"),
                                             pl.lit(point.intensity).alias("intensity"),
                                             pl.lit(";".join(f"{n}x{f:g}" for n, f in point.factors)).alias("parameters")))
    if frames:
        atomic.write_parquet(out / "outcomes.parquet", pl.concat(frames, how="diagonal_relaxed").to_arrow())
    from cartwin.design.report import write_report
    return write_report(result, points, out)


