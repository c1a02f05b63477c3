"""A per-patient input schedule in state space: what the solver integrates between events.

The solver knows no biology. It sees breakpoints; at each breakpoint a jump is added to the
state (boluses) and a new vector of zero-order input rates comes into force (infusions), until
the next breakpoint. Observations that fall exactly on a breakpoint are taken *before* its
jump: a sample drawn at the time of a dose is a pre-dose sample (see docs/run_directory.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Schedule:
    times: np.ndarray  # (B,) strictly increasing breakpoints, days
    jumps: np.ndarray  # (B, S) added to the state at each breakpoint
    rates: np.ndarray  # (B, S) input rates in force from each breakpoint to the next

    def __post_init__(self) -> None:
        if self.times.ndim != 1 or np.any(np.diff(self.times) <= 0):
            raise ValueError("schedule breakpoints must be strictly increasing")
        if self.jumps.shape != self.rates.shape or self.jumps.shape[0] != self.times.shape[0]:
            raise ValueError("schedule jumps and rates must be (breakpoints, states)")


def build_schedule(n_states: int, starts: np.ndarray, states: np.ndarray, amounts: np.ndarray,
                   durations: np.ndarray) -> Schedule:
    """Doses in state units -> schedule. A duration of 0 is a bolus; otherwise a constant-rate
    infusion of ``amount / duration`` from ``start`` to ``start + duration``."""
    return build_schedules(n_states, starts, states, np.asarray(amounts, float)[None, :], durations)[0]


def build_schedules(n_states: int, starts: np.ndarray, states: np.ndarray, amounts: np.ndarray,
                    durations: np.ndarray) -> list[Schedule]:
    """The schedules of patients whose doses share their times, states and durations and differ
    in amount: ``amounts`` is (patients, doses). The breakpoints and where each dose goes are
    found once for all of them; each patient's jumps and rates are summed dose by dose, in the
    order given, as for one patient."""
    starts, durations = np.asarray(starts, float), np.asarray(durations, float)
    ends = starts + durations
    times = np.unique(np.concatenate([starts, ends[durations > 0]]))
    n = amounts.shape[0]
    jumps = np.zeros((n, times.size, n_states))
    rates = np.zeros((n, times.size, n_states))
    for k, (start, state, duration) in enumerate(zip(starts, states, durations)):
        i = np.searchsorted(times, start)
        if duration == 0:
            jumps[:, i, state] += amounts[:, k]
        else:
            j = np.searchsorted(times, start + duration)
            rates[:, i:j, state] += (amounts[:, k] / duration)[:, None]
    return [Schedule(times, jumps[p], rates[p]) for p in range(n)]
