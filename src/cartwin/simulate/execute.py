"""Chunk execution: in this process or in a pool of worker processes.

The executor knows no protocol and no biology. It runs any *work*: an object with ``model``
(compiled once before workers fork, so that they inherit the machine code), ``solver()`` and
``compute(spec)``, which solves one chunk (see :class:`cartwin.plan.RunWork`).
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import FIRST_COMPLETED, wait
from typing import Any, Callable, Iterable, Iterator, Protocol

from cartwin.model.codegen import compile_model, warm_up
from cartwin.processes import WorkerPool


class Work(Protocol):
    model: Any

    def solver(self) -> Any: ...

    def compute(self, spec: Any) -> Any: ...


def prepare(work: Work) -> None:
    """Compile the model and the solver's kernel now (or load them from the cache). A solver
    whose own compiled code is not cached yet compiles it in another process meanwhile (its
    ``compile_aside``; None when there is nothing to start): on a first run the two compilations
    then overlap."""
    solver = work.solver()
    aside = solver.compile_aside()
    try:
        compiled = compile_model(work.model)
        warm_up(compiled)
    except BaseException:  # a model that does not compile is reported at once
        if aside is not None:
            aside.cancel()
        raise
    if aside is not None:
        aside.wait()
    solver.warm_up(compiled)


def execute(work: Work, chunks: Iterable[Any], workers: int, on_result: Callable[[Any], object],
            start_method: str | None = None, pool: WorkerPool | None = None) -> Iterator[object]:
    """Compute chunks, in parallel processes when ``workers > 1``; yield ``on_result`` of each.
    ``on_result`` runs in the worker, so large tables need not travel back. Workers are forked
    (they inherit the compiled model) unless ``start_method`` says otherwise: ``"spawn"`` for an
    ``on_result`` that uses Polars, whose thread pool does not survive a fork.

    ``pool``: a pool of ``workers`` processes that the caller keeps across several calls (a design
    search evaluates its points call after call), so that each worker starts, imports and loads
    the compiled model once rather than once per call; it is left open. None: a pool is started
    for this call and closed at its end."""
    chunks = list(chunks)
    prepare(work)  # compile once before forking; workers inherit the machine code
    if workers <= 1 or len(chunks) <= 1:
        for spec in chunks:
            yield on_result(work.compute(spec))
        return
    if pool is not None:
        yield from _stream(pool, work, chunks, workers, on_result)
        return
    method = start_method or ("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    with WorkerPool(workers, method) as own_pool:
        yield from _stream(own_pool, work, chunks, workers, on_result)


def _stream(pool: WorkerPool, work: Work, chunks: list, workers: int, on_result) -> Iterator[object]:
    """Results in order of completion, with at most two chunks per worker submitted at a time."""

    def submit(spec):
        return pool.submit(_compute_and_handle, work, spec, on_result)

    pending = set()
    queue = iter(chunks)
    for spec in queue:
        pending.add(submit(spec))
        if len(pending) >= 2 * workers:
            break
    while pending:
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        for fut in done:
            yield fut.result()
            nxt = next(queue, None)
            if nxt is not None:
                pending.add(submit(nxt))


def _compute_and_handle(work: Work, spec, on_result):
    return on_result(work.compute(spec))
