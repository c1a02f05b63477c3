"""Score 10^6 synthetic patient-visits through the public clinical pipeline and print the time.

Usage: python benchmarks/bench_scoring.py [--patients 20000] [--visits 50] [--out DIR]

Each visit carries the tests the virtual-patient model emits (cell counts, chemistry, serology,
CRS/ICANS inputs, PGA and the clinical SLEDAI descriptors), written as a simulated run directory
so the same code path as ``cartwin score RUN --out DIR`` is measured.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from cartwin.clinical import score

LABS = {  # test: (unit, typical value, spread)
    "CART": ("cells/uL", 20.0, 2.0), "BCELL": ("cells/uL", 50.0, 2.0), "NEUT": ("10^9/L", 3.0, 0.6),
    "LYM": ("10^9/L", 1.2, 0.5), "WBC": ("10^9/L", 5.0, 0.5), "PLAT": ("10^9/L", 180.0, 0.4),
    "HGB": ("g/L", 120.0, 0.15), "C3": ("g/L", 0.9, 0.3), "C4": ("g/L", 0.15, 0.4),
    "DSDNA": ("IU/mL", 40.0, 1.0), "ALT": ("U/L", 30.0, 0.5), "AST": ("U/L", 30.0, 0.5),
    "BILI": ("umol/L", 10.0, 0.4), "UPROT": ("g/24h", 0.4, 1.0), "TEMP": ("C", 37.0, 0.02),
}
CATEGORIES = {"HYPOTEN": 4, "HYPOXIA": 4, "ICE": 11}
DESCRIPTORS = ["SD_SEIZ", "SD_PSYCH", "SD_OBS", "SD_VISUAL", "SD_CRAN", "SD_HEAD", "SD_CVA", "SD_VASC", "SD_ARTH",
               "SD_MYOS", "SD_CASTS", "SD_HEMAT", "SD_PYUR", "SD_RASH", "SD_ALOP", "SD_MUCUL", "SD_PLEUR", "SD_PERIC"]


def make_run(directory: Path, patients: int, visits: int, seed: int = 1) -> int:
    rng = np.random.default_rng(seed)
    subjects = np.repeat(np.array([f"P{i:06d}" for i in range(patients)]), visits)
    days = np.tile(np.concatenate([[-5.0], np.linspace(0, 365, visits - 1).round(1)]), patients)
    n = subjects.size
    frames = []
    for test, (unit, centre, spread) in LABS.items():
        values = centre * np.exp(rng.normal(0, spread, n)) if test != "TEMP" else rng.normal(37.2, 0.7, n)
        frames.append(pl.DataFrame({"subject": subjects, "day": days, "test": test, "value": values, "unit": unit}))
    for test, levels in CATEGORIES.items():
        values = rng.integers(0, levels, n).astype(float) if test == "ICE" else (rng.random(n) < 0.05) * rng.integers(1, levels, n)
        if test == "ICE":
            values = np.where(rng.random(n) < 0.9, 10.0, values)
        frames.append(pl.DataFrame({"subject": subjects, "day": days, "test": test, "value": values.astype(float), "unit": ""}))
    frames.append(pl.DataFrame({"subject": subjects, "day": days, "test": "PGA", "value": rng.uniform(0, 3, n).round(1), "unit": ""}))
    for code in DESCRIPTORS:
        frames.append(pl.DataFrame({"subject": subjects, "day": days, "test": code,
                                    "value": (rng.random(n) < 0.05).astype(float), "unit": ""}))
    obs = pl.concat(frames).with_columns(pl.lit("bench").alias("arm"))
    obs.write_parquet(directory / "observations.parquet")
    pl.DataFrame({"subject": [f"P{i:06d}" for i in range(patients)], "status": "ok"}).write_parquet(directory / "patients.parquet")
    return obs.height


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=20_000)
    parser.add_argument("--visits", type=int, default=50)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        run.mkdir()
        t0 = time.perf_counter()
        rows = make_run(run, args.patients, args.visits)
        t1 = time.perf_counter()
        result = score(run, args.out or Path(tmp) / "scored")
        t2 = time.perf_counter()
    print(f"{args.patients * args.visits:,} patient-visits ({rows:,} observation rows): "
          f"generated in {t1 - t0:.1f} s, scored in {t2 - t1:.1f} s "
          f"({result.subjects_scored:,} subjects, {result.visits:,} visit rows)")


if __name__ == "__main__":
    main()
