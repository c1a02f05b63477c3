"""cartwin: a virtual twin of CD19 CAR-T cell therapy for autoimmune disease.

The verbs a notebook needs::

    import cartwin

    protocol = cartwin.load_protocol("examples/nct05988216.toml")   # validated; .protocol, .text
    sim = cartwin.simulate_trial(protocol, n=50, seed=1)    # in memory: polars frames
    summary = cartwin.run_trial(protocol, "runs/twin")      # a run directory
    results = cartwin.open_run("runs/twin")                 # read it: patients(), observations(), ...
    scores = cartwin.score(sim.observations)                # clinical scores of a frame (or a file)
    cartwin.write_report("runs/twin")                       # the HTML report

Everything is imported on first use, so ``import cartwin`` stays cheap. (The verbs are not
named after the rooms ``cartwin.simulate``, ``cartwin.run`` and ``cartwin.report``, which they use.)
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

    from cartwin.protocol import LoadedProtocol, Protocol
    from cartwin.run import RunSummary, Simulation
    from cartwin.store import RunDirectory

__all__ = ["__version__", "load_protocol", "open_run", "run_trial", "score", "simulate_trial", "write_report"]


def _path(name: str, value) -> Path:
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name}: give a path (str or pathlib.Path), not {type(value).__name__} {value!r:.60}")
    return Path(value)


def _whole(name: str, value, low: int, high: int | None = None, meaning: str = "") -> int | None:
    """The checks of the matching `cartwin run` option; a float or text is refused, not rounded."""
    if value is None:
        return None
    what = f"{name} ({meaning})" if meaning else name
    bounds = f"at least {low}" if high is None else f"from {low} to {high:,}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what}: give a whole number (int) {bounds}, as `cartwin run --{name}` takes; "
                        f"got {type(value).__name__} {value!r:.60}")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{what}: {value} is not {bounds}, as `cartwin run --{name}` requires")
    return int(value)


def _options(n, seed, workers) -> tuple[int | None, int | None, int | None]:
    from cartwin.protocol.schema import MAX_PATIENTS_PER_ARM
    return (_whole("n", n, 1, MAX_PATIENTS_PER_ARM, "patients per arm"), _whole("seed", seed, 0),
            _whole("workers", workers, 1, meaning="worker processes"))


def load_protocol(path: str | Path) -> "LoadedProtocol":
    """Read and validate a protocol file (TOML); raises ``ProtocolError`` naming each problem.
    The result holds the validated ``protocol``, its ``text`` and ``source``."""
    from cartwin.protocol import load_protocol as _load
    return _load(_path("protocol", path))


def _loaded(protocol) -> "LoadedProtocol":
    from cartwin.protocol import LoadedProtocol, load_protocol as _load
    if isinstance(protocol, LoadedProtocol):
        return protocol
    if isinstance(protocol, (str, Path)):
        return _load(protocol)
    raise TypeError("give a protocol file or what cartwin.load_protocol returned: a run directory keeps "
                    f"the protocol's text beside its results (got {type(protocol).__name__})")


def simulate_trial(protocol: "LoadedProtocol | Protocol | str | Path", *, n: int | None = None,
             seed: int | None = None, workers: int | None = None) -> "Simulation":
    """Simulate in memory: patients, observations, parameters and events as polars frames.
    ``n`` overrides the patients per arm and ``seed`` the protocol's seed."""
    from cartwin.protocol import Protocol
    from cartwin.run import simulate as _simulate
    n, seed, workers = _options(n, seed, workers)
    resolved = protocol if isinstance(protocol, Protocol) else _loaded(protocol).protocol
    return _simulate(resolved, n_per_arm=n, seed=seed, workers=workers)


def run_trial(protocol: "LoadedProtocol | str | Path", out: str | Path, *, n: int | None = None,
        seed: int | None = None, workers: int | None = None, resume: bool = False,
        report: bool = False) -> "RunSummary":
    """Simulate into the run directory ``out`` (docs/run_directory.md), as ``cartwin run`` does;
    ``report=True`` also writes the HTML report."""
    from cartwin.run import run_protocol
    n, seed, workers = _options(n, seed, workers)
    out = _path("out", out)
    summary = run_protocol(_loaded(protocol), out, n_per_arm=n, seed=seed, workers=workers, resume=resume,
                           score=report)
    if report:
        write_report(out)
    return summary


def open_run(path: str | Path) -> "RunDirectory":
    """A completed run directory: ``patients()``, ``observations(tests=..., arms=...)``,
    ``parameters()``, ``events()``, ``failures()``, ``manifest()``, ``connect()`` (DuckDB)."""
    from cartwin.store import open_run as _open
    return _open(_path("path", path))


def score(observations: "pl.DataFrame | str | Path", *, source: str = "observations") -> dict[str, Any]:
    """Clinical scores and grades (SLEDAI-2K, SELENA-SLEDAI, CTCAE v5, ASTCT, ...) of observations
    in the long format (subject, day, test, value, unit): a polars frame, a CSV/Parquet file or
    a run directory. Returns the tables by name (patients, visits, adverse_events, ...), with
    ``endpoints``: every patient's endpoints (``cartwin.endpoints.compute``)."""
    from cartwin.clinical import observations_from_frame
    from cartwin.endpoints.scoring import run_baselines, score_and_compute
    baselines = (None, None)
    if isinstance(observations, (str, Path)):
        from cartwin.io.observations import read_observations
        obs = read_observations(observations)
        baselines = run_baselines(observations)  # a run directory: its protocol's [scoring] days
    else:
        import polars as pl
        if not isinstance(observations, pl.DataFrame):
            hint = " (pl.from_pandas(frame) converts a pandas frame)" if "pandas" in type(observations).__module__ else ""
            raise TypeError(f"observations: give a polars DataFrame in the long format (subject, day, test, value, "
                            f"unit), a CSV or Parquet file or a run directory, not {type(observations).__name__}{hint}")
        obs = observations_from_frame(observations, source)
    tables, endpoints = score_and_compute(obs, baselines=baselines)
    return {**tables, "endpoints": endpoints}


def write_report(run_dir: str | Path) -> Path:
    """Write the HTML report of a completed run; returns the path of report.html."""
    from cartwin.report import write_report as _write
    return _write(_path("run_dir", run_dir))
