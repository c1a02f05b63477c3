"""Population fit: nonlinear mixed effects by the Lindstrom-Bates alternating algorithm (FOCE).

Model, on the log scale of each fitted test (log-additive error, i.e. proportional on the natural
scale, with one SD per test)::

    log y_ij = log f(t_ij, theta_i) + eps_ij,   eps_ij ~ N(0, sigma_test(j)^2)
    log theta_i = mu + eta_i,                    eta_i ~ N(0, diag(omega^2))

``mu`` are the log typical values (fixed effects), ``omega`` the inter-individual SDs (the same
meaning as a declared parameter's ``iiv``). Other parameters stay at their declared values.

Why this algorithm and library: cartwin's model is generated numba code solved by its own
compiled BDF (``NumbaBDF``); it is not JAX or PyTensor, so NumPyro, PyMC or JAX autodiff would
need the 29-state model re-implemented there, a second source of truth for the equations. The
Lindstrom-Bates algorithm (Biometrics 1990;46:673; the method of R's ``nlme``) needs only model
predictions: it alternates (1) the conditional modes of each subject's parameters given the
population values (penalised nonlinear least squares: batched Levenberg-Marquardt, Jacobians by
forward differences, every subject solved in one call of the compiled solver) and (2) the
population values maximising the marginal likelihood of the model linearised at those modes
(the FOCE approximation; closed form per subject, optimised with ``scipy.optimize`` L-BFGS-B).
Standard errors come from the numerical Hessian of that linearised likelihood at the optimum.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, special, stats

from cartwin.fit.data import FitData
from cartwin.fit.errors import FitError
from cartwin.fit.predict import Predictor

FD_STEP = 1e-3  # log-parameter step for forward differences; solver rtol 1e-8 keeps noise ~1e-5
Z95 = 1.959963984540054


@dataclass
class Padded:
    """Per-subject observations padded to a rectangle; ``mask`` marks real entries."""

    z: np.ndarray  # (N, n) log observations
    test: np.ndarray  # (N, n)
    mask: np.ndarray  # (N, n) float 0/1
    slots: list[np.ndarray]  # per subject, its observations' positions in FitData order
    cens: np.ndarray | None = None  # (N, n) float 0/1: below the LLOQ, z = log LLOQ (Beal's M3)

    @property
    def censored(self) -> bool:
        return self.cens is not None and bool(self.cens.any())

    @property
    def quantified(self) -> np.ndarray:
        """(N, n) float 0/1: real entries that are not censored."""
        return self.mask if self.cens is None else self.mask - self.cens

    @classmethod
    def build(cls, data: FitData) -> "Padded":
        n = data.n_subjects
        slots = [np.flatnonzero(data.obs_subject == i) for i in range(n)]
        width = max(len(s) for s in slots)
        z = np.zeros((n, width))
        test = np.zeros((n, width), dtype=np.int64)
        mask = np.zeros((n, width))
        cens = np.zeros((n, width))
        for i, s in enumerate(slots):
            z[i, :len(s)] = np.log(data.obs_value[s])
            test[i, :len(s)] = data.obs_test[s]
            mask[i, :len(s)] = 1.0
            if data.obs_censored is not None:
                cens[i, :len(s)] = data.obs_censored[s]
        return cls(z, test, mask, slots, cens if cens.any() else None)

    def pad(self, per_subject: list[np.ndarray]) -> np.ndarray:
        out = np.zeros(self.z.shape)
        for i, v in enumerate(per_subject):
            out[i, :len(v)] = v
        return out


@dataclass
class FitResult:
    estimate: tuple[str, ...]
    tests: tuple[str, ...]
    mu: np.ndarray  # (P,) log typical values
    omega: np.ndarray  # (P,) IIV SDs (log scale)
    sigma: np.ndarray  # (T,) residual SDs (log scale)
    covariance: np.ndarray  # of (mu, log omega, log sigma)
    ofv: float  # -2 log-likelihood (FOCE-linearised), constant included
    iterations: int
    converged: bool
    phi: np.ndarray  # (N, P) individual log parameters (conditional modes)
    phi_se: np.ndarray  # (N, P) their conditional SDs
    ipred: np.ndarray  # (M,) individual log predictions, FitData order
    pred: np.ndarray  # (M,) population log predictions (eta = 0)
    data: FitData
    predictor: Predictor
    seconds: float
    history: list[dict] = field(default_factory=list)

    @property
    def typical(self) -> np.ndarray:
        return np.exp(self.mu)

    def standard_errors(self) -> np.ndarray:
        d = np.diag(self.covariance)
        return np.sqrt(np.where(d >= 0, d, np.nan))

    def typical_interval(self, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
        """Wald interval of the typical values, symmetric on the log scale."""
        se = self.standard_errors()[:len(self.estimate)]
        return np.exp(self.mu - z * se), np.exp(self.mu + z * se)

    @property
    def iwres(self) -> np.ndarray:
        z = np.log(self.data.obs_value)
        return (z - self.ipred) / self.sigma[self.data.obs_test]

    def shrinkage(self) -> np.ndarray:
        """eta shrinkage: 1 - SD(conditional modes of eta) / omega."""
        eta = self.phi - self.mu
        return 1.0 - eta.std(axis=0, ddof=1) / self.omega


def _censored_terms(g, sigma, pad: Padded):
    """For censored entries: u = (log LLOQ - g) / sigma, -2 log Phi(u), and the inverse Mills
    ratio lambda = phi(u) / Phi(u) (zero elsewhere)."""
    sd = sigma[pad.test]
    u = (pad.z - g) / sd
    log_cdf = special.log_ndtr(u)
    lam = np.exp(stats.norm.logpdf(u) - log_cdf)
    return u, -2.0 * log_cdf * pad.cens, lam * pad.cens


def _objective_terms(phi, g, mu, omega, sigma, pad: Padded):
    """Penalised weighted sum of squares of each subject at ``phi`` with predictions ``g``; a
    censored entry contributes -2 log P(y < LLOQ) = -2 log Phi((log LLOQ - g) / sigma) (M3)."""
    resid = (pad.z - g) / sigma[pad.test] * pad.quantified
    prior = ((phi - mu) / omega) ** 2
    total = (resid ** 2).sum(axis=1) + prior.sum(axis=1)
    if pad.censored:
        total = total + _censored_terms(g, sigma, pad)[1].sum(axis=1)
    return total


def _censored_gradient_hessian(g, sigma, pad: Padded):
    """Half the first and second derivatives of -2 log Phi(u) with respect to the prediction g,
    per censored entry: lambda / sigma and lambda (u + lambda) / sigma^2 (zero elsewhere)."""
    u, _, lam = _censored_terms(g, sigma, pad)
    sd = sigma[pad.test]
    return lam / sd, lam * (u + lam) / sd ** 2


def _jacobian(predictor: Predictor, phi: np.ndarray, g: np.ndarray, pad: Padded):
    """d log prediction / d phi by forward differences: P batched solves of all subjects."""
    n, p = phi.shape
    G = np.zeros(pad.z.shape + (p,))
    ok = np.ones(n, dtype=bool)
    for k in range(p):
        shifted = phi.copy()
        shifted[:, k] += FD_STEP
        gk, okk = predictor.log_predictions(shifted)
        G[:, :, k] = (pad.pad(gk) - g) / FD_STEP * pad.mask
        ok &= okk
    return G, ok


def conditional_modes(predictor: Predictor, pad: Padded, phi0, mu, omega, sigma,
                      max_iter: int = 25, tol: float = 1e-5):
    """Each subject's log parameters maximising its conditional density (batched Levenberg-
    Marquardt). Returns modes, their predictions and Jacobian, and the Jacobian's validity."""
    phi = phi0.copy()
    g_list, ok = predictor.log_predictions(phi)
    if not ok.all():  # a start that cannot be solved: fall back to the typical values
        phi[~ok] = mu
        g_list, ok = predictor.log_predictions(phi)
        if not ok.all():
            raise FitError(f"the model cannot be solved at the typical values for subjects "
                           f"{[predictor.data.subjects[i] for i in np.flatnonzero(~ok)][:10]}")
    g = pad.pad(g_list)
    s = _objective_terms(phi, g, mu, omega, sigma, pad)
    lam = np.full(phi.shape[0], 1e-3)
    active = np.ones(phi.shape[0], dtype=bool)
    prior_precision = 1.0 / omega ** 2
    for _ in range(max_iter):
        G, jac_ok = _jacobian(predictor, phi, g, pad)
        w = pad.quantified / sigma[pad.test] ** 2
        A = np.einsum("inp,in,inq->ipq", G, w, G) + np.diag(prior_precision)[None]
        b = np.einsum("inp,in,in->ip", G, w, pad.z - g) - (phi - mu) * prior_precision
        if pad.censored:  # Newton terms of -2 log Phi: pull the prediction below the LLOQ
            grad, curv = _censored_gradient_hessian(g, sigma, pad)
            A = A + np.einsum("inp,in,inq->ipq", G, curv, G)
            b = b - np.einsum("inp,in->ip", G, grad)
        damped = A + lam[:, None, None] * np.einsum("ipp->ip", A)[:, :, None] * np.eye(phi.shape[1])
        step = np.linalg.solve(damped, b[:, :, None])[:, :, 0]
        step[~active | ~jac_ok] = 0.0
        trial = phi + step
        g_trial_list, ok_trial = predictor.log_predictions(trial)
        g_trial = pad.pad(g_trial_list)
        s_trial = _objective_terms(trial, g_trial, mu, omega, sigma, pad)
        better = ok_trial & (s_trial <= s) & active
        phi[better], g[better], lam[better] = trial[better], g_trial[better], lam[better] / 3
        worse = active & ~better
        lam[worse] *= 4
        # Converged when the step no longer changes the objective, accepted or not: at the mode,
        # forward-difference noise makes tiny steps fail as often as they succeed.
        done = ok_trial & (np.abs(s - s_trial) <= tol * (1 + s)) & (np.abs(step).max(axis=1) < 1e-3)
        s[better] = s_trial[better]
        active &= ~done & (lam < 1e8)
        if not active.any():
            break
    G, jac_ok = _jacobian(predictor, phi, g, pad)
    return phi, g, G


def _unpack(x, p, t):
    return x[:p], np.exp(x[p:2 * p]), np.exp(x[2 * p:2 * p + t])


def linearised_ofv(x, phi_hat, g_hat, G, pad: Padded, n_tests: int) -> float:
    """-2 log marginal likelihood of the model linearised at the conditional modes (FOCE)."""
    p = phi_hat.shape[1]
    mu, omega, sigma = _unpack(x, p, n_tests)
    if pad.censored:
        return laplace_ofv(mu, omega, sigma, phi_hat, g_hat, G, pad)
    w_resp = pad.z - g_hat + np.einsum("inp,ip->in", G, phi_hat)
    r = (w_resp - np.einsum("inp,p->in", G, mu)) * pad.mask
    rinv = pad.mask / sigma[pad.test] ** 2
    A = np.einsum("inp,in,inq->ipq", G, rinv, G) + np.diag(1.0 / omega ** 2)[None]
    u = np.einsum("inp,in,in->ip", G, rinv, r)
    try:
        chol = np.linalg.cholesky(A)
    except np.linalg.LinAlgError:
        return np.inf
    v = np.linalg.solve(chol, u[:, :, None])[:, :, 0]
    logdet_a = 2 * np.log(np.einsum("ipp->ip", chol)).sum(axis=1)
    logdet_v = (pad.mask * np.log(sigma[pad.test] ** 2)).sum(axis=1) + np.log(omega ** 2).sum() + logdet_a
    quad = (rinv * r ** 2).sum(axis=1) - (v ** 2).sum(axis=1)
    return float((pad.mask.sum(axis=1) * np.log(2 * np.pi) + logdet_v + quad).sum())


def laplace_ofv(mu, omega, sigma, phi_hat, g_hat, G, pad: Padded, max_iter: int = 50) -> float:
    """-2 log marginal likelihood of the model linearised at the conditional modes when some
    entries are censored (M3), by the Laplace approximation (as NONMEM's LAPLACIAN with M3): per
    subject, the mode phi* of the linearised joint density (a convex problem: -log Phi is convex),
    then  sum_q [log 2 pi s^2 + r^2 / s^2] - 2 sum_c log Phi(u) + (phi* - mu)' Omega^-1 (phi* - mu)
    + log det Omega + log det A,  with A half the Hessian at phi*. Without censored entries this
    is the closed form of :func:`linearised_ofv` (the Laplace approximation is then exact)."""
    offset = g_hat - np.einsum("inp,ip->in", G, phi_hat)  # g(phi) ~ offset + G phi
    prior_precision = 1.0 / omega ** 2
    sd2 = sigma[pad.test] ** 2
    w = pad.quantified / sd2

    def objective(phi):
        g = offset + np.einsum("inp,ip->in", G, phi)
        return _objective_terms(phi, g, mu, omega, sigma, pad), g

    phi = phi_hat.copy()
    s, g = objective(phi)
    for _ in range(max_iter):
        grad, curv = _censored_gradient_hessian(g, sigma, pad)
        A = np.einsum("inp,in,inq->ipq", G, w + curv, G) + np.diag(prior_precision)[None]
        b = np.einsum("inp,in,in->ip", G, w, pad.z - g) - np.einsum("inp,in->ip", G, grad) \
            - (phi - mu) * prior_precision
        try:
            step = np.linalg.solve(A, b[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            return np.inf
        t = np.ones(phi.shape[0])
        for _ in range(30):  # halve the step where it does not decrease the objective
            trial = phi + t[:, None] * step
            s_trial, g_trial = objective(trial)
            worse = ~(s_trial <= s + 1e-12 * (1 + np.abs(s)))
            if not worse.any():
                break
            t[worse] /= 2
        phi, s, g = trial, s_trial, g_trial
        if np.abs(t[:, None] * step).max() < 1e-10:
            break
    _, curv = _censored_gradient_hessian(g, sigma, pad)
    A = np.einsum("inp,in,inq->ipq", G, w + curv, G) + np.diag(prior_precision)[None]
    try:
        chol = np.linalg.cholesky(A)
    except np.linalg.LinAlgError:
        return np.inf
    logdet_a = 2 * np.log(np.einsum("ipp->ip", chol)).sum(axis=1)
    constants = (pad.quantified * np.log(2 * np.pi * sd2)).sum(axis=1) + np.log(omega ** 2).sum()
    return float((s + constants + logdet_a).sum())


def _hessian(f, x, step=1e-4):
    n = x.size
    H = np.empty((n, n))
    for i in range(n):
        for j in range(i, n):
            e_i, e_j = np.eye(n)[i] * step, np.eye(n)[j] * step
            H[i, j] = H[j, i] = (f(x + e_i + e_j) - f(x + e_i - e_j) - f(x - e_i + e_j)
                                 + f(x - e_i - e_j)) / (4 * step * step)
    return H


def fit_population(predictor: Predictor, *, initial: dict[str, float] | None = None,
                   initial_omega: dict[str, float] | None = None, initial_sigma: float = 0.3,
                   max_iter: int = 30, tol: float = 1e-3, progress=None) -> FitResult:
    """Estimate typical values, IIV SDs and residual SDs of ``predictor.estimate``."""
    start = time.perf_counter()
    data, names = predictor.data, predictor.estimate
    p, t = len(names), len(data.tests)
    pad = Padded.build(data)
    mu = predictor.default_phi()
    for k, name in enumerate(names):
        if initial and name in initial:
            if not initial[name] > 0:
                raise FitError(f"initial value of {name} must be positive, got {initial[name]}")
            mu[k] = np.log(initial[name])
    omega = np.array([(initial_omega or {}).get(n) or predictor.model.parameter(n).iiv or 0.3 for n in names])
    x = np.concatenate([mu, np.log(omega), np.full(t, np.log(initial_sigma))])
    phi = np.tile(mu, (data.n_subjects, 1))
    history, converged, ofv = [], False, np.inf
    for iteration in range(1, max_iter + 1):
        mu, omega, sigma = _unpack(x, p, t)
        phi, g_hat, G = conditional_modes(predictor, pad, phi, mu, omega, sigma)
        res = optimize.minimize(linearised_ofv, x, args=(phi, g_hat, G, pad, t), method="L-BFGS-B",
                                bounds=[(None, None)] * p + [(np.log(1e-3), np.log(5.0))] * (p + t))
        change = np.abs(res.x - x).max()
        history.append({"iteration": iteration, "ofv": float(res.fun), "max_change": float(change),
                        "seconds": time.perf_counter() - start, "solves": predictor.n_solves})
        if progress:
            progress(history[-1])
        converged_now = change < tol and abs(ofv - res.fun) < 10 * tol
        x, ofv = res.x, float(res.fun)
        if converged_now:
            converged = True
            break
    mu, omega, sigma = _unpack(x, p, t)
    phi, g_hat, G = conditional_modes(predictor, pad, phi, mu, omega, sigma)
    ofv = linearised_ofv(x, phi, g_hat, G, pad, t)
    H = _hessian(lambda v: linearised_ofv(v, phi, g_hat, G, pad, t), x)
    try:
        covariance = 2.0 * np.linalg.inv(H)  # the objective is -2 log L
    except np.linalg.LinAlgError:
        covariance = np.full(H.shape, np.nan)
    w = pad.quantified / sigma[pad.test] ** 2
    if pad.censored:
        w = w + _censored_gradient_hessian(g_hat, sigma, pad)[1]
    info = np.einsum("inp,in,inq->ipq", G, w, G) + np.diag(1.0 / omega ** 2)[None]
    phi_se = np.sqrt(np.einsum("ipp->ip", np.linalg.inv(info)))
    ipred = np.concatenate([g_hat[i, :len(s)] for i, s in enumerate(pad.slots)])
    order = np.concatenate(pad.slots)
    ipred_ordered = np.empty_like(ipred)
    ipred_ordered[order] = ipred
    pred_list, _ = predictor.log_predictions(np.tile(mu, (data.n_subjects, 1)))
    pred_ordered = np.empty_like(ipred)
    pred_ordered[order] = np.concatenate(pred_list)
    return FitResult(names, data.tests, mu, omega, sigma, covariance, ofv, len(history), converged,
                     phi, phi_se, ipred_ordered, pred_ordered, data, predictor,
                     time.perf_counter() - start, history)
