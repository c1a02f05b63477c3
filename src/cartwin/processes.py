"""Worker processes that do not outlive the process that started them.

A pool worker blocks on its task queue; when the main process dies without closing the pool
(``kill -9``, a crash, SIGTERM before any cleanup), nothing tells the worker, and with forked
workers the queue never even reports end of file (every worker holds its write end). Each
worker therefore watches its parent and exits once it is gone.
"""

from __future__ import annotations

import os
import threading

PARENT_CHECK_SECONDS = 0.5


def _watch_parent(parent: int) -> None:
    stop = threading.Event()
    while not stop.wait(PARENT_CHECK_SECONDS):
        if os.getppid() != parent:  # re-parented: the process that started this one has gone
            os._exit(1)


def worker_init() -> None:
    """Initialiser of every pool worker: one BLAS thread per process (parallelism comes from
    processes) and a watch that ends the worker when its parent has gone."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    threading.Thread(target=_watch_parent, args=(os.getppid(),), name="cartwin-parent-watch", daemon=True).start()
