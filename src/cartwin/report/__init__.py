"""The virtual-trial report: one self-contained HTML file per run directory.

``write_report(run_dir)`` scores the run with the clinical layer (part by part, cached under
``DIR/report/scores``), aggregates in DuckDB over the Parquet parts, draws the figures (SVG inlined
in the HTML, PNG and SVG also written beside it) and writes ``DIR/report/report.html``. The page
needs no network: styles are inline, figures are inline SVG, there is no script.
"""

from __future__ import annotations

import json
import math
import time
import tomllib
from importlib import resources
from pathlib import Path

import jinja2

from cartwin.endpoints import definitions, stats
from cartwin.endpoints.scoring import clinical_fingerprint, score_run
from cartwin.report import aggregate as agg_mod
from cartwin.report import figures as fig_mod
from cartwin.store import atomic, layout
from cartwin.store.run_directory import RunDirectory, RunDirectoryError

__all__ = ["write_report", "ReportError"]


class ReportError(ValueError):
    """The directory cannot be reported (not a completed run)."""


def write_report(run_dir: Path, *, workers: int | None = None, timings: dict | None = None) -> Path:
    """Write ``run_dir/report/report.html`` (and the figures beside it); return its path.

    ``timings``, when given, receives the seconds spent scoring, aggregating, drawing and writing.
    """
    run_dir = Path(run_dir)
    rundir = RunDirectory(run_dir)
    if not rundir.is_complete():
        try:
            rundir.manifest()  # the store's message: what the directory is and what to do
        except RunDirectoryError as exc:
            raise ReportError(str(exc)) from None
    out_dir = rundir.report_dir
    clock = {} if timings is None else timings
    t0 = time.perf_counter()
    scores = score_run(run_dir, workers=workers)
    clock["score_s"] = time.perf_counter() - t0
    clock["parts_rescored"] = scores.rescored

    t1 = time.perf_counter()
    manifest = agg_mod.manifest(run_dir)
    protocol_text = _read_text(rundir.protocol_path)
    protocol = _parse_protocol(protocol_text)
    db = agg_mod.Database(run_dir)
    try:
        agg = agg_mod.aggregate(db, protocol.get("arms", []))
        realism = _realism(db, protocol)
    finally:
        db.close()
    diffs = agg_mod.differences(agg)
    clock["aggregate_s"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    figure_dir = out_dir / "figures"
    figure_dir.mkdir(parents=True, exist_ok=True)
    timecourse = fig_mod.time_course_figures(agg, figure_dir)
    swimmers = [fig_mod.swimmer_figure(agg, arm, agg.swimmer[arm.id], figure_dir, i)
                for i, arm in enumerate(agg.arms) if arm.id in agg.swimmer]
    difference_figure = fig_mod.difference_figure(diffs, agg, figure_dir)
    km = fig_mod.km_figures(agg, figure_dir)
    intensity = fig_mod.intensity_figure(agg, _exposures(protocol), figure_dir)
    clock["figures_s"] = time.perf_counter() - t2

    t3 = time.perf_counter()
    html = _render(run_dir, manifest, protocol, protocol_text, agg, diffs, timecourse, swimmers, difference_figure,
                   realism, km, intensity)
    path = out_dir / "report.html"
    atomic.write_text(path, html)
    atomic.write_json(out_dir / "endpoints.json", {**_endpoint_json(agg, diffs), **realism})
    clock["render_s"] = time.perf_counter() - t3
    clock["total_s"] = time.perf_counter() - t0
    return path


def _read_text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def _parse_protocol(text: str) -> dict:
    try:
        return tomllib.loads(text) if text else {}
    except tomllib.TOMLDecodeError:
        return {}


def _regimen_descriptions(protocol: dict) -> dict[str, str]:
    """Arm id -> regimen in words, through the engine's own regimen resolution."""
    try:
        from cartwin.protocol.schema import Protocol
        from cartwin.therapy.arm import resolve_arm

        model = Protocol.model_validate(protocol)
        out = {}
        for arm in model.arms:
            regimen = resolve_arm(model, arm).regimen
            out[arm.id] = regimen.description or "; ".join(
                f"{a.drug} {a.dose_mg_m2:g} mg/m^2 day {a.day:g}" for a in regimen.administrations)
        return out
    except Exception:  # an old protocol the current schema rejects: the summary still shows the names
        return {}


def _exposures(protocol: dict) -> dict[str, tuple[float, float]]:
    """Arm id -> cumulative (fludarabine, cyclophosphamide) mg/m^2, through the engine's own regimen
    resolution; empty for a protocol the current schema rejects."""
    try:
        from cartwin.protocol.schema import Protocol
        from cartwin.therapy.arm import resolve_arm

        model = Protocol.model_validate(protocol)
        out = {}
        for arm in model.arms:
            regimen = resolve_arm(model, arm).regimen
            out[arm.id] = (regimen.total_mg_m2("fludarabine"), regimen.total_mg_m2("cyclophosphamide"))
        return out
    except Exception:
        return {}


def _product_descriptions() -> dict[str, str]:
    try:
        from cartwin.therapy.products import PRODUCTS
        return {name: p.description for name, p in PRODUCTS.items()}
    except Exception:
        return {}


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.1f}%"


def fmt(x) -> str:
    """Three significant digits, the precision the tables show for continuous endpoints."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.3g}"


def _binary_rows(agg: agg_mod.Aggregates) -> list[dict]:
    rows = []
    show_lower_bound = agg_mod.lower_bound_needed(agg.binary)
    for b in agg_mod.reported("binary"):
        if b.lower_bound_of and not show_lower_bound:
            continue
        cells = []
        for arm in agg.arms:
            k, n = agg.binary[b.key].get(arm.id, (0, 0))
            iv = stats.clopper_pearson(k, n)
            cells.append({"arm": arm.id, "k": k, "n": n, "pct": _pct(iv.estimate),
                          "lower": _pct(iv.lower), "upper": _pct(iv.upper)})
        rows.append({"key": b.key, "label": b.label, "note": b.note, "cells": cells})
    return rows


def _continuous_rows(agg: agg_mod.Aggregates) -> list[dict]:
    rows = []
    for c in agg_mod.reported("continuous"):
        cells = []
        for arm in agg.arms:
            s = agg.continuous[c.key].get(arm.id) or {"n": 0}
            cells.append({"arm": arm.id, "n": s["n"], **{k: fmt(s.get(k)) for k in ("median", "q25", "q75", "min", "max")}})
        rows.append({"key": c.key, "label": c.label, "unit": c.unit, "note": c.note, "cells": cells})
    return rows


def _time_to_event_rows(agg: agg_mod.Aggregates) -> list[dict]:
    rows = []
    for e in agg_mod.reported("time_to_event"):
        cells = []
        for arm in agg.arms:
            s = agg.time_to_event[e.key].get(arm.id) or {"n": 0}
            median = "not reached" if s["n"] and s.get("estimate") is None else fmt(s.get("estimate"))
            cells.append({"arm": arm.id, "n": s["n"], "events": s.get("events", 0), "censored": s.get("censored", 0),
                          "median": median, **{k: fmt(s.get(k)) for k in ("lower", "upper", "q25", "q75")}})
        rows.append({"key": e.key, "label": e.label, "unit": e.unit, "note": e.note, "event_label": e.event_label,
                     "cells": cells})
    return rows


def _ae_rows(agg: agg_mod.Aggregates) -> list[dict]:
    labels = {a.id: a.label for a in agg.arms}
    rows = []
    for label, per_arm in agg.adverse.items():
        cells = []
        for arm in agg.arms:
            a = per_arm[arm.id]
            k3 = sum(v for g, v in a["grades"].items() if g >= 3)
            iv = stats.clopper_pearson(k3, a["n"])
            cells.append({"arm": arm.id, "arm_label": labels[arm.id], "assessed": a["assessed"], "grades": a["grades"],
                          "k3": k3, "n": a["n"], "pct3": _pct(iv.estimate), "lower3": _pct(iv.lower),
                          "upper3": _pct(iv.upper), "not_evaluable": a["scored"] - a["n"]})
        rows.append({"label": label, "cells": cells})
    return rows


def _reference_labels(agg: agg_mod.Aggregates) -> list[str]:
    labels = {a.id: a.label for a in agg.arms}
    return [labels[r] for r in dict.fromkeys(agg_mod.references(agg.arms).values())]


def _difference_rows(agg: agg_mod.Aggregates, diffs: list[dict]) -> list[dict]:
    labels = {a.id: a.label for a in agg.arms}
    rows = []
    for d in diffs:
        iv = d["interval"]
        if d["kind"] == "difference":
            est, lo, hi = (f"{100 * v:+.1f} pp" for v in (iv.estimate, iv.lower, iv.upper))
        else:
            est, lo, hi = (f"x{v:.3g}" for v in (iv.estimate, iv.lower, iv.upper))
        rows.append({**d, "arm_label": labels[d["arm"]], "reference_label": labels[d["reference"]],
                     "estimate": est, "lower": lo, "upper": hi})
    return rows


def _parameters() -> tuple[list[dict], str, object]:
    from cartwin.model import DEFAULT_MODEL

    rows = [{"name": p.name, "value": f"{p.value:.4g}", "unit": p.unit, "iiv": f"{p.iiv:g}" if p.iiv else "",
             "description": p.description, "source": p.source} for p in DEFAULT_MODEL.parameters]
    return rows, DEFAULT_MODEL.description, DEFAULT_MODEL


def _realism(db, protocol: dict) -> dict:
    """Replicate trials (uncertainty across replicates apart from variability between patients)
    and missing data (withdrawals, missed visits, non-responder imputation), when the run has them."""
    from cartwin.endpoints.realism import missing_data_summary, replicate_summary

    columns = {r["column_name"] for r in db.rows("DESCRIBE patients")}
    out = {}
    if "replicate" in columns:
        import polars as pl
        frame = pl.from_arrow(db.con.sql("SELECT s.*, p.replicate FROM patient_scores s "
                                             "JOIN patients p USING (subject)").to_arrow_table())
        interval = float((protocol.get("uncertainty") or {}).get("interval", 0.9))
        out["replicates"] = {"count": int(frame["replicate"].n_unique()) if frame.height else 0,
                             "interval": interval, "endpoints": replicate_summary(frame.with_columns(pl.col("arm").cast(pl.String)), interval)}
    if "withdrawn_day" in columns:
        import polars as pl
        patients = pl.from_arrow(db.con.sql("SELECT arm, withdrawn_day, withdrawal_reason, visits_missed "
                                                "FROM patients WHERE status = 'ok'").to_arrow_table())
        out["missing_data"] = missing_data_summary(patients)
    return out


def _baselines_text(scoring: dict) -> str:
    """The baseline days the run's patients were scored with, as the manifest records them."""
    if scoring.get("baseline_last_day") is None:
        return ""  # a run made before the manifest recorded them
    return (f"SLEDAI, composites and endpoints: last baseline day {scoring['baseline_last_day']:g}; "
            f"CTCAE grading reference: last day {scoring['lab_baseline_last_day']:g} (protocol [scoring], "
            "else the rule tables' days)")


def _render(run_dir, manifest, protocol, protocol_text, agg, diffs, timecourse, swimmers, difference_figure,
            realism: dict | None = None, km_figures=(), intensity_figure=None) -> str:
    parameters, description, model = _parameters()
    run_model = manifest.get("model", {})
    mismatch = ""
    if run_model.get("name") != model.name or run_model.get("hash") != model.content_hash():
        mismatch = (f"This run was made with model {run_model.get('name')} {run_model.get('version')} "
                    f"(hash {run_model.get('hash')}); the parameters below are those of the installed "
                    f"{model.name} {model.version} (hash {model.content_hash()}). The run's individual "
                    f"parameter values are in {layout.PARAMETERS}.")
    failed = sum(a.failed for a in agg.arms)
    failed_note = (f"{failed} patient(s) failed to solve and are not scored; the manifest lists them with the reason."
                   if failed else "")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=False)
    template = env.from_string(resources.files("cartwin.report").joinpath("template.html.j2").read_text())
    follow_up = protocol.get("follow_up_days")
    days = manifest.get("schedule_days") or []
    return template.render(
        cartwin_version=manifest.get("cartwin_version", ""),
        study_id=manifest.get("study_id", run_dir.name),
        title=protocol.get("title") or manifest.get("study_id", run_dir.name),
        protocol_title=protocol.get("title", ""),
        model={"name": run_model.get("name", "?"), "version": run_model.get("version", "?"),
               "hash": run_model.get("hash", "?")},
        model_description=description, model_mismatch=mismatch,
        n_total=sum(a.n for a in agg.arms), seed=manifest.get("seed"),
        follow_up=(f"{follow_up:g} days; {len(days)} visits from day {min(days):g} to day {max(days):g}"
                   if follow_up and days else ""),
        created=manifest.get("created_utc", ""),
        arms=agg.arms, products=_product_descriptions(), regimens=_regimen_descriptions(protocol),
        failed_note=failed_note, scoring_notes=manifest.get("scoring", {}).get("notes", []),
        baselines=_baselines_text(manifest.get("scoring", {})),
        timecourse_figures=timecourse, swimmers=swimmers,
        binary_rows=_binary_rows(agg), continuous_rows=_continuous_rows(agg),
        time_to_event_rows=_time_to_event_rows(agg),
        grades=agg_mod.GRADES, ae_rows=_ae_rows(agg),
        differences=_difference_rows(agg, diffs), difference_figure=difference_figure,
        reference_labels=_reference_labels(agg),
        km_figures=list(km_figures), intensity_figure=intensity_figure,
        clinical_fingerprint=clinical_fingerprint(), parameters=parameters,
        protocol_text=protocol_text, manifest_text=json.dumps(manifest, indent=2),
        replicates=(realism or {}).get("replicates"), missing_data=(realism or {}).get("missing_data"),
        fmt=fmt,
    )


def _endpoint_json(agg: agg_mod.Aggregates, diffs: list[dict]) -> dict:
    """The tables' numbers in machine-readable form, beside the HTML."""
    out: dict = {"arms": [a.__dict__ for a in agg.arms], "endpoint_table": definitions().version,
                 "binary": {}, "continuous": {}, "time_to_event": {}, "adverse_events": {}, "differences": []}
    for b in agg_mod.reported("binary"):
        out["binary"][b.key] = {}
        for arm, (k, n) in agg.binary[b.key].items():
            iv = stats.clopper_pearson(k, n)
            out["binary"][b.key][arm] = {"k": k, "n": n, "estimate": iv.estimate, "lower": iv.lower, "upper": iv.upper}
    for c in agg_mod.reported("continuous"):
        out["continuous"][c.key] = {arm: {k: s[k] for k in ("n", "median", "q25", "q75", "min", "max")}
                                    for arm, s in agg.continuous[c.key].items()}
    for e in agg_mod.reported("time_to_event"):
        out["time_to_event"][e.key] = dict(agg.time_to_event[e.key])
    for label, per_arm in agg.adverse.items():
        out["adverse_events"][label] = {arm: {"grades": {str(g): v for g, v in a["grades"].items()}, "n": a["n"],
                                              "assessed": a["assessed"]} for arm, a in per_arm.items()}
    for d in diffs:
        iv = d["interval"]
        out["differences"].append({k: d[k] for k in ("arm", "reference", "endpoint", "label", "kind")}
                                  | {"estimate": iv.estimate, "lower": iv.lower, "upper": iv.upper})
    return out
