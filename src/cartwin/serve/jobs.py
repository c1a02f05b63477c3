"""The web app's runs: one folder per run under the app's run folder, a queue, worker processes.

A run asked for from the page becomes a folder ``ROOT/<run id>/`` holding ``job.json`` (what was
asked and the run's state, written only by the server), ``submitted.toml`` (the protocol as
submitted), ``progress.json`` and ``result.json`` (written by the worker), ``worker.log`` and
``run/``, the run directory itself (docs/run_directory.md). Nothing is simulated in the server's
request path: a scheduler thread starts at most ``max_running`` worker processes
(``python -m cartwin.serve.worker FOLDER``, each in its own process group); the others wait in
the queue in the order they were asked for. Cancelling ends the worker's process group; resuming
queues the run again, and the worker continues it with ``run_protocol(..., resume=True)``, which
reuses every chunk already stored.

A design search (``cartwin design``) asked for from the Design page is a job of the same queue:
a folder ``ROOT/<design id>/`` holding ``job.json`` (with ``"kind": "design"``), ``spec.toml``
(the spec as submitted), ``inputs/`` (the protocol it names, as it was in the editor, under the
name the spec gives it), the worker's files, and ``design/``, what ``cartwin design --out`` writes.
It waits, runs, is cancelled and restarted as a run is; a design search has no stored chunks, so a
restarted one starts over (on the same virtual patients: the same answer).

Job ids are made here (``r<date>-<time>-<random>`` for runs, ``d...`` for design searches) and a
request's id is checked against that form before any path is built from it, so no request reaches
outside ``ROOT``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from cartwin.store import atomic
from cartwin.store.run_directory import RunDirectory

RUN_ID = re.compile(r"^r\d{8}-\d{6}-[0-9a-f]{6}$")
DESIGN_ID = re.compile(r"^d\d{8}-\d{6}-[0-9a-f]{6}$")
JOB_ID = re.compile(r"^[rd]\d{8}-\d{6}-[0-9a-f]{6}$")
KINDS = {"run": RUN_ID, "design": DESIGN_ID}
JOB = "job.json"
PROTOCOL = "submitted.toml"
PROGRESS = "progress.json"
RESULT = "result.json"
LOG = "worker.log"
RUN_DIR = "run"
SPEC = "spec.toml"
INPUTS = "inputs"
DESIGN_DIR = "design"
DESIGN_ZIP = "design.zip"

QUEUED, RUNNING, DONE, FAILED, CANCELLED, INTERRUPTED = (
    "queued", "running", "done", "failed", "cancelled", "interrupted")
RESUMABLE = (FAILED, CANCELLED, INTERRUPTED)
ACTIVE = (QUEUED, RUNNING)


class UnknownRun(KeyError):
    """No job of that id (and kind) in the app's run folder (or not an id the app makes)."""


class RunStateError(ValueError):
    """The run is not in a state that allows what was asked (e.g. resuming a finished run)."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


class Runs:
    """The app's run folder and its scheduler. ``start()`` starts the scheduler thread; ``stop()``
    stops it and ends running workers (they stay resumable)."""

    def __init__(self, root: str | Path, *, max_running: int = 1, workers: int = 1, poll_s: float = 0.25,
                 worker: list[str] | None = None):
        self.root = Path(root).resolve()
        # the command that runs one folder (its path is appended): cartwin's worker by default
        self.worker = list(worker or [sys.executable, "-m", "cartwin.serve.worker"])
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_running = max(1, int(max_running))
        self.workers = max(1, int(workers))
        self.poll_s = poll_s
        self._lock = threading.RLock()
        self._procs: dict[str, subprocess.Popen] = {}
        self._cancelling: set[str] = set()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._recover()

    # --- paths -------------------------------------------------------------------------------
    def folder(self, run_id: str, kind: str | None = None) -> Path:
        """The folder of job ``run_id``; ``UnknownRun`` unless the id has the app's form (that of
        ``kind``, "run" or "design", when given) and exists."""
        form = KINDS[kind] if kind else JOB_ID
        if not isinstance(run_id, str) or not form.match(run_id):
            raise UnknownRun(run_id)
        folder = self.root / run_id
        if not (folder / JOB).is_file():
            raise UnknownRun(run_id)
        return folder

    def run_dir(self, run_id: str) -> Path:
        return self.folder(run_id, "run") / RUN_DIR

    def design_dir(self, design_id: str) -> Path:
        return self.folder(design_id, "design") / DESIGN_DIR

    def _new_folder(self, prefix: str) -> tuple[str, Path]:
        while True:
            job_id = f"{prefix}{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
            folder = self.root / job_id
            try:
                folder.mkdir()
                return job_id, folder
            except FileExistsError:
                continue

    # --- asking ------------------------------------------------------------------------------
    def create(self, protocol_text: str, *, source: str, study_id: str, n_per_arm: int | None = None,
               seed: int | None = None, chunk_size: int | None = None) -> str:
        """Queue a run of an already validated protocol text; returns its id."""
        with self._lock:
            run_id, folder = self._new_folder("r")
            atomic.write_text(folder / PROTOCOL, protocol_text)
            self._write_job(run_id, self._queued(
                run_id, "run", study_id=study_id, source=source,
                n_per_arm=n_per_arm, seed=seed, chunk_size=chunk_size))
        return run_id

    def create_design(self, spec_text: str, *, source: str, design_id: str, protocol_name: str,
                      protocol_text: str, patients: int | None = None) -> str:
        """Queue a design search of an already checked spec; ``protocol_name`` (a plain file name)
        is written beside it as the spec names it. Returns the job's id."""
        if Path(protocol_name).name != protocol_name or protocol_name in ("", ".", ".."):
            raise ValueError(f"protocol name {protocol_name!r} is not a plain file name")
        with self._lock:
            job_id, folder = self._new_folder("d")
            atomic.write_text(folder / SPEC, spec_text)
            (folder / INPUTS).mkdir()
            atomic.write_text(folder / INPUTS / protocol_name, protocol_text)
            self._write_job(job_id, self._queued(
                job_id, "design", design_id=design_id, study_id=design_id, source=source,
                protocol=protocol_name, patients=patients))
        return job_id

    def _queued(self, job_id: str, kind: str, **fields) -> dict:
        """The record of a job just asked for: its own ``fields`` and the queue's bookkeeping."""
        return {"id": job_id, "kind": kind, **fields, "state": QUEUED, "workers": self.workers,
                "asked": _now(), "queued": time.time(), "started": None, "finished": None,
                "attempts": 0, "message": ""}

    def cancel(self, run_id: str) -> dict:
        with self._lock:
            job = self.job(run_id)
            if job["state"] == QUEUED:
                return self._update(run_id, state=CANCELLED, finished=_now(), message="cancelled before it started")
            if job["state"] != RUNNING:
                what = _what(job)
                raise RunStateError(f"{what} {run_id} is {job['state']}; only a queued or running {what} can be "
                                    "cancelled")
            proc = self._procs.get(run_id)
            self._cancelling.add(run_id)
            if proc is not None and proc.poll() is None:
                _end_group(proc)
            return self.job(run_id)

    def resume(self, run_id: str) -> dict:
        with self._lock:
            job = self.job(run_id)
            if job["state"] not in RESUMABLE:
                what = _what(job)
                raise RunStateError(f"{what} {run_id} is {job['state']}; only a failed, cancelled or interrupted "
                                    f"{what} can be {'started again' if what != 'run' else 'resumed'}")
            message = ("queued to start again: a design search starts over" if job.get("kind") == "design"
                       else "queued to resume: chunks already stored are reused")
            return self._update(run_id, state=QUEUED, queued=time.time(), finished=None, message=message)

    # --- reading -----------------------------------------------------------------------------
    def job(self, run_id: str) -> dict:
        return _read_json(self.folder(run_id) / JOB)

    def status(self, run_id: str) -> dict:
        """The job with its progress, its place in the queue and, when finished, its result."""
        folder = self.folder(run_id)
        job = _read_json(folder / JOB)
        progress = _read_json(folder / PROGRESS) if job.get("state") != QUEUED else {}
        out = {**job, "progress": progress, "result": _read_json(folder / RESULT), "queue_position": None}
        if job.get("state") == QUEUED:
            queued = [j["id"] for j in self._queue()]
            out["queue_position"] = queued.index(run_id) + 1 if run_id in queued else None
        out.setdefault("kind", "run")
        if out["kind"] == "design":
            out["complete"] = (folder / DESIGN_DIR / "design.json").is_file()
        else:
            out["complete"] = RunDirectory(folder / RUN_DIR).is_complete()
        out["readable"] = job.get("state") == DONE and out["complete"]
        return out

    def list(self, kind: str = "run") -> list[dict]:
        """The jobs of one kind ("run" or "design"), newest first."""
        jobs = []
        for folder in sorted(self.root.iterdir(), reverse=True):
            if KINDS[kind].match(folder.name) and (folder / JOB).is_file():
                jobs.append(self.status(folder.name))
        return jobs

    def protocol_text(self, run_id: str) -> str:
        return (self.folder(run_id, "run") / PROTOCOL).read_text()

    def design_inputs(self, design_id: str) -> tuple[str, str, str]:
        """A design search's spec text, and the name and text of the protocol it names."""
        folder = self.folder(design_id, "design")
        job = _read_json(folder / JOB)
        name = str(job.get("protocol", ""))
        if Path(name).name != name or not name:
            raise UnknownRun(design_id)
        return (folder / SPEC).read_text(), name, (folder / INPUTS / name).read_text()

    # --- the scheduler -----------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="cartwin-serve-scheduler", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        """Ask the scheduler to look at the queue now (a run was asked for or resumed)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            for run_id, proc in list(self._procs.items()):
                if proc.poll() is None:
                    _end_group(proc)
                    proc.wait(timeout=10)
                self._update(run_id, state=INTERRUPTED, finished=_now(),
                             message="the server stopped during the run; resume it to continue")
            self._procs.clear()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # the scheduler must outlive one bad folder
                print(f"cartwin serve: scheduler: {type(exc).__name__}: {exc}", file=sys.stderr)
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def tick(self) -> None:
        """Reap finished workers, then start queued runs while fewer than ``max_running`` run."""
        with self._lock:
            for run_id, proc in list(self._procs.items()):
                code = proc.poll()
                if code is None:
                    continue
                del self._procs[run_id]
                result = _read_json(self.root / run_id / RESULT)
                if run_id in self._cancelling:
                    self._cancelling.discard(run_id)
                    self._update(run_id, state=CANCELLED, finished=_now(),
                                 message="cancelled; resume to continue from the chunks already stored")
                elif code == 0 and result.get("ok"):
                    self._update(run_id, state=DONE, finished=_now(), message=result.get("message", ""))
                else:
                    message = result.get("error") or f"the worker ended with exit code {code}; see {LOG}"
                    self._update(run_id, state=FAILED, finished=_now(), message=message)
            if len(self._procs) >= self.max_running:
                return  # the queue is read only when a worker is free
            for job in self._queue():
                if len(self._procs) >= self.max_running:
                    break
                self._launch(job)

    def _queue(self) -> list[dict]:
        jobs = []
        for folder in self.root.iterdir():
            if JOB_ID.match(folder.name):
                job = _read_json(folder / JOB)
                if job.get("state") == QUEUED:
                    jobs.append(job)
        return sorted(jobs, key=lambda j: (j.get("queued") or 0, j["id"]))

    def _launch(self, job: dict) -> None:
        run_id = job["id"]
        folder = self.root / run_id
        (folder / RESULT).unlink(missing_ok=True)
        atomic.write_json(folder / PROGRESS, {"phase": "starting", "done": 0, "total": None})
        log = open(folder / LOG, "ab")
        try:
            proc = subprocess.Popen([*self.worker, str(folder)],
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, cwd=str(folder))
        finally:
            log.close()
        self._procs[run_id] = proc
        self._update(run_id, state=RUNNING, started=_now(), attempts=int(job.get("attempts", 0)) + 1,
                     message="", pid=proc.pid)

    def _recover(self) -> None:
        """Runs left running by a server that stopped are interrupted (resumable)."""
        for folder in self.root.iterdir():
            if JOB_ID.match(folder.name) and (folder / JOB).is_file():
                job = _read_json(folder / JOB)
                if job.get("state") == RUNNING:
                    # its worker, if it outlived the server, is not ours to end: a process id
                    # recorded by another server may name another process by now
                    self._update(folder.name, state=INTERRUPTED, finished=_now(),
                                 message="the server stopped during the run; resume it to continue")

    def _write_job(self, run_id: str, job: dict) -> None:
        atomic.write_json(self.root / run_id / JOB, job)

    def _update(self, run_id: str, **changes) -> dict:
        with self._lock:
            job = _read_json(self.root / run_id / JOB)
            job.update(changes)
            self._write_job(run_id, job)
            return job


def _what(job: dict) -> str:
    return "design search" if job.get("kind") == "design" else "run"


def _end_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
