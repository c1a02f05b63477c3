"""Censored observations in the fit (Beal's M3): the likelihood of a value below the LLOQ is
P(y < LLOQ) = Phi((log LLOQ - log prediction) / sigma)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy import integrate, stats

from cartwin.fit.nlme import Padded, _objective_terms, laplace_ofv, linearised_ofv

# one subject, one parameter phi, the log prediction linear in it: g = offset + G phi
Z = np.array([[np.log(80.0), np.log(50.0)]])  # a quantified 80 and an LLOQ of 50
G = np.array([[[1.0], [-0.5]]])
PHI_HAT = np.array([[np.log(60.0)]])
G_HAT = np.array([[np.log(70.0), np.log(55.0)]])
MU, OMEGA, SIGMA = np.array([np.log(65.0)]), np.array([0.4]), np.array([0.3])
X = np.concatenate([MU, np.log(OMEGA), np.log(SIGMA)])


def _pad(cens):
    return Padded(Z, np.zeros((1, 2), int), np.ones((1, 2)), [np.arange(2)],
                  None if cens is None else np.array([cens], float))


def _exact_ofv(censored: list[bool]) -> float:
    """-2 log of the integral over phi of the linearised joint density, by quadrature."""
    offset = G_HAT[0] - G[0, :, 0] * PHI_HAT[0, 0]

    def density(phi):
        g = offset + G[0, :, 0] * phi
        value = stats.norm.pdf(phi, MU[0], OMEGA[0])
        for k in range(2):
            value *= (stats.norm.cdf((Z[0, k] - g[k]) / SIGMA[0]) if censored[k]
                      else stats.norm.pdf(Z[0, k], g[k], SIGMA[0]))
        return value
    integral, _ = integrate.quad(density, MU[0] - 10, MU[0] + 10, points=[MU[0]], limit=200)
    return -2 * np.log(integral)


def test_without_censoring_the_closed_form_is_the_exact_integral():
    assert linearised_ofv(X, PHI_HAT, G_HAT, G, _pad(None), 1) == pytest.approx(_exact_ofv([False, False]), abs=1e-9)
    # the Laplace route gives the same number when nothing is censored (exact for a Gaussian)
    assert laplace_ofv(MU, OMEGA, SIGMA, PHI_HAT, G_HAT, G, _pad([0, 0])) == pytest.approx(
        _exact_ofv([False, False]), abs=1e-9)


def test_a_censored_observation_enters_by_its_probability_below_the_limit():
    ofv = linearised_ofv(X, PHI_HAT, G_HAT, G, _pad([0, 1]), 1)
    assert ofv == pytest.approx(_exact_ofv([False, True]), abs=5e-3)  # Laplace approximation
    # treating the limit as a measured value would be a different likelihood
    assert abs(ofv - _exact_ofv([False, False])) > 1.0


def test_the_conditional_objective_adds_minus_two_log_phi_by_hand():
    phi = np.array([[np.log(60.0)]])
    g = np.array([[np.log(80.0), np.log(50.0) + 0.3]])  # prediction one sigma above the LLOQ
    with_cens = _objective_terms(phi, g, MU, OMEGA, SIGMA, _pad([0, 1]))
    prior = ((phi[0, 0] - MU[0]) / OMEGA[0]) ** 2
    # quantified residual 0; censored: u = -1, -2 log Phi(-1) = -2 log 0.158655...
    assert with_cens[0] == pytest.approx(prior - 2 * np.log(0.15865525393145707), rel=1e-12)


def _frame_and_subjects():
    rows = {"subject": ["S1"] * 4, "day": [7.0, 14.0, 28.0, 56.0], "test": ["CART"] * 4,
            "value": [30.0, 5.0, 0.4, 0.0], "unit": ["cells/uL"] * 4}
    subjects = pl.DataFrame({"subject": ["S1"], "arm": ["a"], "product": ["autologous_cd19"],
                             "regimen": ["erlangen"], "dose_cells_per_kg": [1e6], "sex": ["F"],
                             "AGE": [30.0], "WT": [60.0], "HT": [165.0], "CREAT": [60.0], "DSDNA0": [100.0],
                             "C3_0": [0.6], "C4_0": [0.08], "UPROT0": [0.5], "PGA0": [2.0]})
    return pl.DataFrame(rows), subjects


def test_m1_leaves_values_below_the_limit_out_and_m3_keeps_them_censored_at_the_limit():
    from cartwin.fit.data import load_fit_data
    from cartwin.model import DEFAULT_MODEL
    frame, subjects = _frame_and_subjects()
    m1 = load_fit_data(frame, DEFAULT_MODEL, subjects=subjects, lloq={"CART": 1.0})
    assert m1.obs_value.tolist() == [30.0, 5.0] and m1.n_below_lloq == {"CART": 2}
    m3 = load_fit_data(frame, DEFAULT_MODEL, subjects=subjects, lloq={"CART": 1.0}, censoring="m3")
    assert m3.obs_value.tolist() == [30.0, 5.0, 1.0, 1.0]
    assert m3.obs_censored.tolist() == [False, False, True, True] and m3.n_below_lloq == {"CART": 0}
    # a row flagged BLQ by the data (observation model, NONMEM BLQ/CENS) carries its own limit
    flagged = frame.with_columns(pl.Series("blq", [False, True, False, False]),
                                 pl.Series("lloq", [10.0, 10.0, None, None]))
    m3 = load_fit_data(flagged, DEFAULT_MODEL, subjects=subjects, lloq={"CART": 1.0}, censoring="m3")
    assert m3.obs_value.tolist() == [30.0, 10.0, 1.0, 1.0] and m3.obs_censored.tolist() == [False, True, True, True]
    # without any limit, a value of 0 cannot be censored: it is left out and counted
    m3 = load_fit_data(frame, DEFAULT_MODEL, subjects=subjects, censoring="m3")
    assert m3.obs_value.tolist() == [30.0, 5.0, 0.4] and m3.n_below_lloq == {"CART": 1}


def test_an_unknown_censoring_method_is_a_clear_error():
    from cartwin.fit.data import load_fit_data
    from cartwin.fit.errors import FitError
    from cartwin.model import DEFAULT_MODEL
    frame, subjects = _frame_and_subjects()
    with pytest.raises(FitError, match="censoring 'm4'"):
        load_fit_data(frame, DEFAULT_MODEL, subjects=subjects, censoring="m4")
