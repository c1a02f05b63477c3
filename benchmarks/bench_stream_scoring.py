"""CPU time of the scoring a run does on every chunk as it streams (observation checks, clinical
layer, endpoints), on one simulated chunk of ``benchmarks/million.toml``.

Usage: python benchmarks/bench_stream_scoring.py [--patients 500] [--repeats 5] [--chunk FILE]

``--chunk FILE``: the simulated chunk is read from FILE (Arrow IPC) when it exists, else simulated
and written there, so that two versions of the scoring code, run in alternating processes, time the
same rows without simulating them again. ``BENCH_PROTOCOL=trial_visits.toml`` selects the protocol.

Two paths over the same chunk, alternating in one process, best of ``--repeats`` (CPU time of the
process, every thread): the in-stream path of ``cartwin run`` (``observations_from_simulation``,
``score_observations(flags=False)``, ``endpoints.compute``) and the path of user data
(``observations_from_frame``, ``score_observations``, ``endpoints.compute``). The load average
before and after is printed with the numbers (the machine may be shared). docs/performance.md,
"Where a whole run's time goes", records the results.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import polars as pl
import pyarrow as pa

PROTOCOL = Path(__file__).with_name(os.environ.get("BENCH_PROTOCOL", "million.toml"))


def simulate_chunk(patients: int) -> pl.DataFrame:
    from cartwin.plan import make_plan, make_work
    from cartwin.protocol import load_protocol
    from cartwin.simulate.execute import execute

    protocol = load_protocol(PROTOCOL).protocol
    plan = make_plan(protocol, patients, None, patients, 1)
    work = dataclasses.replace(make_work(protocol, plan.seed), observations_per_arm=None)
    results = list(execute(work, plan.chunks, 1, lambda r: r))
    return pl.from_arrow(pa.concat_tables([r.observations for r in results]))


def score(frame: pl.DataFrame, in_stream: bool) -> dict[str, float]:
    from cartwin.clinical import observations_from_frame, observations_from_simulation, score_observations
    from cartwin.endpoints import compute
    from cartwin.store.reported import as_reported

    t0 = time.process_time()
    reported = as_reported(frame)
    obs = (observations_from_simulation if in_stream else observations_from_frame)(reported, "chunk")
    t1 = time.process_time()
    tables = score_observations(obs, flags=not in_stream)
    t2 = time.process_time()
    compute(tables, obs.frame)
    t3 = time.process_time()
    return {"checks": t1 - t0, "clinical": t2 - t1, "endpoints": t3 - t2, "total": t3 - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chunk", type=Path, help="Arrow IPC file of the chunk: read if present, else written")
    args = parser.parse_args()
    if args.chunk is not None and args.chunk.exists():
        frame = pl.read_ipc(args.chunk).rechunk()  # one chunk, as simulated
    else:
        frame = simulate_chunk(args.patients)
        if args.chunk is not None:
            frame.write_ipc(args.chunk)
            frame = pl.read_ipc(args.chunk).rechunk()  # scored as later runs will read it
    patients = frame["subject"].n_unique()
    load_before = os.getloadavg()[0]
    best: dict[str, dict[str, float]] = {"in_stream": {}, "user_data_path": {}}
    for round_ in range(args.repeats + 1):
        for name, in_stream in (("in_stream", True), ("user_data_path", False)):
            seconds = score(frame, in_stream)
            if round_ == 0:  # the first round warms caches (rule tables, imports) and is dropped
                continue
            for stage, value in seconds.items():
                best[name][stage] = min(best[name].get(stage, float("inf")), value)
    per_patient = {name: {stage: round(1000 * s / patients, 3) for stage, s in stages.items()}
                   for name, stages in best.items()}
    print(json.dumps({"protocol": PROTOCOL.name, "patients": patients, "rows": frame.height, "repeats": args.repeats,
                      "cpu_ms_per_patient": per_patient, "load_before": load_before,
                      "load_after": os.getloadavg()[0]}, indent=1))


if __name__ == "__main__":
    main()
