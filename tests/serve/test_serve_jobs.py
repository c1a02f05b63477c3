"""The web app's run queue: runs wait their turn, run in worker processes, can be cancelled (queued
or running) and resumed, and a server that stops leaves them resumable.

A stand-in worker (a few lines of Python that sleep, then report) replaces the simulation here so
that the queue's behaviour is tested in seconds; the browser test runs the real worker.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from cartwin.serve import jobs

STAND_IN = """
import json, sys, time, pathlib
folder = pathlib.Path(sys.argv[1])
job = json.loads((folder / "job.json").read_text())
marker = folder / "starts"
marker.write_text(marker.read_text() + "x" if marker.exists() else "x")
(folder / "progress.json").write_text(json.dumps({"phase": "simulating", "done": 1, "total": 2}))
time.sleep(float(job.get("seed") or job.get("patients") or 0) / 10)
(folder / "result.json").write_text(json.dumps({"ok": True, "message": "stand-in done"}))
"""


@pytest.fixture
def runs(tmp_path):
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN)
    r = jobs.Runs(tmp_path / "runs", max_running=1, worker=[sys.executable, str(script)])
    yield r
    r.stop()


def _wait(runs, run_id, states, timeout=30.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        runs.tick()
        state = runs.job(run_id)["state"]
        if state in states:
            return state
        time.sleep(0.05)
    raise AssertionError(f"{run_id} still {runs.job(run_id)['state']}, expected {states}")


def _wait_for(condition, timeout=30.0):
    t0 = time.monotonic()
    while not condition():
        assert time.monotonic() - t0 < timeout, "timed out"
        time.sleep(0.05)


def test_runs_wait_in_the_queue_in_the_order_asked(runs):
    first = runs.create("x", source="a.toml", study_id="A", seed=10)  # sleeps 1 s
    second = runs.create("x", source="b.toml", study_id="B", seed=1)
    runs.tick()
    assert runs.job(first)["state"] == jobs.RUNNING
    assert runs.status(second)["state"] == jobs.QUEUED and runs.status(second)["queue_position"] == 1
    assert _wait(runs, first, {jobs.DONE}) == jobs.DONE
    assert _wait(runs, second, {jobs.DONE}) == jobs.DONE
    assert runs.job(first)["finished"] <= runs.job(second)["started"]
    assert runs.status(first)["progress"]["phase"] == "simulating"
    assert runs.job(first)["message"] == "stand-in done"


def test_cancel_a_running_run_then_resume_it(runs):
    run_id = runs.create("x", source="a.toml", study_id="A", seed=600)  # would sleep a minute
    runs.tick()
    assert runs.job(run_id)["state"] == jobs.RUNNING
    _wait_for(lambda: runs.status(run_id)["progress"].get("phase") == "simulating")
    t0 = time.monotonic()
    runs.cancel(run_id)
    assert _wait(runs, run_id, {jobs.CANCELLED, jobs.DONE, jobs.FAILED}) == jobs.CANCELLED
    assert time.monotonic() - t0 < 10  # the worker's process group was ended, not waited for
    with pytest.raises(jobs.RunStateError):
        runs.cancel(run_id)
    runs.resume(run_id)
    assert runs.job(run_id)["state"] == jobs.QUEUED
    runs.tick()
    assert runs.job(run_id)["attempts"] == 2
    _wait_for(lambda: (runs.folder(run_id) / "starts").read_text() == "xx")


def test_cancel_a_queued_run_never_starts_it(runs):
    first = runs.create("x", source="a.toml", study_id="A", seed=5)
    second = runs.create("x", source="b.toml", study_id="B", seed=0)
    runs.tick()
    runs.cancel(second)
    assert runs.job(second)["state"] == jobs.CANCELLED
    _wait(runs, first, {jobs.DONE})
    runs.tick()
    assert runs.job(second)["state"] == jobs.CANCELLED
    assert not (runs.folder(second) / "starts").exists()


def test_a_design_search_is_a_job_of_the_same_queue_cancelled_as_a_run(runs):
    run_id = runs.create("x", source="a.toml", study_id="A", seed=5)
    design_id = runs.create_design("spec", source="d.toml", design_id="D", protocol_name="p.toml",
                                   protocol_text="x", patients=600)  # would sleep a minute
    runs.tick()
    assert runs.status(design_id)["queue_position"] == 1  # behind the run asked first
    _wait(runs, run_id, {jobs.DONE})
    _wait(runs, design_id, {jobs.RUNNING})
    _wait_for(lambda: runs.status(design_id)["progress"].get("phase") == "simulating")
    t0 = time.monotonic()
    runs.cancel(design_id)
    assert _wait(runs, design_id, {jobs.CANCELLED, jobs.DONE, jobs.FAILED}) == jobs.CANCELLED
    assert time.monotonic() - t0 < 10
    assert runs.resume(design_id)["message"].startswith("queued to start again")
    with pytest.raises(ValueError, match="not a plain file name"):
        runs.create_design("spec", source="d.toml", design_id="D", protocol_name="../p.toml", protocol_text="x")


def test_a_finished_run_cannot_be_resumed(runs):
    run_id = runs.create("x", source="a.toml", study_id="A", seed=0)
    _wait(runs, run_id, {jobs.DONE})
    with pytest.raises(jobs.RunStateError, match="only a failed, cancelled or interrupted"):
        runs.resume(run_id)


def test_a_worker_that_fails_says_why(tmp_path):
    script = tmp_path / "fails.py"
    script.write_text("import json, sys, pathlib\n"
                      "pathlib.Path(sys.argv[1], 'result.json').write_text(json.dumps({'ok': False, 'error': 'bad dose'}))\n"
                      "sys.exit(2)\n")
    runs = jobs.Runs(tmp_path / "runs", worker=[sys.executable, str(script)])
    run_id = runs.create("x", source="a.toml", study_id="A")
    assert _wait(runs, run_id, {jobs.FAILED, jobs.DONE}) == jobs.FAILED
    assert runs.job(run_id)["message"] == "bad dose"


def test_a_stopped_server_leaves_its_runs_resumable(tmp_path, runs):
    run_id = runs.create("x", source="a.toml", study_id="A", seed=600)
    runs.tick()
    runs.stop()
    assert runs.job(run_id)["state"] == jobs.INTERRUPTED
    # a server started later over the same folder finds it interrupted, and can resume it
    again = jobs.Runs(runs.root, worker=runs.worker)
    assert again.job(run_id)["state"] == jobs.INTERRUPTED
    again.resume(run_id)
    assert again.job(run_id)["state"] == jobs.QUEUED


def test_run_ids_cannot_name_paths(runs, tmp_path):
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / jobs.JOB).write_text(json.dumps({"state": "done"}))
    for bad in ("../secret", "..", "/etc", "r20260101-000000-abcdef/../../secret", "", "r2026"):
        with pytest.raises(jobs.UnknownRun):
            runs.folder(bad)
    assert Path(runs.root).parent == tmp_path
