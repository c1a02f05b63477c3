"""Rules that react to the simulated patient, evaluated inside the simulation.

A protocol rule watches read-outs on daily checks and, when all its conditions hold, gives a
dose (tocilizumab, dexamethasone, a methylprednisolone pulse, filgrastim, a second CAR-T
infusion) or defers lymphodepletion. The doses enter the model through its dose inputs, so
their effects are the model's (cited in docs/model.md), and the patient goes on from there.

How it runs (:func:`solve_with_rules`): all patients are solved with their planned doses on the
output days plus the daily checks (observations are read from the solver's dense output, so
extra check days do not change a single step). For each patient the checks are read in time
order; at the first day a rule fires, its doses are added and the patient is solved again from
the start with them; checks up to that day are settled and only later checks are read on the
next pass. A patient for whom no rule fires keeps the numbers of the first solve, which are the
numbers of a run without rules. Everything is per patient, so the result does not depend on
the chunk or the worker.

The CRS grade of a check (``CRS_GRADE``) is the ASTCT 2019 grade from the clinical rule table
(``clinical/rules/crs_icans.toml``): fever >= 38 C with the worse of the hypotension and
hypoxia grades; after tocilizumab or a glucocorticoid (ANTICYT) fever is no longer required.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

from cartwin.clinical.ruleset import settings
from cartwin.model.declaration import Model
from cartwin.simulate.engine import Solved, solve
from cartwin.therapy.dosing import Dose
from cartwin.therapy.supportive import RULE_DRUGS

CRS_GRADE = "CRS_GRADE"
CRS_INPUTS = ("TEMP", "HYPOTEN", "HYPOXIA", "ANTICYT")
LYMPHODEPLETION_ROUTES = ("FLUDARABINE", "CYCLOPHOSPHAMIDE")
_OPS = {"below": np.less, "above": np.greater, "at_least": np.greater_equal, "at_most": np.less_equal}
_OP_TEXT = {"below": "<", "above": ">", "at_least": ">=", "at_most": "<="}


@dataclass(frozen=True)
class Condition:
    test: str
    op: str  # below, above, at_least, at_most
    value: float
    for_days: int = 1

    def text(self) -> str:
        span = f" for {self.for_days} days" if self.for_days > 1 else ""
        return f"{self.test} {_OP_TEXT[self.op]} {self.value:g}{span}"


@dataclass(frozen=True)
class ReactiveRule:
    """A protocol rule resolved for one arm (the product's name is known for a second infusion)."""

    id: str
    conditions: tuple[Condition, ...]
    first_day: float
    last_day: float
    max_times: int = 1
    min_interval_days: float = 0.0
    # give: a course of ``times`` doses ``every_days`` apart
    drug: str = ""  # name in the event table (the product's name for a second infusion)
    route: str = ""
    amount: float = 0.0  # per unit of ``per``
    per: str = "flat"  # flat or kg
    unit: str = ""  # amount unit (mg, ug, cells)
    max_amount: float | None = None
    times: int = 1
    every_days: float = 1.0
    duration_days: float = 0.0
    # defer lymphodepletion
    defer_days: float = 0.0
    defer_times: int = 0
    then: str = ""  # proceed, reduce, omit
    fraction: float | None = None
    indication: str = ""

    @property
    def defers(self) -> bool:
        return self.defer_times > 0

    def describe(self) -> str:
        return " and ".join(c.text() for c in self.conditions)

    def course(self, day: float, weight_kg: float, last_day: float) -> list[Dose]:
        amount = self.amount * (weight_kg if self.per == "kg" else 1.0)
        why = f" ({self.indication})" if self.indication else ""
        note = f"rule {self.id}{why}: {self.describe()} on day {day:g}"
        if self.per == "kg":
            note += f"; {self.amount:g} {self.unit}/kg x {weight_kg:.1f} kg"
        if self.max_amount is not None and amount > self.max_amount:
            amount, note = self.max_amount, note + f", capped at {self.max_amount:g} {self.unit}"
        days = [day + j * self.every_days for j in range(self.times)]
        return [Dose(self.route, d, amount, self.duration_days, self.drug, note, self.id)
                for d in days if d <= last_day]


@dataclass(frozen=True)
class RuleEvent:
    """A rule's decision that is not a dose (EVID 2 in the event table)."""

    day: float
    note: str
    rule: str


@dataclass(frozen=True)
class RuledSolve:
    solved: Solved
    doses: list[list[Dose]]
    other: list[list[RuleEvent]] = field(default_factory=list)
    passes: int = 1


def needed_tests(rules: Sequence[ReactiveRule]) -> set[str]:
    tests = set()
    for r in rules:
        for c in r.conditions:
            tests.update(CRS_INPUTS if c.test == CRS_GRADE else (c.test,))
    return tests


def check_rules(model: Model, rules: Sequence[ReactiveRule]) -> list[str]:
    """Problems with rules against a model: unknown read-outs or dose inputs."""
    tests = {o.test for o in model.observables}
    routes = {d.name for d in model.doses}
    problems = []
    for r in rules:
        for c in r.conditions:
            missing = [t for t in (CRS_INPUTS if c.test == CRS_GRADE else (c.test,)) if t not in tests]
            if missing:
                problems.append(f"rules.{r.id}.when: model {model.name} has no read-out {missing}; "
                                f"known: {sorted(tests)} and {CRS_GRADE}")
        if not r.defers and r.route not in routes:
            problems.append(f"rules.{r.id}.give: model {model.name} has no dose input {r.route}")
    return problems


def crs_grade(values: dict[str, np.ndarray]) -> np.ndarray:
    """ASTCT 2019 CRS grade of each day from TEMP, HYPOTEN, HYPOXIA and ANTICYT arrays (the
    clinical rule table's thresholds and maps; no grading window: a rule has its own)."""
    config = settings("crs_icans")["crs"]
    fever = values["TEMP"] >= config["fever_at_least_c"]

    def grade(category, mapping):
        out = np.zeros(category.shape, np.int64)
        for k, g in mapping.items():
            out[np.rint(category) == int(k)] = g
        return out

    organ = np.maximum(grade(values["HYPOTEN"], config["hypotension_grade"]),
                       grade(values["HYPOXIA"], config["hypoxia_grade"]))
    support = (values["HYPOTEN"] > 0) | (values["HYPOXIA"] > 0)
    treated = np.maximum.accumulate(values["ANTICYT"] > 0, axis=-1)
    return np.where(fever, np.maximum(organ, 1), np.where(treated & support, organ, 0))


def _holds(condition: Condition, values: dict[str, np.ndarray]) -> np.ndarray:
    """(N, C) whether the condition holds at each check, persistence included."""
    x = crs_grade(values) if condition.test == CRS_GRADE else values[condition.test]
    ok = _OPS[condition.op](x, condition.value)
    k = condition.for_days
    if k == 1:
        return ok
    run = np.zeros(ok.shape, np.int64)  # consecutive days the comparison has held
    for j in range(ok.shape[1]):
        run[:, j] = np.where(ok[:, j], (run[:, j - 1] if j else 0) + 1, 0)
    return run >= k


def check_days(rules: Sequence[ReactiveRule], days: np.ndarray) -> np.ndarray:
    """The daily checks: whole days within the output days (adding earlier or later times would
    move the solver's start or end) and within some rule's window."""
    lo = max(days[0], min(r.first_day for r in rules))
    hi = min(days[-1], max(r.last_day for r in rules))
    if hi < lo:
        return np.empty(0)
    history = max(c.for_days for r in rules for c in r.conditions) - 1  # persistence looks back
    return np.arange(math.ceil(max(days[0], lo - history)), math.floor(hi) + 1, dtype=float)


def solve_with_rules(model: Model, theta: np.ndarray, covariates, doses: Sequence[Sequence[Dose]],
                     days: np.ndarray, solver, rules: Sequence[ReactiveRule], weight_kg: np.ndarray, *,
                     which: Sequence[int] | None = None, compiled=None) -> RuledSolve:
    """Solve N patients with rules that react to them (see the module docstring)."""
    from cartwin.model.codegen import compile_model

    days = np.asarray(days, float)
    n = len(doses)
    theta = np.atleast_2d(np.asarray(theta, float))
    covariates = {k: np.broadcast_to(np.asarray(v, float), (n,)) for k, v in covariates.items()} \
        if isinstance(covariates, dict) else np.asarray(covariates, float)
    compiled = compiled if compiled is not None else compile_model(model)
    which = tuple(range(len(model.observables))) if which is None else tuple(int(i) for i in which)
    doses = [list(d) for d in doses]
    other: list[list[RuleEvent]] = [[] for _ in range(n)]

    deferrals = [r for r in rules if r.defers]
    giving = [r for r in rules if not r.defers]
    if deferrals:
        _defer(model, compiled, theta, covariates, doses, other, deferrals)

    tests = [o.test for o in model.observables]
    need = sorted(needed_tests(giving))
    extra = tuple(tests.index(t) for t in need if tests.index(t) not in which)
    ask = which + extra
    checks = check_days(giving, days) if giving else np.empty(0)
    grid = np.union1d(days, checks)
    at_days = np.searchsorted(grid, days)
    at_checks = np.searchsorted(grid, checks)

    states = np.full((n, days.size, len(model.state_names)), np.nan)
    obs = np.full((n, days.size, len(which)), np.nan)
    ok = np.zeros(n, bool)
    reasons = [""] * n
    constants = None
    counters = None
    fired_count = np.zeros((n, len(giving)), np.int64)
    last_fired = np.full((n, len(giving)), -np.inf)
    settled = np.full(n, -np.inf)  # checks up to this day are decided
    pending = np.arange(n)
    passes = 0
    while pending.size:
        passes += 1
        sub_cov = covariates[pending] if isinstance(covariates, np.ndarray) else {k: v[pending] for k, v in covariates.items()}
        s = solve(model, theta[pending], sub_cov, [doses[i] for i in pending], grid, solver,
                  which=ask, compiled=compiled)
        if constants is None:
            constants = np.full((n, s.constants.shape[1]), np.nan)
            if s.counters is not None:
                counters = np.zeros((n,) + s.counters.shape[1:], s.counters.dtype)
        values = {t: s.observations[:, at_checks, ask.index(tests.index(t))] for t in need}
        holds = [np.logical_and.reduce([_holds(c, values) for c in r.conditions]) for r in giving]
        still = []
        for row, i in enumerate(pending):
            fired = _first_firing(giving, holds, row, checks, settled[i], fired_count[i], last_fired[i]) \
                if s.ok[row] and checks.size else None
            if fired is None:
                states[i] = s.states[row, at_days]
                obs[i] = s.observations[row][at_days][:, : len(which)]
                ok[i], reasons[i] = bool(s.ok[row]), s.reasons[row]
                constants[i] = s.constants[row]
                if counters is not None and s.counters is not None:
                    counters[i] = s.counters[row]
                continue
            day, which_rules = fired
            for r_index in which_rules:
                rule = giving[r_index]
                doses[i].extend(rule.course(day, float(weight_kg[i]), float(days[-1])))
                fired_count[i, r_index] += 1
                last_fired[i, r_index] = day
            settled[i] = day
            still.append(i)
        pending = np.array(still, dtype=np.int64)
    for i in range(n):
        doses[i].sort(key=lambda d: d.day)  # stable: planned order kept at equal days
    solved = Solved(days, states, obs, which, ok, tuple(reasons), constants, counters)
    return RuledSolve(solved, doses, other, passes)


def _first_firing(rules, holds, row, checks, settled, count, last):
    """(day, indices of the rules that fire that day) at the first check after ``settled``."""
    start = int(np.searchsorted(checks, settled, side="right"))
    for j in range(start, checks.size):
        day = checks[j]
        firing = [k for k, r in enumerate(rules)
                  if r.first_day <= day <= r.last_day and count[k] < r.max_times
                  and day - last[k] >= r.min_interval_days and holds[k][row, j]]
        if firing:
            return float(day), firing
    return None


def _defer(model, compiled, theta, covariates, doses, other, rules):
    """Deferral at screening: the conditions are read on the patient's pre-treatment values (the
    model's initial state, which holds until the first lymphodepleting dose), on the day of that
    dose. The pre-treatment state is stationary, so counts low at screening are still low after a
    deferral: the deferral is recorded and, after the last one, ``then`` applies."""
    from cartwin.simulate.engine import covariate_matrix

    n = len(doses)
    K = compiled.constants(theta, covariate_matrix(model, covariates, n))
    Y0 = compiled.initial(K)
    tests = [o.test for o in model.observables]
    need = sorted(needed_tests(rules))
    idx = [tests.index(t) for t in need]
    for i in range(n):
        ld_days = [d.day for d in doses[i] if d.route in LYMPHODEPLETION_ROUTES]
        if not ld_days:
            continue
        day = min(ld_days)
        values = compiled.observe(Y0[i][None, None, :], K[i][None, :], np.array([day]), idx)
        values = {t: values[:, :, k] for k, t in enumerate(need)}
        for rule in rules:
            if not np.logical_and.reduce([_holds(c, values) for c in rule.conditions])[0, 0]:
                continue
            what = rule.describe()
            for k in range(rule.defer_times):
                other[i].append(RuleEvent(day, f"rule {rule.id}: {what} at screening; lymphodepletion "
                                          f"deferred {rule.defer_days:g} days (deferral {k + 1} of "
                                          f"{rule.defer_times}; pre-treatment counts do not change in "
                                          "the model)", rule.id))
            if rule.then == "proceed":
                note = "counts still low after deferral; lymphodepletion given as planned"
                other[i].append(RuleEvent(day, f"rule {rule.id}: {note}", rule.id))
            else:
                factor = 0.0 if rule.then == "omit" else float(rule.fraction)
                label = "omitted" if rule.then == "omit" else f"reduced to {factor:g} of the dose"
                doses[i] = [replace(d, amount=d.amount * factor, rule=rule.id,
                                    note=f"{d.note}; rule {rule.id}: {what} after deferral, {label}")
                            if d.route in LYMPHODEPLETION_ROUTES else d for d in doses[i]]
            break  # one deferral rule decides


def resolve_rules(rules, arm_id: str, product_name: str, last_day: float) -> tuple[ReactiveRule, ...]:
    """A protocol's rules (``protocol.rules``) that apply to arm ``arm_id``, resolved."""
    out = []
    for r in rules:
        if r.arms is not None and arm_id not in r.arms:
            continue
        conditions = tuple(Condition(c.test, op, float(getattr(c, op)), int(c.for_days))
                           for c in r.when for op in _OPS if getattr(c, op) is not None)
        common = dict(id=r.id, conditions=conditions, first_day=float(r.from_day),
                      last_day=float(last_day if r.to_day is None else min(r.to_day, last_day)),
                      max_times=int(r.max_times), indication=r.indication)
        if r.defer_lymphodepletion is not None:
            d = r.defer_lymphodepletion
            out.append(ReactiveRule(**common, defer_days=float(d.days), defer_times=int(d.times),
                                    then=d.then, fraction=d.fraction))
            continue
        g = r.give
        drug = RULE_DRUGS[g.drug]
        if g.mg is not None or g.cells is not None:
            amount, per = float(g.mg if g.mg is not None else g.cells), "flat"
        else:
            amount, per = float(g.mg_per_kg or g.ug_per_kg or g.cells_per_kg), "kg"
        hours = drug.infusion_hours if g.infusion_hours is None else float(g.infusion_hours)
        course = g.times * g.every_days
        interval = course if r.min_interval_days is None else float(r.min_interval_days)
        out.append(ReactiveRule(**common, min_interval_days=interval,
                                drug=product_name if g.drug == "car-t" else g.drug, route=drug.route,
                                amount=amount, per=per, unit=drug.unit, max_amount=g.max_mg, times=int(g.times),
                                every_days=float(g.every_days), duration_days=hours / 24.0))
    return tuple(out)
