"""One run of the web app, in its own process: ``python -m cartwin.serve.worker FOLDER``.

Reads ``FOLDER/job.json`` and ``FOLDER/submitted.toml``, simulates into ``FOLDER/run`` with
:func:`cartwin.run.run_protocol` (resuming when the run directory was already started, so a
cancelled or interrupted run continues from its stored chunks), scoring each chunk as it is stored
(as ``cartwin run --report`` does; :func:`cartwin.endpoints.scoring.score_run` then scores any part
a resumed run had stored unscored), and reports progress in ``FOLDER/progress.json`` and the outcome in ``FOLDER/result.json``. Exit code
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
    from cartwin.endpoints.scoring import score_run
    from cartwin.protocol import load_protocol
    from cartwin.run import run_protocol
    from cartwin.store.run_directory import RunDirectory

    job = json.loads((folder / jobs.JOB).read_text())
    loaded = load_protocol(folder / jobs.PROTOCOL)
    run_dir = folder / jobs.RUN_DIR
    resume = RunDirectory(run_dir).is_run()
    _progress(folder, "resuming" if resume else "simulating")

    def progress(done: int, total: int) -> None:
        _progress(folder, "simulating", done, total)

    summary = run_protocol(loaded, run_dir, n_per_arm=job.get("n_per_arm"), seed=job.get("seed"),
                           workers=job.get("workers") or 1, chunk_size=job.get("chunk_size"),
                           resume=resume, progress=progress, score=True)
    _progress(folder, "scoring", summary.chunks_computed, summary.chunks_computed)
    score_run(run_dir, workers=job.get("workers") or 1)
    message = (f"{summary.n_total} patients ({summary.chunks_computed} chunks computed, "
               f"{summary.chunks_reused} reused) in {summary.seconds:.1f} s")
    if summary.n_failed:
        message += f"; {summary.n_failed} patient(s) failed to solve"
    _progress(folder, "done", summary.chunks_computed + summary.chunks_reused,
              summary.chunks_computed + summary.chunks_reused)
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
