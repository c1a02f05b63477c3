"""The design spec: a TOML file naming a design space and a goal over endpoints.

A spec refers to a protocol file for everything about the patients (population, schedule, model,
solver, seed); it adds the space of designs (products, CAR-T doses, lymphodepletion intensity along
a path of regimens), the goal (least lymphodepletion such that each requirement on an endpoint of
``cartwin.endpoints`` holds), the search, the trial-level questions and the model parameters whose
uncertainty the report shows. docs/design.md describes every field; examples/design_least_ld.toml
is an example. Every problem is a :class:`DesignSpecError` naming the file and the field.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cartwin.protocol.load import schema_problems
from cartwin.protocol.schema import CellsPerKg, DrugAdministration, FlatCells


class DesignSpecError(ValueError):
    """A design spec that cannot be run; names the file and each problem."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + ("\n  ".join([""] + problems) if len(problems) > 1 else problems[0]))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Space(_Strict):
    products: list[str] = Field(min_length=1, description="preset products or the protocol's [products]")
    doses: list[CellsPerKg | FlatCells] = Field(min_length=1, description="CAR-T doses: {cells_per_kg} or {cells}")
    intensity_path: list[str] = Field(
        min_length=2, description="lymphodepletion regimens from least to most (presets or [regimens.NAME]); "
        "intensity 0 is the first, 1 the last, each step between two neighbours an equal share")
    intensity_levels: int = Field(default=9, ge=2, le=257, description="grid of intensities over [0, 1]")


class Requirement(_Strict):
    endpoint: str = Field(description="a binary or time-to-event endpoint of cartwin.endpoints")
    at_least: float = Field(gt=0, lt=1, description="the proportion of patients that must meet it")
    days_at_least: float | None = Field(
        default=None, gt=0, description="time-to-event endpoints: a patient meets it with a time of at "
        "least this many days (event or censoring)")
    outside: Literal["fail", "exclude"] = Field(
        default="fail", description="time-to-event endpoints: a patient outside the endpoint's "
        "population (e.g. never aplastic) fails (default) or is left out of the denominator")


class Goal(_Strict):
    minimise: str = Field(default="intensity", description="'intensity', or a binary toxicity endpoint "
                          "whose proportion chooses between the doses' least intensities")
    decide_on: Literal["estimate", "lower_bound"] = Field(
        default="estimate", description="a requirement holds when its estimate (or its 95% "
        "Clopper-Pearson lower bound) reaches at_least")
    require: list[Requirement] = Field(min_length=1)
    toxicity: list[str] = Field(default_factory=lambda: ["neutropenia_grade3"],
                                description="binary endpoints drawn as toxicity in the report")


class Search(_Strict):
    method: Literal["bisection", "grid"] = "bisection"
    start_patients: int = Field(default=25, ge=2, description="patients of a first look at an intensity")
    screening_level: float = Field(default=0.99, gt=0.5, lt=1, description="interval level of early decisions")
    compare_grid: bool = Field(default=False, description="also evaluate the full grid and compare its answer")


class TrialQuestion(_Strict):
    endpoint: str = Field(description="a binary endpoint")
    size: int = Field(ge=1, le=10000, description="patients per trial")
    at_least: int | None = Field(default=None, ge=0, description="successes the trial needs")
    at_most: int | None = Field(default=None, ge=0, description="or: the most successes it may have")

    @model_validator(mode="after")
    def _one_bound(self):
        if (self.at_least is None) == (self.at_most is None):
            raise ValueError("give either at_least or at_most")
        bound = self.at_least if self.at_least is not None else self.at_most
        if bound > self.size:
            raise ValueError(f"{bound} successes cannot happen in a trial of {self.size}")
        return self


class Uncertain(_Strict):
    parameter: str = Field(description="a model parameter")
    low: float = Field(gt=0, description="factor on the typical value")
    high: float = Field(gt=0, description="factor on the typical value")
    note: str = Field(default="", description="where the range comes from")

    @model_validator(mode="after")
    def _ordered(self):
        if not self.low < 1.0 < self.high:
            raise ValueError(f"need low < 1 < high (factors on the typical value), got {self.low:g}, {self.high:g}")
        return self


class DesignSpec(_Strict):
    schema_version: Literal[1] = 1
    design_id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    title: str = ""
    protocol: str = Field(description="protocol file (relative to the spec): population, schedule, model, seed")
    seed: int | None = Field(default=None, ge=0, description="overrides the protocol's seed")
    follow_up_days: float | None = Field(default=None, gt=0, description="shorter follow-up: later visits dropped")
    patients: int = Field(ge=2, le=100000, description="virtual patients per design point")
    workers: int | None = Field(default=None, ge=1)
    space: Space
    regimens: dict[str, list[DrugAdministration]] = Field(default_factory=dict)
    goal: Goal
    search: Search = Search()
    trials: list[TrialQuestion] = Field(default_factory=list)
    trial_replicates: int = Field(default=4000, ge=100, le=10 ** 6)
    uncertainty: list[Uncertain] = Field(default_factory=list)


@dataclass(frozen=True)
class LoadedSpec:
    spec: DesignSpec
    source: str
    protocol_path: Path
    text: str


def parse_spec(text: str, source: str = "<design spec>", base: Path | None = None) -> LoadedSpec:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DesignSpecError(source, [f"not valid TOML: {exc}"]) from None
    try:
        spec = DesignSpec.model_validate(raw)
    except ValidationError as exc:
        problems = schema_problems(exc.errors(), DesignSpec)
        if isinstance(raw, dict) and {"arms", "schedule"} <= raw.keys():
            problems.insert(0, "this is a protocol, not a design spec: a design spec names its protocol "
                               "(protocol = \"FILE.toml\") and adds [space] and [goal] (docs/design.md, "
                               "examples/design_least_ld.toml)")
        raise DesignSpecError(source, problems) from None
    protocol_path = (base or Path(".")) / spec.protocol
    problems = check(spec, protocol_path)
    if problems:
        raise DesignSpecError(source, problems)
    return LoadedSpec(spec, source, protocol_path, text)


def load_spec(path: str | Path) -> LoadedSpec:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise DesignSpecError(str(path), [f"cannot read the design spec: {exc.strerror}"]) from None
    return parse_spec(text, str(path), path.parent)


def check(spec: DesignSpec, protocol_path: Path) -> list[str]:
    """Checks across fields: names that must exist, endpoints of the right type, a path of
    regimens that grows, parameters of the model."""
    from cartwin.endpoints import definitions
    from cartwin.model import get_model
    from cartwin.therapy.products import PRODUCTS
    from cartwin.therapy.regimens import PRESETS

    problems = []
    if not protocol_path.is_file():
        return [f"protocol: no file {protocol_path} (the path is relative to the spec)"]
    try:
        from cartwin.protocol import load_protocol
        protocol = load_protocol(protocol_path).protocol
    except ValueError as exc:
        return [f"protocol: {exc}"]
    if protocol.model.startswith("sbml:") or protocol.population is None:
        return [f"protocol: {protocol_path} uses an imported model; a design needs cartwin's own model and a population"]
    if protocol.population.patients is not None and spec.patients > len(protocol.population.patients):
        problems.append(f"patients: {spec.patients} is more than the protocol's {len(protocol.population.patients)} "
                        "explicit patients; give distributions in the protocol's population or fewer patients")
    for i, name in enumerate(spec.space.products):
        if name not in PRODUCTS and name not in protocol.products:
            problems.append(f"space.products[{i}]: unknown product {name!r}; presets {sorted(PRODUCTS)}"
                            + (f", protocol's {sorted(protocol.products)}" if protocol.products else ""))
    if len(set(spec.space.products)) != len(spec.space.products):
        problems.append("space.products: a product is listed twice")
    for i, dose in enumerate(spec.space.doses):
        value = getattr(dose, "cells_per_kg", None) or getattr(dose, "cells", None)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            problems.append(f"space.doses[{i}]: a CAR-T dose must be a positive number of cells")
    for i, name in enumerate(spec.space.intensity_path):
        if name not in PRESETS and name not in spec.regimens:
            problems.append(f"space.intensity_path[{i}]: unknown regimen {name!r}; presets {sorted(PRESETS)} "
                            "or define [regimens.NAME] in the spec")
    for name, admins in spec.regimens.items():
        for j, a in enumerate(admins):
            if not 0 <= a.dose_mg_m2 <= {"fludarabine": 60.0, "cyclophosphamide": 3000.0}[a.drug]:
                problems.append(f"regimens.{name}[{j}]: {a.drug} {a.dose_mg_m2:g} mg/m^2 per administration is "
                                "outside lymphodepletion doses")
            if any(d > 0 for d in a.days):
                problems.append(f"regimens.{name}[{j}]: lymphodepletion days must be on or before day 0 (the infusion)")
    if not problems:
        from cartwin.design.space import anchor_regimens, cumulative
        anchors = anchor_regimens(spec.space.intensity_path, spec.regimens)
        for a, b in zip(anchors, anchors[1:]):
            for drug in ("fludarabine", "cyclophosphamide"):
                if cumulative(b, drug) < cumulative(a, drug) - 1e-9:
                    problems.append(f"space.intensity_path: {b.name} gives less {drug} ({cumulative(b, drug):g} "
                                    f"mg/m^2) than {a.name} before it ({cumulative(a, drug):g}); order the path "
                                    "from least to most lymphodepletion")
    table = definitions()
    keys = {e.key: e for e in table.endpoints}
    for i, r in enumerate(spec.goal.require):
        e = keys.get(r.endpoint)
        where = f"goal.require[{i}]"
        if e is None:
            problems.append(f"{where}.endpoint: unknown endpoint {r.endpoint!r}; binary and time-to-event "
                            f"endpoints: {sorted(k for k, v in keys.items() if v.type != 'continuous')}")
        elif e.type == "binary" and r.days_at_least is not None:
            problems.append(f"{where}.days_at_least: {r.endpoint} is binary; days_at_least is for time-to-event endpoints")
        elif e.type == "time_to_event" and r.days_at_least is None:
            problems.append(f"{where}: {r.endpoint} is a time to event; say what a patient must reach with "
                            "days_at_least")
        elif e.type == "continuous":
            problems.append(f"{where}.endpoint: {r.endpoint} is continuous; a requirement needs a binary or "
                            "time-to-event endpoint")
    binary = sorted(k for k, v in keys.items() if v.type == "binary")
    for i, name in enumerate(spec.goal.toxicity):
        if name not in binary:
            problems.append(f"goal.toxicity[{i}]: {name!r} is not a binary endpoint; binary endpoints: {binary}")
    if spec.goal.minimise != "intensity" and spec.goal.minimise not in binary:
        problems.append(f"goal.minimise: {spec.goal.minimise!r}: give 'intensity' or a binary endpoint {binary}")
    for i, q in enumerate(spec.trials):
        if q.endpoint not in binary:
            problems.append(f"trials[{i}].endpoint: {q.endpoint!r} is not a binary endpoint; binary endpoints: {binary}")
    model = get_model(protocol.model)
    names = set(model.parameter_names)
    for i, u in enumerate(spec.uncertainty):
        if u.parameter not in names:
            problems.append(f"uncertainty[{i}].parameter: {u.parameter!r} is not a parameter of model {model.name}")
    if spec.search.start_patients > spec.patients:
        problems.append(f"search.start_patients: {spec.search.start_patients} is more than patients ({spec.patients})")
    return problems
