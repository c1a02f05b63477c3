"""Model predictions for a fit: many parameter sets for the same subjects, solved in one batch.

The fit varies only the estimated parameters. Every other parameter stays at its typical value
for the subject's product (the engine's :func:`typical_parameters`), and the compiled model of the
declaration is reused as it is: parameter values travel in ``THETA``, so changing them never
regenerates or recompiles code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cartwin.fit.data import FitData
from cartwin.fit.errors import FitError
from cartwin.model.declaration import Model
from cartwin.plan.work import typical_parameters
from cartwin.simulate.engine import make_solver, solve

# Predictions are compared on the log scale; a model value of 0 (a state emptied to round-off)
# must still give a finite residual.
LOG_FLOOR = 1e-12


@dataclass
class Predictor:
    """``log_predictions(phi)`` for ``phi`` = log of the estimated parameters, one row per subject."""

    model: Model
    data: FitData
    estimate: tuple[str, ...]
    fixed: dict[str, float] = field(default_factory=dict)
    rtol: float = 1e-8
    atol: float = 1e-10
    n_solves: int = 0

    def __post_init__(self) -> None:
        names = self.model.parameter_names
        unknown = [p for p in (*self.estimate, *self.fixed) if p not in names]
        if unknown:
            raise FitError(f"parameters {unknown} are not parameters of model {self.model.name}")
        if len(set(self.estimate)) != len(self.estimate):
            raise FitError(f"a parameter is named twice in {list(self.estimate)}")
        both = sorted(set(self.estimate) & set(self.fixed))
        if both:
            raise FitError(f"parameters {both} are both estimated and fixed")
        self.solver = make_solver("numba-bdf", rtol=self.rtol, atol=self.atol)
        index = {n: i for i, n in enumerate(names)}
        self.columns = np.array([index[p] for p in self.estimate], dtype=np.int64)
        typical = np.array([typical_parameters(self.model, t) for t in self.data.therapies])
        for name, value in self.fixed.items():
            typical[:, index[name]] = value
        self.typical = typical
        self.days = self.data.days
        self.day_index = np.searchsorted(self.days, self.data.obs_day)
        self.observable_index = np.array([[o.test for o in self.model.observables].index(t)
                                          for t in self.data.tests])

    def default_phi(self) -> np.ndarray:
        """Log of the declared typical values of the estimated parameters."""
        return np.log([self.model.parameter(p).value for p in self.estimate])

    def solve(self, phi: np.ndarray, subjects: np.ndarray | None = None,
              days: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Observables (rows, T, O) at ``days`` for parameter rows ``phi`` (rows, P) of ``subjects``
        (rows,), and which rows solved."""
        subjects = np.arange(self.data.n_subjects) if subjects is None else np.asarray(subjects)
        days = self.days if days is None else days
        theta = self.typical[subjects].copy()
        theta[:, self.columns] = np.exp(phi)
        solved = solve(self.model, theta, self.data.covariates[subjects],
                       [self.data.doses(int(s)) for s in subjects], days, self.solver, nonnegative=False)
        self.n_solves += len(subjects)
        obs = solved.observations
        return obs, solved.ok

    def log_predictions(self, phi: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """Per subject, the log prediction of each of its observations; and which subjects solved."""
        obs, ok = self.solve(phi)
        values = obs[self.data.obs_subject, self.day_index, self.observable_index[self.data.obs_test]]
        logs = np.log(np.maximum(values, LOG_FLOOR))
        return _split(logs, self.data.obs_subject, self.data.n_subjects), ok & _finite_by_subject(
            logs, self.data.obs_subject, self.data.n_subjects)


def _split(values: np.ndarray, owner: np.ndarray, n: int) -> list[np.ndarray]:
    order = np.argsort(owner, kind="stable")
    bounds = np.searchsorted(owner[order], np.arange(n + 1))
    return [values[order[bounds[i]:bounds[i + 1]]] for i in range(n)]


def _finite_by_subject(values: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    bad = np.zeros(n, dtype=bool)
    np.logical_or.at(bad, owner, ~np.isfinite(values))
    return ~bad
