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

from cartwin.model.declaration import Model
from cartwin.population.distributions import LogNormal, Normal
from cartwin.population.correlation import correlate, declared
from cartwin.protocol.schema import Population
from cartwin.vocabulary import DESCRIPTOR_FLAGS, DESCRIPTORS, PATIENT_COVARIATES, PatientCovariate, with_derived

# The covariates drawn (or given), in the vocabulary's order: one uniform each, then one per
# descriptor. The order fixes each patient's random stream: never reorder; a new drawn covariate
# moves the descriptors' uniforms (see cartwin/vocabulary.py).
DRAWN: tuple[PatientCovariate, ...] = tuple(c for c in PATIENT_COVARIATES.values()
                                            if not c.derived and c.kind != "descriptor")
N_UNIFORMS = len(DRAWN) + len(DESCRIPTORS)


def arm_key(arm_id: str) -> int:
    return zlib.crc32(arm_id.encode())


# Purposes of the streams other than a patient's own (spawn keys of other lengths than the
# patient's (arm, index), so that no two purposes share numbers).
STREAM_REPLICATE = 1  # a patient redrawn for a replicate trial: (arm, index, 1, replicate)
STREAM_COHORT = 2  # the cohort row a patient is resampled from: (arm, index, 2, replicate)
STREAM_CONDUCT = 3  # missed visits and withdrawal: (arm, index, 3, replicate)


def patient_stream(seed: int, arm_id: str, index: int, replicate: int | None = None) -> np.random.Generator:
    """Patient ``index`` of ``arm_id``'s own stream; a replicate trial that redraws its patients
    gives each its own stream per replicate."""
    key = (arm_key(arm_id), index) if replicate is None else (arm_key(arm_id), index, STREAM_REPLICATE, replicate)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def purpose_stream(seed: int, arm_id: str, index: int, purpose: int, replicate: int | None) -> np.random.Generator:
    """A patient's stream for one purpose (``STREAM_COHORT``, ``STREAM_CONDUCT``), per replicate."""
    return np.random.default_rng(np.random.SeedSequence(
        seed, spawn_key=(arm_key(arm_id), index, purpose, 0 if replicate is None else replicate + 1)))


@dataclass(frozen=True)
class Patients:
    """A block of patients of one arm, columnar."""

    arm: str
    index: np.ndarray  # (N,) position in the arm
    subject: list[str]
    covariates: dict[str, np.ndarray]  # vocabulary.PATIENT_COVARIATES names -> (N,)
    theta: np.ndarray  # (N, P) individual model parameters
    eta: np.ndarray  # (N, P) log-scale random effects


def _truncated(dist, u: np.ndarray, c: PatientCovariate, factor: float) -> np.ndarray:
    """Inverse-CDF draw in the canonical unit, truncated to the physiologic range."""
    plo, phi = c.range
    kind = dist.dist
    if kind == "fixed":
        return np.full(u.shape, dist.value * factor)
    lo = plo if getattr(dist, "low", None) is None else max(plo, dist.low * factor)
    hi = phi if getattr(dist, "high", None) is None else min(phi, dist.high * factor)
    if kind == "uniform":
        lo, hi = max(lo, dist.low * factor), min(hi, dist.high * factor)
        return lo + u * (hi - lo)
    if kind in ("normal", "lognormal") and (dist.sd if kind == "normal" else dist.cv) == 0:
        centre = dist.mean if kind == "normal" else dist.median
        return np.clip(np.full(u.shape, centre * factor), lo, hi)
    if kind == "normal":
        frozen = Normal(dist.mean * factor, max(dist.sd * factor, 1e-300))
    else:
        sigma = np.sqrt(np.log1p(dist.cv ** 2))
        frozen = LogNormal(max(sigma, 1e-300), dist.median * factor)
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


_ETA_BLOCK = 16  # patients per block of the random-effect sums in generate


def generate(model: Model, population: Population | None, arm_id: str, indices: np.ndarray, seed: int,
             typical: np.ndarray, variability: dict[str, float] | None = None,
             replicate: int | None = None, subject_prefix: str = "") -> Patients:
    """Generate the patients ``indices`` of an arm. ``typical`` holds the arm's typical
    parameter values (the model's defaults with the product's mechanism parameters set).
    ``replicate``: redraw the patients for this replicate trial (None: the arm's own patients);
    ``subject_prefix`` goes between the arm and the patient in subject ids (a replicate's)."""
    n = indices.size
    uniforms = np.empty((n, N_UNIFORMS))
    normals = np.empty((n, len(model.parameters)))
    for row, i in enumerate(indices):
        rng = patient_stream(seed, arm_id, int(i), replicate)
        uniforms[row] = rng.random(N_UNIFORMS)
        normals[row] = rng.standard_normal(len(model.parameters))
    # Row by row, not a matrix product: BLAS kernels change their summation order with the
    # number of rows, and a patient must not depend on the size of its chunk.
    chol = iiv_cholesky(model, variability)
    # a few patients at a time: the same sums (each over one contiguous row of products), without
    # an (N, P, P) temporary of tens of megabytes
    eta = np.empty_like(normals)
    for s in range(0, n, _ETA_BLOCK):
        eta[s:s + _ETA_BLOCK] = (normals[s:s + _ETA_BLOCK, None, :] * chol[None, :, :]).sum(axis=-1)
    theta = typical[None, :] * np.exp(eta)

    cov: dict[str, np.ndarray] = {}
    if population is None:  # a model without patient covariates (e.g. an imported SBML model)
        subject = [f"{arm_id}-{subject_prefix}{int(i) + 1:06d}" for i in indices]
        return Patients(arm_id, indices.copy(), subject, {}, theta, eta)
    listed = population.patients
    if population.cohort is not None:
        from cartwin.population.cohort import read_cohort
        listed = read_cohort(population.cohort)
    if listed is not None and population.cohort is not None and population.cohort_sampling == "bootstrap":
        # each patient's row from its own stream: the same whatever the chunk or the arm size
        rows = [int(purpose_stream(seed, arm_id, int(i), STREAM_COHORT, replicate).integers(len(listed)))
                for i in indices]
        pts = [listed[r] for r in rows]
        subject_ids = [f"{int(i) + 1:06d}-{p.id}" for p, i in zip(pts, indices)]
    elif listed is not None:
        pts = [listed[int(i) % len(listed)] for i in indices]
        # an arm larger than the list repeats it; repeats get a suffix so that ids stay unique
        n_listed = len(listed)
        subject_ids = [p.id if int(i) < n_listed else f"{p.id}-{int(i) // n_listed + 1}"
                       for p, i in zip(pts, indices)]
    if listed is not None:
        for c in DRAWN:
            if c.name == "SEXF":
                cov["SEXF"] = np.array([p.sex == "F" for p in pts], float)
            else:
                cov[c.name] = np.array([getattr(p, c.field) * c.unit_factors[p.unit_of(c.field)] for p in pts], float)
        for d, flag in DESCRIPTOR_FLAGS.items():
            cov[flag] = np.array([d in p.descriptors for p in pts], float)
    else:
        subject_ids = [f"{int(i) + 1:06d}" for i in indices]
        # covariates drawn jointly where the protocol declares correlations (Gaussian copula)
        drawn = correlate({c.field: uniforms[:, k] for k, c in enumerate(DRAWN)},
                          declared(population.correlations))
        for k, c in enumerate(DRAWN):
            if c.name == "SEXF":
                cov["SEXF"] = (uniforms[:, k] < population.sex.female).astype(float)
            else:
                dist, unit = population.distribution_of(c.field)
                cov[c.name] = _truncated(dist, drawn[c.field], c, c.unit_factors[unit])
        d = population.disease
        for k, desc in enumerate(DESCRIPTORS):
            cov[DESCRIPTOR_FLAGS[desc]] = (uniforms[:, len(DRAWN) + k] < d.descriptors.get(desc, 0.0)).astype(float)
    cov = with_derived(cov)
    missing = set(PATIENT_COVARIATES) - set(cov)
    assert not missing, missing  # the vocabulary and this generator must agree
    cov = {name: cov[name] for name in PATIENT_COVARIATES}
    subject = [f"{arm_id}-{subject_prefix}{s}" for s in subject_ids]
    return Patients(arm_id, indices.copy(), subject, cov, theta, eta)
