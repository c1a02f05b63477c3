"""Trial conduct: missed visits and withdrawal, applied to a chunk's solved patients.

A patient leaving the trial does not change its biology up to that day, so conduct is applied to
the solved trajectories: it removes observations (a missed visit's, everything after withdrawal)
and records per patient ``withdrawn_day``, ``withdrawal_reason`` and ``visits_missed``.

Each patient draws, from its own conduct stream (``purpose_stream(..., STREAM_CONDUCT, replicate)``),
four uniforms per scheduled day in a fixed order: missed visit, withdrawal, reason, visit window. So a patient's
conduct is the same whatever its chunk, and a changed hazard does not move another patient's draws.

- Visit windows: a scheduled visit after day 0 happens ``k`` whole days early or late, ``k``
  uniform in ``[-window_days, window_days]``, kept strictly between the halfway points to the
  neighbouring visits (day 0 before the first, the end of follow-up after the last; a shift past
  them falls back by whole days). Observations carry the day the visit happened.
- Missed visits: a scheduled visit after day 0 is missed with ``missed_probability``; every test of
  that day is missing. Visits on or before day 0 (screening, baseline, infusion) are kept.
- Withdrawal: at each scheduled visit ``d_j`` on or after day 0, the hazards whose conditions hold
  on the patient's values at ``d_j`` (and whose ``from_day <= d_j < until_day``) add up to ``h``;
  the patient withdraws before the next visit with probability ``1 - exp(-h (d_{j+1} - d_j))``,
  and the reason is drawn among those hazards in proportion to their size (competing risks).
  ``withdrawn_day`` is ``d_j``, the last visit; all observations after it are missing. A condition
  reads the simulated value at ``d_j`` even when that visit is missed (the investigator is assumed
  to learn of toxicity or lack of efficacy between visits).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cartwin.population.virtual import STREAM_CONDUCT, purpose_stream

_OPS = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal}


def conduct_uniforms(seed: int, arm_id: str, indices: np.ndarray, replicate: int | None, t: int) -> np.ndarray:
    """(N, 4, T) uniforms per patient and scheduled day: missed visit, withdrawal, reason, window."""
    u = np.empty((indices.size, 4, t))
    for row, i in enumerate(indices):
        u[row] = purpose_stream(seed, arm_id, int(i), STREAM_CONDUCT, replicate).random((4, t))
    return u


def window_bounds(days: np.ndarray, follow_up: float) -> tuple[np.ndarray, np.ndarray]:
    """Where each scheduled visit after day 0 may fall: halfway to its neighbours (day 0 before the
    first, the end of follow-up after the last); visits on or before day 0 stay put."""
    lower, upper = days.copy(), days.copy()
    for j, d in enumerate(days):
        if d <= 0:
            continue
        prev = days[j - 1] if j > 0 else 0.0
        lower[j] = (max(prev, 0.0) + d) / 2
        upper[j] = (d + days[j + 1]) / 2 if j + 1 < days.size else follow_up
    return lower, upper


def window_candidates(days: np.ndarray, window: float, follow_up: float) -> np.ndarray:
    """Every day a visit can fall on: each scheduled day shifted by whole days within the window
    and its bounds (the output grid the solver is asked for)."""
    lower, upper = window_bounds(days, follow_up)
    out = set(days.tolist())
    w = int(np.floor(window))
    for j, d in enumerate(days):
        if d > 0:
            out |= {d + k for k in range(-w, w + 1) if lower[j] < d + k < upper[j] or k == 0}
    return np.array(sorted(out))


def _clip(value, lower, upper, nominal):
    """A shifted day kept strictly inside its bounds: shifts that leave them fall back by whole days."""
    while not lower < value < upper and value != nominal:
        value += 1 if value < nominal else -1
    return value


def actual_days(u: np.ndarray, days: np.ndarray, window: float, follow_up: float) -> np.ndarray:
    """(N, T) the day each visit happens: the scheduled day shifted by a whole number of days drawn
    uniformly in [-window, window], kept inside its bounds (shifts that leave them fall back)."""
    w = int(np.floor(window))
    lower, upper = window_bounds(days, follow_up)
    shift = np.floor(u[:, 3, :] * (2 * w + 1)) - w
    out = np.broadcast_to(days, shift.shape).copy()
    for j, d in enumerate(days):
        if d > 0 and w > 0:
            out[:, j] = [_clip(d + k, lower[j], upper[j], d) for k in shift[:, j]]
    return out


@dataclass(frozen=True)
class ConductResult:
    keep: np.ndarray  # (N, T) observation days kept
    withdrawn_day: np.ndarray  # (N,) nan when not withdrawn
    reason: list[str]  # (N,) "" when not withdrawn
    missed: np.ndarray  # (N,) visits missed (before any withdrawal)


def apply_conduct(conduct, seed: int, arm_id: str, indices: np.ndarray, replicate: int | None,
                  days: np.ndarray, values: dict[str, np.ndarray], actual: np.ndarray | None = None) -> ConductResult:
    """``values``: test code -> (N, T) simulated values of the tests the hazards read, at each
    patient's visits; ``actual``: (N, T) the days those visits happened (default: as scheduled)."""
    n, t = indices.size, days.size
    u = conduct_uniforms(seed, arm_id, indices, replicate, t)
    after = days > 0
    missed = after[None, :] & (u[:, 0, :] < conduct.visits.missed_probability)
    hazards = conduct.dropout
    baseline_index = np.flatnonzero(days <= 0)
    rates = np.zeros((len(hazards), n, t))
    for k, h in enumerate(hazards):
        active = (days >= h.from_day) & (days < (np.inf if h.until_day is None else h.until_day))
        holds = np.ones((n, t), bool)
        if h.test is not None:
            v = values[h.test]
            threshold = h.value
            if h.relative_to_baseline:
                threshold = h.value * v[:, baseline_index[-1]][:, None]
            holds = _OPS[h.op](v, threshold) & np.isfinite(v)
        rates[k] = np.where(active[None, :] & holds, h.hazard_per_day, 0.0)
    withdrawn_day = np.full(n, np.nan)
    reason = [""] * n
    keep = ~missed
    if hazards:
        total = rates.sum(axis=0)  # (N, T)
        gaps = np.diff(days)
        for j in range(t - 1):
            if days[j] < 0:
                continue
            p = 1.0 - np.exp(-total[:, j] * gaps[j])
            leaving = np.isnan(withdrawn_day) & (u[:, 1, j] < p)
            for row in np.flatnonzero(leaving):
                withdrawn_day[row] = days[j] if actual is None else actual[row, j]
                share = np.cumsum(rates[:, row, j]) / total[row, j]
                k = int(np.searchsorted(share, u[row, 2, j], side="right"))
                reason[row] = hazards[min(k, len(hazards) - 1)].reason
    gone = ~np.isnan(withdrawn_day)
    on = np.broadcast_to(days, (n, t)) if actual is None else actual
    keep[gone] &= on[gone] <= withdrawn_day[gone][:, None]
    last_day = np.where(gone, withdrawn_day, np.inf)
    missed_count = (missed & (on <= last_day[:, None])).sum(axis=1)  # while in the trial
    return ConductResult(keep, withdrawn_day, reason, missed_count)
