"""What a fit leaves in its output directory: estimates, individual estimates, predictions,
goodness-of-fit plots, a visual predictive check and one small HTML page that shows them.

``estimates.json``     population estimates with SEs and 95% intervals, fit settings, provenance
``individual.parquet`` per subject: conditional modes of each parameter, eta, conditional SD
``predictions.parquet`` per observation: DV, PRED (eta = 0), IPRED, IWRES
``gof.png``, ``vpc.png``, ``report.html``
"""

from __future__ import annotations

import html
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from cartwin import __version__  # noqa: E402
from cartwin.store.atomic import follow_umask  # noqa: E402
from cartwin.fit.nlme import FitResult, Z95  # noqa: E402

VPC_PERCENTILES = (5.0, 50.0, 95.0)


def _atomic_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    follow_umask(fd)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _atomic_parquet(frame: pl.DataFrame, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    follow_umask(fd)
    os.close(fd)
    frame.write_parquet(tmp)
    os.replace(tmp, path)


def estimates_dict(result: FitResult, settings: dict) -> dict:
    p, t = len(result.estimate), len(result.tests)
    se = result.standard_errors()
    lo, hi = result.typical_interval()
    model = result.predictor.model
    population = []
    for k, name in enumerate(result.estimate):
        decl = model.parameter(name)
        population.append({
            "parameter": name, "unit": decl.unit, "declared_value": decl.value,
            "typical_value": float(np.exp(result.mu[k])), "se_log": float(se[k]),
            "rse_percent": float(100 * se[k]), "ci95": [float(lo[k]), float(hi[k])],
            "omega": float(result.omega[k]), "omega_se_log": float(se[p + k]),
            "omega_ci95": [float(result.omega[k] * np.exp(-Z95 * se[p + k])),
                           float(result.omega[k] * np.exp(Z95 * se[p + k]))],
            "declared_iiv": decl.iiv, "shrinkage": float(result.shrinkage()[k])})
    residual = [{"test": test, "unit": unit, "model": "log-additive (proportional)",
                 "sigma": float(result.sigma[j]), "sigma_se_log": float(se[2 * p + j]),
                 "n_observations": int((result.data.obs_test == j).sum()),
                 "n_below_lloq_left_out": result.data.n_below_lloq.get(test, 0),
                 "n_censored_m3": int(result.data.obs_censored[result.data.obs_test == j].sum())
                 if result.data.obs_censored is not None else 0}
                for j, (test, unit) in enumerate(zip(result.tests, result.data.units))]
    return {
        "method": "FOCE (Lindstrom-Bates alternating algorithm): conditional modes by batched "
                  "Levenberg-Marquardt, population step by L-BFGS-B on the linearised marginal "
                  "likelihood; SEs from its numerical Hessian; 95% intervals Wald on the log scale",
        "ofv": result.ofv, "n_parameters": 2 * p + t,
        "aic": result.ofv + 2 * (2 * p + t), "converged": bool(result.converged),
        "iterations": result.iterations, "seconds": result.seconds,
        "model_solves": result.predictor.n_solves,
        "n_subjects": result.data.n_subjects, "n_observations": int(result.data.obs_value.size),
        "population": population, "residual": residual,
        "correlation": _correlation(result.covariance).tolist(),
        "correlation_order": ([f"log {n}" for n in result.estimate] + [f"log omega {n}" for n in result.estimate]
                              + [f"log sigma {x}" for x in result.tests]),
        "history": result.history,
        "provenance": {"cartwin": __version__, "model": model.name, "model_version": model.version,
                       "model_hash": model.content_hash(), "data": result.data.source,
                       "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                       "solver": result.predictor.solver.describe(), **settings},
    }


def _correlation(cov: np.ndarray) -> np.ndarray:
    d = np.sqrt(np.abs(np.diag(cov)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.round(cov / np.outer(d, d), 4)


def individual_frame(result: FitResult) -> pl.DataFrame:
    cols = {"subject": list(result.data.subjects)}
    for k, name in enumerate(result.estimate):
        cols[name] = np.exp(result.phi[:, k])
        cols[f"eta_{name}"] = result.phi[:, k] - result.mu[k]
        cols[f"sd_log_{name}"] = result.phi_se[:, k]
    return pl.DataFrame(cols)


def predictions_frame(result: FitResult) -> pl.DataFrame:
    return result.data.observations_frame().with_columns(
        pl.Series("PRED", np.exp(result.pred)), pl.Series("IPRED", np.exp(result.ipred)),
        pl.Series("IWRES", result.iwres)).rename({"value": "DV"})


def gof_figure(result: FitResult, path: Path) -> None:
    d = result.data
    dv = d.obs_value
    fig, axes = plt.subplots(2, 2, figsize=(10, 8.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, test in enumerate(result.tests):
        m = d.obs_test == j
        c = colours[j % len(colours)]
        axes[0, 0].scatter(np.exp(result.pred[m]), dv[m], s=8, alpha=0.5, color=c, label=test)
        axes[0, 1].scatter(np.exp(result.ipred[m]), dv[m], s=8, alpha=0.5, color=c, label=test)
        axes[1, 0].scatter(d.obs_day[m], result.iwres[m], s=8, alpha=0.5, color=c, label=test)
        axes[1, 1].scatter(np.exp(result.ipred[m]), result.iwres[m], s=8, alpha=0.5, color=c, label=test)
    for ax, xl, x in ((axes[0, 0], "population prediction (PRED)", result.pred),
                      (axes[0, 1], "individual prediction (IPRED)", result.ipred)):
        lim = [min(dv.min(), np.exp(x.min())), max(dv.max(), np.exp(x.max()))]
        ax.plot(lim, lim, "k--", lw=1)
        ax.set(xscale="log", yscale="log", xlabel=xl, ylabel="observed (DV)")
    for ax, xl, xs in ((axes[1, 0], "day", "linear"), (axes[1, 1], "individual prediction (IPRED)", "log")):
        ax.axhline(0, color="k", lw=1)
        for z in (-Z95, Z95):
            ax.axhline(z, color="grey", ls=":", lw=1)
        ax.set(xscale=xs, xlabel=xl, ylabel="IWRES (log residual / sigma)")
    axes[0, 0].legend(loc="upper left", fontsize=8)
    fig.suptitle("Goodness of fit (each test in its own unit; log axes)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def simulate_replicates(result: FitResult, replicates: int, seed: int) -> np.ndarray:
    """Simulated log observations (R, M) of the data's design under the estimates."""
    rng = np.random.default_rng(seed)
    d, pr = result.data, result.predictor
    n = d.n_subjects
    eta = rng.standard_normal((replicates, n, len(result.estimate))) * result.omega
    phi = (result.mu + eta).reshape(replicates * n, -1)
    subjects = np.tile(np.arange(n), replicates)
    obs, ok = pr.solve(phi, subjects)
    obs = obs.reshape(replicates, n, *obs.shape[1:])
    values = obs[:, d.obs_subject, pr.day_index, pr.observable_index[d.obs_test]]
    logs = np.log(np.maximum(values, 1e-12))
    logs[~ok.reshape(replicates, n)[:, d.obs_subject]] = np.nan
    return logs + rng.standard_normal(logs.shape) * result.sigma[d.obs_test]


def time_bins(days: np.ndarray, n_bins: int = 12) -> np.ndarray:
    """Bin edges at quantiles of the sampling days, so that each bin holds about as many samples."""
    edges = np.unique(np.quantile(days, np.linspace(0, 1, n_bins + 1)))
    edges[-1] += 1e-9
    return edges


def vpc_figure(result: FitResult, path: Path, replicates: int, seed: int) -> dict:
    sims = simulate_replicates(result, replicates, seed)
    d = result.data
    left_out = result.data.n_below_lloq
    tests = result.tests
    fig, axes = plt.subplots(1, len(tests), figsize=(5.5 * len(tests), 4.5), squeeze=False)
    summary = {}
    for j, test in enumerate(tests):
        m = d.obs_test == j
        edges = time_bins(d.obs_day[m])
        which = np.clip(np.searchsorted(edges, d.obs_day[m], side="right") - 1, 0, len(edges) - 2)
        centres, observed, sim_q = [], [], []
        for b in range(len(edges) - 1):
            in_bin = which == b
            if in_bin.sum() < 3:
                continue
            centres.append(np.median(d.obs_day[m][in_bin]))
            observed.append(np.percentile(np.log(d.obs_value[m][in_bin]), VPC_PERCENTILES))
            per_rep = np.nanpercentile(sims[:, np.flatnonzero(m)[in_bin]], VPC_PERCENTILES, axis=1)  # (3, R)
            sim_q.append(np.nanpercentile(per_rep, [5, 50, 95], axis=1))  # (3 CI, 3 pct)
        centres, observed, sim_q = np.array(centres), np.exp(np.array(observed)), np.exp(np.array(sim_q))
        ax = axes[0, j]
        for k, pct in enumerate(VPC_PERCENTILES):
            ax.fill_between(centres, sim_q[:, 0, k], sim_q[:, 2, k], alpha=0.25,
                            color="tab:red" if pct == 50 else "tab:blue")
            ax.plot(centres, sim_q[:, 1, k], color="tab:red" if pct == 50 else "tab:blue", lw=1)
            ax.plot(centres, observed[:, k], "k-" if pct == 50 else "k--", lw=1.2)
        ax.scatter(d.obs_day[m], d.obs_value[m], s=4, color="grey", alpha=0.4)
        ax.set(yscale="log", xlabel="day", ylabel=f"{test} ({d.units[j]})", title=f"VPC {test}")
        inside = ((observed >= sim_q[:, 0, :]) & (observed <= sim_q[:, 2, :])).mean()
        summary[test] = {"bins": int(len(centres)), "observed_percentiles_inside_90pct_band": float(inside),
                         "left_out_below_lloq": left_out.get(test, 0)}
    fig.suptitle(f"Visual predictive check: observed 5/50/95th percentiles (black) and 90% bands of "
                 f"simulated percentiles ({replicates} replicates)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return summary


def write_outputs(result: FitResult, out_dir: Path, settings: dict, vpc_replicates: int = 200,
                  seed: int = 1) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    estimates = estimates_dict(result, settings)
    _atomic_parquet(individual_frame(result), out_dir / "individual.parquet")
    _atomic_parquet(predictions_frame(result), out_dir / "predictions.parquet")
    gof_figure(result, out_dir / "gof.png")
    if vpc_replicates > 0:
        estimates["vpc"] = {"replicates": vpc_replicates, "seed": seed,
                            **vpc_figure(result, out_dir / "vpc.png", vpc_replicates, seed)}
    _atomic_text(out_dir / "estimates.json", json.dumps(estimates, indent=2, default=float))
    _atomic_text(out_dir / "report.html", _html(estimates, vpc_replicates > 0))
    return estimates


def _html(est: dict, with_vpc: bool) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(p['parameter'])}</td><td>{p['declared_value']:.4g}</td><td>{p['typical_value']:.4g}</td>"
        f"<td>{p['ci95'][0]:.4g} - {p['ci95'][1]:.4g}</td><td>{p['rse_percent']:.1f}</td><td>{p['omega']:.3f}</td>"
        f"<td>{p['shrinkage']:.2f}</td><td>{html.escape(p['unit'])}</td></tr>" for p in est["population"])
    res = "".join(f"<tr><td>{html.escape(r['test'])}</td><td>{r['sigma']:.3f}</td><td>{r['n_observations']}</td>"
                  f"<td>{r['n_below_lloq_left_out']}</td></tr>" for r in est["residual"])
    prov = est["provenance"]
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>cartwin fit</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}img{{max-width:100%}}</style></head><body>
<h1>Population fit</h1>
<p>{est['n_subjects']} subjects, {est['n_observations']} observations; model {html.escape(prov['model'])}
{html.escape(prov['model_version'])} ({prov['model_hash']}); OFV {est['ofv']:.2f}, AIC {est['aic']:.2f};
{'converged' if est['converged'] else '<b>not converged</b>'} in {est['iterations']} iterations,
{est['seconds']:.1f} s. Method: {html.escape(est['method'])}.</p>
<table><tr><th>parameter</th><th>declared</th><th>typical value</th><th>95% interval</th><th>RSE %</th>
<th>omega (IIV SD)</th><th>shrinkage</th><th>unit</th></tr>{rows}</table>
<h2>Residual error (log scale SD)</h2><table><tr><th>test</th><th>sigma</th><th>n</th><th>left out &lt; LLOQ</th></tr>{res}</table>
<h2>Goodness of fit</h2><img src="gof.png" alt="goodness of fit">
{'<h2>Visual predictive check</h2><img src="vpc.png" alt="visual predictive check">' if with_vpc else ''}
</body></html>"""
