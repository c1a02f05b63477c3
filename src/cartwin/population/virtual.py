"""Virtual patients: covariates drawn from the protocol's distributions, and individual
parameters drawn from the model's inter-individual variability.

Each patient owns a random stream, ``SeedSequence(seed, spawn_key=(arm_key, index))``, and draws
a fixed number of numbers from it in a fixed order. Patient *i* of an arm is therefore the same
whatever chunk, worker or order it is generated in, and adding variability to one parameter
does not shift the draws of another.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
from scipy import stats

from cartwin.model.declaration import Model
from cartwin.population.covariates import DESCRIPTOR_FLAGS, PATIENT_COVARIATES
from cartwin.population.ranges import PHYSIOLOGIC_RANGES, UNIT_FACTORS
from cartwin.protocol.schema import DESCRIPTORS, Population
from cartwin.body import bsa_mosteller, crcl_cockcroft_gault

DRAWN = ("sex", "age", "weight", "height", "creatinine", "dsdna", "c3", "c4", "proteinuria", "pga")
N_UNIFORMS = len(DRAWN) + len(DESCRIPTORS)


def arm_key(arm_id: str) -> int:
    return zlib.crc32(arm_id.encode())


def patient_stream(seed: int, arm_id: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(arm_key(arm_id), index)))


@dataclass(frozen=True)
class Patients:
    """A block of patients of one arm, columnar."""

    arm: str
    index: np.ndarray  # (N,) position in the arm
    subject: list[str]
    covariates: dict[str, np.ndarray]  # PATIENT_COVARIATES names -> (N,)
    theta: np.ndarray  # (N, P) individual model parameters
    eta: np.ndarray  # (N, P) log-scale random effects


def _truncated(dist, u: np.ndarray, quantity: str, factor: float) -> np.ndarray:
    """Inverse-CDF draw in the canonical unit, truncated to the physiologic range."""
    plo, phi, _ = PHYSIOLOGIC_RANGES[quantity]
    kind = dist.dist
    if kind == "fixed":
        return np.full(u.shape, dist.value * factor)
    lo = plo if getattr(dist, "low", None) is None else max(plo, dist.low * factor)
    hi = phi if getattr(dist, "high", None) is None else min(phi, dist.high * factor)
    if kind == "uniform":
        lo, hi = max(lo, dist.low * factor), min(hi, dist.high * factor)
        return lo + u * (hi - lo)
    if kind == "normal":
        frozen = stats.norm(dist.mean * factor, max(dist.sd * factor, 1e-300))
    else:
        sigma = np.sqrt(np.log1p(dist.cv ** 2))
        frozen = stats.lognorm(s=max(sigma, 1e-300), scale=dist.median * factor)
    if kind in ("normal", "lognormal") and (dist.sd if kind == "normal" else dist.cv) == 0:
        centre = dist.mean if kind == "normal" else dist.median
        return np.clip(np.full(u.shape, centre * factor), lo, hi)
    flo, fhi = frozen.cdf(lo), frozen.cdf(hi)
    return frozen.ppf(flo + u * (fhi - flo))


def iiv_cholesky(model: Model, override: dict[str, float] | None = None) -> np.ndarray:
    """Cholesky factor of the random-effect covariance (log scale), zero rows for fixed params.
    ``override`` replaces the declared SD of the parameters it names (a protocol's
    ``model_variability``)."""
    override = override or {}
    omega = np.array([override.get(p.name, p.iiv) for p in model.parameters])
    corr = np.eye(omega.size)
    index = {n: i for i, n in enumerate(model.parameter_names)}
    for c in model.correlations:
        i, j = index[c.first], index[c.second]
        corr[i, j] = corr[j, i] = c.rho
    active = omega > 0
    chol = np.zeros((omega.size, omega.size))
    sub = corr[np.ix_(active, active)] * np.outer(omega[active], omega[active])
    chol[np.ix_(active, active)] = np.linalg.cholesky(sub)
    return chol


def generate(model: Model, population: Population | None, arm_id: str, indices: np.ndarray, seed: int,
             typical: np.ndarray, variability: dict[str, float] | None = None) -> Patients:
    """Generate the patients ``indices`` of an arm. ``typical`` holds the arm's typical
    parameter values (the model's defaults with the product's mechanism parameters set)."""
    n = indices.size
    uniforms = np.empty((n, N_UNIFORMS))
    normals = np.empty((n, len(model.parameters)))
    for row, i in enumerate(indices):
        rng = patient_stream(seed, arm_id, int(i))
        uniforms[row] = rng.random(N_UNIFORMS)
        normals[row] = rng.standard_normal(len(model.parameters))
    # Row by row, not a matrix product: BLAS kernels change their summation order with the
    # number of rows, and a patient must not depend on the size of its chunk.
    chol = iiv_cholesky(model, variability)
    eta = (normals[:, None, :] * chol[None, :, :]).sum(axis=-1)
    theta = typical[None, :] * np.exp(eta)

    cov: dict[str, np.ndarray] = {}
    if population is None:  # a model without patient covariates (e.g. an imported SBML model)
        subject = [f"{arm_id}-{int(i) + 1:06d}" for i in indices]
        return Patients(arm_id, indices.copy(), subject, {}, theta, eta)
    if population.patients is not None:
        pts = [population.patients[int(i) % len(population.patients)] for i in indices]
        # an arm larger than the list repeats it; repeats get a suffix so that ids stay unique
        n_listed = len(population.patients)
        subject_ids = [p.id if int(i) < n_listed else f"{p.id}-{int(i) // n_listed + 1}"
                       for p, i in zip(pts, indices)]
        cov["SEXF"] = np.array([p.sex == "F" for p in pts], float)
        cov["AGE"] = np.array([p.age for p in pts], float)
        cov["WT"] = np.array([p.weight for p in pts], float)
        cov["HT"] = np.array([p.height for p in pts], float)
        cov["CREAT"] = np.array([p.creatinine * UNIT_FACTORS["creatinine"][p.creatinine_unit] for p in pts])
        cov["DSDNA0"] = np.array([p.dsdna for p in pts], float)
        cov["C3_0"] = np.array([p.c3 * UNIT_FACTORS["c3"][p.complement_unit] for p in pts])
        cov["C4_0"] = np.array([p.c4 * UNIT_FACTORS["c4"][p.complement_unit] for p in pts])
        cov["UPROT0"] = np.array([p.proteinuria for p in pts], float)
        cov["PGA0"] = np.array([p.pga for p in pts], float)
        for d, flag in DESCRIPTOR_FLAGS.items():
            cov[flag] = np.array([d in p.descriptors for p in pts], float)
    else:
        subject_ids = [f"{int(i) + 1:06d}" for i in indices]
        u = {name: uniforms[:, k] for k, name in enumerate(DRAWN)}
        cov["SEXF"] = (u["sex"] < population.sex.female).astype(float)
        cov["AGE"] = _truncated(population.age, u["age"], "age", 1.0)
        cov["WT"] = _truncated(population.weight, u["weight"], "weight", 1.0)
        cov["HT"] = _truncated(population.height, u["height"], "height", 1.0)
        cr = population.creatinine
        cov["CREAT"] = _truncated(cr.distribution, u["creatinine"], "creatinine",
                                  UNIT_FACTORS["creatinine"][cr.unit])
        d = population.disease
        for q, name in (("dsdna", "DSDNA0"), ("c3", "C3_0"), ("c4", "C4_0"), ("proteinuria", "UPROT0")):
            block = getattr(d, q)
            cov[name] = _truncated(block.distribution, u[q], q, UNIT_FACTORS[q][block.unit])
        cov["PGA0"] = _truncated(d.pga, u["pga"], "pga", 1.0)
        for k, desc in enumerate(DESCRIPTORS):
            cov[DESCRIPTOR_FLAGS[desc]] = (uniforms[:, len(DRAWN) + k] < d.descriptors.get(desc, 0.0)).astype(float)
    cov["BSA"] = bsa_mosteller(cov["HT"], cov["WT"])
    cov["CRCL"] = crcl_cockcroft_gault(cov["AGE"], cov["WT"], cov["CREAT"], cov["SEXF"] > 0.5)
    missing = set(PATIENT_COVARIATES) - set(cov)
    assert not missing, missing  # the vocabulary and this generator must agree
    subject = [f"{arm_id}-{s}" for s in subject_ids]
    return Patients(arm_id, indices.copy(), subject, cov, theta, eta)
