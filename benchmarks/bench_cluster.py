"""Throughput in-process vs a local Dask cluster of 1 and 2 workers, and Dask's overhead per chunk.

Usage: python benchmarks/bench_cluster.py [--protocol examples/nct05988216.toml] [--patients 200]
                                          [--chunk-size 20] [--tiny 120]

Every configuration computes the same chunks and writes them into a fresh run directory through
``RunDirectory.write_chunk``, the code path of ``cartwin run``. Reported for each:

- startup: starting the cluster and having every worker import cartwin and load the compiled model
  (paid once per run, not per chunk);
- throughput: patients per second once the workers are warm (best of ``--repeat`` runs);
- overhead per chunk: ``--tiny`` one-patient chunks on one Dask worker, minus the same chunks in
  this process, divided by the number of chunks; and, less sensitive to other load on the machine,
  the worker's idle time between chunks in the same run (wall time minus the compute time the
  scheduler's task stream records): what scheduling, pickling the run work and the round trips
  cost that the two chunks in flight per thread do not hide.

The numbers depend on the machine and what else runs on it; the load average is printed with them.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from distributed import get_task_stream

from cartwin.model.codegen import compile_model, warm_up
from cartwin.protocol import load_protocol
from cartwin.simulate.distributed import DaskExecutor
from cartwin.plan import make_plan, make_work
from cartwin.simulate.execute import execute
from cartwin.store.run_directory import RunDirectory


def fresh_run_directory(root: Path, name: str) -> RunDirectory:
    rundir = RunDirectory(root / name)
    rundir.path.mkdir(parents=True)
    return rundir


def time_in_process(ctx, chunks, root: Path, name: str) -> float:
    rundir = fresh_run_directory(root, name)
    t = time.perf_counter()
    for _ in execute(ctx, chunks, 1, rundir.write_chunk):
        pass
    return time.perf_counter() - t


def time_on_dask(executor: DaskExecutor, ctx, chunks, root: Path, name: str) -> float:
    rundir = fresh_run_directory(root, name)
    t = time.perf_counter()
    for _ in executor.execute(ctx, chunks, rundir.write_chunk):
        pass
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="examples/nct05988216.toml")
    parser.add_argument("--patients", type=int, default=200, help="patients in all (split over the arms)")
    parser.add_argument("--chunk-size", type=int, default=20)
    parser.add_argument("--tiny", type=int, default=120, help="one-patient chunks for the overhead")
    parser.add_argument("--repeat", type=int, default=3,
                        help="best of this many runs of each measurement (other load on the machine only slows)")
    args = parser.parse_args()

    protocol = load_protocol(args.protocol).protocol
    per_arm = max(1, args.patients // len(protocol.arms))
    plan = make_plan(protocol, n_per_arm=per_arm, chunk_size=args.chunk_size)
    tiny = make_plan(protocol, n_per_arm=max(1, args.tiny // len(protocol.arms)), chunk_size=1)
    warm = make_plan(protocol, n_per_arm=1, chunk_size=1)  # one chunk per arm: imports, model, solver
    ctx = make_work(protocol, plan.seed)
    n_patients = sum(plan.n_per_arm.values())
    warm_up(compile_model(ctx.model))

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        time_in_process(ctx, warm.chunks, root, "warm")
        seconds = min(time_in_process(ctx, plan.chunks, root, f"in-process-{r}") for r in range(args.repeat))
        rows.append(("in-process", 1, 0.0, seconds))
        tiny_in_process, tiny_on_dask, idle_per_chunk = [], [], []
        for n_workers in (1, 2):
            t = time.perf_counter()
            with DaskExecutor("local", n_workers) as executor:
                executor.start()
                executor.client.wait_for_workers(n_workers)
                for i in range(n_workers):  # every worker computes a first chunk before timing
                    time_on_dask(executor, ctx, warm.chunks, root, f"warm-{n_workers}-{i}")
                startup = time.perf_counter() - t
                seconds = min(time_on_dask(executor, ctx, plan.chunks, root, f"dask-{n_workers}-{r}")
                              for r in range(args.repeat))
                rows.append(("Dask LocalCluster", n_workers, startup, seconds))
                if n_workers == 1:  # alternate, so that both see the same background load
                    for r in range(args.repeat):
                        tiny_in_process.append(time_in_process(ctx, tiny.chunks, root, f"tiny-in-process-{r}"))
                        with get_task_stream(client=executor.client) as stream:
                            tiny_on_dask.append(time_on_dask(executor, ctx, tiny.chunks, root, f"tiny-dask-{r}"))
                        busy = sum(s["stop"] - s["start"] for task in stream.data for s in task["startstops"]
                                   if s["action"] == "compute")
                        idle_per_chunk.append((tiny_on_dask[-1] - busy) / len(tiny.chunks))
        tiny_in_process, tiny_on_dask = min(tiny_in_process), min(tiny_on_dask)

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} at the end; protocol {args.protocol}, "
          f"{n_patients} patients in {len(plan.chunks)} chunks of {plan.chunk_size}, best of {args.repeat}")
    print()
    print("| executor | workers | startup (s) | run (s) | patients/s | speed-up |")
    print("|---|---|---|---|---|---|")
    base = rows[0][3]
    for name, workers, startup, seconds in rows:
        print(f"| {name} | {workers} | {startup:.1f} | {seconds:.2f} | {n_patients / seconds:.0f} | "
              f"{base / seconds:.2f} |")
    n_tiny = len(tiny.chunks)
    print()
    print(f"overhead per chunk ({n_tiny} one-patient chunks, 1 worker): in-process "
          f"{1000 * tiny_in_process / n_tiny:.1f} ms/chunk, Dask {1000 * tiny_on_dask / n_tiny:.1f} ms/chunk, "
          f"difference {1000 * (tiny_on_dask - tiny_in_process) / n_tiny:.1f} ms/chunk")
    print(f"the Dask worker's idle time between chunks (wall time minus its compute time, same run): "
          f"{1000 * min(idle_per_chunk):.1f} ms/chunk (best of {args.repeat})")


if __name__ == "__main__":
    main()
