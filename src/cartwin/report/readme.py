"""The README's comparison of the NCT05988216 twin with what the trial reported.

    python -m cartwin.report.readme runs/nct05988216      # after `cartwin report runs/nct05988216`

prints the Markdown table from the report's ``endpoints.json``, with the trial's column as a
secondary summary of Cell Research 2025 (NCT05988216) reports it. Regenerate the table after a
model change; do not edit its numbers by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cartwin.report.stats import clopper_pearson

# endpoint key in endpoints.json -> (row label, what the trial reported)
TRIAL = (
    ("binary", "remission_m3", "SELENA-SLEDAI 0 and PGA < 1 by month 3", "all 4 within 3-6 months"),
    ("binary", "remission_m6", "SELENA-SLEDAI 0 and PGA < 1 by month 6", "4/4"),
    ("binary", "remission_m3_lb", "same, SLEDAI lower bound, by month 3", "all 4 within 3-6 months"),
    ("binary", "remission_m6_lb", "same, SLEDAI lower bound, by month 6", "4/4"),
    ("binary", "sri4", "SRI-4 at the last visit", "not reported (3/3 in the Med 2025 TyU19 SLE report)"),
    ("binary", "c3_normalised", "C3 normalised", "normalised"),
    ("binary", "c4_normalised", "C4 normalised", "normalised"),
    ("binary", "dsdna_seroconverted", "Anti-dsDNA seroconversion", "not reported"),
    ("binary", "bcell_aplasia", "B-cell aplasia", "not reported"),
    ("continuous", "bcell_aplasia_days", "B-cell aplasia, days", "not reported"),
    ("continuous", "cart_cmax", "CAR-T Cmax, cells/uL", "not reported"),
    ("continuous", "cart_tmax", "CAR-T Tmax, day", "not reported (peak at day 14 in the Med 2025 report)"),
    ("continuous", "cart_auc_0_28", "CAR-T AUC 0-28, cells/uL x day", "not reported"),
    ("ae", "Neutropenia", "Neutropenia grade >= 3", "among the most common grade 3/4 AEs (from LD)"),
    ("ae", "Lymphopenia", "Lymphopenia grade >= 3", "among the most common grade 3/4 AEs (from LD)"),
    ("ae", "Liver dysfunction (worst of ALT, AST, bilirubin, ALP, GGT)", "Liver dysfunction grade >= 3",
     "among the most common grade 3/4 AEs (from LD)"),
    ("ae", "Cytokine release syndrome", "CRS, any grade", "not stated in the summary"),
    ("ae", "ICANS", "ICANS, any grade", "none"),
    ("ae", "Acute GvHD", "Acute GvHD, any grade", "none"),
)


def _binary(cell: dict) -> str:
    if not cell or not cell["n"]:
        return "not evaluable"
    iv = clopper_pearson(cell["k"], cell["n"])
    return f"{cell['k']}/{cell['n']} [{100 * iv.lower:.0f}-{100 * iv.upper:.0f}%]"


def _continuous(cell: dict) -> str:
    if not cell or not cell["n"]:
        return "not evaluable"
    return f"{cell['median']:.3g} ({cell['min']:.3g}-{cell['max']:.3g})"


def _ae(cell: dict, label: str) -> str:
    if not cell["assessed"]:
        return "not assessed (no observations grade it)"
    grades = {int(g): v for g, v in cell["grades"].items()}
    k = sum(v for g, v in grades.items() if (g >= 3 if "grade >= 3" in label else g >= 1))
    return f"{k}/{cell['n']}"


def twin_table(run_dir: Path, arm: str | None = None) -> str:
    data = json.loads((Path(run_dir) / "report" / "endpoints.json").read_text())
    arm = arm or data["arms"][0]["id"]
    from cartwin.report.aggregate import lower_bound_needed

    counts = {key: {arm: (c["k"], c["n"]) for arm, c in cells.items()} for key, cells in data["binary"].items()}
    show_lower_bound = lower_bound_needed(counts)
    lines = ["| endpoint | twin (4 virtual patients) | trial (Cell Research 2025, n = 4) |", "|---|---|---|"]
    for kind, key, label, trial in TRIAL:
        if key.endswith("_lb") and not show_lower_bound:
            continue
        if kind == "binary":
            value = _binary(data["binary"].get(key, {}).get(arm))
        elif kind == "continuous":
            value = _continuous(data["continuous"].get(key, {}).get(arm))
        else:
            value = _ae(data["adverse_events"][key][arm], label)
        lines.append(f"| {label} | {value} | {trial} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(twin_table(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None))
