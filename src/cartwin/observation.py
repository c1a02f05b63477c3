"""The observation model: residual (assay) error and the lower limit of quantification.

The solver gives the true value f of each read-out; a laboratory reports f with its assay's error
and cannot quantify below its LLOQ. ``data/observation_model.toml`` declares, per test code, the
error model (proportional, additive, combined or exponential), its SDs, the LLOQ and their sources;
it may also declare derived tests (transgene copies/ug DNA by qPCR from CAR-T cells/uL and white
cells). :func:`observe` turns true values into observed ones after the solve.

Random numbers: observation *j* of test T of patient *i* of arm *a* is the *j*-th standard normal of
its own stream ``SeedSequence(seed, spawn_key=(crc32(a), i, OBSERVATION_KEY, crc32(T)))``: the
same whatever the chunk, the worker, the other tests stored, or whether the observation model was
on for other tests; the patient's own stream (covariates, parameters) is untouched.
"""

from __future__ import annotations

import math
import tomllib
import zlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

ERROR_MODELS = ("proportional", "additive", "combined", "exponential")
OBSERVATION_KEY = zlib.crc32(b"observation")  # separates these streams from the patient's own
SOURCE = "src/cartwin/data/observation_model.toml"


class ObservationModelError(ValueError):
    """The observation-model table is malformed; the message names the file and the field."""


@dataclass(frozen=True)
class AssayError:
    """The residual error and LLOQ of one test code."""

    test: str
    method: str
    unit: str
    error: str  # one of ERROR_MODELS
    cv: float = 0.0  # proportional SD, a fraction of the true value
    sd: float = 0.0  # additive SD, in ``unit``
    sd_log: float = 0.0  # SD on the natural-log scale (exponential)
    lloq: float | None = None  # in ``unit``
    source: str = ""
    derived: str | None = None  # name of a [derived] formula, for tests the model does not read out

    def sd_at(self, f: np.ndarray) -> np.ndarray:
        """SD of the observation around the true value ``f`` on the scale the error is additive
        on: the natural scale, or the log scale for ``exponential``."""
        f = np.asarray(f, float)
        if self.error == "proportional":
            return self.cv * np.abs(f)
        if self.error == "additive":
            return np.full(f.shape, self.sd)
        if self.error == "combined":
            return np.sqrt(self.sd ** 2 + (self.cv * f) ** 2)
        return np.full(f.shape, self.sd_log)

    def apply(self, f: np.ndarray, eps: np.ndarray) -> np.ndarray:
        """Observed values from true values ``f`` and standard normals ``eps`` (same shape)."""
        f = np.asarray(f, float)
        if self.error == "exponential":
            with np.errstate(divide="ignore", invalid="ignore"):
                return f * np.exp(self.sd_log * eps)
        return f + self.sd_at(f) * eps


@dataclass(frozen=True)
class Derived:
    """A test computed from read-outs of the model: CAR transgene copies per ug of blood DNA."""

    test: str
    inputs: tuple[str, ...]
    vcn: float
    cells_per_ug: float

    def compute(self, cart: np.ndarray, wbc: np.ndarray) -> np.ndarray:
        """copies/ug = CART (cells/uL) x VCN x cells per ug DNA / (1000 x WBC (10^9/L))."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(cart, float) * self.vcn * self.cells_per_ug / (1000.0 * np.asarray(wbc, float))


@dataclass(frozen=True)
class ObservationModel:
    name: str
    version: str
    assays: dict[str, AssayError]
    derived: dict[str, Derived]  # by derived test code


def _number(value, where: str, positive: bool = False, allow_zero: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ObservationModelError(f"{where}: expected a number, got {value!r}")
    if value < 0 or (positive and value == 0 and not allow_zero):
        raise ObservationModelError(f"{where}: must be {'> 0' if not allow_zero else '>= 0'}, got {value}")
    return float(value)


def parse_observation_model(data: dict, source: str = SOURCE) -> ObservationModel:
    """Check and read an observation-model table (the TOML as a dict)."""
    from cartwin.vocabulary import test_codes

    codes = test_codes()
    tests = data.get("tests")
    if not isinstance(tests, dict) or not tests:
        raise ObservationModelError(f"{source}: no [tests.CODE] tables")
    formulas = data.get("derived", {})
    assays, derived = {}, {}
    for code, row in tests.items():
        where = f"{source}: [tests.{code}]"
        if code not in codes:
            raise ObservationModelError(f"{where}: {code} is not a test code of data/test_codes.csv")
        unknown = set(row) - {"method", "unit", "error", "cv", "sd", "sd_log", "lloq", "source", "derived"}
        if unknown:
            raise ObservationModelError(f"{where}: unknown fields {sorted(unknown)}")
        if row.get("unit") != codes[code].unit:
            raise ObservationModelError(f"{where}.unit: {row.get('unit')!r}, but {code} is reported in "
                                        f"{codes[code].unit!r}; give figures in the canonical unit")
        error = row.get("error")
        if error not in ERROR_MODELS:
            raise ObservationModelError(f"{where}.error: {error!r}; use one of {list(ERROR_MODELS)}")
        needs = {"proportional": ("cv",), "additive": ("sd",), "combined": ("cv", "sd"),
                 "exponential": ("sd_log",)}[error]
        for name in needs:
            if name not in row:
                raise ObservationModelError(f"{where}: error '{error}' needs {name}")
        extra = ({"cv", "sd", "sd_log"} - set(needs)) & set(row)
        if extra:
            raise ObservationModelError(f"{where}: error '{error}' takes {list(needs)}, not {sorted(extra)}")
        if not str(row.get("source", "")).strip():
            raise ObservationModelError(f"{where}.source: every figure needs a source (or 'assumed' and why)")
        lloq = row.get("lloq")
        assay = AssayError(
            test=code, method=str(row.get("method", "")), unit=row["unit"], error=error,
            cv=_number(row.get("cv", 0.0), f"{where}.cv"), sd=_number(row.get("sd", 0.0), f"{where}.sd"),
            sd_log=_number(row.get("sd_log", 0.0), f"{where}.sd_log"),
            lloq=None if lloq is None else _number(lloq, f"{where}.lloq", positive=True, allow_zero=False),
            source=str(row["source"]), derived=row.get("derived"))
        assays[code] = assay
        if assay.derived is not None:
            formula = formulas.get(assay.derived)
            if assay.derived != "copies_per_ug_dna" or not isinstance(formula, dict):
                raise ObservationModelError(f"{where}.derived: {assay.derived!r} is not a [derived] formula "
                                            "cartwin knows (copies_per_ug_dna)")
            fw = f"{source}: [derived.{assay.derived}]"
            inputs = tuple(formula.get("inputs", ()))
            if inputs != ("CART", "WBC"):
                raise ObservationModelError(f"{fw}.inputs: copies_per_ug_dna takes ['CART', 'WBC'], got {list(inputs)}")
            for name in ("vcn_source", "cells_per_ug_source"):
                if not str(formula.get(name, "")).strip():
                    raise ObservationModelError(f"{fw}.{name}: every figure needs a source")
            derived[code] = Derived(code, inputs, _number(formula.get("vcn"), f"{fw}.vcn"),
                                    _number(formula.get("cells_per_ug"), f"{fw}.cells_per_ug"))
    return ObservationModel(str(data.get("name", "")), str(data.get("version", "")), assays, derived)


def _table_text() -> str:
    return resources.files("cartwin.data").joinpath("observation_model.toml").read_text()


@cache
def observation_model() -> ObservationModel:
    """cartwin's observation model (``data/observation_model.toml``)."""
    return parse_observation_model(tomllib.loads(_table_text()))


def table_sha256() -> str:
    """SHA-256 of the observation-model table, for the manifest."""
    import hashlib
    return hashlib.sha256(_table_text().encode()).hexdigest()


def observation_stream(seed: int, arm_key: int, index: int, test: str) -> np.random.Generator:
    """The stream of the observation errors of one test of one patient."""
    return np.random.default_rng(np.random.SeedSequence(
        seed, spawn_key=(arm_key, int(index), OBSERVATION_KEY, zlib.crc32(test.encode()))))


def standard_normals(seed: int, arm_key: int, indices: np.ndarray, test: str, n: int) -> np.ndarray:
    """(patients, n) standard normals: row *i* from patient ``indices[i]``'s stream of ``test``."""
    return np.stack([observation_stream(seed, arm_key, i, test).standard_normal(n) for i in indices]) \
        if len(indices) else np.zeros((0, n))


@dataclass(frozen=True)
class Observed:
    """Observations of N patients at T days for O tests, true and observed."""

    tests: tuple[str, ...]
    units: tuple[str, ...]
    true: np.ndarray  # (N, T, O) the model's values
    observed: np.ndarray  # (N, T, O) with the assay's error; = true for tests without an error model
    lloq: np.ndarray  # (O,) NaN where the test has no limit
    blq: np.ndarray  # (N, T, O) bool: observed < LLOQ


def observe(tests: tuple[str, ...], units: tuple[str, ...], true: np.ndarray, seed: int, arm_key: int,
            indices: np.ndarray, model: ObservationModel | None = None) -> Observed:
    """Apply the observation model to ``true`` (N, T, O) values of ``tests``; derived tests whose
    inputs are among ``tests`` are appended. Deterministic in (seed, arm, patient index, test)."""
    model = model or observation_model()
    true = np.asarray(true, float)
    tests, units = tuple(tests), tuple(units)
    input_units = {"CART": "cells/uL", "WBC": "10^9/L"}  # the units copies_per_ug_dna expects
    for code, formula in model.derived.items():
        if code not in tests and all(t in tests and units[tests.index(t)] == input_units[t] for t in formula.inputs):
            cart, wbc = (true[:, :, tests.index(t)] for t in formula.inputs)
            true = np.concatenate([true, formula.compute(cart, wbc)[:, :, None]], axis=2)
            tests, units = tests + (code,), units + (model.assays[code].unit,)
    observed = true.copy()
    lloq = np.full(len(tests), np.nan)
    n, t = true.shape[:2]
    for k, code in enumerate(tests):
        assay = model.assays.get(code)
        if assay is None or assay.unit != units[k]:  # e.g. an SBML model's read-out of the same name
            continue
        eps = standard_normals(seed, arm_key, np.asarray(indices), code, t)
        observed[:, :, k] = assay.apply(true[:, :, k], eps)
        if assay.lloq is not None:
            lloq[k] = assay.lloq
    with np.errstate(invalid="ignore"):
        blq = observed < lloq[None, None, :]  # NaN limits and NaN values compare False
    return Observed(tests, units, true, observed, lloq, blq)


def m3_log_likelihood(lloq: float, prediction: float, sd: float) -> float:
    """log P(y < LLOQ) of a censored observation (Beal's M3): log Phi((LLOQ - prediction) / sd),
    with ``prediction`` and ``sd`` on the scale the error is additive on."""
    from scipy.special import log_ndtr
    return float(log_ndtr((lloq - prediction) / sd))
