"""The report's figures: matplotlib (Agg), each saved as SVG (inlined in the HTML) and PNG."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from cartwin.report.aggregate import READOUTS, Aggregates, Arm  # noqa: E402
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
                    ax.fill_between(day, [r["q05"] for r in pts], [r["q95"] for r in pts], color=colours[arm.id],
                                    alpha=0.15, linewidth=0)
                    ax.plot(day, [r["q50"] for r in pts], color=colours[arm.id], linewidth=1.6, label=arm.label)
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
        caption = "Median (line) and 5th-95th percentile band per arm and visit"
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
    ax.set_xlabel(f"difference from {labels[agg.arms[0].id]} (percentage points, 95% Newcombe interval)")
    handles = [Line2D([], [], color=colours[a], marker="o", label=labels[a]) for a in arms]
    ax.grid(axis="x", alpha=0.25)
    fig.tight_layout()
    # below the whole figure, whatever its height (bbox_inches="tight" makes room for it)
    fig.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, 0.0),
               ncol=min(3, len(handles)), frameon=False)
    return _save(fig, "differences", out_dir, "Differences between arms",
                 "Each arm minus the reference arm, with Newcombe hybrid score 95% intervals.")
