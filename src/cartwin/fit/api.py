"""The fit's front door: data in, estimates and a report out."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from cartwin.fit.data import load_fit_data
from cartwin.fit.errors import FitError
from cartwin.fit.nlme import FitResult, fit_population
from cartwin.fit.predict import Predictor


def _check_out_dir(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FitError(f"{out}: output directory exists and is not empty; choose a new directory")


def fit(data: str | Path | pl.DataFrame, estimate: list[str], *, subjects=None, out: str | Path | None = None,
        tests: list[str] | None = None, lloq: dict[str, float] | None = None, protocol=None,
        initial: dict[str, float] | None = None, fixed: dict[str, float] | None = None,
        model=None, vpc_replicates: int = 200, seed: int = 1, max_iter: int = 30,
        progress=None, censoring: str = "m1") -> FitResult:
    """Fit the typical values, IIV and residual error of ``estimate`` to ``data``.

    ``data``: an observation file (CSV/Parquet), a run directory, or a frame in the observation
    format; ``subjects``: the subject table (docs/fitting.md) unless ``data`` is a run directory;
    ``tests``: which tests to fit (default: every test of the data the model predicts);
    ``lloq``: per test, values at or below are below quantification; ``censoring``: "m1" leaves
    them (and rows flagged BLQ in the data) out, "m3" keeps them as censored, likelihood
    P(y < LLOQ) (docs/fitting.md); ``protocol``: resolves arms whose product
    or regimen the protocol defines; ``fixed``: other parameters set for this fit.
    Writes estimates, plots and a report to ``out`` when given (it must be new or empty)."""
    from cartwin.model import DEFAULT_MODEL

    model = model or DEFAULT_MODEL
    if not estimate:
        raise FitError("name at least one parameter to estimate (e.g. --estimate RHO,K_E,MTT_PRE)")
    out_path = Path(out) if out is not None else None
    if out_path is not None:
        _check_out_dir(out_path)
    fit_data = load_fit_data(data, model, subjects=subjects, tests=tests, lloq=lloq, protocol=protocol,
                             censoring=censoring)
    predictor = Predictor(model, fit_data, tuple(estimate), fixed=dict(fixed or {}))
    result = fit_population(predictor, initial=initial, max_iter=max_iter, progress=progress)
    if out_path is not None:
        from cartwin.fit.report import write_outputs
        write_outputs(result, out_path, {"estimate": list(estimate), "tests": list(fit_data.tests),
                                         "lloq": dict(lloq or {}), "censoring": censoring,
                                         "fixed": dict(fixed or {}),
                                         "initial": dict(initial or {})},
                      vpc_replicates=vpc_replicates, seed=seed)
    return result
