"""Covariates drawn jointly: a Gaussian copula over the drawn continuous covariates.

Each virtual patient draws one uniform per covariate from its own stream (cartwin.population.virtual).
Without correlations those uniforms go straight into each covariate's inverse CDF. With
correlations, the uniforms of the correlated covariates are turned into normal scores
``z = Phi^-1(u)``, mixed by the Cholesky factor ``L`` of the correlation matrix (``z' = L z``, row by
row so that a patient does not depend on its chunk) and turned back, ``u' = Phi(z')``; each
covariate keeps its declared marginal distribution. ``rho`` is therefore the correlation of the
normal scores: for a normal or log-normal covariate without truncation it is the Pearson correlation
of the value or of its logarithm (the "multivariate normal on the transformed scale"); truncation
to the physiologic range weakens it slightly.

The cited correlations (``correlations = "cited"`` in a protocol) are declared once, below; each
names its source, or says it is assumed and why.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from cartwin.vocabulary import BY_FIELD


@dataclass(frozen=True)
class Correlation:
    first: str  # protocol field
    second: str
    rho: float
    source: str


CITED: tuple[Correlation, ...] = (
    Correlation("weight", "height", 0.45,
                "within-sex correlations of adult weight and height of about 0.3-0.5 in the samples "
                "analysed by Benn RT (Some mathematical properties of weight-for-height indices used as "
                "measures of adiposity. Br J Prev Soc Med 1971;25:42-50; the range is not re-checked "
                "against that paper, to be verified); 0.45 chosen inside it, on log weight"),
    Correlation("age", "creatinine", 0.15,
                "assumed: weak. Serum creatinine rises little with age in adults because creatinine "
                "production falls with muscle mass as clearance falls (Cockcroft DW, Gault MH. "
                "Nephron 1976;16:31-41: excretion per kg fell with age while serum creatinine "
                "changed little); no correlation coefficient is reported there"),
    Correlation("c3", "c4", 0.6,
                "assumed: C3 and C4 fall together with classical-pathway consumption in active SLE "
                "(Ho A, Barr SG, Magder LS, Petri M. Arthritis Rheum 2001;44:2350-7, Hopkins Lupus "
                "Cohort); the coefficient is not taken from that paper"),
    Correlation("dsdna", "c3", -0.3,
                "assumed: anti-dsDNA rises as C3 falls in active SLE (Ho A et al. Arthritis Rheum "
                "2001;44:2350-7); the coefficient is not taken from that paper"),
)

CORRELATABLE: tuple[str, ...] = tuple(c.field for c in BY_FIELD.values()
                                      if not c.derived and c.kind not in ("descriptor",) and c.field != "sex")
"""The protocol fields whose draws can be correlated: the drawn continuous covariates."""


def declared(correlations) -> tuple[Correlation, ...]:
    """A protocol's ``population.correlations`` (``"cited"``, a list, or None) as correlations."""
    if correlations is None:
        return ()
    if correlations == "cited":
        return CITED
    return tuple(Correlation(c.first, c.second, float(c.rho), c.source) for c in correlations)


def problems(correlations, where: str = "population.correlations") -> list[str]:
    """What is wrong with a list of correlations: unknown fields, pairs given twice, a matrix that
    is not a correlation matrix."""
    out = []
    pairs = declared(correlations)
    seen = set()
    for i, c in enumerate(pairs):
        for f in (c.first, c.second):
            if f not in CORRELATABLE:
                out.append(f"{where}[{i}]: {f!r} is not a drawn continuous covariate; use one of {list(CORRELATABLE)}")
        key = frozenset((c.first, c.second))
        if c.first == c.second:
            out.append(f"{where}[{i}]: a covariate cannot be correlated with itself ({c.first})")
        elif key in seen:
            out.append(f"{where}[{i}]: the pair {c.first}/{c.second} is given twice")
        seen.add(key)
    if not out and pairs:
        fields, matrix = matrix_of(pairs)
        if np.linalg.eigvalsh(matrix).min() <= 1e-10:
            out.append(f"{where}: the correlations of {fields} do not form a valid (positive definite) "
                       "correlation matrix; weaken some of them")
    return out


def matrix_of(pairs: tuple[Correlation, ...]) -> tuple[list[str], np.ndarray]:
    """The correlated fields (in CORRELATABLE order) and their correlation matrix."""
    fields = [f for f in CORRELATABLE if any(f in (c.first, c.second) for c in pairs)]
    index = {f: i for i, f in enumerate(fields)}
    matrix = np.eye(len(fields))
    for c in pairs:
        i, j = index[c.first], index[c.second]
        matrix[i, j] = matrix[j, i] = c.rho
    return fields, matrix


def correlate(uniforms: dict[str, np.ndarray], pairs: tuple[Correlation, ...]) -> dict[str, np.ndarray]:
    """The uniforms of the correlated fields mixed through the Gaussian copula; others unchanged.
    ``uniforms``: protocol field -> (N,) independent uniforms."""
    if not pairs:
        return uniforms
    fields, matrix = matrix_of(pairs)
    chol = np.linalg.cholesky(matrix)
    eps = 1e-15
    z = np.column_stack([special.ndtri(np.clip(uniforms[f], eps, 1 - eps)) for f in fields])
    # row by row (an elementwise product and a sum), not a matrix product, whose summation order
    # may change with the number of rows
    mixed = (z[:, None, :] * chol[None, :, :]).sum(axis=-1)
    out = dict(uniforms)
    for k, f in enumerate(fields):
        out[f] = special.ndtr(mixed[:, k])
    return out
