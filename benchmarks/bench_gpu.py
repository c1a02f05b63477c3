"""The jax-diffrax backend against numba-bdf, side by side in one run, on whatever JAX sees (a GPU
where one is present, else the CPU).

The same virtual patients as benchmarks/bench_solvers.py (benchmarks/million.toml: autologous CD19
CAR-T after Erlangen Flu/Cy, variability on), days -5..365 simulated, daily output on days 0..365,
at one tolerance. numba-bdf solves the patients in this process on one core (its throughput per
core; a run uses every core); jax-diffrax first solves one block to trace and compile its program
(timed apart: that is its fixed cost), then the N patients. Accuracy: the maximum relative error of
the continuous observables between the two backends over the first --check patients (the measure
of bench_solvers.py, with numba-bdf at the same tolerance as the reference).

    python benchmarks/bench_gpu.py --n 10000            # on a machine with a GPU and cartwin[gpu]
    python benchmarks/bench_gpu.py --n 64 --check 16    # a check of the script itself, on a CPU

Prints one line per backend and writes benchmarks/results/gpu_<platform>.csv.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench_solvers import DAYS, HERE, MODEL, continuous_observables, max_rel_error, patients, write_csv
from cartwin.simulate.engine import make_solver


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000, help="patients solved by each backend")
    ap.add_argument("--rtol", type=float, default=1e-6, help="relative tolerance (atol = 1e-3 rtol)")
    ap.add_argument("--check", type=int, default=200, help="patients in the accuracy comparison")
    args = ap.parse_args()
    jx = make_solver("jax-diffrax", rtol=args.rtol, atol=args.rtol * 1e-3).for_model(MODEL)
    import jax

    from cartwin.simulate.jax_solver import lane_count

    device = jax.devices()[0]
    lanes = lane_count(device.platform)
    mod, K, Y0, sched, _, _ = patients(0, args.n)
    atol = args.rtol * 1e-3
    rows = []

    bdf = make_solver("numba-bdf", rtol=args.rtol, atol=atol)
    bdf.solve(mod, K[:2], Y0[:2], sched[:2], DAYS)  # compiled code loaded before timing
    t = time.perf_counter()
    ref = bdf.solve(mod, K, Y0, sched, DAYS)
    seconds = time.perf_counter() - t
    rows.append({"backend": "numba-bdf", "device": "cpu (one core)", "n": args.n, "rtol": args.rtol,
                 "seconds": seconds, "patients_per_s": args.n / seconds, "fixed_seconds": 0.0,
                 "failed": int((~ref.ok).sum()), "max_rel_error_vs_numba_bdf": 0.0})

    t = time.perf_counter()
    jx.solve(mod, K[:lanes], Y0[:lanes], sched[:lanes], DAYS)  # trace, compile (or load) and run one block
    fixed = time.perf_counter() - t
    t = time.perf_counter()
    res = jx.solve(mod, K, Y0, sched, DAYS)
    seconds = time.perf_counter() - t
    check = min(args.check, args.n)
    error = max_rel_error(continuous_observables(mod, res.states[:check], K[:check]),
                          continuous_observables(mod, ref.states[:check], K[:check]))
    rows.append({"backend": "jax-diffrax", "device": str(device), "n": args.n, "rtol": args.rtol,
                 "seconds": seconds, "patients_per_s": args.n / seconds, "fixed_seconds": fixed,
                 "failed": int((~res.ok).sum()), "max_rel_error_vs_numba_bdf": error, "lanes": lanes})
    for row in rows:
        print(f"{row['backend']:12s} {row['device']:24s} N={row['n']:>7,d}  {row['patients_per_s']:9.1f} patients/s"
              f"  fixed {row['fixed_seconds']:6.1f} s  failed {row['failed']}"
              f"  max rel error vs numba-bdf {row['max_rel_error_vs_numba_bdf']:.1e}")
    print(f"ratio jax-diffrax / numba-bdf (one core): {rows[1]['patients_per_s'] / rows[0]['patients_per_s']:.3g}")
    write_csv(rows, HERE / "results" / f"gpu_{device.platform}.csv")


if __name__ == "__main__":
    main()
