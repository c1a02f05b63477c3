"""Where the integration's steps go: BDF steps and right-hand-side evaluations per dose segment.

The kernel restarts at every dose breakpoint (a bolus, or an infusion's start or end) at order 1
from a small first step, as SciPy's BDF and the LSODA reference do. This script integrates the
first patients of benchmarks/million.toml one segment at a time with the kernel's own ``segment``
(the same calls ``integrate_one`` makes) and prints, per segment, the mean steps and RHS
evaluations per patient. docs/performance.md records the result.

Usage: python benchmarks/steps_per_segment.py [--patients 50] [--rtol 1e-6]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_solvers as bench  # noqa: E402  (the benchmark's patients: million.toml)

from cartwin.model.codegen import cache_dir, sparse_lu  # noqa: E402
from cartwin.simulate import bdf  # noqa: E402


def segments(mod, kernel, lu, y, k, schedule, t_obs, rtol, atol):
    """[(start, end, steps, rhs evaluations)] of one patient, segment by segment."""
    u = np.zeros_like(y)
    out = np.zeros((t_obs.size, y.size))
    times = list(schedule.times)
    t = min(times[0], t_obs[0]) if times else t_obs[0]
    b = 0
    if times and times[0] == t:
        y += schedule.jumps[0]
        u[:] = schedule.rates[0]
        b = 1
    rows = []
    while t < t_obs[-1]:
        end = times[b] if b < len(times) and times[b] < t_obs[-1] else t_obs[-1]
        steps = np.zeros(4, np.int64)
        lo, hi = np.searchsorted(t_obs, t, side="right"), np.searchsorted(t_obs, end, side="right")
        code = kernel.segment(mod.rhs_into, mod.jac_into, lu.factor, lu.solve, mod.LU_NNZ, y, t, end, k, u,
                              t_obs, lo, hi, out, rtol, atol, 100_000, steps)
        if code:
            raise RuntimeError(f"segment {t}..{end} failed: {bdf.STATUS_TEXT[code]}")
        rows.append((t, end, int(steps[0]), int(steps[1])))
        t = end
        if b < len(times) and times[b] == t:
            y += schedule.jumps[b]
            u[:] = schedule.rates[b]
            b += 1
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patients", type=int, default=50)
    ap.add_argument("--rtol", type=float, default=1e-6)
    args = ap.parse_args()
    mod, K, Y0, sched, _, _ = bench.patients(0, args.patients)
    kernel = bdf.load_integrator(cache_dir())
    lu = sparse_lu(mod)
    totals: dict[tuple[float, float], np.ndarray] = {}
    for p in range(args.patients):
        for start, end, steps, rhs in segments(mod, kernel, lu, Y0[p].copy(), K[p], sched[p], bench.DAYS,
                                               args.rtol, args.rtol * 1e-3):
            key = (round(start, 3), round(end, 3))
            totals[key] = totals.get(key, np.zeros(3)) + (1, steps, rhs)
    all_steps = sum(v[1] for v in totals.values())
    print(f"{args.patients} patients, rtol {args.rtol:g}; per patient with the segment:")
    print(f"{'segment (days)':>22} {'patients':>8} {'steps':>7} {'RHS':>7} {'share of steps':>15}")
    for (start, end), (n, steps, rhs) in sorted(totals.items()):
        print(f"{start:>10g} .. {end:<9g} {int(n):>8} {steps / n:>7.1f} {rhs / n:>7.1f} {steps / all_steps:>14.1%}")
    print(f"total steps per patient: {all_steps / args.patients:.0f}")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
