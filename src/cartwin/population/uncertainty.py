"""Parameter uncertainty: the population parameters of each replicate trial.

A protocol's ``[uncertainty]`` asks for R replicate trials. Replicate *r* draws its population
parameters once, from its own stream ``SeedSequence(seed, spawn_key=(UNCERTAINTY_KEY, r, 0))``
(independent of arms, chunks and workers), from one of two sources:

- ``model``: each parameter with a standard error of its log typical value (declared in the model
  as ``se_log``, or given in the protocol's ``uncertainty.se_log``) gets its typical value
  multiplied by ``exp(se_log * z)``, ``z`` standard normal, independently per parameter (the
  declaration carries no correlation of estimates), truncated to the parameter's declared bounds;
- ``fit``: a ``cartwin fit`` result (its ``estimates.json``): the log typical values and log IIV SDs
  (omega) of the fitted parameters are drawn jointly from a multivariate normal with the fit's
  estimates as mean and its covariance (the standard errors and correlation matrix of
  ``estimates.json``); the drawn typical value replaces the arm's for those parameters and the
  drawn omega replaces their inter-individual variability; a draw with a typical value outside
  its declared bounds is drawn again, whole. The residual error is not drawn.
  ``fit`` may instead name a posterior sample (a CSV or Parquet table, one row per draw, a column of
  typical values per parameter and optionally ``omega_<PARAM>`` columns): replicate *r* takes row
  *r*, in order, so the table needs at least R rows.

Between-patient variability then acts within each replicate as in any run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cartwin.model.declaration import Model

UNCERTAINTY_KEY = 0x5EED_0001  # first element of a replicate's spawn key (patient keys start with a CRC32)


class UncertaintyError(ValueError):
    """The uncertainty a protocol asks for cannot be drawn (no declared uncertainty, a bad fit file)."""


@dataclass(frozen=True)
class ReplicateDraw:
    """Replicate ``replicate``'s population parameters, as changes to an arm's."""

    replicate: int
    log_shift: np.ndarray = field(repr=False)  # (P,) added to each arm's log typical values
    typical: dict[str, float] = field(default_factory=dict)  # fitted typical values (replace the arm's)
    omega: dict[str, float] = field(default_factory=dict)  # fitted IIV SDs (replace the declared)

    def typical_for(self, model: Model, arm_typical: np.ndarray) -> np.ndarray:
        out = arm_typical * np.exp(self.log_shift)
        index = {n: i for i, n in enumerate(model.parameter_names)}
        for name, value in self.typical.items():
            out[index[name]] = value
        return out

    def variability(self, base: dict[str, float]) -> dict[str, float]:
        return {**base, **self.omega}


def replicate_stream(seed: int, replicate: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(UNCERTAINTY_KEY, replicate, 0)))


def declared_se(model: Model, override: dict[str, float] | None = None) -> np.ndarray:
    """SE of each parameter's log typical value: the model's declaration, overridden by ``override``."""
    override = override or {}
    return np.array([float(override.get(p.name, p.se_log)) for p in model.parameters])


MAX_REDRAWS = 1000  # draws of one replicate's value before its bounds are called unreachable


def _log_bounds(model: Model, names) -> tuple[np.ndarray, np.ndarray]:
    """The declared bounds of parameters ``names`` on the log scale (-inf/inf where none)."""
    params = [model.parameter(n) for n in names]
    lower = np.array([np.log(p.lower) if (p.lower or 0) > 0 else -np.inf for p in params])
    upper = np.array([np.log(p.upper) if p.upper is not None else np.inf for p in params])
    return lower, upper


def _unreachable(name: str, model: Model, where: str) -> UncertaintyError:
    return UncertaintyError(
        f"{where}: {MAX_REDRAWS} draws of {name}'s typical value all fell outside its declared bounds "
        f"{model.parameter(name).bounds_text}; its uncertainty is too wide for them: give a smaller "
        "standard error")


def model_draws(model: Model, replicates: int, seed: int, override: dict[str, float] | None = None
                ) -> tuple[ReplicateDraw, ...]:
    """Each replicate's log shifts, ``se_log * z``. A typical value shifted outside the parameter's
    declared bounds is drawn again from the replicate's stream, so the draws are log-normal
    truncated to the bounds (the model's declared typical values and the bounds are what is
    compared; an arm's own typical value of a product parameter carries no uncertainty)."""
    se = declared_se(model, override)
    if not (se > 0).any():
        raise UncertaintyError(
            f"model {model.name} declares no parameter uncertainty (se_log) and the protocol gives none; "
            "give uncertainty.se_log = {{ PARAM = 0.2, ... }} with uncertainty.se_source, or use source = 'fit'")
    positive = np.array([p.value > 0 for p in model.parameters])  # a shift leaves 0 at 0
    log_typical = np.log(np.where(positive, [p.value for p in model.parameters], 1.0))
    lower, upper = _log_bounds(model, model.parameter_names)
    lower, upper = np.where(positive, lower, -np.inf), np.where(positive, upper, np.inf)
    draws = []
    for r in range(replicates):
        stream = replicate_stream(seed, r)
        z = stream.standard_normal(se.size)
        for k in np.flatnonzero(se > 0):  # in parameter order, from the same stream: reproducible
            tries = 0
            while not lower[k] <= log_typical[k] + se[k] * z[k] <= upper[k]:
                tries += 1
                if tries > MAX_REDRAWS:
                    raise _unreachable(model.parameter_names[k], model, "uncertainty.se_log")
                z[k] = stream.standard_normal()
        draws.append(ReplicateDraw(r, se * z))
    return tuple(draws)


@dataclass(frozen=True)
class FitEstimates:
    """What replicate draws need of a ``cartwin fit`` result."""

    source: str
    model: str
    parameters: tuple[str, ...]
    mean: np.ndarray  # (2P,) log typical values, then log omegas
    covariance: np.ndarray  # (2P, 2P)


def read_fit(path: str | Path, model: Model) -> FitEstimates:
    """A fit's estimates.json (or the fit directory holding it), checked against ``model``."""
    path = Path(path)
    file = path / "estimates.json" if path.is_dir() else path
    where = str(file)
    try:
        record = json.loads(file.read_text())
    except FileNotFoundError:
        raise UncertaintyError(f"{where}: not found; uncertainty.fit names a `cartwin fit` output "
                               "directory or its estimates.json") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UncertaintyError(f"{where}: cannot read it as JSON ({exc})") from None
    try:
        fitted_model = record["provenance"]["model"]
        population = record["population"]
        names = tuple(p["parameter"] for p in population)
        mu = np.log([float(p["typical_value"]) for p in population])
        log_omega = np.log([float(p["omega"]) for p in population])
        se = np.array([float(p["se_log"]) for p in population] + [float(p["omega_se_log"]) for p in population])
        correlation = np.array(record["correlation"], float)
        order = list(record["correlation_order"])
    except (KeyError, TypeError, ValueError) as exc:
        raise UncertaintyError(f"{where}: not a cartwin fit result (missing or bad {exc}); "
                               "run `cartwin fit ... --out DIR` and name DIR") from None
    if fitted_model != model.name:
        raise UncertaintyError(f"{where}: the fit is of model {fitted_model!r}, the protocol runs {model.name!r}")
    unknown = [n for n in names if n not in model.parameter_names]
    if unknown:
        raise UncertaintyError(f"{where}: fitted parameters {unknown} are not parameters of model {model.name}")
    wanted = [f"log {n}" for n in names] + [f"log omega {n}" for n in names]
    missing = [w for w in wanted if w not in order]
    if missing:
        raise UncertaintyError(f"{where}: the correlation matrix lacks {missing}")
    pick = [order.index(w) for w in wanted]
    corr = correlation[np.ix_(pick, pick)]
    cov = corr * np.outer(se, se)
    if not np.all(np.isfinite(cov)):
        raise UncertaintyError(f"{where}: the fit has no finite covariance (its standard errors could not be "
                               "computed); refit, or use source = 'model'")
    cov = 0.5 * (cov + cov.T)
    if np.linalg.eigvalsh(cov).min() <= 0:
        raise UncertaintyError(f"{where}: the fit's covariance of (log typical values, log omegas) is not "
                               "positive definite; refit, or use source = 'model'")
    return FitEstimates(where, fitted_model, names, np.concatenate([mu, log_omega]), cov)


def fit_draws(fit: FitEstimates, model: Model, replicates: int, seed: int) -> tuple[ReplicateDraw, ...]:
    """Each replicate's typical values and omegas, drawn jointly from the fit's estimates and
    covariance; a draw with a typical value outside its parameter's declared bounds is drawn again,
    whole, from the replicate's stream (a multivariate normal truncated to the bounds)."""
    chol = np.linalg.cholesky(fit.covariance)
    p = len(fit.parameters)
    lower, upper = _log_bounds(model, fit.parameters)
    draws = []
    for r in range(replicates):
        stream = replicate_stream(seed, r)
        for tries in range(MAX_REDRAWS + 1):
            z = stream.standard_normal(fit.mean.size)
            x = fit.mean + (chol * z[None, :]).sum(axis=1)  # elementwise: the same numbers on any BLAS
            outside = ~((lower <= x[:p]) & (x[:p] <= upper))
            if not outside.any():
                break
        else:
            raise _unreachable(fit.parameters[int(np.flatnonzero(outside)[0])], model, fit.source)
        draws.append(ReplicateDraw(r, np.zeros(len(model.parameters)),
                                   {n: float(np.exp(x[k])) for k, n in enumerate(fit.parameters)},
                                   {n: float(np.exp(x[p + k])) for k, n in enumerate(fit.parameters)}))
    return tuple(draws)


POSTERIOR_SUFFIXES = (".csv", ".parquet", ".pq")


def posterior_draws(path: str | Path, model: Model, replicates: int) -> tuple[ReplicateDraw, ...]:
    """Replicate r's typical values (and omegas) from row r of a posterior sample table."""
    import polars as pl

    path = Path(path)
    where = str(path)
    try:
        table = pl.read_csv(path) if path.suffix.lower() == ".csv" else pl.read_parquet(path)
    except FileNotFoundError:
        raise UncertaintyError(f"{where}: not found; uncertainty.fit names a posterior sample table") from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise UncertaintyError(f"{where}: cannot be read as a table ({exc})") from None
    names = model.parameter_names
    typical = [c for c in table.columns if c in names]
    omega = [c for c in table.columns if c.startswith("omega_") and c[len("omega_"):] in names]
    unknown = [c for c in table.columns if c not in typical and c not in omega]
    if unknown:
        raise UncertaintyError(f"{where}: columns {unknown} are neither parameters of model {model.name} "
                               "nor omega_<PARAM>; name each column after a parameter")
    if not typical and not omega:
        raise UncertaintyError(f"{where}: no column names a parameter of model {model.name}")
    if table.height < replicates:
        raise UncertaintyError(f"{where}: {table.height} draws for {replicates} replicates; give at least "
                               "as many rows as replicates (replicate r takes row r)")
    draws = []
    for r in range(replicates):
        row = table.row(r, named=True)
        for c in typical + omega:
            v = row[c]
            if v is None or not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
                raise UncertaintyError(f"{where}: row {r + 2} (draw {r + 1}), column {c}: {v!r} is not a "
                                       "positive number")
            if c in typical and not model.parameter(c).within_bounds(v):
                raise UncertaintyError(
                    f"{where}: row {r + 2} (draw {r + 1}), column {c}: {v!r} is outside the parameter's "
                    f"declared bounds {model.parameter(c).bounds_text}; drop or correct the draw")
        draws.append(ReplicateDraw(r, np.zeros(len(names)), {c: float(row[c]) for c in typical},
                                   {c[len("omega_"):]: float(row[c]) for c in omega}))
    return tuple(draws)


def replicate_draws(model: Model, uncertainty, seed: int, base: Path | None = None) -> tuple[ReplicateDraw, ...]:
    """The draws of a protocol's ``[uncertainty]`` section; ``base``: the folder a relative fit
    path is read from."""
    if uncertainty.source == "fit":
        path = Path(uncertainty.fit)
        if not path.is_absolute() and base is not None:
            path = base / path
        if path.suffix.lower() in POSTERIOR_SUFFIXES:
            draws = posterior_draws(path, model, uncertainty.replicates)
        else:
            draws = fit_draws(read_fit(path, model), model, uncertainty.replicates, seed)
        # a product's mechanism parameters are set by its arm; one value for every arm would erase them
        product = sorted({n for d in draws[:1] for n in d.typical if model.parameter(n).group == "product"})
        if product:
            raise UncertaintyError(f"{path}: {product} are set by each arm's product; a fitted value cannot "
                                   "replace them in every arm")
        return draws
    return model_draws(model, uncertainty.replicates, seed, uncertainty.se_log)
