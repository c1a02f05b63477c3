"""Fitting the model to data and asking which parameters drive an outcome.

- :func:`fit`: population fit (nonlinear mixed effects, FOCE by the Lindstrom-Bates algorithm)
  of chosen parameters to observations; writes estimates, individual estimates, goodness-of-fit
  plots and a visual predictive check (:mod:`cartwin.fit.nlme`, :mod:`cartwin.fit.report`).
- :func:`calibrate` / :func:`apply_calibration`: summary-level calibration to published targets
  (:mod:`cartwin.fit.calibration`).
- :func:`sensitivity`: Sobol indices of clinical endpoints (:mod:`cartwin.fit.sensitivity`).

Bad input raises :class:`FitError` (the CLI's exit code 2). docs/fitting.md is the user guide.
"""

from cartwin.fit.errors import FitError

__all__ = ["FitError", "fit", "calibrate", "apply_calibration", "sensitivity"]


def __getattr__(name):  # import on use: the submodules pull in the solver and plotting
    if name == "fit":
        from cartwin.fit.api import fit
        return fit
    if name in ("calibrate", "apply_calibration"):
        from cartwin.fit import calibration
        return getattr(calibration, name)
    if name == "sensitivity":
        from cartwin.fit.sensitivity import sensitivity
        return sensitivity
    raise AttributeError(name)
