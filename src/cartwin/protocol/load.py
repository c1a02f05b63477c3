"""Reading a protocol file into a validated, immutable :class:`Protocol`.

Every problem is reported as a :class:`ProtocolError` that names the file, the field and what
would fix it. Checks that need more than one field (a product that must exist, a schedule
inside the follow-up, a dose in a plausible range) run after the schema.
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Callable

from pydantic import ValidationError

from cartwin.population.distributions import LogNormal, Normal
from cartwin.protocol.schema import PATIENT_UNIT_FIELDS, Population, Protocol
from cartwin.therapy.products import KNOWN_EDITS, PRODUCTS
from cartwin.therapy.regimens import PRESETS
from cartwin.vocabulary import BY_FIELD

# Plausible CAR-T doses. Clinical autoimmune and oncology doses span 1e5-5e6 cells/kg and
# 1e7-1e9 flat cells (published autoimmune and oncology CAR-T trials); anything 100x beyond is a unit error.
CART_DOSE_PER_KG = (1e3, 1e8)
CART_DOSE_FLAT = (1e5, 1e11)
# Single-administration drug doses (mg/m^2) beyond these are not lymphodepletion.
DRUG_DOSE_MG_M2 = {"fludarabine": (0.0, 60.0), "cyclophosphamide": (0.0, 3000.0)}
EARLIEST_DAY = -30.0


class ProtocolError(ValueError):
    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + ("\n  ".join([""] + problems) if len(problems) > 1
                                         else problems[0]))


@dataclass(frozen=True)
class LoadedProtocol:
    protocol: Protocol
    text: str
    source: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


# the union fields of the schemas (a protocol's, a design spec's) and the tags pydantic gives their
# branches in error locations; a union may also be an item of a list (a design spec's doses)
_UNION_BRANCHES = {"lymphodepletion": ("str", "list[DrugAdministration]"), "dose": ("CellsPerKg", "FlatCells")}
_UNION_OF_TAG = {tag: field for field, tags in _UNION_BRANCHES.items() for tag in tags}
# every tag pydantic puts in an error location for a union branch (not a field the user wrote)
_BRANCH_TAGS = frozenset({"fixed", "normal", "lognormal", "uniform", *_UNION_OF_TAG})


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _BRANCH_TAGS or str(part).startswith(("list[", "function-after[")):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _given(err: dict) -> str:
    """The value a type error refused, so that the message shows what to change (``n = "5"``: a
    text where a number belongs)."""
    if not err["type"].endswith("_type") and err["type"] not in ("finite_number", "literal_error"):
        return ""
    value = err.get("input")
    if isinstance(value, (dict, list)):
        return ""
    kind = {bool: "true/false", str: "text", int: "a whole number", float: "a number"}.get(type(value), type(value).__name__)
    shown = repr(value) if isinstance(value, (str, bool, int, float)) else ""
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return f" (given {shown}, {kind})" if shown else ""


def _union_errors(errors: list[dict]) -> list[dict]:
    """Pydantic's errors with those of a union's other branch left out where they mislead: a
    branch refused for its type (``lymphodepletion`` given as a list is not a text) when the other
    branch accepted the type and found the real problem deeper; and a dose given both per kg and
    flat, which each branch reports as an unknown field, becomes one message (other problems of
    the dose are kept)."""
    def tagged(err):  # (location of the union field, branch tag, rest) or None
        loc = err["loc"]
        for i in range(len(loc) - 1):
            union = _UNION_OF_TAG.get(loc[i + 1]) if isinstance(loc[i + 1], str) else None
            if union is not None and (loc[i] == union or (union == "dose" and isinstance(loc[i], int))):
                return loc[:i + 1], loc[i + 1], loc[i + 2:]
        return None
    tags = [tagged(e) for e in errors]
    deeper = {t[0] for t in tags if t and t[2]}
    extra = {(t[0], t[1], t[2]) for e, t in zip(errors, tags) if t and e["type"] == "extra_forbidden"}
    both_doses = {at for at, _, _ in extra
                  if (at, "CellsPerKg", ("cells",)) in extra and (at, "FlatCells", ("cells_per_kg",)) in extra}
    # a dose given one way only: the other way's branch reports only that it is not the other way
    per_kg = {at for at, tag, rest in extra if tag == "FlatCells" and rest == ("cells_per_kg",)} - both_doses
    flat = {at for at, tag, rest in extra if tag == "CellsPerKg" and rest == ("cells",)} - both_doses
    out, said = [], set()
    for err, t in zip(errors, tags):
        if t and ((t[0] in per_kg and t[1] == "FlatCells") or (t[0] in flat and t[1] == "CellsPerKg")):
            continue
        if t and not t[2] and t[0] in deeper and err["type"].endswith("_type"):
            continue  # the wrong branch for this value's type
        if t and t[0] in both_doses:
            if err["type"] == "extra_forbidden" and t[2] in (("cells",), ("cells_per_kg",)):
                if t[0] not in said:
                    said.add(t[0])
                    out.append({"loc": t[0], "type": "value_error", "input": None,
                                "msg": "give the dose either per kg (cells_per_kg) or flat (cells), not both"})
                continue
            if t[1] == "FlatCells":  # the other problems once, as the per-kg branch reports them
                continue
        out.append(err)
    return out


@cache
def _schema_field_names(root: type = Protocol) -> tuple[str, ...]:
    """Every field name of the schema ``root`` (a protocol's, a design spec's), at any depth (for
    spelling suggestions)."""
    from typing import get_args  # noqa: PLC0415

    from pydantic import BaseModel  # noqa: PLC0415

    names: set[str] = set()
    seen: set[type] = set()

    def walk(annotation) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation in seen:
                return
            seen.add(annotation)
            for name, info in annotation.model_fields.items():
                names.add(info.alias or name)
                walk(info.annotation)
        for arg in get_args(annotation):
            walk(arg)

    walk(root)
    return tuple(sorted(names))


def _did_you_mean(loc: tuple, root: type = Protocol) -> str:
    """' (did you mean 'x'?)' for an unknown field close to a field of the schema, else ''."""
    import difflib  # noqa: PLC0415
    name = str(loc[-1]) if loc else ""
    if name in _schema_field_names(root):  # a field of another part of the schema: no spelling to mend
        return ""
    close = difflib.get_close_matches(name, _schema_field_names(root), n=1, cutoff=0.8)
    return f" (did you mean {close[0]!r}?)" if close else ""


def schema_problems(errors: list[dict], root: type = Protocol) -> list[str]:
    """Pydantic's errors of a document validated against the schema ``root`` (a protocol, a design
    spec) as a user reads them: each at the field's path as written; an unknown field with its
    likely spelling, a missing one as missing, a value refused for its type with the value given;
    a union's misleading branch left out (:func:`_union_errors`); pydantic's own 'Value error, '
    prefix dropped. Each message once, in pydantic's order."""
    problems: list[str] = []
    for err in _union_errors(errors):
        if err["type"] == "extra_forbidden":
            msg = f"{_loc(err['loc'])}: unknown field; remove it or check its spelling{_did_you_mean(err['loc'], root)}"
        elif err["type"] == "missing":
            msg = f"{_loc(err['loc'])}: required field is missing"
        else:
            msg = f"{_loc(err['loc'])}: {str(err['msg']).removeprefix('Value error, ')}{_given(err)}"
        if msg not in problems:
            problems.append(msg)
    return problems


def parse_protocol(data: dict, source: str = "<protocol>") -> Protocol:
    try:
        protocol = Protocol.model_validate(data)
    except ValidationError as exc:
        problems = schema_problems(exc.errors())
        seen = set(problems)
        problems += [m for m in _check_valid_parts(data) if m not in seen]
        if {"design_id", "space"} <= data.keys():
            problems.insert(0, "this is a design spec, not a protocol: search it with `cartwin design "
                               "SPEC --out DIR` (docs/design.md); its protocol is the file it names in "
                               "`protocol`")
        raise ProtocolError(source, problems) from None
    problems = check_semantics(protocol)
    if problems:
        raise ProtocolError(source, problems)
    return protocol


def _parsed_parts(data: dict) -> tuple[Protocol, frozenset[str]]:
    """The top-level fields of a protocol the schema refused that validate on their own (absent
    optional fields take their defaults), as a protocol built without validation, and their
    names. ``arms`` is checked arm by arm: an arm that fails is ``None`` in the list."""
    from pydantic import create_model  # noqa: PLC0415

    from cartwin.protocol.schema import Arm, _Strict  # noqa: PLC0415
    values: dict = {}
    for name, info in Protocol.model_fields.items():
        if name not in data:
            if not info.is_required():
                values[name] = info.get_default(call_default_factory=True)
            continue
        alone = create_model(f"_Only_{name}", __base__=_Strict, **{name: (info.annotation, info)})
        try:
            values[name] = getattr(alone.model_validate({name: data[name]}), name)
        except ValidationError:
            if name == "arms" and isinstance(data[name], list) and data[name]:
                arms = []
                for raw in data[name]:
                    try:
                        arms.append(Arm.model_validate(raw))
                    except ValidationError:
                        arms.append(None)
                values[name] = arms
    return Protocol.model_construct(**values), frozenset(values)


def _check_valid_parts(data) -> list[str]:
    """The checks of meaning that still apply when the schema refused the protocol: every check
    whose fields validated on their own runs (the schedule against the follow-up, products,
    regimens, doses, the population, ...), so that one run of ``cartwin validate`` lists every
    problem, not the schema's first."""
    if not isinstance(data, dict):
        return []
    protocol, parsed = _parsed_parts(data)
    return check_semantics(protocol, parsed)


def _check_dose(arm, where: str) -> list[str]:
    if hasattr(arm.dose, "cells_per_kg"):
        lo, hi = CART_DOSE_PER_KG
        if not lo <= arm.dose.cells_per_kg <= hi:
            return [f"{where}.dose.cells_per_kg: {arm.dose.cells_per_kg:g} cells/kg is "
                    f"outside the plausible {lo:g}-{hi:g} cells/kg (1e6 cells/kg is typical)"]
    else:
        lo, hi = CART_DOSE_FLAT
        if not lo <= arm.dose.cells <= hi:
            return [f"{where}.dose.cells: {arm.dose.cells:g} cells is outside the "
                    f"plausible {lo:g}-{hi:g} cells"]
    return []


def load_protocol(path: str | Path) -> LoadedProtocol:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ProtocolError(str(path), ["file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProtocolError(str(path), [f"cannot read the file: {exc}"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProtocolError(str(path), [f"not valid TOML: {exc}"]) from None
    try:
        protocol = parse_protocol(data, str(path))
    except ProtocolError as exc:
        # the files the parts that parsed name (an SBML model, a cohort, a fit) are checked too
        partial, parsed = _parsed_parts(data)
        extra = _resolve_files(partial, path, lambda *names: all(n in parsed for n in names))[1]
        raise ProtocolError(str(path), exc.problems + [m for m in extra if m not in exc.problems]) from None
    protocol, problems = _resolve_files(protocol, path)
    if problems:
        raise ProtocolError(str(path), problems)
    return LoadedProtocol(protocol, text, str(path))


def _resolve_files(protocol: Protocol, path: Path, has=lambda *names: True) -> tuple[Protocol, list[str]]:
    """The files a protocol names (an SBML model, a cohort table, a fit), made absolute and
    checked now; the protocol naming them absolutely and every problem found."""
    problems: list[str] = []
    if has("model") and is_sbml(protocol):
        target = Path(protocol.model[len(SBML_PREFIX):])
        target = target if target.is_absolute() else (path.parent / target)
        if target.is_file():
            protocol = protocol.model_copy(update={"model": SBML_PREFIX + str(target.resolve())})
        else:
            problems.append(f"model: SBML file {target} not found; give its path relative to the protocol file")
    for resolve, needs in ((_resolve_cohort, ("population",)), (_resolve_fit, ("model", "uncertainty"))):
        if has(*needs):
            try:
                protocol = resolve(protocol, path)
            except ProtocolError as exc:
                problems += exc.problems
    return protocol, problems


def _resolve_fit(protocol: Protocol, path: Path) -> Protocol:
    """A fit named relative to the protocol file, made absolute and read now (with a cartwin model),
    so that a missing or foreign fit is reported before anything runs."""
    u = protocol.uncertainty
    if u is None or u.fit is None:
        return protocol
    target = Path(u.fit)
    target = (target if target.is_absolute() else path.parent / target).resolve()
    from cartwin.model import MODELS
    if protocol.model in MODELS:
        from cartwin.population.uncertainty import POSTERIOR_SUFFIXES, UncertaintyError, posterior_draws, read_fit
        try:
            if target.suffix.lower() in POSTERIOR_SUFFIXES:
                posterior_draws(target, MODELS[protocol.model], u.replicates)
            else:
                read_fit(target, MODELS[protocol.model])
        except UncertaintyError as exc:
            raise ProtocolError(str(path), [f"uncertainty.fit: {exc}"]) from None
    return protocol.model_copy(update={"uncertainty": u.model_copy(update={"fit": str(target)})})


def _resolve_cohort(protocol: Protocol, path: Path) -> Protocol:
    """A cohort file named relative to the protocol file, made absolute and checked now, so that a
    bad table is reported before anything runs (file, line, patient and column)."""
    pop = protocol.population
    if pop is None or pop.cohort is None:
        return protocol
    from cartwin.population.cohort import CohortError, read_cohort
    target = Path(pop.cohort)
    target = (target if target.is_absolute() else path.parent / target).resolve()
    try:
        read_cohort(target)
    except CohortError as exc:
        raise ProtocolError(str(path), [f"population.cohort: {p}" if i == 0 else p
                                        for i, p in enumerate([str(exc)])]) from None
    return protocol.model_copy(update={"population": pop.model_copy(update={"cohort": str(target)})})


def schedule_days(protocol: Protocol) -> list[float]:
    s = protocol.schedule
    if s.days is not None:
        return sorted(set(float(d) for d in s.days))
    n = int(round((s.stop - s.start) / s.every))
    return [s.start + i * s.every for i in range(n + 1) if s.start + i * s.every <= s.stop + 1e-9]


SBML_PREFIX = "sbml:"


def is_sbml(p: Protocol) -> bool:
    return p.model.startswith(SBML_PREFIX)


def check_semantics(p: Protocol, parsed: frozenset[str] | None = None) -> list[str]:
    """The checks that need more than one field. ``parsed``: when the schema refused the protocol,
    the top-level fields that validated on their own (``p`` holds only those, and an arm that
    failed is ``None``); only the checks whose fields all parsed run, so no message rests on a
    field that is itself wrong."""
    def has(*names: str) -> bool:
        return parsed is None or all(n in parsed for n in names)

    if not has("model"):
        return _check_schedule(p, -math.inf, "", has) if has("schedule") else []
    if is_sbml(p):
        return _check_sbml_protocol(p, has)
    problems: list[str] = []
    model_known = p.model in known_models()
    if not model_known:
        problems.append(f"model: unknown model {p.model!r}; known: {sorted(known_models())} or 'sbml:PATH'")
    elif has("outputs") and p.outputs is not None:
        from cartwin.model import MODELS
        available = [o.test for o in MODELS[p.model].observables]
        unknown = sorted(set(p.outputs) - set(available))
        if unknown or not p.outputs:
            problems.append(f"outputs: unknown test codes {unknown} (or an empty list); model "
                            f"{p.model} gives {available}")
    population = p.population if has("population") else None
    if has("population") and population is None:
        problems.append("population: required field is missing")
    if has("model_variability") and model_known:
        unknown = sorted(set(p.model_variability) - set(_parameter_names(p.model)))
        if unknown:
            problems.append(f"model_variability: unknown parameters {unknown} of model {p.model}")
    arms = [(i, arm) for i, arm in enumerate(p.arms) if arm is not None] if has("arms") else []
    complete = []
    for i, arm in arms:
        missing = [f for f in ("product", "dose", "lymphodepletion") if getattr(arm, f) is None]
        problems += [f"arms[{i}] ({arm.id}).{f}: required field is missing" for f in missing]
        if not missing:
            complete.append((i, arm))
    if has("products"):
        for name, prod in p.products.items():
            unknown = sorted(set(prod.edits) - set(KNOWN_EDITS))
            if unknown:
                problems.append(f"products.{name}.edits: unknown edits {unknown}; known: {list(KNOWN_EDITS)}")
    ids = [a.id for _, a in arms]
    for dup in sorted({i for i in ids if ids.count(i) > 1}):
        problems.append(f"arms: arm id {dup!r} is used twice; give each arm its own id")
    explicit = population is not None and population.patients is not None
    cohort = population is not None and population.cohort is not None
    for i, arm in complete:
        where = f"arms[{i}] ({arm.id})"
        if has("products") and arm.product not in set(PRODUCTS) | set(p.products):
            problems.append(f"{where}.product: unknown product {arm.product!r}; known: "
                            f"{sorted(set(PRODUCTS) | set(p.products))} (or define it under [products.{arm.product}])")
        if (has("regimens") and isinstance(arm.lymphodepletion, str)
                and arm.lymphodepletion not in set(PRESETS) | set(p.regimens)):
            problems.append(f"{where}.lymphodepletion: unknown regimen {arm.lymphodepletion!r}; "
                            f"known: {sorted(set(PRESETS) | set(p.regimens))} (or give a list of administrations)")
        problems += _check_dose(arm, where)
        if population is not None:
            if explicit and arm.n is not None and arm.n != len(population.patients):
                problems.append(f"{where}.n: {arm.n} differs from the {len(population.patients)} "
                                "explicit patients; remove n")
            if not explicit and arm.n is None:
                problems.append(f"{where}.n: required when the population is given as "
                                + ("a cohort file (how many patients to draw from it)" if cohort else "distributions"))
        if isinstance(arm.lymphodepletion, list):
            problems += _check_administrations(arm.lymphodepletion, f"{where}.lymphodepletion")
    if has("regimens"):
        for name, admins in p.regimens.items():
            problems += _check_administrations(admins, f"regimens.{name}")
    if parsed is not None and has("rules", "arms") and len(arms) == len(p.arms):
        # the schema's own check of rules against arms runs only on a protocol that parsed whole
        from cartwin.protocol.schema import rule_problems  # noqa: PLC0415
        problems += [f"rules: {m}" for m in rule_problems(p.rules, {a.id for _, a in arms})]
    schedule_problems = _check_schedule(p, EARLIEST_DAY, "outside the simulated window", has) if has("schedule") else []
    problems += schedule_problems
    if population is not None:
        problems += _check_population(population)
    if has("schedule") and not schedule_problems and model_known:  # the realism checks read the schedule's days
        problems += _check_realism(p, schedule_days(p), has)
    return problems


def _check_realism(p: Protocol, days: list[float], has=lambda *names: True) -> list[str]:
    """[uncertainty] and [conduct]: parameters and tests that exist, a baseline to compare with."""
    from cartwin.model import MODELS
    problems = []
    model = MODELS.get(p.model)
    u = p.uncertainty if has("uncertainty") else None
    if u is not None:
        if u.source == "fit" and not u.fit:
            problems.append("uncertainty.fit: required with source = 'fit' (a `cartwin fit` output directory)")
        if u.source != "fit" and u.fit:
            problems.append("uncertainty.fit: given, but source is 'model'; set source = 'fit' or remove fit")
        if u.source == "fit" and u.se_log:
            problems.append("uncertainty.se_log: applies to source = 'model'; a fit carries its own covariance")
        if u.se_log and not u.se_source.strip():
            problems.append("uncertainty.se_source: say where the se_log values come from (a citation, "
                            "or 'assumed: <reason>')")
        bad = {k: v for k, v in u.se_log.items() if not 0 <= v <= 3}
        if bad:
            problems.append(f"uncertainty.se_log: values must lie in [0, 3] (SD of the log typical value): {bad}")
        if model is not None:
            unknown = sorted(set(u.se_log) - set(model.parameter_names))
            if unknown:
                problems.append(f"uncertainty.se_log: unknown parameters {unknown} of model {p.model}")
    c = p.conduct if has("conduct") else None
    if c is not None and model is not None and has("outputs"):
        available = [o.test for o in model.observables]
        stored = p.outputs or available
        for i, h in enumerate(c.dropout):
            if h.test is None:
                continue
            where = f"conduct.dropout[{i}] ({h.reason})"
            if h.test not in available:
                problems.append(f"{where}.test: {h.test!r} is not a read-out of model {p.model}; known: {available}")
            elif h.test not in stored:
                problems.append(f"{where}.test: {h.test} is not among the protocol's outputs; add it there")
            if h.relative_to_baseline and not any(d <= 0 for d in days):
                problems.append(f"{where}.relative_to_baseline: the schedule has no day on or before day 0 "
                                "to take the baseline from")
    return problems


def known_models() -> list[str]:
    from cartwin.model import MODELS
    return list(MODELS)


def _parameter_names(model: str) -> tuple[str, ...]:
    from cartwin.model import MODELS
    return MODELS[model].parameter_names if model in MODELS else ()


def _check_schedule(p: Protocol, earliest: float, why: str, has=lambda *names: True) -> list[str]:
    """The assessment days: finite, within [earliest, follow_up_days] (the follow-up only when it
    parsed)."""
    s = p.schedule
    bounds = s.days if s.days is not None else [s.start, s.stop, s.every]
    bad = [d for d in bounds if not math.isfinite(d)]
    if bad:
        return [f"schedule: {bad[:5]} are not finite numbers of days"]
    if s.days is not None:
        seen, repeated = set(), []
        for d in s.days:
            if d in seen and d not in repeated:
                repeated.append(d)
            seen.add(d)
        if repeated:  # said, not silently merged: a repeated day is most often a typo for another
            return [f"schedule.days: day(s) {[float(d) for d in repeated[:5]]} are listed more than once; "
                    "list each assessment day once"]
    days = schedule_days(p)
    late = [d for d in days if d > p.follow_up_days] if has("follow_up_days") else []
    early = [d for d in days if d < earliest]
    problems = []
    if late:
        problems.append(f"schedule: days {late[:5]} lie after follow_up_days = {p.follow_up_days:g}; "
                        "extend the follow-up or drop those days")
    if early:
        problems.append(f"schedule: days {early[:5]} lie before day {earliest:g}, {why}; "
                        f"start the schedule on day {earliest:g} or later")
    return problems


def _check_sbml_protocol(p: Protocol, has=lambda *names: True) -> list[str]:
    """An SBML model carries its own doses and needs no covariates: arms name only n. Its time
    starts at 0 (the model's initial values); the schedule is checked as for cartwin's models."""
    problems = (_check_schedule(p, 0.0, "the start of an SBML model (its initial values hold at day 0)", has)
                if has("schedule") else [])
    for i, arm in enumerate(p.arms if has("arms") else []):
        if arm is None:
            continue
        given = [f for f in ("product", "dose", "lymphodepletion") if getattr(arm, f) is not None]
        if given:
            problems.append(f"arms[{i}] ({arm.id}): {given} do not apply to an SBML model, which "
                            "carries its own doses; remove them")
        if arm.n is None:
            problems.append(f"arms[{i}] ({arm.id}).n: required")
    if has("population") and p.population is not None:
        problems.append("population: an SBML model takes no patient covariates; remove [population] "
                        "(variability comes from model_variability)")
    if (has("products") and p.products) or (has("regimens") and p.regimens):
        problems.append("products/regimens: do not apply to an SBML model")
    return problems


def _check_administrations(admins, where: str) -> list[str]:
    out = []
    for j, a in enumerate(admins):
        lo, hi = DRUG_DOSE_MG_M2[a.drug]
        if not lo < a.dose_mg_m2 <= hi:
            out.append(f"{where}[{j}].dose_mg_m2: {a.dose_mg_m2:g} mg/m^2 of {a.drug} is outside "
                       f"(0, {hi:g}] mg/m^2 per administration")
        for d in a.days:
            if not EARLIEST_DAY <= d <= 0:
                out.append(f"{where}[{j}].days: day {d:g} is not between {EARLIEST_DAY:g} and 0 "
                           "(lymphodepletion precedes the infusion)")
    return out


def _range_problem(where: str, quantity: str, value: float, unit_factor: float = 1.0,
                   unit_setting: Callable[[str], str] | None = None) -> str | None:
    c = BY_FIELD[quantity]
    lo, hi = c.range
    v = value * unit_factor
    if not lo <= v <= hi:
        return (f"{where}: {value:g} is outside the physiologic range {lo:g}-{hi:g} {c.unit}"
                + _unit_hint(quantity, value, unit_factor, unit_setting))
    return None


def _unit_hint(quantity: str, value: float, unit_factor: float, setting: Callable[[str], str] | None) -> str:
    """A value out of range in the unit given, but in range in another unit the quantity accepts:
    most likely given in that unit (creatinine in mg/dL, C3 in mg/dL); ``setting(unit)`` says how
    to declare it."""
    c = BY_FIELD[quantity]
    lo, hi = c.range
    fits = [u for u, f in c.unit_factors.items() if f != unit_factor and lo <= value * f <= hi]
    if not fits or setting is None:
        return ""
    return f"; if it is in {fits[0]}, say so: {setting(fits[0])}"


def _unit_factor(where: str, quantity: str, unit: str, problems: list[str]) -> float:
    factors = BY_FIELD[quantity].unit_factors
    if unit not in factors:
        problems.append(f"{where}.unit: unknown unit {unit!r} for {quantity}; use one of {sorted(factors)}")
        return float("nan")
    return factors[unit]


def _ranged() -> list[str]:
    """The vocabulary fields a protocol gives that have a physiologic range."""
    return [c.field for c in BY_FIELD.values() if c.low is not None]


def _check_population(pop: Population) -> list[str]:
    problems: list[str] = []
    if pop.cohort is not None:
        return problems  # the file is read and checked when the protocol file is loaded
    if pop.correlations is not None:
        from cartwin.population.correlation import problems as correlation_problems
        problems += correlation_problems(pop.correlations)
    if pop.patients is not None:
        for i, pt in enumerate(pop.patients):
            w = f"population.patients[{i}] ({pt.id})"
            _unit_factor(f"{w}.creatinine", "creatinine", pt.creatinine_unit, problems)
            _unit_factor(f"{w}.complement", "c3", pt.complement_unit, problems)
            for q in _ranged():
                f = BY_FIELD[q].unit_factors.get(pt.unit_of(q), float("nan"))
                if f == f:  # skip quantities whose unit was already reported unknown
                    field = PATIENT_UNIT_FIELDS.get(q)
                    setting = (lambda unit, field=field: f'{field} = "{unit}"') if field else None
                    msg = _range_problem(f"{w}.{q}", q, getattr(pt, q), f, setting)
                    if msg:
                        problems.append(msg)
        return problems
    blocks = {}
    for q in _ranged():
        dist, unit = pop.distribution_of(q)
        where = f"population.{'disease.' if BY_FIELD[q].kind == 'disease' else ''}{q}"
        factor = _unit_factor(where, q, unit, problems)
        blocks[q] = (dist, factor, where)
    for q, (dist, factor, where) in blocks.items():
        if factor != factor:
            continue
        lo, hi = BY_FIELD[q].range
        centre = {"fixed": "value", "normal": "mean", "lognormal": "median"}.get(dist.dist)
        if centre is not None:
            v = getattr(dist, centre) * factor
            if not lo <= v <= hi:
                problems.append(f"{where}.{centre}: {getattr(dist, centre):g} is outside the "
                                f"physiologic range {lo / factor:g}-{hi / factor:g} in the unit given"
                                + _unit_hint(q, getattr(dist, centre), factor,
                                             lambda unit, q=q: f'{q} = {{ unit = "{unit}", distribution = {{ ... }} }}'))
        for bound in ("low", "high"):
            b = getattr(dist, bound, None)
            if b is not None and not lo <= b * factor <= hi:
                problems.append(f"{where}.{bound}: {b:g} is outside the physiologic range "
                                f"{lo / factor:g}-{hi / factor:g} in the unit given")
        msg = _unreachable_truncation(dist, factor, lo, hi)
        if msg:
            problems.append(f"{where}: {msg}")
    return problems


# A truncated distribution must keep at least this probability inside its bounds: below it the
# inverse-CDF draw loses its precision (and at zero it returns infinities).
MIN_TRUNCATED_MASS = 1e-6


def _unreachable_truncation(dist, factor: float, plo: float, phi: float) -> str | None:
    """Whether a normal or log-normal, cut to its bounds and the physiologic range, keeps any
    probability to draw from."""
    if dist.dist not in ("normal", "lognormal"):
        return None
    lo = plo if dist.low is None else max(plo, dist.low * factor)
    hi = phi if dist.high is None else min(phi, dist.high * factor)
    if hi <= lo:
        return (f"the bounds and the physiologic range {plo / factor:g}-{phi / factor:g} leave no "
                "values to draw; widen low/high")
    spread = dist.sd if dist.dist == "normal" else dist.cv
    if spread == 0:
        return None  # a point, clipped into the bounds
    if dist.dist == "normal":
        frozen = Normal(dist.mean * factor, dist.sd * factor)
    else:
        frozen = LogNormal(math.sqrt(math.log1p(dist.cv ** 2)), dist.median * factor)
    # in the upper tail the survival function keeps the precision the CDF loses
    mass = frozen.sf(lo) - frozen.sf(hi) if frozen.cdf(lo) > 0.5 else frozen.cdf(hi) - frozen.cdf(lo)
    if not mass >= MIN_TRUNCATED_MASS:
        return (f"the bounds {lo / factor:g}-{hi / factor:g} hold a probability of {mass:.2g} of the "
                f"distribution (at least {MIN_TRUNCATED_MASS:g} needed); move the centre or widen "
                "the spread or the bounds")
    return None
