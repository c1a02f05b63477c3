"""Pool workers do not outlive the process that started them (kill -9 of a run used to leave both
workers alive for good, holding the caller's pipes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

SCRIPT = r"""
import os, sys, time
from cartwin.processes import WorkerPool

def pid(_):
    time.sleep(0.2)
    return os.getpid()

if __name__ == "__main__":
    pool = WorkerPool(2, sys.argv[1])
    print(" ".join(map(str, sorted(set(pool.map(pid, range(8)))))), flush=True)
    time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_workers_exit_when_the_main_process_is_killed(tmp_path, method):
    script = tmp_path / "pool.py"
    script.write_text(SCRIPT)
    main = subprocess.Popen([sys.executable, str(script), method], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    workers: list[int] = []
    try:
        workers = [int(p) for p in main.stdout.readline().split()]
        assert workers and all(_alive(p) for p in workers)
        main.send_signal(signal.SIGKILL)
        main.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in workers), "a worker outlived the killed main process"
    finally:
        if main.poll() is None:
            main.kill()
        for pid in workers:  # a failed run of this test leaves nothing behind
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _environment_variable(name: str) -> str | None:
    return os.environ.get(name)


def test_spawned_workers_start_with_one_blas_thread_and_the_parent_is_left_as_it_was(monkeypatch):
    """OpenBLAS reads its thread count when NumPy loads, before any pool initializer runs: the
    setting must be in the environment a spawned worker starts with, and only there."""
    from cartwin.processes import WORKER_ENVIRONMENT, WorkerPool

    for name in WORKER_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    with WorkerPool(1) as pool:
        started = pool.submit(_environment_variable, "OPENBLAS_NUM_THREADS")  # starts the worker
        assert not any(name in os.environ for name in WORKER_ENVIRONMENT)
        assert started.result() == "1"
        assert pool.submit(_environment_variable, "OMP_NUM_THREADS").result() == "1"


def test_a_user_who_sets_the_thread_count_keeps_it(monkeypatch):
    """A user who sets any of the thread variables has chosen the threads: the workers get the
    user's environment, with nothing added (OpenBLAS would read an added OPENBLAS_NUM_THREADS
    before the user's OMP_NUM_THREADS)."""
    from cartwin.processes import WORKER_ENVIRONMENT, WorkerPool

    for name in WORKER_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    with WorkerPool(1) as pool:
        blas = pool.submit(_environment_variable, "OPENBLAS_NUM_THREADS")
        assert blas.result() is None
        assert pool.submit(_environment_variable, "OMP_NUM_THREADS").result() == "3"
    assert os.environ["OMP_NUM_THREADS"] == "3" and "OPENBLAS_NUM_THREADS" not in os.environ


def test_spawned_workers_share_the_cores_among_their_polars_threads(monkeypatch):
    """Each of several workers' Polars thread pool gets its share of the threads Polars would use
    (the fewer of the usable cores and Polars' own pool, which heeds a container's CPU quota; at
    least one), so that a pool of one worker per core does not run cores x cores threads; a single
    worker keeps Polars' own choice; a user's own POLARS_MAX_THREADS is left as it is, and the
    parent's environment is restored."""
    from cartwin import processes
    from cartwin.processes import POLARS_THREADS_VARIABLE as name, WorkerPool

    monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(processes, "usable_cores", lambda: 4)
    monkeypatch.setattr(processes, "_polars_pool_size", lambda: 4)
    assert [processes.polars_threads_per_worker(w) for w in (1, 2, 3, 4, 8)] == [4, 2, 1, 1, 1]
    with WorkerPool(2) as pool:
        assert pool.submit(_environment_variable, name).result() == "2"
        assert name not in os.environ
    with WorkerPool(1) as pool:
        assert pool.submit(_environment_variable, name).result() is None
    monkeypatch.setattr(processes, "_polars_pool_size", lambda: 2)  # a CPU quota of two cores
    assert processes.polars_threads_per_worker(2) == 1
    monkeypatch.setenv(name, "3")
    with WorkerPool(2) as pool:
        assert pool.submit(_environment_variable, name).result() == "3"
    assert os.environ[name] == "3"


def test_spawned_workers_keep_freed_memory_unless_the_user_configured_the_allocator(monkeypatch):
    """Polars' allocator reads its settings when it loads: a spawned worker starts with the setting
    that keeps freed pages (fewer page faults per chunk), which the parent does not get; a user's
    own setting, and a user's own thread count, are each left as they are. The value Polars writes
    into the variable when it loads (every run's parent has loaded Polars) is not a user's setting:
    the worker gets the setting after it, and the parent keeps Polars' value."""
    from cartwin.processes import ALLOCATOR_VARIABLE as name, KEEP_FREED_MEMORY as value
    from cartwin.processes import WORKER_ENVIRONMENT, WorkerPool

    for other in WORKER_ENVIRONMENT:
        monkeypatch.delenv(other, raising=False)
    monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user chose the threads: the allocator is apart
    with WorkerPool(1) as pool:
        assert pool.submit(_environment_variable, name).result() == value
        assert name not in os.environ
    polars_own = "dirty_decay_ms:500,muzzy_decay_ms:1000"
    monkeypatch.setenv(name, polars_own)
    with WorkerPool(1) as pool:
        assert pool.submit(_environment_variable, name).result() == f"{polars_own},{value}"
        assert os.environ[name] == polars_own
    monkeypatch.setenv(name, "dirty_decay_ms:1000")
    with WorkerPool(1) as pool:
        assert pool.submit(_environment_variable, name).result() == "dirty_decay_ms:1000"


def test_batch_commands_keep_freed_memory_and_serve_gives_it_back(monkeypatch):
    """The command line sets the allocator's setting before Polars loads, so that forked workers
    (which inherit the loaded allocator) keep freed memory too; not for `serve`, a long-lived
    process; a user's own setting wins."""
    from cartwin import cli
    from cartwin.processes import ALLOCATOR_VARIABLE as name, KEEP_FREED_MEMORY as value

    for argv, expected in ((["cartwin", "run", "p.toml"], value), (["cartwin", "serve"], None)):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.setattr(sys, "argv", argv)
        cli._keep_freed_memory()
        assert os.environ.get(name) == expected
    monkeypatch.setenv(name, "dirty_decay_ms:1000")
    monkeypatch.setattr(sys, "argv", ["cartwin", "run", "p.toml"])
    cli._keep_freed_memory()
    assert os.environ[name] == "dirty_decay_ms:1000"


IMPORTS_SCRIPT = r"""
import sys
import numpy as np
import pyarrow as pa
from cartwin.processes import WorkerPool

def modules_a_chunk_table_imports(_):
    before = set(sys.modules)
    pa.table({"value": np.arange(3.0), "test": pa.array(["CART", "BCELL", "CART"]).dictionary_encode()})
    return sorted(name for name in set(sys.modules) - before if "." not in name)

if __name__ == "__main__":
    with WorkerPool(1, "fork") as pool:
        print(" ".join(pool.submit(modules_a_chunk_table_imports, None).result()) or "-", flush=True)
"""


def test_forked_workers_inherit_the_imports_pyarrow_defers_to_its_first_conversion(tmp_path):
    """pyarrow imports pandas (where installed) at its first conversion of a NumPy array: done in
    each forked worker, it cost every worker 0.3-0.4 s of CPU on its first chunk. The pool makes
    it in the parent before forking, so a worker's first table imports nothing new."""
    script = tmp_path / "imports.py"
    script.write_text(IMPORTS_SCRIPT)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["-"], f"a forked worker's first table imported {out.stdout.split()}"
