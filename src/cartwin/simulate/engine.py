"""The one engine entry point: resolved patients in, solved states and read-outs out.

Every path that solves a model goes through :func:`solve`: a run's chunks (in process, in a
process pool or on Dask), an imported SBML model, the one-patient scenario of an SBML export,
population fits, calibration and sensitivity analysis. It knows no protocol and no biology:

    parameters (N, P) + covariates (N, C) + doses per patient + output days
        -> constants -> initial state -> dose scales -> schedules -> solve -> observe

and returns the states, the chosen read-outs and, per patient, whether the solve succeeded and
why not. A patient whose solve fails keeps its states and read-outs up to the last output day
the solver reached, NaN after it, and a reason that names the interval where it failed; nobody
is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import Mapping, Sequence

import numpy as np

from cartwin.model.codegen import compile_model
from cartwin.model.declaration import Model
from cartwin.simulate.events import doses_to_schedules
from cartwin.simulate.solvers import BACKENDS, DEFAULT_BACKEND, SolveResult
from cartwin.therapy.dosing import Dose

# A state a little below zero is round-off within the solver's error control; one further below
# means the solve went wrong (see reject_negative_states).
NEGATIVE_TOLERANCE_FACTOR = 100.0


@dataclass(frozen=True)
class Solved:
    """What the engine returns for N patients at T output days."""

    days: np.ndarray  # (T,) the output days asked for
    states: np.ndarray = field(repr=False)  # (N, T, S); NaN for failed patients
    observations: np.ndarray = field(repr=False)  # (N, T, len(which)); NaN for failed patients
    which: tuple[int, ...]  # indices of model.observables held in ``observations``
    ok: np.ndarray  # (N,) bool
    reasons: tuple[str, ...]  # "" when ok
    constants: np.ndarray = field(repr=False)  # (N, K) per-patient constants of the compiled model
    counters: np.ndarray | None = field(default=None, repr=False)

    def observable(self, model: Model, test: str) -> np.ndarray:
        """The (N, T) values of read-out ``test``."""
        position = [model.observables[i].test for i in self.which].index(test)
        return self.observations[:, :, position]


def make_solver(backend: str = DEFAULT_BACKEND, rtol: float | None = None, atol: float | None = None, **options):
    """A solver backend by name (``numba-rodas4``, the default; ``numba-bdf``, ``scipy-lsoda`` or
    ``jax-diffrax``). A tolerance not given is the backend's own default."""
    try:
        make = BACKENDS[backend]
    except KeyError:
        raise ValueError(f"unknown solver backend {backend!r}; known: {sorted(BACKENDS)}") from None
    given = {name: value for name, value in (("rtol", rtol), ("atol", atol)) if value is not None}
    return make(**given, **options)


def covariate_matrix(model: Model, covariates: Mapping[str, np.ndarray] | np.ndarray, n: int) -> np.ndarray:
    """The (N, C) covariate matrix in the model's order, from a matrix or a mapping by name."""
    if isinstance(covariates, Mapping):
        missing = [c for c in model.covariate_names if c not in covariates]
        if missing:
            raise ValueError(f"model {model.name} needs covariates {missing} that the patients lack")
        if not model.covariate_names:
            return np.zeros((n, 0))
        return np.column_stack([np.broadcast_to(np.asarray(covariates[c], float), (n,))
                                for c in model.covariate_names])
    matrix = np.asarray(covariates, float)
    if matrix.shape != (n, len(model.covariate_names)):
        raise ValueError(f"covariates of shape {matrix.shape}; model {model.name} needs "
                         f"({n}, {len(model.covariate_names)}): {list(model.covariate_names)}")
    return matrix


def solve(model: Model, theta: np.ndarray, covariates: Mapping[str, np.ndarray] | np.ndarray,
          doses: Sequence[Sequence[Dose]], days: np.ndarray, solver=None, *,
          which: Sequence[int] | None = None, origin: float | None = None,
          nonnegative: bool | Sequence[bool] = True, compiled: ModuleType | None = None,
          initial: np.ndarray | None = None) -> Solved:
    """Solve N patients.

    ``theta``: (N, P) parameter values in the model's order; ``covariates``: (N, C) or a mapping
    by covariate name; ``doses``: per patient, the doses through the model's dose inputs (amount
    in the route's unit); ``days``: ascending output days. ``which``: indices of the read-outs to
    compute (default all). ``origin``: the time at which the model's initial values hold (an SBML
    model starts at 0); by default the first output day or the first dose, whichever is earlier.
    ``nonnegative``: the model keeps every state nonnegative, so a state below zero beyond the
    solver's error control marks the patient failed (cartwin's own models); or one flag per state
    (an imported model's species, not its parameters). ``initial``: (N, S) states at ``origin``
    instead of the model's initial values (a solve continued after an event).
    """
    theta = np.atleast_2d(np.asarray(theta, float))
    n = theta.shape[0]
    if theta.shape[1] != len(model.parameters):
        raise ValueError(f"theta has {theta.shape[1]} columns; model {model.name} has "
                         f"{len(model.parameters)} parameters")
    if len(doses) != n:
        raise ValueError(f"doses given for {len(doses)} patients, parameters for {n}")
    days = np.asarray(days, float)
    solver = solver if solver is not None else make_solver()
    if hasattr(solver, "for_model"):  # a backend built from the declaration itself (jax-diffrax)
        solver = solver.for_model(model)
    compiled = compiled if compiled is not None else compile_model(model)
    K = compiled.constants(theta, covariate_matrix(model, covariates, n))
    Y0 = compiled.initial(K) if initial is None else np.array(initial, float)
    scales = compiled.dose_scales(K)
    schedules = doses_to_schedules([list(d) for d in doses], model, scales)
    grid = days
    if origin is not None and (days.size == 0 or days[0] > origin):
        grid = np.concatenate([[origin], days])
    result = keep_until_failure(solver.solve(compiled, K, Y0, schedules, grid), grid)
    if np.any(nonnegative):
        result = reject_negative_states(result, model, solver.atol, solver.rtol, nonnegative, grid)
    which = tuple(range(len(model.observables))) if which is None else tuple(int(i) for i in which)
    reached = _reached(result.states)  # failed patients keep what they reached
    with np.errstate(all="ignore"):
        if reached.all():  # the usual case: no copy of every patient's states
            obs = compiled.observe(result.states, K, grid, list(which))
        else:
            obs = np.full(result.states.shape[:2] + (len(which),), np.nan)
            if reached.any():
                obs[reached] = compiled.observe(result.states[reached], K[reached], grid, list(which))
    drop = grid.size - days.size
    return Solved(days, result.states[:, drop:], obs[:, drop:], which, result.ok,
                  tuple(result.reasons), K, result.counters)


def _reached(states: np.ndarray) -> np.ndarray:
    """Per patient, whether any state at any output day is known (not NaN). A patient with a known
    value on the first day has one; only the others (failed before it) are looked at in full."""
    if states.shape[1] == 0:
        return np.zeros(states.shape[0], bool)
    reached = ~np.all(np.isnan(states[:, 0, :]), axis=1)
    for i in np.flatnonzero(~reached):
        reached[i] = not np.all(np.isnan(states[i]))
    return reached


def keep_until_failure(result: SolveResult, grid: np.ndarray) -> SolveResult:
    """A failed patient keeps the states at the output days the solver reached (every state
    finite), NaN from the first day it did not; its reason names that interval."""
    states = result.states
    reasons = list(result.reasons)
    for i in np.flatnonzero(~result.ok):
        finite = np.all(np.isfinite(states[i]), axis=1)
        first_bad = int(np.argmin(finite)) if not finite.all() else grid.size
        states[i, first_bad:] = np.nan
        if first_bad == 0:
            where = f"before day {grid[0]:g}"
        elif first_bad < grid.size:
            where = (f"between day {grid[first_bad - 1]:g} and day {grid[first_bad]:g}; values kept up "
                     f"to day {grid[first_bad - 1]:g}")
        else:
            where = "after the last output day"
        reasons[i] = f"{reasons[i] or 'solver failed'} ({where})"
    return SolveResult(states, result.ok, reasons, result.counters)


def reject_negative_states(result: SolveResult, model: Model, atol: float, rtol: float = 1e-6,
                           which: bool | Sequence[bool] = True, grid: np.ndarray | None = None) -> SolveResult:
    """States that must stay nonnegative (all of cartwin's own; ``which`` flags them per state).
    A state a little below zero is round-off within the solver's error control
    (100 x (atol + rtol x the state's largest value)) and is set to zero; one further below
    means the solve went wrong: the patient is marked failed with the state and the day named,
    and keeps the values before that day."""
    states = result.states
    mask = np.broadcast_to(np.asarray(which, bool), (states.shape[2],))
    ok = result.ok.copy()
    reasons = list(result.reasons)
    every = bool(mask.all())  # cartwin's own models: no copy through a fancy index (slow on the last axis)
    x = states if every else states[:, :, mask]
    # Every limit lies at or below -factor x atol (a state whose values are all zero), so a patient
    # none of whose values goes below that has nothing below its limits: one pass over the states
    # finds the few patients whose limits need computing (the same limits as for every patient).
    with np.errstate(invalid="ignore"):
        lowest = np.fmin.reduce(x, axis=1) if x.shape[1] else np.full(x.shape[::2], np.nan)
        suspects = np.flatnonzero((lowest < -NEGATIVE_TOLERANCE_FACTOR * atol).any(axis=1))
    for i in suspects:
        with np.errstate(invalid="ignore"):
            limit = -NEGATIVE_TOLERANCE_FACTOR * (atol + rtol * np.nanmax(np.abs(x[i]), axis=0, initial=0.0))
            below = x[i] < limit[None, :]
        if not below.any():
            continue
        row, col = np.argwhere(below)[0]
        name = np.asarray(model.state_names)[mask][col]
        if ok[i]:
            when = f"day {grid[row]:g}" if grid is not None else f"output {row}"
            reasons[i] = (f"state {name} went negative ({x[i, row, col]:.3g} on {when}), beyond the "
                          f"solver's error control; values kept before {when}")
        ok[i] = False
        states[i, row:] = np.nan
    # round-off below zero is set to zero (np.maximum keeps NaN, the days a failed patient did not reach)
    if every:
        np.maximum(states, 0.0, out=states)
    else:
        states[:, :, mask] = np.maximum(states[:, :, mask], 0.0)
    return SolveResult(states, ok, reasons, result.counters)
