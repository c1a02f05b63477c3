"""The trial protocol file: a pydantic schema, frozen, strict about unknown keys and units."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cartwin.vocabulary import BY_FIELD, DESCRIPTORS

SCHEMA_VERSION = 1

# Bounds on the work a protocol may ask for, checked before anything runs (larger trials are
# split into several runs).
MAX_PATIENTS_PER_ARM = 1_000_000
MAX_SCHEDULE_DAYS = 10_000
# log-scale inter-individual SD: 3 already spreads one SD over a factor of 20
MAX_VARIABILITY_SD = 3.0


class _Strict(BaseModel):
    # strict: a value of another type is refused, never converted (no "5" for 5, no true for 1,
    # no "no" for false); NaN and infinity are refused in every number
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def _bounds_ordered(dist):
    low, high = getattr(dist, "low", None), getattr(dist, "high", None)
    if low is not None and high is not None and high <= low:
        raise ValueError(f"{dist.dist}: high ({high:g}) must be greater than low ({low:g})")
    return dist


# --- distributions ---------------------------------------------------------------------------
class Fixed(_Strict):
    dist: Literal["fixed"]
    value: float


class Normal(_Strict):
    dist: Literal["normal"]
    mean: float
    sd: float = Field(ge=0)
    low: float | None = None
    high: float | None = None

    _ordered = model_validator(mode="after")(_bounds_ordered)


class LogNormal(_Strict):
    dist: Literal["lognormal"]
    median: float = Field(gt=0)
    cv: float = Field(ge=0, le=100, description="coefficient of variation of the log-normal, e.g. 0.2 (at most 100)")
    low: float | None = None
    high: float | None = None

    _ordered = model_validator(mode="after")(_bounds_ordered)


class Uniform(_Strict):
    dist: Literal["uniform"]
    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self):
        if self.high <= self.low:
            raise ValueError("uniform: high must be greater than low")
        return self


Distribution = Annotated[Union[Fixed, Normal, LogNormal, Uniform], Field(discriminator="dist")]


class Sex(_Strict):
    female: float = Field(ge=0, le=1, description="probability that a virtual patient is female")


class WithUnit(_Strict):
    unit: str
    distribution: Distribution


def _doc(field: str, what: str = "", canonical_only: bool = False) -> str:
    """A field's description from the patient vocabulary: meaning and accepted units."""
    c = BY_FIELD[field]
    units = [c.unit] if canonical_only else list(c.unit_factors)
    return f"{what or c.description} ({' or '.join(units)})"


class Disease(_Strict):
    """Baseline disease markers. Units are stated in each block."""

    dsdna: WithUnit = Field(description=_doc("dsdna"))
    c3: WithUnit = Field(description=_doc("c3"))
    c4: WithUnit = Field(description=_doc("c4"))
    proteinuria: WithUnit = Field(description=_doc("proteinuria"))
    pga: Distribution = Field(description=_doc("pga"))
    descriptors: dict[str, float] = Field(
        default_factory=dict,
        description="probability that each SLEDAI clinical descriptor is active at baseline")

    @field_validator("descriptors")
    @classmethod
    def _known(cls, v: dict[str, float]):
        unknown = sorted(set(v) - set(DESCRIPTORS))
        if unknown:
            raise ValueError(f"unknown descriptors {unknown}; known: {list(DESCRIPTORS)}")
        bad = {k: p for k, p in v.items() if not 0 <= p <= 1}
        if bad:
            raise ValueError(f"descriptor probabilities must lie in [0, 1]: {bad}")
        return v


class ExplicitPatient(_Strict):
    id: str = Field(min_length=1)
    sex: Literal["F", "M"]
    age: float = Field(description=_doc("age"))
    weight: float = Field(description=_doc("weight"))
    height: float = Field(description=_doc("height"))
    creatinine: float = Field(description=_doc("creatinine", "serum creatinine, in creatinine_unit"))
    creatinine_unit: str = BY_FIELD["creatinine"].unit
    dsdna: float = Field(description=_doc("dsdna"))
    c3: float = Field(description=_doc("c3", "baseline C3, in complement_unit"))
    c4: float = Field(description=_doc("c4", "baseline C4, in complement_unit"))
    complement_unit: str = BY_FIELD["c3"].unit
    proteinuria: float = Field(description=_doc("proteinuria", canonical_only=True))
    pga: float = Field(description=_doc("pga"))
    descriptors: list[str] = Field(default_factory=list,
                                   description="SLEDAI clinical descriptors active at baseline")

    def unit_of(self, field: str) -> str:
        """The unit this patient's value of a vocabulary field is given in."""
        return {"creatinine": self.creatinine_unit, "c3": self.complement_unit,
                "c4": self.complement_unit}.get(field, BY_FIELD[field].unit)

    @field_validator("descriptors")
    @classmethod
    def _known(cls, v: list[str]):
        unknown = sorted(set(v) - set(DESCRIPTORS))
        if unknown:
            raise ValueError(f"unknown descriptors {unknown}; known: {list(DESCRIPTORS)}")
        return v


class Population(_Strict):
    sex: Sex | None = None
    age: Distribution | None = Field(default=None, description=_doc("age"))
    weight: Distribution | None = Field(default=None, description=_doc("weight"))
    height: Distribution | None = Field(default=None, description=_doc("height"))
    creatinine: WithUnit | None = Field(default=None, description=_doc("creatinine"))
    disease: Disease | None = None
    patients: list[ExplicitPatient] | None = None

    def distribution_of(self, field: str) -> tuple[Distribution, str]:
        """The distribution of a drawn vocabulary field and the unit it is given in (disease
        markers sit in the ``disease`` block)."""
        holder = self.disease if BY_FIELD[field].kind == "disease" else self
        block = getattr(holder, field)
        if isinstance(block, WithUnit):
            return block.distribution, block.unit
        return block, BY_FIELD[field].unit

    @model_validator(mode="after")
    def _complete(self):
        drawn = {"sex": self.sex, "age": self.age, "weight": self.weight, "height": self.height,
                 "creatinine": self.creatinine, "disease": self.disease}
        if self.patients is not None:
            given = sorted(k for k, v in drawn.items() if v is not None)
            if given:
                raise ValueError(f"give either an explicit list of patients or distributions, not "
                                 f"both (also given: {given})")
            ids = [p.id for p in self.patients]
            if len(set(ids)) != len(ids):
                raise ValueError("explicit patient ids must be unique")
            if not ids:
                raise ValueError("the explicit list of patients is empty")
        else:
            missing = sorted(k for k, v in drawn.items() if v is None)
            if missing:
                raise ValueError(f"population needs distributions for {missing} "
                                 "(or an explicit list of patients)")
        return self


# --- therapy ---------------------------------------------------------------------------------
class CellsPerKg(_Strict):
    cells_per_kg: float = Field(description="CAR-T cells per kg body weight")


class FlatCells(_Strict):
    cells: float = Field(description="CAR-T cells, flat dose")


class DrugAdministration(_Strict):
    drug: Literal["fludarabine", "cyclophosphamide"]
    dose_mg_m2: float = Field(description="mg/m^2 per administration")
    days: list[float] = Field(min_length=1, description="days relative to the CAR-T infusion")
    infusion_hours: float | None = Field(default=None, gt=0, le=24)


class ProductDefinition(_Strict):
    allogeneic: bool
    edits: list[str] = Field(default_factory=list)
    targets: list[Literal["CD19", "BCMA"]] = Field(
        default_factory=lambda: ["CD19"], min_length=1, description="antigens the CAR recognises")
    description: str = ""


class Arm(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="arm identifier (letters, digits, _ . -)")
    product: str | None = Field(default=None, description="required with cartwin's own models")
    dose: CellsPerKg | FlatCells | None = Field(default=None, description="required with cartwin's own models")
    lymphodepletion: str | list[DrugAdministration] | None = Field(
        default=None, description="required with cartwin's own models")
    n: int | None = Field(default=None, ge=1, le=MAX_PATIENTS_PER_ARM, description="virtual patients in this arm")
    label: str = ""


class Schedule(_Strict):
    days: list[float] | None = Field(default=None, description="assessment days relative to infusion")
    every: float | None = Field(default=None, gt=0, description="a regular grid step in days")
    start: float | None = None
    stop: float | None = None

    @model_validator(mode="after")
    def _one_form(self):
        regular = (self.every, self.start, self.stop)
        if self.days is not None and any(v is not None for v in regular):
            raise ValueError("give either 'days' or 'every'/'start'/'stop', not both")
        if self.days is None and any(v is None for v in regular):
            raise ValueError("give 'days', or all of 'every', 'start' and 'stop'")
        if self.days is not None and not self.days:
            raise ValueError("'days' is empty")
        if self.days is not None and len(self.days) > MAX_SCHEDULE_DAYS:
            raise ValueError(f"{len(self.days)} days; at most {MAX_SCHEDULE_DAYS} assessment days")
        if self.days is None:
            if self.stop < self.start:
                raise ValueError(f"stop ({self.stop:g}) lies before start ({self.start:g})")
            steps = (self.stop - self.start) / self.every
            if steps > MAX_SCHEDULE_DAYS:
                raise ValueError(f"every = {self.every:g} from {self.start:g} to {self.stop:g} gives "
                                 f"{steps:.3g} assessment days; at most {MAX_SCHEDULE_DAYS}: use a larger step")
        return self


class SolverSettings(_Strict):
    backend: Literal["numba-bdf", "scipy-lsoda"] = Field(
        default="numba-bdf",
        description="numba-bdf: compiled variable-order BDF (fast, default); scipy-lsoda: ODEPACK "
                    "LSODA through scipy (the reference)")
    rtol: float = Field(default=1e-6, gt=0, lt=1e-2)
    atol: float = Field(default=1e-9, gt=0, lt=1e-3)


class Protocol(_Strict):
    schema_version: Literal[1] = 1
    study_id: str = Field(min_length=1)
    title: str = ""
    seed: int = Field(ge=0)
    model: str = Field(default="lupus_cart", description="a cartwin model name, or 'sbml:PATH' for an "
                       "SBML file (path relative to the protocol file) that carries its own doses")
    model_variability: dict[str, Annotated[float, Field(ge=0, le=MAX_VARIABILITY_SD)]] = Field(
        default_factory=dict, description="log-normal inter-individual SD per model parameter; "
        "overrides the model's declared variability")
    follow_up_days: float = Field(gt=0, le=3650)
    schedule: Schedule
    outputs: tuple[str, ...] | None = Field(
        default=None, strict=False, description="test codes to store in observations (default: every observable "
        "of the model); fewer outputs mean smaller runs")
    population: Population | None = Field(default=None, description="required with cartwin's own models")
    arms: list[Arm] = Field(min_length=1)
    products: dict[str, ProductDefinition] = Field(default_factory=dict)
    regimens: dict[str, list[DrugAdministration]] = Field(default_factory=dict)
    solver: SolverSettings = SolverSettings()
