"""Print the key read-outs of the default model's typical patient for each product and
lymphodepletion preset (and, with --cohort N, the medians over N engine-free virtual patients).

    .venv/bin/python tools/typical_patient.py [--cohort 200]

Simulation and read-out definitions live in tests/model/lupus_virtual.py, shared with the
behaviour tests, so what this prints is what the tests judge.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "model"))
import lupus_virtual as lv  # noqa: E402

SCENARIOS = [
    ("autologous_cd19", "erlangen"), ("autologous_cd19", "standard"),
    ("autologous_cd19", "reduced"), ("autologous_cd19", "none"),
    ("tyu19", "standard"), ("tyu19", "reduced"), ("tyu19", "none"),
    ("allo_hla_intact", "standard"),
]


def summary(run: lv.Run) -> dict[str, np.ndarray]:
    day, peak = lv.cart_peak(run)
    return {
        "CAR-T peak /uL": peak, "peak day": day,
        "CAR-T d28": run.at("CART", 28), "CAR-T d90": run.at("CART", 90),
        "last detectable": lv.last_detectable_cart_day(run),
        "B<1 from": lv.b_aplasia_day(run), "B back": lv.b_return_day(run),
        "ANC nadir": lv.nadir(run, "NEUT"), "ALC nadir": lv.nadir(run, "LYM"),
        "IL-6 peak": run.obs["IL6"].max(axis=1), "Tmax": run.obs["TEMP"].max(axis=1),
        "CRS grade": lv.crs_grade(run).astype(float),
        "SLEDAI d-6": lv.sledai(run, -6), "SLEDAI d90": lv.sledai(run, 90),
        "SLEDAI d180": lv.sledai(run, 180),
        "dsDNA d90": run.at("DSDNA", 90), "C3 d90": run.at("C3", 90), "C4 d90": run.at("C4", 90),
        "PGA d180": run.at("PGA", 180),
        "CD19NPC d90/d0": run.at("CD19NPC", 90) / run.obs["CD19NPC"][:, 0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=int, default=0, help="also print medians over N patients")
    args = parser.parse_args()
    rows = []
    for product, regimen in SCENARIOS:
        run = lv.cohort(product, regimen, n=args.cohort) if args.cohort else lv.typical(product, regimen)
        s = summary(run)
        rows.append((f"{product}/{regimen}", {k: float(np.nanmedian(v)) if np.isfinite(v).any()
                                              else float("nan") for k, v in s.items()}))
    keys = list(rows[0][1])
    print("median over %d patients" % args.cohort if args.cohort else "typical patient")
    print(f"{'':28s}" + "".join(f"{k:>16s}" for k in keys[:10]))
    for name, s in rows:
        print(f"{name:28s}" + "".join(f"{s[k]:16.3g}" for k in keys[:10]))
    print(f"{'':28s}" + "".join(f"{k:>16s}" for k in keys[10:]))
    for name, s in rows:
        print(f"{name:28s}" + "".join(f"{s[k]:16.3g}" for k in keys[10:]))


if __name__ == "__main__":
    main()
