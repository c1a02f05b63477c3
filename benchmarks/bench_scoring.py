"""Score 10^6 synthetic patient-visits through the public clinical pipeline and report its speed.

Usage: python benchmarks/bench_scoring.py [--patients 20000] [--visits 50] [--out DIR] [--keep DIR]

Each visit carries the tests the virtual-patient model emits (cell counts, chemistry, serology,
CRS/ICANS inputs, PGA and the clinical SLEDAI descriptors), written as a simulated run directory
so the same code path as ``cartwin score RUN --out DIR`` is measured. The scoring runs in a fresh
child process, so its peak memory (max RSS) is the scorer's alone, not the generator's. Reported:
wall and CPU seconds (CPU counts every thread of the process), observation rows and patient-visits
per wall second, peak memory, the split into reading/validation, scoring and writing, and the load
average of the machine before and after (the benchmark shares the machine; a load above the core
count means the wall time is stretched by other work, the CPU time much less).

Before/after numbers are recorded in docs/clinical.md, section "Performance".
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

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


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def score_in_this_process(run: Path, out: Path) -> dict:
    """Score ``run`` into ``out`` the way ``cartwin.scoring.score`` does, timing each phase."""
    from cartwin.clinical import score_observations
    from cartwin.io.observations import read_observations
    from cartwin.store.scored import ScoredDirectory

    phases = {}
    start = last = _clock()
    obs = read_observations(run)
    phases["read"], last = [b - a for a, b in zip(last, _clock())], _clock()
    tables = score_observations(obs)
    phases["score"], last = [b - a for a, b in zip(last, _clock())], _clock()
    ScoredDirectory(out).write(tables)
    phases["write"], end = [b - a for a, b in zip(last, _clock())], _clock()
    return {"wall_s": end[0] - start[0], "cpu_s": end[1] - start[1], "phases": phases,
            "rows": obs.frame.height, "visits": tables["visits"].height, "subjects": tables["patients"].height,
            "max_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=20_000)
    parser.add_argument("--visits", type=int, default=50)
    parser.add_argument("--out", type=Path, default=None, help="where the scored tables go (default: a temporary directory)")
    parser.add_argument("--keep", type=Path, default=None,
                        help="generate the run directory here, or reuse it when it already holds one")
    parser.add_argument("--score-only", nargs=2, type=Path, metavar=("RUN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.score_only:  # the child process
        print(json.dumps(score_in_this_process(*args.score_only)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        run = args.keep or Path(tmp) / "run"
        run.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        if (run / "observations.parquet").exists():
            generated = "reused"
        else:
            make_run(run, args.patients, args.visits)
            generated = f"generated in {time.perf_counter() - t0:.1f} s"
        load_before = os.getloadavg()
        child = subprocess.run([sys.executable, __file__, "--score-only", str(run), str(args.out or Path(tmp) / "scored")],
                               check=True, capture_output=True, text=True)
        load_after = os.getloadavg()
    r = json.loads(child.stdout.strip().splitlines()[-1])
    phases = ", ".join(f"{name} {wall:.1f} s ({cpu:.1f} CPU-s)" for name, (wall, cpu) in r["phases"].items())
    print(f"{r['visits']:,} patient-visits, {r['rows']:,} observation rows, {r['subjects']:,} subjects ({generated})\n"
          f"scored in {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU: {r['rows'] / r['wall_s']:,.0f} rows/s, "
          f"{r['visits'] / r['wall_s']:,.0f} visits/s; peak memory {r['max_rss_gb']:.2f} GB\n"
          f"phases: {phases}\n"
          f"load average (1/5/15 min) before {'/'.join(f'{x:.1f}' for x in load_before)}, "
          f"after {'/'.join(f'{x:.1f}' for x in load_after)} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
