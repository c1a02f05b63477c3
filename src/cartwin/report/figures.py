"""The report's figures: matplotlib (Agg), each saved as SVG (inlined in the HTML) and PNG."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from cartwin.endpoints import stats  # noqa: E402
from cartwin.report.aggregate import CURVES, READOUTS, Aggregates, Arm  # noqa: E402
from cartwin.store import atomic  # noqa: E402

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
           "#bcbd22")
PNG_DPI = 110
TEST_TITLES = {"C3": "C3", "C4": "C4"}
AE_MARKERS = {"Neutrophil count decreased": ("v", "neutropenia"), "Lymphocyte count decreased": ("v", "lymphopenia"),
              "Cytokine release syndrome": ("*", "CRS"), "Platelet count decreased": ("v", "thrombocytopenia"),
              "White blood cell decreased": ("v", "leukopenia")}


@dataclass
class Figure:
    key: str
    title: str
    caption: str
    svg: str  # inline SVG markup (no XML prolog)
    files: tuple[Path, ...]
    wide: bool = False  # spans the page rather than one column of the grid


def arm_colours(arms: list[Arm]) -> dict[str, str]:
    return {a.id: PALETTE[i % len(PALETTE)] for i, a in enumerate(arms)}


def _save(fig, key: str, out_dir: Path, title: str, caption: str) -> Figure:
    # A distinct hash salt per figure keeps the clip-path ids of several inline SVGs apart.
    with matplotlib.rc_context({"svg.hashsalt": f"cartwin-{key}", "svg.fonttype": "none"}):
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    svg = buf.getvalue()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=PNG_DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    svg_path, png_path = out_dir / f"{key}.svg", out_dir / f"{key}.png"
    atomic.write_text(svg_path, svg)
    atomic.write_bytes(png_path, png.getvalue())
    inline = svg[svg.index("<svg"):]
    return Figure(key, title, caption, inline, (svg_path, png_path))


FACET_ABOVE_ARMS = 4
BAND_ALPHA = 0.10


def reference_lines() -> dict[str, list[tuple[float, str]]]:
    """Horizontal reference lines per test code, from the clinical layer's own tables: the C3 and
    C4 lower limits of normal (reference_limits.csv), the neutrophil counts that bound CTCAE v5.0
    grades 3 and 4 (1.0 and 0.5 x 10^9/L) and the B-cell aplasia threshold (kinetics.toml)."""
    from cartwin.clinical.observations import default_limits
    from cartwin.clinical.ruleset import settings

    lines: dict[str, list[tuple[float, str]]] = {}
    limits = {r["test"]: r["default_lower"] for r in default_limits().iter_rows(named=True)}
    for test in ("C3", "C4"):
        if limits.get(test) is not None:
            lines[test] = [(float(limits[test]), f"{test} lower limit {limits[test]:g} g/L")]
    lines["NEUT"] = [(1.0, "ANC 1.0: grade 3 below (CTCAE v5)"), (0.5, "ANC 0.5: grade 4 below")]
    aplasia = settings("kinetics")["bcell"]["aplasia_below_cells_per_ul"]
    lines["BCELL"] = [(float(aplasia), f"aplasia below {aplasia:g} cell/uL")]
    return lines


def _band(ax, day, low, high, colour) -> None:
    """A 5th-95th percentile band that stays legible where several overlap: a light fill with its
    edges drawn as thin dashed lines of the arm's colour."""
    ax.fill_between(day, low, high, color=colour, alpha=BAND_ALPHA, linewidth=0)
    ax.plot(day, low, color=colour, linewidth=0.6, linestyle=(0, (3, 2)), alpha=0.8)
    ax.plot(day, high, color=colour, linewidth=0.6, linestyle=(0, (3, 2)), alpha=0.8)


def _facets(arms: list[Arm]) -> tuple[list[tuple[str, list[Arm]]], dict[str, str], dict[str, str]]:
    """Panels, colour per arm and legend entries (label -> colour).

    Up to FACET_ABOVE_ARMS arms share one panel. Beyond that the bands hide each other, so arms are
    split into one panel per product with the lymphodepletion regimens overlaid in it (the question
    a product x regimen design asks), coloured by regimen alike in every panel.
    """
    products = list(dict.fromkeys(a.product for a in arms))
    if len(arms) <= FACET_ABOVE_ARMS or len(products) < 2:
        colours = arm_colours(arms)
        return [("", arms)], colours, {a.label: colours[a.id] for a in arms}
    regimens = list(dict.fromkeys(a.regimen for a in arms))
    by_regimen = {r: PALETTE[i % len(PALETTE)] for i, r in enumerate(regimens)}
    panels = [(product, [a for a in arms if a.product == product]) for product in products]
    return panels, {a.id: by_regimen[a.regimen] for a in arms}, {f"lymphodepletion: {r}": c for r, c in by_regimen.items()}


def time_course_figures(agg: Aggregates, out_dir: Path) -> list[Figure]:
    panels, colours, legend = _facets(agg.arms)
    references = reference_lines()
    figures = []
    for readout in READOUTS:
        rows = agg.time_course.get(readout.key, [])
        tests = [t for t in readout.tests if any(r["test"] == t for r in rows)] or list(readout.tests)
        ncols = len(panels) if len(panels) > 1 else len(tests)
        nrows = len(tests) if len(panels) > 1 else 1
        width = 6.4 * len(tests) if len(panels) == 1 else 4.6 * len(panels)
        fig, axes = plt.subplots(nrows, ncols, figsize=(width, 3.6 * nrows), squeeze=False, sharey="row")
        for i, test in enumerate(tests):
            for j, (panel, arms) in enumerate(panels):
                ax = axes[i][j] if len(panels) > 1 else axes[0][i]
                for arm in arms:
                    pts = [r for r in rows if r["arm"] == arm.id and r["test"] == test]
                    if not pts:
                        continue
                    day = [r["day"] for r in pts]
                    _band(ax, day, [r["q05"] for r in pts], [r["q95"] for r in pts], colours[arm.id])
                    ax.plot(day, [r["q50"] for r in pts], color=colours[arm.id], linewidth=1.6, label=arm.label)
                for value, text in references.get(test, []):
                    ax.axhline(value, color="0.35", linewidth=0.8, linestyle="--")
                    ax.annotate(text, (1.0, value), xycoords=("axes fraction", "data"), xytext=(-2, 2),
                                textcoords="offset points", ha="right", va="bottom", fontsize=6.5, color="0.3")
                if readout.scale == "log":
                    ax.set_yscale("log")
                elif readout.scale == "symlog":
                    ax.set_yscale("symlog", linthresh=0.1)
                ax.axvline(0, color="0.6", linewidth=0.8, linestyle=":")
                name = agg.sledai_source if test == "SELENA" else TEST_TITLES.get(test, readout.title)
                ax.set_title(f"{name}: {panel}" if panel else name, fontsize=10)
                ax.set_xlabel("day after CAR-T infusion")
                ax.set_ylabel(readout.unit)
                ax.grid(alpha=0.25)
        handles = [Line2D([], [], color=c, linewidth=2, label=label) for label, c in legend.items()]
        fig.legend(handles=handles, loc="lower center", ncol=min(3, len(handles)), fontsize=8, frameon=False,
                   bbox_to_anchor=(0.5, -0.02 - 0.055 * math.ceil(len(handles) / 3) / nrows))
        fig.tight_layout()
        caption = "Median (line) and 5th-95th percentile band (shaded, dashed edges) per arm and visit"
        if any(references.get(t) for t in tests):
            caption += "; grey dashed: " + "; ".join(text for t in tests for _, text in references.get(t, []))
        if len(panels) > 1:
            caption += "; one panel per product, the lymphodepletion regimens overlaid"
        if readout.key == "sledai":
            caption += f"; {agg.sledai_note}"
        figure = _save(fig, f"timecourse_{readout.key}", out_dir,
                       readout.title if readout.key != "sledai" else agg.sledai_source, caption + ".")
        figure.wide = ncols > 1
        figures.append(figure)
    return figures


def swimmer_figure(agg: Aggregates, arm: Arm, lanes: list[dict], out_dir: Path, index: int) -> Figure:
    height = 1.4 + 0.42 * len(lanes)
    fig, ax = plt.subplots(figsize=(9.5, height))
    for y, p in enumerate(lanes):
        start = p["first_day"] or 0.0
        ax.barh(y, (p["last_day"] or 0) - start, left=start, height=0.5, color="#d9e2ec", edgecolor="#9fb3c8")
        onset, back = p["bcell_aplasia_onset_day"], p["bcell_return_day"]
        if onset is not None:
            ax.barh(y, (back if back is not None else p["last_day"]) - onset, left=onset, height=0.22,
                    color="#7b61a8", alpha=0.8)
        if back is not None:
            ax.plot(back, y, marker="|", markersize=14, color="#4b2e83", markeredgewidth=2)
        if p["remission_day"] is not None:
            ax.plot(p["remission_day"], y, marker="D", color="#2ca02c", markersize=7)
        elif p["remission_lower_bound_day"] is not None:
            ax.plot(p["remission_lower_bound_day"], y, marker="D", markerfacecolor="white", color="#2ca02c",
                    markersize=7)
        for e in p["events"]:
            marker = AE_MARKERS.get(e["term"], ("x", e["term"]))[0]
            ax.plot(e["day_of_max"], y + 0.3, marker=marker, color="#d62728", markersize=6, linestyle="none")
            ax.annotate(str(e["max_grade"]), (e["day_of_max"], y + 0.3), xytext=(3, 2), textcoords="offset points",
                        fontsize=6, color="#d62728")
        if p["crs_onset_day"] is not None and (p["crs_max"] or 0) < 3:
            ax.plot(p["crs_onset_day"], y - 0.3, marker="*", color="#ff7f0e", markersize=8)
    ax.set_yticks(range(len(lanes)), [p["subject"] for p in lanes], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("day after CAR-T infusion")
    ax.set_title(f"{arm.label}: one lane per patient", fontsize=10)
    ax.grid(axis="x", alpha=0.25)
    legend = [
        Line2D([], [], color="#7b61a8", linewidth=5, label="B-cell aplasia"),
        Line2D([], [], color="#4b2e83", marker="|", markersize=12, linestyle="none", markeredgewidth=2,
               label="B cells return"),
        Line2D([], [], color="#2ca02c", marker="D", linestyle="none", label="SELENA-SLEDAI 0 and PGA < 1"),
        Line2D([], [], color="#2ca02c", marker="D", markerfacecolor="white", linestyle="none",
               label="same, SLEDAI lower bound"),
        Line2D([], [], color="#d62728", marker="v", linestyle="none", label="grade >= 3 cytopenia (grade)"),
        Line2D([], [], color="#d62728", marker="x", linestyle="none", label="other grade >= 3 event"),
        Line2D([], [], color="#ff7f0e", marker="*", linestyle="none", label="CRS onset (grade 1-2)"),
    ]
    ax.axvline(0, color="0.5", linewidth=0.8, linestyle=":")
    ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    fig.tight_layout()
    caption = ("Each lane runs from the first to the last visit (day 0: infusion). Bars: B-cell aplasia until B cells return; "
               "diamonds: first visit with SELENA-SLEDAI 0 and PGA < 1 (open: on the SLEDAI lower bound); "
               "red markers: the day a grade >= 3 event reached its maximum grade, with the grade.")
    return _save(fig, f"swimmer_{index}", out_dir, f"Swimmer plot: {arm.label}", caption)


def difference_figure(diffs: list[dict], agg: Aggregates, out_dir: Path) -> Figure | None:
    rows = [d for d in diffs if d["kind"] == "difference" and not math.isnan(d["interval"].lower)]
    if not rows:
        return None
    colours = arm_colours(agg.arms)
    labels = {a.id: a.label for a in agg.arms}
    endpoints = list(dict.fromkeys(d["label"] for d in rows))
    arms = list(dict.fromkeys(d["arm"] for d in rows))
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.32 * len(endpoints) * max(1, len(arms)) ** 0.5))
    step = 0.7 / max(1, len(arms))
    for i, arm in enumerate(arms):
        for d in rows:
            if d["arm"] != arm:
                continue
            y = endpoints.index(d["label"]) + (i - (len(arms) - 1) / 2) * step
            iv = d["interval"]
            ax.plot([100 * iv.lower, 100 * iv.upper], [y, y], color=colours[arm], linewidth=1.4)
            ax.plot(100 * iv.estimate, y, marker="o", color=colours[arm], markersize=4)
    ax.axvline(0, color="0.4", linewidth=0.8)
    ax.set_yticks(range(len(endpoints)), endpoints, fontsize=7)
    ax.invert_yaxis()
    refs = list(dict.fromkeys(d["reference"] for d in rows))
    against = labels[refs[0]] if len(refs) == 1 else "the reference arm of its product"
    ax.set_xlabel(f"difference from {against} (percentage points, 95% Newcombe interval)")
    handles = [Line2D([], [], color=colours[a], marker="o", label=labels[a]) for a in arms]
    ax.grid(axis="x", alpha=0.25)
    fig.tight_layout()
    # below the whole figure, whatever its height (bbox_inches="tight" makes room for it)
    fig.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, 0.0),
               ncol=min(3, len(handles)), frameon=False)
    return _save(fig, "differences", out_dir, "Differences between arms",
                 "Each arm minus its reference arm, with Newcombe hybrid score 95% intervals.")


KM_DRAWN_STEPS = 1500  # at most this many steps of a curve are drawn (~5 per pixel of a panel)


def _drawn_steps(time: np.ndarray) -> np.ndarray:
    """Indices of the steps of a Kaplan-Meier curve to draw: all of them up to KM_DRAWN_STEPS;
    beyond (a time per patient, e.g. interpolated days of a large run) the last step in each of
    KM_DRAWN_STEPS equal slices of the time axis, so that the figure's size does not grow with the
    number of patients. The curve drawn then lags the exact one by less than a slice (a fraction
    of a pixel); the estimates and the summaries are computed from every step."""
    if time.size <= KM_DRAWN_STEPS:
        return np.arange(time.size)
    span = max(float(time[-1] - time[0]), 1e-300)
    bins = np.minimum(((time - time[0]) / span * KM_DRAWN_STEPS).astype(np.int64), KM_DRAWN_STEPS - 1)
    last = np.flatnonzero(np.diff(bins, append=bins[-1] + 1))  # the last index of each occupied slice
    return last


def km_figures(agg: Aggregates, out_dir: Path) -> list[Figure]:
    """Kaplan-Meier curves (B-cell return, loss of CAR-T cells, relapse) with censoring marks and
    pointwise 95% intervals (Greenwood, log-log), a panel per product when the arms are faceted."""
    panels, colours, legend = _facets(agg.arms)
    figures = []
    for curve in CURVES:
        data = agg.curves.get(curve.key)
        if not data:
            continue
        fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels) if len(panels) > 1 else 7.5, 3.6),
                                 squeeze=False, sharey=True, sharex=True)
        z = 1.959963984540054
        for j, (panel, arms) in enumerate(panels):
            ax = axes[0][j]
            for arm in arms:
                rows = data.get(arm.id)
                if not rows:
                    continue
                km = stats.kaplan_meier([r["time"] for r in rows], [bool(r["event"]) for r in rows],
                                        [r["n"] for r in rows])
                drawn = _drawn_steps(km.time)
                t = [0.0, *km.time[drawn].tolist()]
                s = [1.0, *km.survival[drawn].tolist()]
                colour = colours[arm.id]
                ax.step(t, s, where="post", color=colour, linewidth=1.6, label=arm.label)
                with np.errstate(divide="ignore", invalid="ignore"):
                    log_s = np.log(km.survival)
                    se = np.sqrt(km.greenwood) / np.abs(log_s)
                    lo = np.where(km.survival > 0, km.survival ** np.exp(z * se), 0.0)
                    hi = np.where(km.survival > 0, km.survival ** np.exp(-z * se), 0.0)
                lo = np.nan_to_num(np.where(km.survival >= 1, 1.0, lo), nan=0.0)
                hi = np.nan_to_num(np.where(km.survival >= 1, 1.0, hi), nan=1.0)
                ax.fill_between(t, [1.0, *lo[drawn].tolist()], [1.0, *hi[drawn].tolist()], step="post", color=colour,
                                alpha=BAND_ALPHA, linewidth=0)
                censored = np.flatnonzero(km.censored > 0)
                censored = censored[_drawn_steps(km.time[censored])]
                ax.plot(km.time[censored], km.survival[censored], marker="|", markersize=8, linestyle="none",
                        color=colour, markeredgewidth=1.2)
            ax.set_ylim(-0.02, 1.02)
            ax.set_xlabel("day after CAR-T infusion")
            ax.set_title(f"{curve.title}: {panel}" if panel else curve.title, fontsize=10)
            ax.grid(alpha=0.25)
        axes[0][0].set_ylabel(f"proportion not yet: {curve.event_label}")
        handles = [Line2D([], [], color=c, linewidth=2, label=label) for label, c in legend.items()]
        handles.append(Line2D([], [], color="0.3", marker="|", linestyle="none", markersize=8, label="censored"))
        fig.tight_layout()
        fig.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, 0.0),
                   ncol=min(3, len(handles)), frameon=False)
        figure = _save(fig, f"km_{curve.key}", out_dir, f"Kaplan-Meier: {curve.title}",
                       f"Kaplan-Meier estimate per arm, {curve.population}, with pointwise 95% intervals "
                       f"(Greenwood, log-log; shaded) and censored patients marked |; {curve.note}.")
        figure.wide = len(panels) > 1
        figures.append(figure)
    return figures


def intensity_figure(agg: Aggregates, exposure: dict[str, tuple[float, float]], out_dir: Path) -> Figure | None:
    """Per product, remission by month 6 and grade >= 3 neutropenia against the lymphodepletion
    intensity of its arms (cumulative cyclophosphamide, with fludarabine named), 95% intervals."""
    by_product: dict[str, list[Arm]] = {}
    for a in agg.arms:
        if a.id in exposure:
            by_product.setdefault(a.product, []).append(a)
    by_product = {p: arms for p, arms in by_product.items() if len({exposure[a.id] for a in arms}) > 1}
    if not by_product:
        return None
    panels = [("remission_m6", "SELENA-SLEDAI 0 and PGA < 1 by month 6"),
              ("ae:Neutropenia", "Grade >= 3 neutropenia (CTCAE v5)")]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), squeeze=False, sharey=True)
    for p_index, (product, arms) in enumerate(by_product.items()):
        colour = PALETTE[p_index % len(PALETTE)]
        arms = sorted(arms, key=lambda a: (exposure[a.id][1], exposure[a.id][0]))
        for j, (key, title) in enumerate(panels):
            xs, ys, los, his = [], [], [], []
            for a in arms:
                if key.startswith("ae:"):
                    cell = agg.adverse.get(key[3:], {}).get(a.id)
                    if not cell or not cell["assessed"]:
                        continue
                    k, n = sum(v for g, v in cell["grades"].items() if g >= 3), cell["n"]
                else:
                    k, n = agg.binary.get(key, {}).get(a.id, (0, 0))
                if not n:
                    continue
                iv = stats.clopper_pearson(k, n)
                xs.append(exposure[a.id][1])
                ys.append(iv.estimate)
                los.append(iv.estimate - iv.lower)
                his.append(iv.upper - iv.estimate)
            ax = axes[0][j]
            offset = (p_index - (len(by_product) - 1) / 2) * 12  # side by side at the same dose
            ax.errorbar([x + offset for x in xs], ys, yerr=[los, his], color=colour, marker="o", markersize=4,
                        capsize=3, linewidth=1.4, label=product)
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("cumulative cyclophosphamide, mg/m^2 (regimen)")
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.25)
    ticks = sorted({exposure[a.id] for arms in by_product.values() for a in arms}, key=lambda e: (e[1], e[0]))
    for ax in axes[0]:
        ax.set_xticks([cy for _, cy in ticks], [f"{cy:g}\n(Flu {flu:g})" for flu, cy in ticks], fontsize=7)
    axes[0][0].set_ylabel("proportion of patients (95% CI)")
    axes[0][0].legend(fontsize=7, frameon=False, title="product", title_fontsize=7)
    fig.tight_layout()
    figure = _save(fig, "intensity", out_dir, "Remission and neutropenia against lymphodepletion",
                   "Per product, the proportion with SELENA-SLEDAI 0 and PGA < 1 by month 6 and with grade >= 3 "
                   "neutropenia, against the arms' cumulative cyclophosphamide (fludarabine in brackets), "
                   "with exact 95% intervals.")
    figure.wide = True
    return figure
