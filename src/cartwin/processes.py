"""Worker processes: spawned with the environment their native libraries need, and never
outliving the process that started them.

Native libraries read their settings once, when they load: OpenBLAS (NumPy's and SciPy's) its
thread count, Polars' allocator when to return freed memory. A pool initializer runs after a
spawned worker has imported NumPy, which is too late, so these settings are in the environment the worker starts with
(:func:`worker_environment`, around the submissions that start a pool's workers). A forked
worker inherits the libraries its parent has loaded, with the parent's settings.

A pool worker blocks on its task queue; when the main process dies without closing the pool
(``kill -9``, a crash, SIGTERM before any cleanup), nothing tells the worker, and with forked
workers the queue never even reports end of file (every worker holds its write end). Each
worker therefore watches its parent and exits once it is gone.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Iterator

PARENT_CHECK_SECONDS = 0.5

# Parallelism comes from processes, one per core: a BLAS thread pool in each would only contend
# for the same cores, and its idle threads spin while they wait for work.
WORKER_ENVIRONMENT = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# Polars runs a query on a thread pool as wide as the machine; in a worker, one of a pool of one
# process per core, those threads only contend with the other workers for the same cores (and
# spin while they wait): each of several workers' Polars gets its share of the threads Polars
# would use, at least one. A scored run of 8,000 patients on two cores: about 6% less wall time
# and CPU (A/B in docs/performance.md). Set unless the user has set it.
POLARS_THREADS_VARIABLE = "POLARS_MAX_THREADS"
# Polars' allocator (jemalloc) gives freed pages back to the system after a few seconds, from a
# background thread, and every chunk's frames then fault fresh pages in again: in a whole run of
# 18,000 patients that was 1.2 million more page faults and 4-8% of the wall time (A/B in
# docs/performance.md). A process with this setting keeps them instead: its memory stays at the
# peak that every chunk reaches anyway. Set unless the user has set it.
ALLOCATOR_VARIABLE = "_RJEM_MALLOC_CONF"
KEEP_FREED_MEMORY = "dirty_decay_ms:-1,muzzy_decay_ms:-1"
# What Polars itself writes into the variable when it loads, where the user has set nothing
# (polars/__init__.py; a user's own setting is appended after it, and jemalloc takes the last
# value of a key): not a user's choice
_POLARS_OWN_SETTINGS = ("dirty_decay_ms:500,muzzy_decay_ms:1000",
                        "dirty_decay_ms:500,muzzy_decay_ms:1000,thp:always,metadata_thp:always")


def _allocator_setting() -> str | None:
    """The allocator variable's value that keeps freed memory, or None where the user has chosen
    a setting of their own."""
    current = os.environ.get(ALLOCATOR_VARIABLE)
    if current is None:
        return KEEP_FREED_MEMORY
    return f"{current},{KEEP_FREED_MEMORY}" if current in _POLARS_OWN_SETTINGS else None


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system tells it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def polars_threads_per_worker(workers: int) -> int:
    """Polars' threads in each of ``workers`` worker processes: the threads Polars would use on
    its own (its pool's size where this process has loaded Polars, which heeds a container's CPU
    quota; else the usable cores) shared out, at least one."""
    return max(1, min(usable_cores(), _polars_pool_size()) // max(1, workers))


def _polars_pool_size() -> int:
    polars = sys.modules.get("polars")
    return polars.thread_pool_size() if polars is not None else usable_cores()


def keep_freed_memory() -> None:
    """Give this process, and every process it starts, the allocator setting that keeps freed
    memory, unless the user has chosen one. The allocator reads it when Polars loads, so it counts
    only before then: in this process, and in workers forked from it, which inherit the loaded
    allocator (spawned workers get it from :func:`worker_environment` either way)."""
    value = _allocator_setting()
    if value is not None:
        os.environ[ALLOCATOR_VARIABLE] = value


@contextmanager
def worker_environment(workers: int | None = None) -> Iterator[None]:
    """Within the block, processes started by spawning get :data:`WORKER_ENVIRONMENT`, unless
    the user has set any of its variables (then the user has chosen the threads, and none is
    added), Polars' thread count for one of ``workers`` workers (:func:`polars_threads_per_worker`;
    none added for a single worker, without ``workers``, or where the user has set it) and the allocator setting that
    keeps freed memory, unless the user has chosen one. It
    changes this process's environment until the block ends, so it is kept around the calls that
    start workers (a pool's submissions); two threads entering it at once can only start a worker
    without the settings, never leave them behind. The parent's own libraries, already loaded, are
    not affected, and its environment is restored."""
    added = {} if any(name in os.environ for name in WORKER_ENVIRONMENT) else dict(WORKER_ENVIRONMENT)
    if workers is not None and workers > 1 and POLARS_THREADS_VARIABLE not in os.environ:
        added[POLARS_THREADS_VARIABLE] = str(polars_threads_per_worker(workers))
    allocator = _allocator_setting()
    if allocator is not None:
        added[ALLOCATOR_VARIABLE] = allocator
    before = {name: os.environ.get(name) for name in added}
    try:
        os.environ.update(added)
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _watch_parent(parent: int) -> None:
    stop = threading.Event()
    while not stop.wait(PARENT_CHECK_SECONDS):
        if os.getppid() != parent:  # re-parented: the process that started this one has gone
            os._exit(1)


def worker_init() -> None:
    """Initialiser of every pool worker: a watch that ends the worker when its parent has gone,
    and the objects of the modules imported so far moved out of the garbage collector's view
    (``gc.freeze``): they live as long as the worker, and every full collection would otherwise
    walk them all again."""
    gc.freeze()
    threading.Thread(target=_watch_parent, args=(os.getppid(),), name="cartwin-parent-watch", daemon=True).start()


def load_deferred_imports() -> None:
    """Make, in this process, the imports that libraries defer to their first use, so that workers
    forked from it inherit them instead of each paying for them: pyarrow imports its pandas bridge
    (pandas itself, where installed: 0.3-0.4 s of CPU) at its first conversion of a NumPy array or
    Python sequence, which every chunk's tables make."""
    import numpy as np
    import pyarrow as pa

    pa.array(np.zeros(1))


class WorkerPool(ProcessPoolExecutor):
    """The process pool of every cartwin worker: each worker runs :func:`worker_init`, and a
    submission, which may start a worker, does so with :data:`WORKER_ENVIRONMENT`
    and its share of Polars' threads (``map`` submits through ``submit`` too). ``start_method``:
    ``"spawn"`` (the default; Polars' thread pool does not survive a fork) or ``"fork"``."""

    def __init__(self, workers: int, start_method: str = "spawn"):
        if start_method == "fork":
            load_deferred_imports()
        self._workers = workers
        super().__init__(workers, mp_context=multiprocessing.get_context(start_method), initializer=worker_init)

    def submit(self, fn, /, *args, **kwargs):
        with worker_environment(self._workers):
            return super().submit(fn, *args, **kwargs)
