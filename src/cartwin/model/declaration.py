"""The vocabulary in which a model is declared: once, as data.

A model is a set of named quantities, each with its unit, meaning and source. The equations,
the generated code, the documentation and any export are derived from this one declaration,
so they cannot drift apart. Expressions are plain maths strings (``+ - * / **``, ``exp``,
``log``, ``sqrt``) over the names declared in the same model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from cartwin.vocabulary import PATIENT_COVARIATES, covariate

ASSUMED = "assumed"


_LATER_PARAMETER_FIELDS = {"se_log": 0.0, "se_source": ""}


class ModelDeclarationError(ValueError):
    """The declaration breaks an invariant (unknown name, missing source, bad unit)."""


@dataclass(frozen=True)
class Parameter:
    name: str
    value: float
    unit: str
    description: str
    source: str
    """A citation, or ``"assumed: <reason>"``, or ``"calibrated: <target>"``."""
    group: str = ""
    iiv: float = 0.0
    """Standard deviation of the log-normal inter-individual variability (omega); 0 = none."""
    lower: float | None = None
    upper: float | None = None
    """Physiological bounds used to check overrides and typical values."""
    se_log: float = 0.0
    """Uncertainty of the typical value: standard error of its logarithm (about the relative SE);
    0 = none declared. Replicate trials draw typical values from it (cartwin.population.uncertainty)."""
    se_source: str = ""
    """Where ``se_log`` comes from: a citation, or ``"assumed: <reason>"``; required with se_log."""

    @property
    def is_assumed(self) -> bool:
        return self.source.lower().startswith((ASSUMED, "calibrated"))

    def within_bounds(self, value: float) -> bool:
        """Whether ``value`` lies within the declared bounds (inclusive; a missing bound is open)."""
        return (self.lower is None or value >= self.lower) and (self.upper is None or value <= self.upper)

    @property
    def bounds_text(self) -> str:
        """The declared bounds as a message gives them, with the unit: ``0-0.9``, ``0.5-inf 1/day``."""
        text = f"{self.lower if self.lower is not None else '-inf'}-{self.upper if self.upper is not None else 'inf'}"
        return text + (f" {self.unit}" if self.unit not in ("", "1") else "")


@dataclass(frozen=True)
class Covariate:
    """A per-patient input that the population supplies (weight, creatinine clearance, ...).
    Its name and unit are those of the patient vocabulary (:data:`cartwin.vocabulary.PATIENT_COVARIATES`):
    build it with :func:`patient_covariates`."""

    name: str
    unit: str
    description: str


def patient_covariates(*names: str) -> tuple[Covariate, ...]:
    """The covariates a model needs, named from the patient vocabulary, which gives their unit
    and meaning."""
    return tuple(Covariate(c.name, c.unit, c.description) for c in map(covariate, names))


@dataclass(frozen=True)
class Assignment:
    """A named intermediate quantity. Constant per patient when it depends on no state."""

    name: str
    expression: str
    unit: str
    description: str


@dataclass(frozen=True)
class State:
    name: str
    unit: str
    description: str
    initial: str
    rate: str
    group: str = ""


@dataclass(frozen=True)
class DoseInput:
    """A route through which doses enter a state: amount in ``unit`` times ``scale``."""

    name: str
    state: str
    unit: str
    scale: str
    description: str


@dataclass(frozen=True)
class Observable:
    """A clinical read-out computed from states, in the vocabulary's canonical unit."""

    test: str
    expression: str
    unit: str
    description: str


@dataclass(frozen=True)
class Correlation:
    """Correlation between the log-normal random effects of two parameters."""

    first: str
    second: str
    rho: float
    source: str


@dataclass(frozen=True)
class Model:
    name: str
    version: str
    description: str
    parameters: tuple[Parameter, ...]
    covariates: tuple[Covariate, ...]
    assignments: tuple[Assignment, ...]
    states: tuple[State, ...]
    doses: tuple[DoseInput, ...]
    observables: tuple[Observable, ...]
    correlations: tuple[Correlation, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        names: list[str] = (
            [p.name for p in self.parameters]
            + [c.name for c in self.covariates]
            + [a.name for a in self.assignments]
            + [s.name for s in self.states]
        )
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ModelDeclarationError(f"model {self.name}: names declared twice: {dupes}")
        for p in self.parameters:
            if not p.source.strip():
                raise ModelDeclarationError(
                    f"model {self.name}: parameter {p.name} has no source; cite one or write "
                    "'assumed: <reason>'"
                )
            if not p.unit:
                raise ModelDeclarationError(f"model {self.name}: parameter {p.name} has no unit")
            if p.iiv < 0:
                raise ModelDeclarationError(f"model {self.name}: parameter {p.name} has iiv < 0")
            if p.se_log < 0 or (p.se_log > 0 and not p.se_source.strip()):
                raise ModelDeclarationError(
                    f"model {self.name}: parameter {p.name} has se_log {p.se_log}; it must be >= 0, and "
                    "a positive one needs se_source (a citation, or 'assumed: <reason>')")
        state_names = {s.name for s in self.states}
        for d in self.doses:
            if d.state not in state_names:
                raise ModelDeclarationError(
                    f"model {self.name}: dose input {d.name} targets unknown state {d.state}"
                )
        for c in self.covariates:
            known = PATIENT_COVARIATES.get(c.name)
            if known is None or known.unit != c.unit:
                raise ModelDeclarationError(
                    f"model {self.name}: covariate {c.name} ({c.unit}) is not in the patient vocabulary "
                    f"with that unit; a population supplies only {list(PATIENT_COVARIATES)} "
                    "(declare it in cartwin/vocabulary.py first)"
                )
        param_names = {p.name for p in self.parameters}
        for c in self.correlations:
            for n in (c.first, c.second):
                if n not in param_names:
                    raise ModelDeclarationError(
                        f"model {self.name}: correlation names unknown parameter {n}"
                    )
            if not -1 < c.rho < 1:
                raise ModelDeclarationError(f"model {self.name}: correlation {c} outside (-1, 1)")

    # Lookups -------------------------------------------------------------------------------
    def parameter(self, name: str) -> Parameter:
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.states)

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    @property
    def covariate_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.covariates)

    def dose_input(self, name: str) -> DoseInput:
        for d in self.doses:
            if d.name == name:
                return d
        raise KeyError(name)

    def content_hash(self) -> str:
        record = asdict(self)
        # parameter fields added later leave the hash of a declaration that does not use them as it was
        for p in record["parameters"]:
            for key, default in _LATER_PARAMETER_FIELDS.items():
                if p.get(key) == default:
                    del p[key]
        payload = json.dumps(record, sort_keys=True, default=str).encode()
        return hashlib.sha256(payload).hexdigest()[:16]
