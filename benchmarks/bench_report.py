"""Time the report step on a run of 10^5 patients.

    .venv/bin/python benchmarks/bench_report.py                      # simulate (or reuse) the run, then time
    .venv/bin/python benchmarks/bench_report.py --synthesise         # tile a simulated 1,000 into 10^5
    .venv/bin/python benchmarks/bench_report.py --dir runs/x --n 100000 --workers 2

The run is the NCT05988216 expansion cohort (examples/nct05988216_expansion.toml) with --n patients.
By default it is simulated with ``cartwin run`` (about 10 minutes for 10^5 patients on 2 cores) and
reused on later calls. ``--synthesise`` instead simulates 1,000 patients and copies their parts
under new subject ids until the run holds --n patients: the same schema, part layout and sizes,
but patients repeat, so the numbers in that report mean nothing; only its timing does.

Two timings are reported: "cold" scores every part with the clinical layer (the scores are then
cached under DIR/report/scores) and "warm" reuses the cached scores, as a second `cartwin report`
of the same run does. Both aggregate in DuckDB over the Parquet parts and never load the run whole;
the peak resident memory of the process and its workers is printed beside the times.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = ROOT / "examples" / "nct05988216_expansion.toml"


def simulate(out: Path, n: int, workers: int | None) -> None:
    from cartwin.protocol import load_protocol
    from cartwin.run import run_protocol

    t = time.perf_counter()
    run_protocol(load_protocol(PROTOCOL), out, n_per_arm=n, workers=workers)
    print(f"simulated {n} patients in {time.perf_counter() - t:.0f} s -> {out}", file=sys.stderr)


def synthesise(out: Path, n: int, workers: int | None) -> None:
    """Tile a simulated 1,000-patient run into ``n`` patients with fresh subject ids."""
    base = out.with_name(out.name + "-base")
    if not (base / "manifest.json").exists():
        shutil.rmtree(base, ignore_errors=True)
        simulate(base, 1000, workers)
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(base, out, ignore=shutil.ignore_patterns("*.parquet", "report", "results.duckdb"))
    con = duckdb.connect()
    copies = -(-n // 1000)
    for table in ("patients", "observations"):
        (out / f"{table}.parquet").mkdir()
        for part in sorted((base / f"{table}.parquet").glob("*.parquet")):
            arm, first = part.stem.split("-")[1:]
            for c in range(copies):
                start = c * 1000 + int(first)
                if start >= n:
                    continue
                target = out / f"{table}.parquet" / f"part-{arm}-{start:09d}.parquet"
                # subject ids end in the 1-based index: shift them by the copy's offset
                con.execute(f"""COPY (SELECT * REPLACE (
                                    regexp_replace(subject, '\\d+$', '') ||
                                    lpad(CAST(CAST(regexp_extract(subject, '(\\d+)$', 1) AS BIGINT) + {c * 1000}
                                         AS VARCHAR), 6, '0') AS subject)
                                  FROM read_parquet('{part}')
                                  WHERE CAST(regexp_extract(subject, '(\\d+)$', 1) AS BIGINT) + {c * 1000} <= {n})
                                TO '{target}' (FORMAT parquet, COMPRESSION zstd)""")
    manifest = json.loads((base / "manifest.json").read_text())
    manifest["n_per_arm"] = {arm: n for arm in manifest["n_per_arm"]}
    manifest["synthesised"] = f"tiled from {base} by benchmarks/bench_report.py: patients repeat"
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))


def peak_rss_mib() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=ROOT / "runs" / "bench-report-100k")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--synthesise", action="store_true")
    args = parser.parse_args()

    from cartwin.report import write_report

    run = args.dir
    if not (run / "manifest.json").exists():
        shutil.rmtree(run, ignore_errors=True)
        (synthesise if args.synthesise else simulate)(run, args.n, args.workers)
    con = duckdb.connect()
    n = con.execute(f"SELECT count(*) FROM read_parquet('{run}/patients.parquet/*.parquet')").fetchone()[0]
    rows = con.execute(f"SELECT count(*) FROM read_parquet('{run}/observations.parquet/*.parquet')").fetchone()[0]
    con.close()
    shutil.rmtree(run / "report", ignore_errors=True)

    cold: dict = {}
    write_report(run, workers=args.workers, timings=cold)
    warm: dict = {}
    write_report(run, workers=args.workers, timings=warm)
    own, children = peak_rss_mib()
    result = {"run": str(run), "patients": n, "observation_rows": rows, "cpus": os.cpu_count(),
              "cold": {k: round(v, 2) for k, v in cold.items()}, "warm": {k: round(v, 2) for k, v in warm.items()},
              "peak_rss_mib": {"report_process": round(own), "largest_worker": round(children)}}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
