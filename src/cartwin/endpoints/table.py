"""The endpoint table (``definitions.toml``): read, checked, and turned into typed records.

A mistake in the table is an ``EndpointTableError`` naming the file, the record and the field.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

TYPES = ("binary", "continuous", "time_to_event")
SOURCES = ("visits", "observations", "lab_grades")
STATISTICS = {"visits": ("first_day", "last_day", "last", "count_not_null", "any"),
              "observations": ("serology_normalisation", "last_detectable_day"),
              "lab_grades": ("max",)}
OPERATORS = ("==", "!=", "<", "<=", ">", ">=", "in", "is_true", "is_false", "is_null", "is_not_null")
UNARY = ("is_true", "is_false", "is_null", "is_not_null")
_DESCRIPTIVE = ("label", "standard", "standard_version", "definition", "population", "censoring", "unit")


class EndpointTableError(ValueError):
    """The endpoint table is malformed; the message names file, record and field."""


@dataclass(frozen=True)
class Condition:
    column: str
    op: str
    value: object = None


@dataclass(frozen=True)
class Variable:
    name: str
    description: str
    source: str  # "visits" or "observations"
    statistic: str
    column: str | None = None
    after_baseline: bool = False
    rows: tuple[Condition, ...] = ()
    where: tuple[Condition, ...] = ()
    of: tuple[Condition, ...] = ()
    test: str | None = None
    direction: str | None = None


@dataclass(frozen=True)
class Endpoint:
    key: str
    type: str
    label: str
    standard: str
    standard_version: str
    definition: str
    population: str
    censoring: str
    unit: str
    note: str = ""
    report: bool = True
    lower_bound_of: str | None = None
    # binary
    success: tuple[Condition, ...] = ()
    evaluable: tuple[Condition, ...] = ()
    # continuous
    column: str | None = None
    ratio: bool = False
    # time to event
    origin: str | float | None = None
    event: str | None = None
    event_label: str = ""
    censor: str | None = None
    # continuous and time to event: who is in the population
    subset: tuple[Condition, ...] = ()
    # binary: missing data from withdrawal (a run with a protocol's [conduct] section)
    missing_data: str | None = None  # "non_responder": a withdrawn patient counts as failure
    assessment_day: float | None = None  # withdrawn before this day; None: any withdrawal

    @property
    def event_column(self) -> str:
        """Column of the per-patient frame holding a time-to-event endpoint's event flag."""
        return f"{self.key}_event"


@dataclass(frozen=True)
class Table:
    version: str
    source: str
    variables: tuple[Variable, ...]
    endpoints: tuple[Endpoint, ...] = field(default_factory=tuple)

    def endpoint(self, key: str) -> Endpoint:
        for e in self.endpoints:
            if e.key == key:
                return e
        raise KeyError(f"no endpoint {key!r} in {self.source}")

    def of_type(self, kind: str, reported: bool = False) -> tuple[Endpoint, ...]:
        return tuple(e for e in self.endpoints if e.type == kind and (e.report or not reported))


def _conditions(raw, where: str) -> tuple[Condition, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise EndpointTableError(f"{where}: expected a list of {{ column, op, value }} conditions")
    out = []
    for i, c in enumerate(raw):
        here = f"{where}[{i}]"
        if not isinstance(c, dict) or set(c) - {"column", "op", "value"} or "column" not in c or "op" not in c:
            raise EndpointTableError(f"{here}: a condition is {{ column = ..., op = ..., value = ... }}, got {c!r}")
        if c["op"] not in OPERATORS:
            raise EndpointTableError(f"{here}: op {c['op']!r} is not one of {', '.join(OPERATORS)}")
        if (c["op"] in UNARY) == ("value" in c):
            raise EndpointTableError(f"{here}: op {c['op']!r} " + ("takes no value" if c["op"] in UNARY else "needs a value"))
        if c["op"] == "in" and not isinstance(c["value"], list):
            raise EndpointTableError(f"{here}: op 'in' needs a list value")
        out.append(Condition(c["column"], c["op"], c.get("value")))
    return tuple(out)


def _take(record: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(record) - allowed)
    if unknown:
        raise EndpointTableError(f"{where}: unknown field(s) {', '.join(unknown)}")


def _variable(r: dict, where: str) -> Variable:
    _take(r, {"name", "description", "from", "statistic", "column", "after_baseline", "rows", "where", "of",
              "test", "direction"}, where)
    for name in ("name", "description", "from", "statistic"):
        if not isinstance(r.get(name), str) or not r[name]:
            raise EndpointTableError(f"{where}: field {name!r} is required (text)")
    where = f"{where} ({r['name']})"
    if r["from"] not in SOURCES:
        raise EndpointTableError(f"{where}: from {r['from']!r} is not one of {', '.join(SOURCES)}")
    if r["statistic"] not in STATISTICS[r["from"]]:
        raise EndpointTableError(f"{where}: statistic {r['statistic']!r} is not one of "
                                 f"{', '.join(STATISTICS[r['from']])} for from = {r['from']!r}")
    needs = {"last": "column", "count_not_null": "column", "any": "of", "serology_normalisation": "test",
             "last_detectable_day": "test", "max": "column"}
    if r["statistic"] in needs and needs[r["statistic"]] not in r:
        raise EndpointTableError(f"{where}: statistic {r['statistic']!r} needs field {needs[r['statistic']]!r}")
    if r["statistic"] == "serology_normalisation" and r.get("direction") not in ("low", "high"):
        raise EndpointTableError(f"{where}: direction must be 'low' or 'high'")
    return Variable(r["name"], r["description"], r["from"], r["statistic"], r.get("column"),
                    bool(r.get("after_baseline", False)), _conditions(r.get("rows"), f"{where}.rows"),
                    _conditions(r.get("where"), f"{where}.where"), _conditions(r.get("of"), f"{where}.of"),
                    r.get("test"), r.get("direction"))


def _endpoint(r: dict, where: str) -> Endpoint:
    _take(r, {"key", "type", "note", "report", "lower_bound_of", "success", "evaluable", "column", "ratio", "origin",
              "event", "event_label", "censor", "subset", "missing_data", "assessment_day", *_DESCRIPTIVE}, where)
    if not isinstance(r.get("key"), str) or not r["key"]:
        raise EndpointTableError(f"{where}: field 'key' is required (text)")
    where = f"{where} ({r['key']})"
    for name in ("type", *_DESCRIPTIVE):
        if not isinstance(r.get(name), str) or not r[name]:
            raise EndpointTableError(f"{where}: field {name!r} is required (text): every endpoint says what it is")
    kind = r["type"]
    if kind not in TYPES:
        raise EndpointTableError(f"{where}: type {kind!r} is not one of {', '.join(TYPES)}")
    required = {"binary": ("success", "evaluable"), "continuous": ("column",),
                "time_to_event": ("origin", "event", "event_label", "censor", "subset")}[kind]
    for name in required:
        if name not in r:
            raise EndpointTableError(f"{where}: a {kind} endpoint needs field {name!r}")
    if r.get("missing_data") not in (None, "non_responder"):
        raise EndpointTableError(f"{where}: missing_data is 'non_responder' (or absent)")
    if "missing_data" in r and kind != "binary":
        raise EndpointTableError(f"{where}: missing_data applies to binary (responder) endpoints")
    if "assessment_day" in r and (isinstance(r["assessment_day"], bool) or not isinstance(r["assessment_day"], (int, float))):
        raise EndpointTableError(f"{where}: assessment_day is a day (a number)")
    origin = r.get("origin")
    if origin is not None and not isinstance(origin, (str, int, float)):
        raise EndpointTableError(f"{where}: origin is a column name or a day")
    return Endpoint(
        key=r["key"], type=kind, note=r.get("note", ""), report=bool(r.get("report", True)),
        lower_bound_of=r.get("lower_bound_of"),
        success=_conditions(r.get("success"), f"{where}.success"),
        evaluable=_conditions(r.get("evaluable"), f"{where}.evaluable"),
        column=r.get("column"), ratio=bool(r.get("ratio", False)),
        origin=float(origin) if isinstance(origin, (int, float)) else origin,
        event=r.get("event"), event_label=r.get("event_label", ""), censor=r.get("censor"), subset=_conditions(r.get("subset"), f"{where}.subset"),
        missing_data=r.get("missing_data"),
        assessment_day=float(r["assessment_day"]) if "assessment_day" in r else None,
        **{name: r[name] for name in _DESCRIPTIVE})


def parse(text: str, source: str) -> Table:
    """Parse and check an endpoint table given as TOML text (``source`` names it in errors)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise EndpointTableError(f"{source}: not valid TOML: {error}") from None
    _take(raw, {"version", "variable", "endpoint"}, source)
    if not isinstance(raw.get("version"), str):
        raise EndpointTableError(f"{source}: 'version' (text) is required")
    variables = tuple(_variable(r, f"{source}: variable {i + 1}") for i, r in enumerate(raw.get("variable", [])))
    endpoints = tuple(_endpoint(r, f"{source}: endpoint {i + 1}") for i, r in enumerate(raw.get("endpoint", [])))
    for kind, names in (("variable", [v.name for v in variables]), ("endpoint", [e.key for e in endpoints])):
        seen = {n for n in names if names.count(n) > 1}
        if seen:
            raise EndpointTableError(f"{source}: {kind} names must be unique; repeated: {', '.join(sorted(seen))}")
    keys = {e.key for e in endpoints}
    columns = set()
    for e in endpoints:
        columns |= {e.key} | ({e.event_column} if e.type == "time_to_event" else set())
        if e.lower_bound_of is not None and e.lower_bound_of not in keys:
            raise EndpointTableError(f"{source}: endpoint {e.key}: lower_bound_of {e.lower_bound_of!r} is not an endpoint")
    clash = sorted(columns & {v.name for v in variables})
    if clash:
        raise EndpointTableError(f"{source}: endpoint columns and variables share the names {', '.join(clash)}; "
                                 "an endpoint's value would hide the variable")
    return Table(raw["version"], source, variables, endpoints)


@cache
def definitions() -> Table:
    """The endpoint table shipped with cartwin (``cartwin/endpoints/definitions.toml``)."""
    path = resources.files("cartwin.endpoints").joinpath("definitions.toml")
    return parse(path.read_text(), str(Path("cartwin") / "endpoints" / "definitions.toml"))
