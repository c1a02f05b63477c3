"""One job of the web app, in its own process: ``python -m cartwin.serve.worker FOLDER``.

A run reads ``FOLDER/job.json`` and ``FOLDER/submitted.toml``, simulates into ``FOLDER/run`` with
:func:`cartwin.run.run_protocol` (resuming when the run directory was already started, so a
cancelled or interrupted run continues from its stored chunks), scoring each chunk as it is stored
(as ``cartwin run --report`` does; :func:`cartwin.endpoints.scoring.score_run` then scores any part
a resumed run had stored unscored).

A design search (``"kind": "design"`` in ``job.json``) reads the spec ``FOLDER/spec.toml`` with
:func:`cartwin.design.parse_spec` (the protocol it names lies in ``FOLDER/inputs``), searches with
:func:`cartwin.design.run_design` and writes with :func:`cartwin.design.write_design` into
``FOLDER/design``, as ``cartwin design SPEC --out DIR`` does; its progress is the search's steps (a
product and dose searched, a parameter at its low or high value).

Both report progress in ``FOLDER/progress.json`` and the outcome in ``FOLDER/result.json``. Exit code
0 on success, 2 for bad input, 1 for any other failure, as the command line.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

from cartwin.serve import jobs
from cartwin.store import atomic


def _progress(folder: Path, phase: str, done: int = 0, total: int | None = None, **extra) -> None:
    atomic.write_json(folder / jobs.PROGRESS, {"phase": phase, "done": done, "total": total,
                                               "at": time.time(), **extra})


def work(folder: Path) -> dict:
    job = json.loads((folder / jobs.JOB).read_text())
    if job.get("kind") == "design":
        return work_design(folder, job)
    return work_run(folder, job)


def work_design(folder: Path, job: dict) -> dict:
    import os
    import shutil

    from cartwin.design import parse_spec, run_design, write_design

    os.chdir(folder)  # the spec's protocol is named relative to it: inputs/NAME, no server path in the outputs
    loaded = parse_spec((folder / jobs.SPEC).read_text(), job.get("source") or jobs.SPEC, Path(jobs.INPUTS))
    out = Path(jobs.DESIGN_DIR)
    if out.exists():  # an earlier attempt's outputs: a design search starts over
        shutil.rmtree(out)
    Path(jobs.DESIGN_ZIP).unlink(missing_ok=True)
    spec = loaded.spec
    steps = len(spec.space.products) * len(spec.space.doses) * (2 if spec.search.compare_grid else 1) \
        + len(spec.space.products) * 2 * len(spec.uncertainty)
    done = 0

    def progress(message: str) -> None:
        nonlocal done
        done += 1
        _progress(folder, message, min(done, steps), steps, unit="steps")

    _progress(folder, "searching", 0, steps, unit="steps")
    result = run_design(loaded, workers=job.get("workers") or None, patients=job.get("patients"), progress=progress)
    _progress(folder, "writing the design report", steps, steps, unit="steps")
    write_design(result, out)
    answers = []
    for r in result.recommendations:
        if r.intensity is None:
            answers.append(f"{r.product}: {r.regimen}")
        else:
            answers.append(f"{r.product}: {r.dose.label} at intensity {r.intensity:.3g} ({r.regimen})")
    message = (f"{'; '.join(answers)}. {result.patients_simulated()} patients simulated in "
               f"{result.seconds:.1f} s")
    _progress(folder, "done", steps, steps, unit="steps")
    return {"ok": True, "message": message, "patients_simulated": result.patients_simulated(),
            "seconds": round(result.seconds, 3)}


def work_run(folder: Path, job: dict) -> dict:
    from cartwin.endpoints.scoring import score_run
    from cartwin.protocol import load_protocol
    from cartwin.run import run_protocol
    from cartwin.store.run_directory import RunDirectory

    loaded = load_protocol(folder / jobs.PROTOCOL)
    run_dir = folder / jobs.RUN_DIR
    resume = RunDirectory(run_dir).is_run()
    _progress(folder, "resuming" if resume else "simulating", unit="chunks")

    def progress(done: int, total: int) -> None:
        _progress(folder, "simulating", done, total, unit="chunks")

    summary = run_protocol(loaded, run_dir, n_per_arm=job.get("n_per_arm"), seed=job.get("seed"),
                           workers=job.get("workers") or 1, chunk_size=job.get("chunk_size"),
                           resume=resume, progress=progress, score=True)
    _progress(folder, "scoring", summary.chunks_computed, summary.chunks_computed, unit="chunks")
    score_run(run_dir, workers=job.get("workers") or 1)
    message = (f"{summary.n_total} patients ({summary.chunks_computed} chunks computed, "
               f"{summary.chunks_reused} reused) in {summary.seconds:.1f} s")
    if summary.n_failed:
        message += f"; {summary.n_failed} patient(s) failed to solve"
    _progress(folder, "done", summary.chunks_computed + summary.chunks_reused,
              summary.chunks_computed + summary.chunks_reused, unit="chunks")
    return {"ok": True, "message": message, "n_total": summary.n_total, "n_failed": summary.n_failed,
            "chunks_computed": summary.chunks_computed, "chunks_reused": summary.chunks_reused,
            "seconds": round(summary.seconds, 3)}


def main(argv: list[str] | None = None) -> int:
    from cartwin.cli import _bad_input_types

    args = sys.argv[1:] if argv is None else argv
    folder = Path(args[0]).resolve()
    try:
        result = work(folder)
        code = 0
    except _bad_input_types() as exc:
        result, code = {"ok": False, "error": str(exc)}, 2
    except Exception as exc:
        traceback.print_exc()
        result, code = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}, 1
    atomic.write_json(folder / jobs.RESULT, result)
    return code


if __name__ == "__main__":
    sys.exit(main())
