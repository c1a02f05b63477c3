"""The trial protocol file: a pydantic schema, frozen, strict about unknown keys and units."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cartwin.vocabulary import BASELINE_DAY_LIMIT, BY_FIELD, DESCRIPTORS

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


# the field of a listed patient that gives the unit of a vocabulary field given in more than one unit
PATIENT_UNIT_FIELDS = {"creatinine": "creatinine_unit", "c3": "complement_unit", "c4": "complement_unit"}


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
        return getattr(self, PATIENT_UNIT_FIELDS[field]) if field in PATIENT_UNIT_FIELDS else BY_FIELD[field].unit

    @field_validator("descriptors")
    @classmethod
    def _known(cls, v: list[str]):
        unknown = sorted(set(v) - set(DESCRIPTORS))
        if unknown:
            raise ValueError(f"unknown descriptors {unknown}; known: {list(DESCRIPTORS)}")
        return v


class CovariateCorrelation(_Strict):
    """A correlation between two drawn covariates, on the normal-score scale of a Gaussian copula."""

    first: str = Field(description="protocol field of a drawn continuous covariate (e.g. weight)")
    second: str = Field(description="protocol field of another drawn continuous covariate (e.g. height)")
    rho: float = Field(gt=-1, lt=1, description="correlation of the two covariates' normal scores")
    source: str = Field(min_length=1, description="a citation, or 'assumed: <reason>'")


class Population(_Strict):
    sex: Sex | None = None
    age: Distribution | None = Field(default=None, description=_doc("age"))
    weight: Distribution | None = Field(default=None, description=_doc("weight"))
    height: Distribution | None = Field(default=None, description=_doc("height"))
    creatinine: WithUnit | None = Field(default=None, description=_doc("creatinine"))
    disease: Disease | None = None
    patients: list[ExplicitPatient] | None = None
    correlations: Literal["cited"] | list[CovariateCorrelation] | None = Field(
        default=None, description="draw covariates jointly (Gaussian copula): 'cited' for cartwin's "
        "cited correlations (docs/protocol.md), or a list of pairs; default: independent draws")
    cohort: str | None = Field(
        default=None, description="a CSV file of real patients' baseline characteristics (path "
        "relative to the protocol file) from which each arm's patients are drawn")
    cohort_sampling: Literal["bootstrap", "in_order"] = Field(
        default="bootstrap", description="bootstrap: each virtual patient is a row drawn at random "
        "(with replacement) from the cohort; in_order: patient i is row i (repeating the table)")

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
        if self.cohort is not None:
            given = sorted(k for k, v in drawn.items() if v is not None)
            if given or self.patients is not None or self.correlations is not None:
                raise ValueError(f"a cohort file replaces distributions, correlations and explicit "
                                 f"patients; remove {given + (['patients'] if self.patients is not None else []) + (['correlations'] if self.correlations is not None else [])}")
            return self
        if self.patients is not None:
            if self.correlations is not None:
                raise ValueError("correlations apply to drawn covariates, not to an explicit list of patients")
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
    backend: Literal["numba-rodas4", "numba-bdf", "scipy-lsoda", "jax-diffrax"] = Field(
        default="numba-rodas4",
        description="numba-rodas4: compiled Rosenbrock method of order 4 (the default: the fastest at "
                    "matched accuracy on cartwin's models); numba-bdf: compiled variable-order BDF (the "
                    "better choice below an error of about 1e-5); scipy-lsoda: ODEPACK LSODA through scipy "
                    "(the reference, and the default for an imported SBML model); jax-diffrax: the model "
                    "in JAX, solved with diffrax (optional extra cartwin[gpu]; runs on a GPU when JAX sees one)")
    rtol: float | None = Field(default=None, gt=0, lt=1e-2,
                               description="relative tolerance; default the backend's own: 1e-5 for "
                                           "numba-rodas4, 1e-6 for the others (equal accuracy: "
                                           "docs/performance.md)")
    atol: float | None = Field(default=None, gt=0, lt=1e-3,
                               description="absolute tolerance, in each state's unit; default the "
                                           "backend's own: 1e-8 for numba-rodas4, 1e-9 for the others")


# --- rules that react to the simulated patient (evaluated inside the simulation) ------------
class RuleCondition(_Strict):
    """One test of a read-out on a daily check: exactly one comparison."""

    test: str = Field(description="a read-out (test code) of the model, e.g. NEUT, BCELL, PGA, LYM; or "
                      "CRS_GRADE, the ASTCT 2019 CRS grade of the day from TEMP, HYPOTEN, HYPOXIA and "
                      "ANTICYT (the clinical rule table crs_icans.toml)")
    below: float | None = Field(default=None, description="holds when the value is < this")
    above: float | None = Field(default=None, description="holds when the value is > this")
    at_least: float | None = Field(default=None, description="holds when the value is >= this")
    at_most: float | None = Field(default=None, description="holds when the value is <= this")
    for_days: int = Field(default=1, ge=1, le=365,
                          description="the comparison must hold on this many consecutive daily checks")

    @model_validator(mode="after")
    def _one_comparison(self):
        given = [k for k in ("below", "above", "at_least", "at_most") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"condition on {self.test}: give exactly one of below, above, at_least, "
                             f"at_most (given: {given or 'none'})")
        return self


class RuleDose(_Strict):
    """What a rule gives: a drug, an amount (flat or per kg) and a course of ``times`` doses."""

    drug: Literal["tocilizumab", "dexamethasone", "methylprednisolone", "filgrastim", "car-t"]
    mg: float | None = Field(default=None, gt=0, description="flat dose in mg")
    mg_per_kg: float | None = Field(default=None, gt=0, description="mg per kg body weight")
    max_mg: float | None = Field(default=None, gt=0, description="cap of a per-kg dose, mg")
    ug_per_kg: float | None = Field(default=None, gt=0, description="ug per kg (filgrastim)")
    cells_per_kg: float | None = Field(default=None, gt=0, description="CAR-T cells per kg (car-t)")
    cells: float | None = Field(default=None, gt=0, description="CAR-T cells, flat (car-t)")
    times: int = Field(default=1, ge=1, le=60, description="doses in the course")
    every_days: float = Field(default=1.0, gt=0, description="days between the doses of a course")
    infusion_hours: float | None = Field(default=None, ge=0, le=24,
                                         description="infusion length; default the drug's usual one")

    @model_validator(mode="after")
    def _one_amount(self):
        given = [k for k in ("mg", "mg_per_kg", "ug_per_kg", "cells_per_kg", "cells") if getattr(self, k) is not None]
        allowed = {"car-t": {"cells_per_kg", "cells"}, "filgrastim": {"ug_per_kg"}}.get(self.drug, {"mg", "mg_per_kg"})
        if len(given) != 1 or given[0] not in allowed:
            raise ValueError(f"{self.drug}: give exactly one amount of {sorted(allowed)} (given: {given or 'none'})")
        if self.max_mg is not None and given[0] != "mg_per_kg":
            raise ValueError(f"{self.drug}: max_mg caps a mg_per_kg dose only")
        return self


class Deferral(_Strict):
    """Defer lymphodepletion when counts are low at screening (the first lymphodepletion day)."""

    days: float = Field(gt=0, le=90, description="days each deferral lasts")
    times: int = Field(default=1, ge=1, le=10, description="deferrals before ``then`` applies")
    then: Literal["proceed", "reduce", "omit"] = Field(
        default="proceed", description="if counts are still low after the deferrals: give the planned "
        "lymphodepletion, reduce it by ``fraction``, or omit it (CAR-T without lymphodepletion)")
    fraction: float | None = Field(default=None, gt=0, lt=1, description="dose fraction given with then = 'reduce'")

    @model_validator(mode="after")
    def _fraction(self):
        if (self.then == "reduce") != (self.fraction is not None):
            raise ValueError("defer_lymphodepletion: 'fraction' is required with then = 'reduce' and only then")
        return self


class Rule(_Strict):
    """A rule that reacts to the simulated patient: when all conditions hold on a daily check
    within [from_day, to_day], give a dose (or defer lymphodepletion)."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="rule identifier, recorded with each event it causes")
    when: list[RuleCondition] = Field(min_length=1, description="all must hold")
    from_day: float = Field(default=0.0, description="first daily check, day relative to infusion")
    to_day: float | None = Field(default=None, description="last daily check (default: end of follow-up)")
    give: RuleDose | None = None
    defer_lymphodepletion: Deferral | None = None
    max_times: int = Field(default=1, ge=1, le=100, description="how often the rule may fire per patient")
    min_interval_days: float | None = Field(
        default=None, ge=0, description="days from one firing to the next check that may fire again "
        "(default: the length of the course, times x every_days)")
    arms: list[str] | None = Field(default=None, description="arms the rule applies to (default: all)")
    indication: str = Field(default="", description="why the drug is given (CDISC CMINDC), e.g. 'CRS grade >= 2'")
    source: str = Field(default="", description="the guideline or trial protocol the rule follows")

    @model_validator(mode="after")
    def _one_action(self):
        if (self.give is None) == (self.defer_lymphodepletion is None):
            raise ValueError(f"rule {self.id}: give exactly one of 'give' and 'defer_lymphodepletion'")
        if self.to_day is not None and self.to_day < self.from_day:
            raise ValueError(f"rule {self.id}: to_day {self.to_day} is before from_day {self.from_day}")
        return self


class ObservationModelSettings(_Strict):
    enabled: bool = Field(
        default=False,
        description="apply the observation model (src/cartwin/data/observation_model.toml) after the "
                    "solve: assay error, LLOQ and BLQ flags; observations keep the true value beside "
                    "the observed one, and scoring uses the observed one")


class StudyCalendar(_Strict):
    """Calendar facts used only by exports (CDISC --DTC dates, DM COUNTRY); simulation ignores them."""

    start_date: date | None = Field(
        default=None, description="study start date (ISO 8601, e.g. 2024-01-15): the calendar date "
        "of the study's earliest protocol day (screening or first lymphodepleting dose); CDISC dates "
        "count from it. Default: 2000-01-01, a nominal date")
    country: str | None = Field(
        default=None, pattern=r"^[A-Z]{3}$", description="ISO 3166-1 alpha-3 country of the study "
        "(CDISC DM COUNTRY), e.g. DEU. Default: ZZZ (user-assigned code: no real country)")


# --- realism: parameter uncertainty and trial conduct ----------------------------------------
class Uncertainty(_Strict):
    """Replicate trials, each with its own population parameters drawn from their uncertainty."""

    replicates: int = Field(ge=2, le=10000, description="number of replicate trials")
    source: Literal["model", "fit"] = Field(
        default="model", description="model: the model's declared uncertainty (standard errors of the "
        "log typical values, with se_log below); fit: the estimates and covariance of a `cartwin fit`")
    fit: str | None = Field(default=None, description="with source = 'fit': the fit's output directory "
                            "or its estimates.json, or a posterior sample table (.csv/.parquet, a column per "
                            "parameter, optional omega_<PARAM>; replicate r takes row r); path relative to "
                            "the protocol file")
    se_log: dict[str, float] = Field(
        default_factory=dict, description="with source = 'model': standard error of the log typical "
        "value (about the relative SE) per model parameter; adds to or overrides the model's declared "
        "uncertainty")
    se_source: str = Field(default="", description="where the se_log values come from (a citation, or "
                           "'assumed: <reason>'); required with se_log")
    patients: Literal["resample", "same"] = Field(
        default="resample", description="resample: each replicate draws new virtual patients (the spread "
        "across replicates is what repeating the trial would show); same: every replicate has the same "
        "patients (the spread is parameter uncertainty alone)")
    interval: float = Field(default=0.9, gt=0, lt=1, description="coverage of the interval across replicates")


class Visits(_Strict):
    missed_probability: float = Field(
        default=0.0, ge=0, lt=1, description="probability that a patient misses a scheduled visit after "
        "day 0 (every test of that day missing); visits on or before day 0 are always kept")
    window_days: float = Field(
        default=0.0, ge=0, le=60, description="visits after day 0 happen up to this many whole days "
        "early or late (uniformly), kept between the halfway points to the neighbouring visits")


class DropoutHazard(_Strict):
    """A hazard of withdrawal, while a condition on the patient's observations holds."""

    reason: Literal["toxicity", "lack_of_efficacy", "other"]
    hazard_per_day: float = Field(gt=0, le=10, description="withdrawal hazard (1/day) while the condition holds")
    test: str | None = Field(default=None, description="test code the condition reads (none: the hazard "
                             "always applies)")
    op: Literal["<", "<=", ">", ">="] | None = None
    value: float | None = Field(default=None, description="threshold, in the test's unit (or a multiple "
                                "of the patient's baseline with relative_to_baseline)")
    relative_to_baseline: bool = Field(default=False, description="compare with value x the patient's "
                                       "baseline (the last value on or before day 0)")
    from_day: float = Field(default=0.0, ge=0, description="the hazard applies from this day")
    until_day: float | None = Field(default=None, description="and until this day (default: the end)")

    @model_validator(mode="after")
    def _condition(self):
        given = [self.test is not None, self.op is not None, self.value is not None]
        if any(given) and not all(given):
            raise ValueError("a condition needs test, op and value together (or none of them)")
        if self.relative_to_baseline and self.test is None:
            raise ValueError("relative_to_baseline needs a condition (test, op, value)")
        if self.until_day is not None and self.until_day <= self.from_day:
            raise ValueError("until_day must be after from_day")
        return self


class Conduct(_Strict):
    """How the trial is conducted: missed visits and withdrawal."""

    visits: Visits = Visits()
    dropout: list[DropoutHazard] = Field(default_factory=list)


class StoreSettings(_Strict):
    observations_per_arm: int | Literal["all"] = Field(
        default=1000, description="how many patients of each arm (the first, by index) keep their "
        "observations (and sampling events and per-visit scores) in the run directory; every "
        "patient's endpoints and clinical scores are computed as the run streams. 'all' stores "
        "every patient's observations")

    @field_validator("observations_per_arm")
    @classmethod
    def _positive(cls, v):
        if v != "all" and v < 0:
            raise ValueError("observations_per_arm must be 'all' or a count >= 0")
        return v

    def limit(self) -> int | None:
        """The per-arm count, or None for every patient."""
        return None if self.observations_per_arm == "all" else int(self.observations_per_arm)


class ScoringSettings(_Strict):
    """How the clinical layer scores the run's patients (the same choices as `cartwin score`)."""

    baseline_day: float | None = Field(
        default=None, ge=-BASELINE_DAY_LIMIT, le=BASELINE_DAY_LIMIT,
        description="last study day (relative to the infusion) counted as baseline for SLEDAI, "
        "SRI-4, the composites and the endpoints; default that of the rule tables (day 0)")
    lab_baseline_day: float | None = Field(
        default=None, ge=-BASELINE_DAY_LIMIT, le=BASELINE_DAY_LIMIT,
        description="last study day of the CTCAE grading reference; default that of the rule "
        "tables (day -5, before lymphodepletion)")


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
    rules: list[Rule] = Field(default_factory=list, description="rules evaluated inside the simulation "
                              "(supportive care, rescue therapy, deferral, a second infusion); see docs/protocol.md")

    observation_model: ObservationModelSettings = ObservationModelSettings()
    study: StudyCalendar = Field(default_factory=StudyCalendar,
                                 description="calendar facts for exports (start date, country)")

    uncertainty: Uncertainty | None = Field(default=None, description="replicate trials with parameter "
                                            "uncertainty (docs/protocol.md)")
    conduct: Conduct | None = Field(default=None, description="missed visits and withdrawal hazards "
                                    "(docs/protocol.md)")

    store: StoreSettings = Field(default_factory=StoreSettings,
                                 description="what the run directory keeps (docs/protocol.md, Storage)")
    scoring: ScoringSettings = Field(default_factory=ScoringSettings,
                                     description="baseline days of the clinical scoring (docs/protocol.md, Scoring)")

    @model_validator(mode="after")
    def _rules_known_arms(self):
        problems = rule_problems(self.rules, {a.id for a in self.arms})
        if problems:
            raise ValueError("; ".join(problems))
        return self


def rule_problems(rules: list[Rule], arm_ids: set[str]) -> list[str]:
    """Rule ids that repeat and rules naming arms the protocol does not have."""
    problems = []
    ids = [r.id for r in rules]
    if len(set(ids)) != len(ids):
        problems.append(f"rule ids must be unique: {ids}")
    for r in rules:
        unknown = sorted(set(r.arms or ()) - arm_ids)
        if unknown:
            problems.append(f"rule {r.id}: unknown arms {unknown}; arms: {sorted(arm_ids)}")
    return problems
