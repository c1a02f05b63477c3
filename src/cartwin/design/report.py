"""The design report: one self-contained HTML page (inline SVG figures, no script, no network).

Per product: efficacy (each requirement) and toxicity against lymphodepletion intensity, one line
per CAR-T dose, with 95% Clopper-Pearson bands (the benefit-risk frontier); the recommended design
and its margin; the trial-level answers; how the least intensity moves with the model's uncertain
parameters; and what the search simulated against a full grid.
"""

from __future__ import annotations

import io
import math
from importlib import resources
from pathlib import Path

import jinja2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402

from cartwin.endpoints import definitions  # noqa: E402
from cartwin.store import atomic  # noqa: E402

DOSE_COLOURS = ("#1f5f99", "#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e")
PNG_DPI = 110


def _save(fig, key: str, out: Path) -> str:
    with matplotlib.rc_context({"svg.hashsalt": f"cartwin-design-{key}", "svg.fonttype": "none"}):
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=PNG_DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    svg = buf.getvalue()
    atomic.write_text(out / f"{key}.svg", svg)
    atomic.write_bytes(out / f"{key}.png", png.getvalue())
    return svg[svg.index("<svg"):]


def frontier_figure(result, points: pl.DataFrame, product: str, out: Path, index: int) -> str:
    """Efficacy and toxicity against intensity for one product, a line per dose."""
    spec = result.loaded.spec
    labels = {e.key: e.label for e in definitions().endpoints}
    req = {r.endpoint: r for r in result.requirements}
    panels = [r.endpoint for r in result.requirements] + [e for e in spec.goal.toxicity if e not in req]
    rows = points.filter((pl.col("product") == product) & (pl.col("parameters") == ""))
    rec = next(r for r in result.recommendations if r.product == product)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False, sharey=True)
    doses = list(dict.fromkeys(rows["dose"].to_list()))
    for j, endpoint in enumerate(panels):
        ax = axes[0][j]
        for d, dose in enumerate(doses):
            sub = rows.filter(pl.col("dose") == dose).sort("intensity")
            colour = DOSE_COLOURS[d % len(DOSE_COLOURS)]
            x = sub["intensity"].to_list()
            ax.fill_between(x, sub[f"{endpoint}_lower"].to_list(), sub[f"{endpoint}_upper"].to_list(), color=colour,
                            alpha=0.12, linewidth=0)
            ax.plot(x, sub[endpoint].to_list(), color=colour, marker="o", markersize=3, linewidth=1.5, label=dose)
        if endpoint in req:
            ax.axhline(req[endpoint].at_least, color="0.25", linestyle="--", linewidth=0.9)
            ax.text(0.01, req[endpoint].at_least, f" required {req[endpoint].at_least:g}", fontsize=7, va="bottom",
                    color="0.25", transform=ax.get_yaxis_transform())
        if rec.intensity is not None:
            ax.axvline(rec.intensity, color="#2a9d3a", linewidth=1.2, linestyle=":")
        title = labels.get(endpoint, endpoint)
        if endpoint in req and req[endpoint].days_at_least is not None:
            title += f" >= {req[endpoint].days_at_least:g} days"
        ax.set_title(_wrap(title, 38) + ("" if endpoint in req else "\n(toxicity)"), fontsize=9)
        ax.set_xlabel("lymphodepletion intensity\n(" + " -> ".join(spec.space.intensity_path) + ")", fontsize=8)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.25)
        anchors = spec.space.intensity_path
        top = ax.secondary_xaxis("top")
        top.set_xticks([k / (len(anchors) - 1) for k in range(len(anchors))], anchors, fontsize=7)
    axes[0][0].set_ylabel("proportion of patients (95% CI)")
    axes[0][0].legend(fontsize=7, frameon=False, loc="lower right", title="CAR-T dose", title_fontsize=7)
    fig.suptitle(product, fontsize=10)
    fig.tight_layout()
    return _save(fig, f"frontier_{index}", out)


def _wrap(text: str, width: int) -> str:
    words, lines, line = text.split(), [], ""
    for w in words:
        if len(line) + len(w) + 1 > width and line:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    return "\n".join(lines + [line])


def sensitivity_figure(result, rec, out: Path, index: int) -> str | None:
    if not rec.sensitivity or rec.intensity is None:
        return None
    params = list(dict.fromkeys(s["parameter"] for s in rec.sensitivity))
    fig, ax = plt.subplots(figsize=(6.4, 0.9 + 0.5 * len(params)))
    beyond = 1.08  # where "no intensity meets the goal" is drawn
    for y, p in enumerate(params):
        sides = {s["side"]: s for s in rec.sensitivity if s["parameter"] == p}
        xs = {side: (beyond if s["least_intensity"] is None else s["least_intensity"]) for side, s in sides.items()}
        ax.plot([min(xs.values()), max(xs.values())], [y, y], color="0.7", linewidth=3, zorder=1)
        for side, s in sides.items():
            colour = "#1f5f99" if side == "low" else "#d95f02"
            ax.plot(xs[side], y, marker="<" if side == "low" else ">", color=colour, markersize=9, zorder=2,
                    linestyle="none")
            text = f"x{s['factor']:g}" + (": none meets" if s["least_intensity"] is None else "")
            ax.annotate(text, (xs[side], y), fontsize=7, color=colour, xytext=(0, 7 if side == "low" else -12),
                        textcoords="offset points", ha="center")
    ax.axvline(rec.intensity, color="#2a9d3a", linestyle=":", linewidth=1.2)
    ax.set_yticks(range(len(params)), params)
    ax.set_xlim(-0.03, beyond + 0.05)
    ax.set_ylim(-0.7, len(params) - 0.3)
    ax.axvspan(1.0, beyond + 0.05, color="0.93", zorder=0)
    ax.set_xlabel("least intensity meeting the goal (grey: none of the space)")
    ax.set_title(f"{rec.product}, {rec.dose.label}: least intensity with a parameter at its low (blue) or high (orange) "
                 "value", fontsize=8)
    ax.grid(axis="x", alpha=0.25)
    fig.tight_layout()
    return _save(fig, f"sensitivity_{index}", out)


def _pct(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def write_report(result, points: pl.DataFrame, out: Path) -> Path:
    from cartwin.design.output import summary

    spec = result.loaded.spec
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    products = []
    for i, product in enumerate(spec.space.products):
        rec = next(r for r in result.recommendations if r.product == product)
        products.append({"name": product, "rec": rec, "frontier": frontier_figure(result, points, product, figures, i),
                         "sensitivity": sensitivity_figure(result, rec, figures, i),
                         "searches": [s for s in summary(result)["searches"] if s["product"] == product]})
    labels = {e.key: e.label for e in definitions().endpoints}
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["pct"] = _pct
    template = env.from_string(resources.files("cartwin.design").joinpath("template.html.j2").read_text())
    model = result.evaluator.base.model
    html = template.render(spec=spec, result=result, products=products, labels=labels,
                           summary=summary(result), model=model, days=result.evaluator.base.days,
                           points=points.filter(pl.col("parameters") == "").to_dicts(),
                           spec_text=result.loaded.text)
    path = out / "design.html"
    atomic.write_text(path, html)
    return path
