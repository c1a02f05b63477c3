"""The README's comparison of the NCT05988216 twin with what the trial reported.

    python -m cartwin.report.readme runs/nct05988216      # after `cartwin report runs/nct05988216`

prints the Markdown table from the report's ``endpoints.json``, each row labelled as the endpoint
table (``cartwin.endpoints``) declares it, with the trial's column as a secondary summary of Cell
Research 2025 (NCT05988216) reports it. Regenerate the table after a
model change; do not edit its numbers by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cartwin.endpoints import definitions
from cartwin.endpoints.stats import clopper_pearson

# endpoint key (cartwin.endpoints' table, which gives the row's label) -> what the trial reported
TRIAL = (
    ("remission_m3", "all 4 within 3-6 months"),
    ("remission_m6", "4/4"),
    ("remission_m3_lb", "all 4 within 3-6 months"),
    ("remission_m6_lb", "4/4"),
    ("sri4", "not reported (3/3 in the Med 2025 TyU19 SLE report)"),
    ("c3_normalised", "normalised"),
    ("c4_normalised", "normalised"),
    ("dsdna_seroconverted", "not reported"),
    ("bcell_aplasia", "not reported"),
    ("bcell_aplasia_days", "not reported"),
    ("cart_cmax", "not reported"),
    ("cart_tmax", "not reported (peak at day 14 in the Med 2025 report)"),
    ("cart_auc_0_28", "not reported"),
)
# adverse-event row of the report -> (row label, what the trial reported)
TRIAL_AE = (
    ("Neutropenia", "Neutropenia grade >= 3", "among the most common grade 3/4 AEs (from LD)"),
    ("Lymphopenia", "Lymphopenia grade >= 3", "among the most common grade 3/4 AEs (from LD)"),
    ("Liver dysfunction (worst of ALT, AST, bilirubin, ALP, GGT)", "Liver dysfunction grade >= 3",
     "among the most common grade 3/4 AEs (from LD)"),
    ("Cytokine release syndrome", "CRS, any grade", "not stated in the summary"),
    ("ICANS", "ICANS, any grade", "none"),
    ("Acute GvHD", "Acute GvHD, any grade", "none"),
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


def _time_to_event(cell: dict, event_label: str) -> str:
    if not cell or not cell["n"]:
        return "not evaluable"
    bound = lambda x: "not reached" if x is None else f"{x:.3g}"  # noqa: E731
    median = "not reached" if cell["estimate"] is None else f"{cell['estimate']:.3g}"
    return f"{median} [{bound(cell['lower'])}-{bound(cell['upper'])}], {cell['events']}/{cell['n']} {event_label}"


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
    table = definitions()
    lines = ["| endpoint | twin (4 virtual patients) | trial (Cell Research 2025, n = 4) |", "|---|---|---|"]
    for key, trial in TRIAL:
        endpoint = table.endpoint(key)
        if endpoint.lower_bound_of and not show_lower_bound:
            continue
        if endpoint.type == "binary":
            value = _binary(data["binary"].get(key, {}).get(arm))
        elif endpoint.type == "continuous":
            value = _continuous(data["continuous"].get(key, {}).get(arm))
        else:
            value = _time_to_event(data["time_to_event"].get(key, {}).get(arm), endpoint.event_label)
        unit = "" if endpoint.type == "binary" or endpoint.unit == "proportion" else f", {endpoint.unit}"
        lines.append(f"| {endpoint.label}{unit} | {value} | {trial} |")
    for key, label, trial in TRIAL_AE:
        lines.append(f"| {label} | {_ae(data['adverse_events'][key][arm], label)} | {trial} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(twin_table(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None))
