"""Solver throughput at matched accuracy, side by side in one run (issue: a million patients).

Contenders, all on cartwin's default model, the same virtual patients (autologous CD19 CAR-T
after Erlangen Flu/Cy, IIV on), days -5..365 simulated, daily output on days 0..365:

  scipy-solve_ivp   scipy.integrate.solve_ivp(method="LSODA") per patient, RHS and Jacobian from
                    cartwin's compiled model called back from Python (the usual SciPy loop)
  roadrunner        libRoadRunner (CVODE) on cartwin's SBML export, model loaded once,
                    parameters set per patient (doses of the typical patient)
  cartwin-lsoda     cartwin backend scipy-lsoda (odeint + compiled RHS/Jacobian)
  cartwin-bdf       cartwin backend numba-bdf
  cartwin-rodas4    cartwin backend numba-rodas4 (Rosenbrock method of order 4; the default)
  cartwin-run       a whole `cartwin run` of benchmarks/million.toml (numba-bdf, rtol 1e-6): patients,
                    doses, solve, Parquet parts with the default storage ([store]
                    observations_per_arm = 1000, every chunk scored by the clinical layer as it
                    streams), DuckDB views and manifest; bytes written per patient are reported
  cartwin-run-visits a whole run of benchmarks/trial_visits.toml: the same patients and
                    simulation as a trial twin, every read-out of the model observed and scored on
                    the 28 visit days of the TyU19 trial (with --work-precision)
  cartwin-run-trajectories a whole run of benchmarks/million.toml that keeps every patient's daily
                    read-outs ([store] observations_per_arm = "all") and scores none as it streams:
                    the same work as RoadRunner's (integrate, give every patient's trajectory) plus
                    doses, tables and Parquet (with --work-precision)
  cartwin-run-rodas4, cartwin-run-visits-rodas4, cartwin-run-trajectories-rodas4
                    the same three whole runs with [solver] backend = "numba-rodas4" (with
                    --work-precision; swept over rtol 1e-3..1e-5, RODAS4 being about ten times as
                    accurate as BDF at the same rtol)

Every contender uses both cores (two worker processes). Accuracy: the maximum relative error over
the first patients, days 1..365 and all continuous observables, against LSODA at rtol 1e-10,
|y - y_ref| / (|y_ref| + 1e-3 * max|y_ref| of that observable). Throughput: patients per second
(wall), peak resident memory of the process tree. Writes benchmarks/results/solvers.csv and
solvers.png and prints the ratios.

    python benchmarks/bench_solvers.py                 # N = 1e3 for the loops, 1e3..1e5 for cartwin
    python benchmarks/bench_solvers.py --full          # adds 1e4 loops and the 1e6 cartwin run
    python benchmarks/bench_solvers.py --quick         # N = 1e3 for every contender
    python benchmarks/bench_solvers.py --work-precision [--quick] [--repeat 3]
        # the work-precision comparison: every contender over rtol 1e-4..1e-8 (atol = 1e-3 rtol),
        # error against LSODA at rtol 1e-10 as above, throughput with two workers; the ratio of
        # throughputs at matched error (each curve interpolated linearly in log error / log
        # throughput, Hairer & Wanner's work-precision diagram), including a whole `cartwin run`
        # at rtol 1e-4, 1e-5 and 1e-6 (its error is that of cartwin-bdf at the same rtol). The SciPy
        # loop is left out of the sweep (at ~5-60 patients/s it would take longer than the rest
        # together). Writes benchmarks/results/work_precision.csv and work_precision.png.
    python benchmarks/bench_solvers.py --work-precision --quick --marginal
        # the same, every point timed at N and 2N too: the marginal throughput (one more patient's
        # cost, without each contender's fixed costs) and its ratios at matched error
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing as mp
import os
import resource
import time
import tomllib
from pathlib import Path

from cartwin.processes import keep_freed_memory

# the whole-run contenders run in this process and fork their workers, as `cartwin run` does; the
# command line configures Polars' allocator before Polars loads, so this process does the same
keep_freed_memory()

import numpy as np  # noqa: E402

from cartwin.model import DEFAULT_MODEL as MODEL  # noqa: E402
from cartwin.model.codegen import compile_model, warm_up  # noqa: E402
from cartwin.population.virtual import generate  # noqa: E402
from cartwin.protocol import parse_protocol  # noqa: E402
from cartwin.simulate.engine import covariate_matrix  # noqa: E402
from cartwin.simulate.events import doses_to_schedule  # noqa: E402
from cartwin.plan import make_work, typical_parameters  # noqa: E402
from cartwin.plan.chunks import MAX_CHUNK  # noqa: E402
from cartwin.simulate.solvers import NumbaBDF, NumbaRodas4, ScipyLSODA  # noqa: E402

HERE = Path(__file__).resolve().parent
DAYS = np.arange(0.0, 366.0)
# the scale benchmark's population and therapy (benchmarks/million.toml), every observable kept
PROTOCOL = {k: v for k, v in tomllib.loads((HERE / "million.toml").read_text()).items() if k != "outputs"}



def write_csv(rows: list[dict], out: Path) -> None:
    """One CSV of ``rows``, its columns the union of their keys in first-seen order."""
    out.parent.mkdir(exist_ok=True)
    with out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        w.writeheader()
        w.writerows(rows)

def patients(start: int, stop: int):
    """K, Y0, schedules of patients start..stop-1 (same stream as a cartwin run)."""
    protocol = parse_protocol(PROTOCOL)
    therapy = make_work(protocol).arms[0].therapy
    arm = protocol.arms[0].id
    mod = compile_model(MODEL)
    pop = generate(MODEL, protocol.population, arm, np.arange(start, stop), protocol.seed,
                   typical_parameters(MODEL, therapy))
    cov = covariate_matrix(MODEL, pop.covariates, stop - start)
    K = mod.constants(pop.theta, cov)
    Y0 = mod.initial(K)
    S = mod.dose_scales(K)
    sched = [doses_to_schedule(d, MODEL, S[i]) for i, d in enumerate(therapy.patient_doses(pop.covariates))]
    return mod, K, Y0, sched, pop, therapy


def continuous_observables(mod, states, K):
    obs = mod.observe(states, K, DAYS)
    keep = [i for i, o in enumerate(MODEL.observables)
            if o.unit not in ("presence", "category") and o.test not in ("ICE",)]
    return obs[:, :, keep]


def max_rel_error(obs, ref):
    keep = ~np.isnan(obs).any(axis=(1, 2))  # patients a contender failed are counted apart
    obs, ref = obs[keep], ref[keep]
    scale = np.nanmax(np.abs(ref), axis=(0, 1), keepdims=True)
    with np.errstate(invalid="ignore"):  # an observable that is zero throughout gives 0/0: ignored
        rel = np.abs(obs[:, 1:] - ref[:, 1:]) / (np.abs(ref[:, 1:]) + 1e-3 * scale)
    return float(np.nanmax(rel))


# --- contenders: each solves patients [start, stop) and returns observables ------------------
def run_cartwin(backend, start, stop, rtol):
    mod, K, Y0, sched, _, _ = patients(start, stop)
    solver = {"bdf": NumbaBDF, "rodas4": NumbaRodas4, "lsoda": ScipyLSODA}[backend](rtol=rtol, atol=rtol * 1e-3)
    res = solver.solve(mod, K, Y0, sched, DAYS)
    return continuous_observables(mod, res.states, K), int((~res.ok).sum())


def run_solve_ivp(start, stop, rtol):
    from scipy.integrate import solve_ivp
    mod, K, Y0, sched, _, _ = patients(start, stop)
    out = np.full((stop - start, DAYS.size, Y0.shape[1]), np.nan)
    failed = 0
    for p in range(stop - start):
        y, t, k, u = Y0[p].copy(), sched[p].times[0], K[p], np.zeros(Y0.shape[1])
        bounds = list(sched[p].times[1:]) + [DAYS[-1]]
        b = 0
        y += sched[p].jumps[0]
        u = sched[p].rates[0].copy()
        ok = True
        for seg_end in bounds:
            grid = DAYS[(DAYS > t) & (DAYS <= seg_end)]
            if t <= 0 <= seg_end and t == 0:
                grid = DAYS[(DAYS >= t) & (DAYS <= seg_end)]
            sol = solve_ivp(lambda tt, yy: mod.rhs(yy, tt, k, u), (t, seg_end), y, method="LSODA",
                            t_eval=grid if grid.size else None, rtol=rtol, atol=rtol * 1e-3,
                            jac=lambda tt, yy: mod.jac(yy, tt, k, u))
            ok &= sol.success
            if grid.size:
                out[p, np.searchsorted(DAYS, grid)] = sol.y.T[: grid.size]
            y = sol.y[:, -1].copy() if grid.size == 0 or sol.t[-1] == seg_end else y
            if sol.t[-1] != seg_end:
                y = solve_ivp(lambda tt, yy: mod.rhs(yy, tt, k, u), (sol.t[-1], seg_end), sol.y[:, -1],
                              method="LSODA", rtol=rtol, atol=rtol * 1e-3).y[:, -1]
            t = seg_end
            b += 1
            if b < sched[p].times.size and sched[p].times[b] == t:
                y = y + sched[p].jumps[b]
                u = sched[p].rates[b].copy()
        # day 0: pre-dose sample is the state before the CAR-T jump: recompute cheaply is not
        # needed, day 0 is excluded from the error metric
        failed += not ok
    return continuous_observables(mod, out, K), failed


_RR = {}


def run_roadrunner(start, stop, rtol):
    """Throughput: the SBML export of the typical patient, loaded once and simulated once per
    patient with a reset in between (per-patient parameter values do not change CVODE's cost
    much; accuracy is checked on per-patient exports in roadrunner_accuracy)."""
    import roadrunner
    from cartwin.io.sbml import export_sbml
    from cartwin.io.scenario import build_scenario
    if "rr" not in _RR:
        scenario = build_scenario(MODEL, "autologous_cd19", "erlangen", None, 1e6, None)
        rr = roadrunner.RoadRunner(export_sbml(MODEL, "autologous_cd19", "erlangen"))
        rr.integrator.relative_tolerance = rtol
        rr.integrator.absolute_tolerance = rtol * 1e-3
        rr.integrator.maximum_num_steps = 100000
        rr.selections = ["time"] + list(MODEL.state_names)
        _RR.update(rr=rr, t0=scenario.first_intervention_day)
    rr, t0 = _RR["rr"], _RR["t0"]
    times = np.concatenate([[0.0], DAYS - t0])
    failed = 0
    for _ in range(stop - start):
        try:
            rr.simulate(times=times)
        except RuntimeError:
            failed += 1
        rr.reset()  # reset after, not before, a simulation: a reset first trips CVODE here
    return None, failed


def _work(args):
    name, start, stop, rtol = args
    fn = {"scipy-solve_ivp": run_solve_ivp, "roadrunner": run_roadrunner,
          "cartwin-lsoda": lambda a, b, r: run_cartwin("lsoda", a, b, r),
          "cartwin-bdf": lambda a, b, r: run_cartwin("bdf", a, b, r),
          "cartwin-rodas4": lambda a, b, r: run_cartwin("rodas4", a, b, r)}[name]
    obs, failed = fn(start, stop, rtol)
    return obs if obs is not None and stop - start <= 200 else None, failed


def cpu_seconds() -> float:
    """User + system CPU of this process and of its finished children (worker processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(name, n, rtol, workers=2, chunk=250):
    """(wall seconds, failed, peak MB, CPU seconds) of ``n`` patients of a contender; chunks of at
    most ``chunk`` patients, as many per worker (300 patients in chunks of 250 would leave one
    worker idle for most of the wall time)."""
    chunk = min(chunk, -(-n // workers))
    chunks = [(name, s, min(s + chunk, n), rtol) for s in range(0, n, chunk)]
    cpu = cpu_seconds()
    t = time.perf_counter()
    with mp.get_context("fork").Pool(workers) as pool:
        results = pool.map(_work, chunks)
    wall = time.perf_counter() - t
    cpu = cpu_seconds() - cpu
    failed = sum(f for _, f in results)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return wall, failed, peak, cpu


def timed_run(n, workers=2, rtol=None, protocol="million.toml", extra="", chunk_size=None, backend="numba-bdf"):
    """A whole `cartwin run` of ``protocol`` (in benchmarks/) with n patients: (wall seconds,
    failed, bytes written, CPU seconds of the run and its workers). ``rtol``: the protocol's [solver] rtol (atol 1e-3 rtol, as every
    contender); default the backend's own. ``extra``: TOML tables appended to
    the protocol. ``chunk_size``: patients per chunk (default: the run's own choice)."""
    import shutil
    import tempfile

    from cartwin.protocol import load_protocol
    from cartwin.run import run_protocol
    tmp = Path(tempfile.mkdtemp(prefix="cartwin-bench-"))
    out = tmp / "run"
    # the contender's backend is always named: the protocols name none, and take the default's
    source = tmp / protocol
    solver = f"\n[solver]\nbackend = {backend!r}\n"
    if rtol is not None:
        solver += f"rtol = {rtol!r}\natol = {rtol * 1e-3!r}\n"
    source.write_text((HERE / protocol).read_text() + solver + extra)
    try:
        cpu = cpu_seconds()
        t = time.perf_counter()
        summary = run_protocol(load_protocol(source), out, n_per_arm=n, workers=workers, chunk_size=chunk_size)
        wall = time.perf_counter() - t
        cpu = cpu_seconds() - cpu
        written = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        return wall, summary.n_failed, written, cpu
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--quick", action="store_true", help="N = 1e3 for every contender")
    ap.add_argument("--check", type=int, default=40, help="patients in the accuracy check")
    ap.add_argument("--work-precision", action="store_true",
                    help="each contender over rtol 1e-4..1e-8 and the throughput ratios at matched error")
    ap.add_argument("--contenders", default=None,
                    help="with --work-precision: comma-separated contenders to time (default: all)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="with --work-precision: timings per point (round-robin; the fastest is kept)")
    ap.add_argument("--run-n", type=int, default=None,
                    help="with --work-precision: patients per whole run (default 2000 with --quick, else 4000)")
    ap.add_argument("--marginal", action="store_true",
                    help="with --work-precision: time every point at N and 2N as well, and report the "
                         "marginal throughput (the cost of one more patient, without fixed costs)")
    args = ap.parse_args()
    mod = compile_model(MODEL)
    warm_up(mod)
    NumbaBDF().warm_up(mod)
    print(f"load average at start: {os.getloadavg()}", flush=True)
    n_check = args.check
    ref, _ = run_cartwin("lsoda", 0, n_check, 1e-10)
    if args.work_precision:
        work_precision(n_check, ref, quick=args.quick, repeat=args.repeat,
                       only=set(args.contenders.split(",")) if args.contenders else None, run_n=args.run_n,
                       marginal=args.marginal)
        return
    contenders = [("scipy-solve_ivp", 1e-6), ("roadrunner", 1e-6), ("cartwin-lsoda", 1e-6),
                  ("cartwin-bdf", 1e-6), ("cartwin-bdf", 1e-7)]
    rows = []
    for name, rtol in contenders:
        try:
            if name == "roadrunner":  # accuracy against per-patient SBML exports of the same patients
                err = roadrunner_accuracy(n_check, rtol, ref)
            else:
                obs, _ = _work((name, 0, n_check, rtol))
                err = max_rel_error(obs, ref)
        except ImportError as exc:
            print(f"{name}: skipped ({exc})")
            continue
        sizes = [1000] if name in ("scipy-solve_ivp", "roadrunner") else [1000, 10_000, 100_000]
        if args.quick:
            sizes = [1000]
        if args.full:
            sizes = [1000, 10_000] if name in ("scipy-solve_ivp", "roadrunner") else [1000, 10_000, 100_000, 1_000_000]
        for n in sizes:
            wall, failed, peak, _ = timed(name, n, rtol)
            rows.append({"contender": name, "rtol": rtol, "n": n, "seconds": round(wall, 3),
                         "patients_per_s": round(n / wall, 1), "max_rel_error": f"{err:.2e}",
                         "failed": failed, "peak_rss_mb": round(peak)})
            print(rows[-1], flush=True)
    # the whole run: accuracy is that of cartwin-bdf at rtol 1e-6 (the same solver and patients)
    bdf_err = next((r["max_rel_error"] for r in rows if r["contender"] == "cartwin-bdf" and r["rtol"] == 1e-6), "")
    for n in ([2000] if args.quick else [1000, 10_000]) + ([100_000] if args.full else []):
        wall, failed, written, _ = timed_run(n)
        rows.append({"contender": "cartwin-run", "rtol": 1e-6, "n": n, "seconds": round(wall, 3),
                     "patients_per_s": round(n / wall, 1), "max_rel_error": bdf_err, "failed": failed,
                     "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
                     "bytes_per_patient": round(written / n)})
        print(rows[-1], flush=True)
    base = {r["contender"]: r["patients_per_s"] for r in rows if r["n"] == 1000}
    for r in rows:
        r["x_scipy_loop"] = round(r["patients_per_s"] / base["scipy-solve_ivp"], 1) if "scipy-solve_ivp" in base else ""
        r["x_roadrunner"] = round(r["patients_per_s"] / base["roadrunner"], 2) if "roadrunner" in base else ""
    out = HERE / "results" / "solvers.csv"
    write_csv(rows, out)
    print(f"load average at end: {os.getloadavg()}; results -> {out}")
    plot(rows, HERE / "results" / "solvers.png")


def roadrunner_accuracy(n_check, rtol, ref):
    """Each patient exported with its own parameter values and covariates, then simulated."""
    return roadrunner_accuracy_sweep(n_check, [rtol], ref)[rtol]


def roadrunner_accuracy_sweep(n_check, rtols, ref):
    """roadrunner_accuracy at each of ``rtols``; each patient's export is loaded once and
    simulated at every tolerance (a reset after each simulation). Returns {rtol: error}."""
    import dataclasses

    import roadrunner
    from cartwin.io.sbml import export_sbml
    from cartwin.io.scenario import build_scenario
    mod, K, Y0, sched, pop, therapy = patients(0, n_check)
    out = {rtol: np.full((n_check, DAYS.size, Y0.shape[1]), np.nan) for rtol in rtols}
    for p in range(n_check):
        cov = {c: float(pop.covariates[c][p]) for c in pop.covariates}
        own = dataclasses.replace(MODEL, parameters=tuple(
            dataclasses.replace(par, value=float(pop.theta[p, j])) for j, par in enumerate(MODEL.parameters)))
        rr = roadrunner.RoadRunner(export_sbml(own, "autologous_cd19", "erlangen", cov))
        scenario = build_scenario(own, "autologous_cd19", "erlangen", cov, 1e6, None)
        rr.integrator.maximum_num_steps = 100000
        rr.selections = ["time"] + list(MODEL.state_names)
        for rtol in rtols:
            rr.integrator.relative_tolerance = rtol
            rr.integrator.absolute_tolerance = rtol * 1e-3
            try:
                res = rr.simulate(times=np.concatenate([[0.0], DAYS - scenario.first_intervention_day]))
            except RuntimeError:  # CVODE gave up: excluded from the error, reported
                print(f"roadrunner: patient {p} failed at rtol {rtol:g} (CVODE convergence)")
                continue
            finally:
                rr.reset()
            out[rtol][p] = np.asarray(res)[1:, 1:]
    return {rtol: max_rel_error(continuous_observables(mod, out[rtol], K), ref) for rtol in rtols}


WP_RTOLS = (1e-4, 1e-5, 1e-6, 1e-7, 1e-8)
WP_RUN_RTOLS = (1e-4, 1e-5, 1e-6)  # a whole run's cost hardly moves with rtol: the ends suffice


# the whole-run contenders: (protocol in benchmarks/, TOML appended to it, solver backend)
_ALL = '\n[store]\nobservations_per_arm = "all"\n'
RUNS = {"cartwin-run": ("million.toml", "", "numba-bdf"), "cartwin-run-visits": ("trial_visits.toml", "", "numba-bdf"),
        "cartwin-run-trajectories": ("million.toml", _ALL, "numba-bdf"),
        "cartwin-run-rodas4": ("million.toml", "", "numba-rodas4"),
        "cartwin-run-visits-rodas4": ("trial_visits.toml", "", "numba-rodas4"),
        "cartwin-run-trajectories-rodas4": ("million.toml", _ALL, "numba-rodas4")}
# RODAS4 is about ten times as accurate as BDF at the same rtol (its error estimate is the more
# cautious): its sweep starts a decade looser, so that its curve spans RoadRunner's errors
RODAS4_RTOLS = (1e-3, 1e-4, 1e-5, 1e-6, 1e-7)
RODAS4_RUN_RTOLS = (1e-3, 1e-4, 1e-5)


def rtols_of(name: str, run: bool = False) -> tuple[float, ...]:
    """The tolerances a contender is swept over."""
    if name.endswith("rodas4"):
        return RODAS4_RUN_RTOLS if run else RODAS4_RTOLS
    return WP_RUN_RTOLS if run else WP_RTOLS


def work_precision(n_check, ref, quick=False, repeat=1, only=None, run_n=None, marginal=False):
    """Every contender over WP_RTOLS; writes the rows and the matched-error ratios. ``repeat``:
    every timing is repeated, round-robin over the contenders, and the fastest kept (on a shared
    machine the load moves during a run; the best of a few repeats is the least disturbed).
    ``only``: time these contenders only (the errors are computed for all).

    ``marginal``: every point is timed at its size N and at 2N as well, and the rows get the
    marginal throughput, N / (CPU(2N) - CPU(N)) (and the same in wall time): the cost of one more
    patient, without what a contender pays once (starting its workers, importing, loading its
    model: libRoadRunner compiles the SBML in each worker, ~0.8 s of CPU; a whole run starts its
    workers and writes its database). Whole runs then use chunks of MAX_CHUNK patients at both
    sizes, as a run at scale does, so that what each chunk costs counts in the margin. The
    matched ratios are printed for it too."""
    sizes = {"roadrunner": 300, "cartwin-lsoda": 300, "cartwin-bdf": 1000, "cartwin-rodas4": 1000} if quick else \
        {"roadrunner": 1000, "cartwin-lsoda": 1000, "cartwin-bdf": 4000, "cartwin-rodas4": 4000}
    # beyond the 1,000 stored patients: scored as the run streams. A run's fixed cost (starting
    # the workers, loading the compiled code, the database views) is spread over these patients
    run_n = run_n or (2000 if quick else 4000)
    rows = []
    try:
        rr_err = roadrunner_accuracy_sweep(n_check, WP_RTOLS, ref)
    except ImportError as exc:
        print(f"roadrunner: skipped ({exc})")
        rr_err = None
        sizes.pop("roadrunner")
    errors = {}
    for name in sizes:
        for rtol in rtols_of(name):
            if name == "roadrunner":
                errors[name, rtol] = rr_err[rtol]
            else:
                obs, _ = _work((name, 0, n_check, rtol))
                errors[name, rtol] = max_rel_error(obs, ref)
    # the whole runs' solver and patients are cartwin-bdf's or cartwin-rodas4's (at the trial's
    # visits the error is at most that over every day)
    runs = RUNS
    for name in runs:
        for rtol in rtols_of(name, run=True):
            errors[name, rtol] = errors["cartwin-rodas4" if RUNS[name][2] == "numba-rodas4" else "cartwin-bdf", rtol]
    points = ([(name, rtol) for name in sizes for rtol in rtols_of(name)]
              + [(n, r) for n in runs for r in rtols_of(n, run=True)])
    if only:
        points = [p for p in points if p[0] in only]
    factors = (1, 2) if marginal else (1,)
    walls: dict[tuple, list[float]] = {(*p, f): [] for p in points for f in factors}
    cpus: dict[tuple, list[float]] = {(*p, f): [] for p in points for f in factors}
    extra: dict[tuple, dict] = {}
    for k in range(repeat):
        for name, rtol in points:
            for factor in factors:
                if name in runs:
                    protocol, extra_toml, backend = runs[name]
                    n = factor * run_n
                    # for the marginal cost, the chunks of a run at scale (MAX_CHUNK patients)
                    # at both sizes: a chunk's own fixed cost is then part of every patient's
                    wall, failed, written, cpu = timed_run(n, rtol=rtol, protocol=protocol, extra=extra_toml,
                                                           chunk_size=MAX_CHUNK if marginal else None,
                                                           backend=backend)
                    record = {"failed": failed, "bytes_per_patient": round(written / n)}
                else:
                    n = factor * sizes[name]
                    wall, failed, _, cpu = timed(name, n, rtol)
                    record = {"failed": failed}
                # the N timing's failures and bytes; the 2N timing's failures are reported too
                extra.setdefault((name, rtol), {}).update(record if factor == 1 else {"failed_2n": failed})
                walls[name, rtol, factor].append(wall)
                cpus[name, rtol, factor].append(cpu)
                print(f"repeat {k + 1}: {name} rtol {rtol:g} N {n}: {wall:.2f} s, CPU {cpu:.2f} s "
                      f"(load {os.getloadavg()[0]:.1f})", flush=True)
    for name, rtol in points:
        n = run_n if name in runs else sizes[name]
        best = min(walls[name, rtol, 1])
        rows.append({"contender": name, "rtol": rtol, "n": n, "seconds": round(best, 3),
                     "patients_per_s": round(n / best, 1), "max_rel_error": f"{errors[name, rtol]:.3e}",
                     "repeats": len(walls[name, rtol, 1]),
                     "slowest_patients_per_s": round(n / max(walls[name, rtol, 1]), 1),
                     # CPU seconds (every process) move far less with the machine's load than wall time
                     "cpu_s": round(min(cpus[name, rtol, 1]), 3),
                     "patients_per_cpu_s": round(n / min(cpus[name, rtol, 1]), 1), **extra[name, rtol]})
        if marginal:
            # the best of each size's repeats: the least disturbed estimate of each
            extra_wall = min(walls[name, rtol, 2]) - best
            extra_cpu = min(cpus[name, rtol, 2]) - min(cpus[name, rtol, 1])
            rows[-1].update(marginal_patients_per_s=round(n / extra_wall, 1) if extra_wall > 0 else "",
                            marginal_patients_per_cpu_s=round(n / extra_cpu, 1) if extra_cpu > 0 else "")
        print(rows[-1], flush=True)
    stem = ("work_precision" if not only else "work_precision_" + "_".join(sorted(only))) + ("_marginal" if marginal else "")
    out = HERE / "results" / f"{stem}.csv"
    write_csv(rows, out)
    print(f"load average at end: {os.getloadavg()}; results -> {out}")
    if rr_err is not None:
        print("\nthroughput ratio to libRoadRunner at matched error (at each of RoadRunner's points "
              "inside the contender's error range; interpolated log-log):")
        for name in ("cartwin-lsoda", "cartwin-bdf", "cartwin-rodas4", *runs):
            if only and name not in only:
                continue
            per_cpu = {rtol: ratio for rtol, _, ratio in matched_ratios(rows, name, measure="patients_per_cpu_s")}
            per_marginal_cpu = ({rtol: ratio for rtol, _, ratio in
                                 matched_ratios(rows, name, measure="marginal_patients_per_cpu_s")} if marginal else {})
            for rtol, err, ratio in matched_ratios(rows, name):
                print(f"  {name:18s} at RoadRunner rtol {rtol:.0e} (error {err:.2e}): "
                      + ("outside its measured error range" if ratio is None
                         else f"{ratio:.2f}x wall, {per_cpu[rtol]:.2f}x CPU"
                         + (f", {per_marginal_cpu[rtol]:.2f}x marginal CPU" if per_marginal_cpu.get(rtol) else "")))
    plot_work_precision(rows, HERE / "results" / f"{stem}.png")


def curve(rows, name, measure="patients_per_s"):
    """(log error, log throughput) of a contender, ascending in error."""
    pts = sorted((float(r["max_rel_error"]), r[measure]) for r in rows
                 if r["contender"] == name and isinstance(r.get(measure), (int, float)) and r[measure] > 0)
    return np.log([e for e, _ in pts]), np.log([w for _, w in pts])


def matched_ratios(rows, name, base="roadrunner", measure="patients_per_s"):
    """[(base rtol, base error, throughput of ``name`` / base at that error or None)]: ``name``'s
    work-precision curve interpolated linearly in log-log at each of the base's points; None
    where the base's error lies outside ``name``'s measured range (no extrapolation)."""
    log_e, log_w = curve(rows, name, measure)
    out = []
    for r in sorted((r for r in rows if r["contender"] == base), key=lambda r: -r["rtol"]):
        e = float(r["max_rel_error"])
        if (log_e.size == 0 or not log_e[0] <= np.log(e) <= log_e[-1]
                or not isinstance(r.get(measure), (int, float)) or r[measure] <= 0):
            out.append((r["rtol"], e, None))
            continue
        out.append((r["rtol"], e, float(np.exp(np.interp(np.log(e), log_e, log_w))) / r[measure]))
    return out


def plot_work_precision(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in dict.fromkeys(r["contender"] for r in rows):
        pts = sorted((float(r["max_rel_error"]), r["patients_per_s"], r["rtol"]) for r in rows if r["contender"] == name)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
        for e, w, rtol in pts:
            ax.annotate(f"{rtol:.0e}", (e, w), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log"); ax.set_yscale("log")
    ax.set_xlabel("max relative error against LSODA rtol 1e-10"); ax.set_ylabel("patients per second (2 processes)")
    ax.set_title("work-precision (labels: rtol)", fontsize=9)
    ax.legend(fontsize=8); ax.grid(alpha=0.3, which="both")
    fig.tight_layout(); fig.savefig(path, dpi=120)


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    for name in dict.fromkeys((r["contender"], r["rtol"]) for r in rows):
        pts = [(r["n"], r["patients_per_s"]) for r in rows if (r["contender"], r["rtol"]) == name]
        ax.plot(*zip(*pts), marker="o", label=f"{name[0]} (rtol {name[1]:g})")
    ax.set_xscale("log"); ax.set_yscale("log")
    ax.set_xlabel("patients"); ax.set_ylabel("patients per second (2 processes)")
    ax.legend(fontsize=8); ax.grid(alpha=0.3)
    fig.tight_layout(); fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
