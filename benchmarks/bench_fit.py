"""Time a population fit of 50 patients: simulate a study with known truth, fit three parameters
(CAR-T RHO and K_E, B-cell MTT_PRE) with IIV and residual error, write the report with a visual
predictive check, and print the timings and the recovered values as JSON.

Usage: python benchmarks/bench_fit.py [--n 50] [--vpc 200] [--seed 3] [--out DIR] [--json FILE]

The machine's load average is recorded beside the timings: on a shared machine a busy neighbour
slows every number here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from cartwin.fit import fit
from cartwin.fit.synthetic import simulate_study
from cartwin.model import DEFAULT_MODEL
from cartwin.model.codegen import compile_model
from cartwin.simulate.solvers import NumbaBDF

TRUTH = {"RHO": 1.4, "K_E": 0.16, "MTT_PRE": 55.0}
OMEGA = {"RHO": 0.15, "K_E": 0.2, "MTT_PRE": 0.25}
SIGMA = {"CART": 0.3, "BCELL": 0.25}
LLOQ = {"CART": 0.01}
START = {"RHO": 1.0, "K_E": 0.25, "MTT_PRE": 40.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--vpc", type=int, default=200)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="fit output directory (default: temporary)")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args()

    compiled = compile_model(DEFAULT_MODEL)  # compile once, outside the timings
    NumbaBDF().warm_up(compiled)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    study = simulate_study(DEFAULT_MODEL, args.n, TRUTH, OMEGA, SIGMA, lloq=LLOQ, seed=args.seed)
    t_sim = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "fit"
        t1 = time.perf_counter()
        result = fit(study.observations, list(TRUTH), subjects=study.subjects, lloq=LLOQ, out=out,
                     initial=START, vpc_replicates=args.vpc, seed=args.seed)
        t_total = time.perf_counter() - t1
    lo, hi = result.typical_interval()
    record = {
        "benchmark": "population fit (FOCE, Lindstrom-Bates) of 3 parameters",
        "n_subjects": args.n, "n_observations": int(result.data.obs_value.size),
        "seconds_simulate_study": round(t_sim, 2),
        "seconds_fit": round(result.seconds, 2),
        "seconds_fit_plus_report_and_vpc": round(t_total, 2),
        "vpc_replicates": args.vpc, "iterations": result.iterations, "converged": result.converged,
        "model_solves_in_iterations": int(result.history[-1]["solves"]) if result.history else None,
        "estimates": {name: {"truth": TRUTH[name], "estimate": float(result.typical[k]),
                             "ci95": [float(lo[k]), float(hi[k])], "omega": float(result.omega[k])}
                      for k, name in enumerate(result.estimate)},
        "sigma": dict(zip(result.tests, map(float, result.sigma))),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_after": [round(x, 2) for x in os.getloadavg()]},
    }
    text = json.dumps(record, indent=2, default=lambda x: float(np.asarray(x)))
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
