"""The same chunks, computed on a Dask cluster (``dask.distributed``).

``DaskExecutor.execute`` keeps the contract of :func:`cartwin.simulate.execute.execute`: every
chunk is computed AND stored by a worker (``on_result`` runs there), and only ``on_result``'s small
return value travels back to the client. The client keeps at most a few futures per worker
thread in flight, so its memory does not grow with the number of patients.

Why this is safe when workers die: a task is pure and idempotent. It depends on nothing but the
picklable work (:class:`cartwin.plan.RunWork`) and its chunk; every patient's
numbers come from the patient's own random stream; and every part file is written atomically under
a name fixed by the chunk. A chunk whose worker died is recomputed elsewhere by the scheduler and
rewrites the same bytes under the same names, so no patient is lost or stored twice, whether the
first attempt died before, during or after its writes.

Workers compile the model themselves (``compile_model`` writes the generated source into the
worker's cache folder and numba caches machine code beside it): nothing compiled travels.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from cartwin.model.codegen import compile_model, warm_up
from cartwin.simulate.execute import Work

# Futures in flight per worker thread: one running, one queued so that a thread never waits for
# the client's round trip. More would only hold results and memory on the workers.
IN_FLIGHT_PER_THREAD = 2
CONNECT_TIMEOUT_S = 30


class ClusterUnavailable(RuntimeError):
    """dask.distributed is not installed, or the scheduler cannot be reached."""


class SharedPathMissing(RuntimeError):
    """A worker cannot see the run directory: parts written there would be lost to the client."""


class WorkerModelMismatch(RuntimeError):
    """A worker's installed model differs from the client's: its numbers would not be the run's."""


def _import_distributed():
    try:
        import distributed  # noqa: PLC0415
    except ImportError:
        raise ClusterUnavailable(
            "running on a Dask cluster needs dask.distributed: pip install 'cartwin[cluster]'") from None
    return distributed


def compute_and_store(ctx: Work, spec: Any, on_result: Callable[[Any], object],
                      shared_path: str | None = None, model_hash: str | None = None):
    """The task each worker runs: compute one chunk and store it (via ``on_result``).

    The work carries the client's model declaration, but the worker's own cartwin generates and
    solves it: a worker whose installation has another version of that model (another cartwin)
    is refused here (``model_hash``, the client's), rather than mixing two installations'
    patients in one run. An imported model, which no installation has, is taken as sent."""
    own = _installed_model_hash(ctx.model)
    if model_hash is not None and own != model_hash:
        raise WorkerModelMismatch(
            f"worker on {socket.gethostname()} has model {ctx.model.name} with hash {own}, the client "
            f"{model_hash}: install the same cartwin on every worker")
    if shared_path is not None and not os.path.exists(shared_path):
        raise SharedPathMissing(
            f"worker on {socket.gethostname()} cannot see {shared_path}: --out must be on a filesystem "
            "that every Dask worker mounts at the same path (see docs/cluster.md)")
    return on_result(ctx.compute(spec))


def _installed_model_hash(model) -> str:
    from cartwin.model import MODELS
    installed = MODELS.get(model.name)
    return (installed if installed is not None else model).content_hash()


def _exit_at_close(d):
    """A worker plugin for a local cluster: once the worker has closed, its process exits at once.
    A worker that has solved patients holds the compiled model in LLVM's JIT, whose teardown at
    interpreter exit takes seconds; the nanny would kill it after 4 s and warn ("Worker process
    still alive after 4.0 seconds, killing") although every result is stored."""

    class ExitAtClose(d.WorkerPlugin):
        def teardown(self, worker) -> None:
            import atexit  # noqa: PLC0415
            import sys  # noqa: PLC0415

            def leave() -> None:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(0)
            atexit.register(leave)  # the last registered runs first: after the worker has closed

    return ExitAtClose()


class DaskExecutor:
    """Runs chunks on an existing Dask scheduler (``address``) or on a local cluster of
    ``n_workers`` single-threaded processes started here (``address`` None or ``"local"``).

    Nothing starts before it is needed (:meth:`start`, :meth:`planning_workers` for a remote
    scheduler, :meth:`execute`); the context manager closes whatever was opened.
    """

    def __init__(self, address: str | None = None, n_workers: int | None = None):
        self.distributed = _import_distributed()
        self.local = address in (None, "local")
        if self.local and (n_workers is None or n_workers < 1):
            raise ValueError("a local Dask cluster needs n_workers >= 1")
        self.address = None if self.local else address
        self.n_workers = n_workers
        self.client = None
        self.cluster = None

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "DaskExecutor":
        if self.client is not None:
            return self
        d = self.distributed
        if self.local:
            # processes, one thread each: the solver holds the GIL, so threads would not help;
            # random ports (scheduler and its HTTP server), loopback only (the dashboard too: it
            # shows identity, workers and logs): several runs and test
            # sessions can share this machine.
            self.cluster = d.LocalCluster(n_workers=self.n_workers, threads_per_worker=1, processes=True,
                                          host="127.0.0.1", scheduler_port=0,
                                          dashboard_address="127.0.0.1:0")
            self.client = d.Client(self.cluster, set_as_default=False)
            self.client.register_plugin(_exit_at_close(d), name="cartwin-exit-at-close")
        else:
            try:
                self.client = d.Client(self.address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise ClusterUnavailable(f"cannot reach the Dask scheduler at {self.address}: {exc}") from exc
        return self

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None

    def __enter__(self) -> "DaskExecutor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- what the cluster is -----------------------------------------------------------------
    def total_threads(self) -> int:
        """Worker threads the scheduler knows now (workers of an adaptive cluster come and go)."""
        return sum(self.start().client.nthreads().values())

    def planning_workers(self) -> int:
        """How many parallel slots to plan chunks for. A local cluster is known before it starts
        (so a run that fails its checks starts nothing); a remote one is asked."""
        if self.local:
            return self.n_workers
        return max(1, self.total_threads())

    def describe(self) -> dict:
        """For the manifest: where the chunks ran."""
        info = {"executor": "dask", "cluster": "local" if self.local else self.address,
                "dask_version": self.distributed.__version__}
        if self.local:
            info["workers"] = self.n_workers
        if self.client is not None:  # what the scheduler has now (an adaptive cluster changes)
            info["scheduler"] = self.client.scheduler.address
            info["workers"] = len(self.client.nthreads())
            info["worker_threads"] = self.total_threads()
        return info

    # --- execution ---------------------------------------------------------------------------
    def execute(self, ctx: Work, chunks: Iterable[Any], on_result: Callable[[Any], object],
                shared_path: str | Path | None = None) -> Iterator[object]:
        """Compute chunks on the cluster; yield ``on_result``'s return value of each as it completes.

        ``on_result`` runs on the worker and must be picklable (``RunDirectory(...).write_chunk``
        is); its result should be small. ``shared_path``, when given, must exist on every worker
        (the run directory's ``run.json``): a worker that cannot see it fails its task loudly
        instead of writing parts where the client will never find them.
        """
        d = self.distributed
        chunks = list(chunks)
        if not chunks:  # a resumed run with every chunk stored starts no cluster
            return
        # Compile before the cluster starts: a broken model fails before anything is sent, and
        # local workers (same machine, same cache folder) load numba's cached machine code instead
        # of each compiling it again at the same time.
        warm_up(compile_model(ctx.model))
        self.start()
        # Keys unique to this call: another client on the same scheduler, or a resumed run while
        # tasks of a killed client still finish, never shares a key (and a result) with this one.
        call_id = uuid.uuid4().hex[:12]
        shared = None if shared_path is None else str(shared_path)
        model_hash = ctx.model.content_hash()
        queue = iter(chunks)
        running = d.as_completed(loop=self.client.loop)

        def submit_next() -> bool:
            spec = next(queue, None)
            if spec is None:
                return False
            running.add(self.client.submit(compute_and_store, ctx, spec, on_result, shared, model_hash,
                                           key=f"cartwin-{spec.name}-{call_id}", pure=False, retries=0))
            return True

        def capacity() -> int:
            return IN_FLIGHT_PER_THREAD * max(1, self.total_threads())

        in_flight = 0
        while in_flight < capacity() and submit_next():
            in_flight += 1
        try:
            for future in running:
                in_flight -= 1
                value = future.result()  # re-raises a task's exception (not a worker death: those are retried)
                future.release()
                yield value
                while in_flight < capacity() and submit_next():
                    in_flight += 1
        except BaseException:
            # Tasks already running finish on their workers (they cannot be interrupted); their
            # writes are whole chunks, so a --resume simply finds them done.
            for future in list(running.futures):
                future.cancel()
            raise


def execute_on_dask(ctx: Work, chunks: Iterable[Any], on_result: Callable[[Any], object],
                    *, address: str | None = None, n_workers: int | None = None,
                    shared_path: str | Path | None = None) -> Iterator[object]:
    """:func:`cartwin.simulate.execute.execute` on Dask: connect to ``address`` (or start a local
    cluster of ``n_workers`` processes), compute and store every chunk on the workers, yield
    ``on_result``'s values, and close what was opened."""
    with DaskExecutor(address, n_workers) as executor:
        yield from executor.execute(ctx, chunks, on_result, shared_path)
