"""Events that set states at times known before the solve, applied between solver segments.

An event here is what an imported SBML model declares: a trigger over time and the model's
constants (``t >= 45``, ``Mod(t - t0, 1) <= 0.5``, ``t >= T_inj``), an optional delay over the
constants, and assignments of any form to states (``x = 2e6``, ``x = 0.5 * y``, ``x = x + d``),
whose values use the states, constants and time just before the event. The solver knows none of
this: the time axis is cut at the firing times, each segment is one call of
:func:`cartwin.simulate.engine.solve` continued from the state that the events left.

Firing times follow SBML semantics: an event fires when its trigger goes from false to true; at
time 0 the trigger is taken to have been ``initial_value`` just before, so a trigger true at 0
fires at 0 only when ``initial_value`` is false. A trigger that depends on time alone is located
by evaluating it on a grid of :data:`TRIGGER_GRID` points across the simulated window, then
bisecting each false-to-true change to the last representable time: a trigger that turns true
and false again between two grid points (a window shorter than window / TRIGGER_GRID) is missed.
Events at the same time run in order of priority (highest first), then as the document lists
them; each sees what the previous one set. Observations on the day of an event are taken before
it, as for doses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from cartwin.model.codegen import compile_model
from cartwin.model.declaration import Model
from cartwin.simulate.engine import Solved, covariate_matrix, solve
from cartwin.therapy.dosing import Dose

TRIGGER_GRID = 20_001


@dataclass(frozen=True)
class TimedEvent:
    """An event over the names of a model declaration (time is ``t``, in days)."""

    label: str
    trigger: str  # condition over t and constants
    initial_value: bool  # the trigger's value just before time 0
    delay: str  # days, over constants
    targets: tuple[str, ...]  # state names
    values: tuple[str, ...]  # expressions over states, constants and t, before the event
    priority: float = 0.0
    order: int = 0


def firing_times(model: Model, events: Sequence[TimedEvent], K: np.ndarray, origin: float,
                 end: float) -> list[list[tuple[float, int]]]:
    """Per patient, the (time, event index) at which each event takes effect in [origin, end),
    sorted by time, priority and document order."""
    from cartwin.model.symbolic import vector_function  # sympy: a run without events never needs it

    n = K.shape[0]
    out: list[list[tuple[float, int]]] = [[] for _ in range(n)]
    if end <= origin:
        return out
    grid = np.linspace(origin, end, TRIGGER_GRID)
    no_states = np.zeros((n, 1, len(model.states)))
    for e_index, event in enumerate(events):
        f = vector_function(model, [event.trigger, event.delay], f"event {event.label}")
        trigger, delay = f(no_states, K, grid[None, :])
        trigger = np.broadcast_to(trigger, (n, grid.size)) != 0
        delay = np.broadcast_to(delay, (n, grid.size))[:, 0]
        bad = ~np.isfinite(delay) | (delay < 0)
        if bad.any():
            raise ValueError(f"event {event.label}: delay {delay[bad][0]:g} is negative or not finite")
        before = np.concatenate([np.full((n, 1), event.initial_value), trigger[:, :-1]], axis=1)
        patient, j = np.nonzero(trigger & ~before)
        at = grid[j].copy()
        inside = j > 0  # a rise between two grid points: bisect all of them at once
        if inside.any():
            at[inside] = _bisect(f, K[patient[inside]], grid[j[inside] - 1], grid[j[inside]],
                                 len(model.states))
        at += delay[patient]
        for i, t in zip(patient, at):
            if origin <= t < end:
                out[i].append((float(t), e_index))
    for times in out:
        times.sort(key=lambda te: (te[0], -events[te[1]].priority, events[te[1]].order))
    return out


def _bisect(f, K: np.ndarray, lo: np.ndarray, hi: np.ndarray, n_states: int) -> np.ndarray:
    """Per row, the first time in (lo, hi] at which the trigger is true (false at lo, true at
    hi), to the last representable time."""
    lo, hi = lo.astype(float).copy(), hi.astype(float).copy()
    y = np.zeros((K.shape[0], 1, n_states))
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        moving = (mid > lo) & (mid < hi)
        if not moving.any():
            break
        true = np.broadcast_to(f(y, K, mid[:, None])[0], (K.shape[0], 1))[:, 0] != 0
        hi = np.where(moving & true, mid, hi)
        lo = np.where(moving & ~true, mid, lo)
    return hi


def solve_with_events(model: Model, theta: np.ndarray, covariates: Mapping[str, np.ndarray] | np.ndarray,
                      doses: Sequence[Sequence[Dose]], days: np.ndarray, solver, events: Sequence[TimedEvent],
                      *, which: Sequence[int] | None = None, origin: float = 0.0,
                      nonnegative: bool | Sequence[bool] = False) -> Solved:
    """:func:`cartwin.simulate.engine.solve` for a model with timed events (same arguments and
    result); without events it is that function."""
    days = np.asarray(days, float)
    if not events or days.size == 0:
        return solve(model, theta, covariates, doses, days, solver, which=which, origin=origin,
                     nonnegative=nonnegative)
    theta = np.atleast_2d(np.asarray(theta, float))
    n = theta.shape[0]
    compiled = compile_model(model)
    cov = covariate_matrix(model, covariates, n)
    K = compiled.constants(theta, cov)
    end = float(days[-1])
    fires = firing_times(model, events, K, origin, end)
    from cartwin.model.symbolic import vector_function

    apply = [vector_function(model, e.values, f"event {e.label}") for e in events]
    position = {s: j for j, s in enumerate(model.state_names)}
    which = tuple(range(len(model.observables))) if which is None else tuple(int(i) for i in which)
    states = np.full((n, days.size, len(model.states)), np.nan)
    obs = np.full((n, days.size, len(which)), np.nan)
    ok = np.ones(n, dtype=bool)
    reasons = [""] * n
    groups: dict[tuple, list[int]] = {}
    for i, f in enumerate(fires):
        groups.setdefault(tuple(f), []).append(i)
    for key, members in groups.items():
        idx = np.array(members)
        y = compiled.initial(K[idx])
        start = origin
        at_origin = days == origin
        if at_origin.any():  # observations at the start are taken before any event there
            first = solve(model, theta[idx], cov[idx], [doses[i] for i in idx], days[at_origin], solver,
                          which=which, origin=origin, nonnegative=nonnegative, initial=y)
            states[idx[:, None], np.flatnonzero(at_origin)] = first.states
            obs[idx[:, None], np.flatnonzero(at_origin)] = first.observations
        alive = np.ones(idx.size, dtype=bool)
        cuts = sorted({t for t, _ in key})
        for stop in cuts + [end]:
            if stop > start:
                seg = np.flatnonzero((days > start) & (days <= stop))
                grid = days[seg] if seg.size and days[seg[-1]] == stop else np.append(days[seg], stop)
                live = idx[alive]
                part = solve(model, theta[live], cov[live],
                             [[d for d in doses[i] if start <= d.day < stop] for i in live], grid, solver,
                             which=which, origin=start, nonnegative=nonnegative, initial=y[alive])
                states[live[:, None], seg] = part.states[:, :seg.size]
                obs[live[:, None], seg] = part.observations[:, :seg.size]
                for j, i in enumerate(live):
                    if not part.ok[j]:
                        ok[i] = False
                        reasons[i] = part.reasons[j]
                y[alive] = part.states[:, -1]
                alive[alive] = part.ok
                start = stop
            if stop >= end or not alive.any():
                break
            for t, e_index in key:  # events at this time, in order; each sees the previous
                if t != stop:
                    continue
                event = events[e_index]
                live = idx[alive]
                values = apply[e_index](y[alive][:, None, :], K[live], np.full((live.size, 1), t))
                for target, value in zip(event.targets, values):
                    y[alive, position[target]] = np.broadcast_to(value, (live.size, 1))[:, 0]
                bad = ~np.all(np.isfinite(y[alive]), axis=1)
                for i in live[bad]:
                    ok[i] = False
                    reasons[i] = f"event {event.label} on day {t:g} set a non-finite value"
                alive[np.flatnonzero(alive)[bad]] = False
    return Solved(days, states, obs, which, ok, tuple(reasons), K, None)
