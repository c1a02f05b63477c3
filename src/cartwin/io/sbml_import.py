"""Read an SBML model into a cartwin ``Model`` declaration, so that cartwin's engine solves it.

Supported: compartments of constant size; species (amount or concentration; boundary and constant
species stay fixed unless a rule or an event sets them); global parameters; reactions with kinetic
laws (local parameters become global ``<reaction>_<parameter>``); rate rules and assignment rules
on species, parameters and compartments; initial assignments; function definitions (expanded);
L3V2 ``rem``, ``quotient``, ``max``, ``min``; and events whose trigger depends on time and constants
only, with event assignments of any form (``x = 2e6``, ``x = x + dose``, ``x = 0.5 * y``) to species
and parameters, an optional delay that depends on constants, and numeric priorities.

Fixed-time events that add a constant amount to a state (``time >= 7`` with ``x = x + dose``)
become dose inputs of the model, so that they appear in a run's event table like any dose; every
other event is a :class:`~cartwin.simulate.timed_events.TimedEvent`, applied between solver
segments. Parameters and constant species that an event sets become states with rate 0.

Time: cartwin's time is in days. A model that declares its time unit (``timeUnits`` in Level 3,
the ``time`` unit definition in Level 2) is converted: ``time`` in its maths becomes
``factor * t`` and every rate is multiplied by ``factor``, where ``factor`` is the number of model
time units per day (86,400 for a model in seconds). A model that declares none is read in days,
and its notes say so.

SBML packages: one whose ``required`` attribute is false does not change the maths (layout,
render, and the layout and render annotations that libsbml reads into every Level 2 document);
it is ignored, with a note. A required package (comp, fbc, arrays, distrib, ...) is refused,
naming the package and its first element.

Anything else (algebraic rules, delay differential equations, state-dependent triggers, fast
reactions, variable compartments, variable stoichiometry, required packages) is listed in one
:class:`UnsupportedSBMLError`, each with the element it concerns.

Concentration species follow SBML semantics: ``d[S]/dt = sum(stoichiometry x rate) / volume``.
"""

from __future__ import annotations

import keyword
import math
from dataclasses import dataclass, field
from pathlib import Path

import libsbml
import numpy as np
import sympy as sp

from cartwin.io.errors import SBMLImportError, UnsupportedSBMLError
from cartwin.io.mathml import from_ast
from cartwin.model.declaration import Assignment, DoseInput, Model, Observable, Parameter, State
from cartwin.simulate.timed_events import TimedEvent
from cartwin.therapy.dosing import Dose

TIME = sp.Symbol("t", real=True)
SECONDS_PER_DAY = 86400.0

# packages that libsbml knows, and what they add; a required one changes the maths
PACKAGE_MEANING = {
    "comp": "hierarchical model composition", "fbc": "flux balance constraints",
    "qual": "qualitative (logical) models", "arrays": "arrays of elements",
    "distrib": "random distributions", "multi": "multistate and multicomponent species",
    "spatial": "spatial geometry", "dyn": "dynamic structures", "req": "required elements",
    "groups": "groups of elements", "layout": "diagram layout", "render": "diagram rendering",
}


@dataclass(frozen=True)
class ImportedModel:
    """An SBML model as a cartwin declaration. Each fixed-time event assignment ``state = state +
    amount`` is a dose input of the model (its scale is the amount, in terms of the constants)
    and one dose of 1 through it at the event's time, so the engine solves it like any dose.
    Every other event is in ``events``. ``time_factor``: model time units per day."""

    model: Model
    doses: tuple[Dose, ...]
    source: str
    notes: tuple[str, ...] = field(default=())
    events: tuple[TimedEvent, ...] = field(default=())
    time_factor: float = 1.0
    nonnegative: tuple[bool, ...] = field(default=())
    """Per state: a species (an amount or a concentration, never below zero) rather than a
    parameter that changes in time."""


def _read(source: str | Path) -> tuple[libsbml.SBMLDocument, str]:
    text = str(source)
    if text.lstrip().startswith("<"):
        doc, where = libsbml.readSBMLFromString(text), "<SBML string>"
    else:
        path = Path(source)
        if not path.is_file():
            raise SBMLImportError(f"{path}: no such file")
        doc, where = libsbml.readSBMLFromFile(str(path)), str(path)
    fatal = [doc.getError(i) for i in range(doc.getNumErrors())
             if doc.getError(i).getSeverity() >= libsbml.LIBSBML_SEV_ERROR]
    if fatal:
        listing = "; ".join(f"line {e.getLine()}: {e.getMessage().strip()}" for e in fatal[:5])
        raise SBMLImportError(f"{where}: not valid SBML ({len(fatal)} errors): {listing}")
    if doc.getModel() is None:
        raise SBMLImportError(f"{where}: the document has no model")
    return doc, where


def _packages(doc: libsbml.SBMLDocument) -> tuple[list[str], list[str]]:
    """(refusals, notes) for the SBML packages the document uses."""
    refused, notes = [], []
    for i in range(doc.getNumPlugins()):
        package = doc.getPlugin(i).getPackageName()
        # L3V2's extended math is part of core (rem, quotient, max, min, ...)
        if package == "l3v2extendedmath" or not doc.isPackageEnabled(package):
            continue
        meaning = PACKAGE_MEANING.get(package, "an SBML package")
        # Level 2 has no 'required' attribute: libsbml reads layout and render annotations
        # into plugins of every Level 2 document, and they never change the maths
        required = doc.getLevel() >= 3 and doc.getPackageRequired(package)
        if not required:
            notes.append(f"SBML package '{package}' ({meaning}) ignored: it does not change the maths")
            continue
        first = next((e for e in doc.getListOfAllElements() if e.getPackageName() == package
                      and not e.getElementName().startswith("listOf")), None)
        element = (f"<{package}:{first.getElementName()}"
                   + (f" id={first.getId()!r}" if first.isSetId() else "") + ">") if first else "the document"
        refused.append(f"SBML package '{package}' ({meaning}), required by the document, used by "
                       f"{element}: it changes the maths and cartwin cannot simulate it")
    return refused, notes


def _seconds(unit_definition) -> float | None:
    """Seconds in one unit of a pure time unit definition; None when it is not one."""
    if unit_definition is None or unit_definition.getNumUnits() != 1:
        return None
    u = unit_definition.getUnit(0)
    if u.getKind() != libsbml.UNIT_KIND_SECOND or u.getExponentAsDouble() != 1:
        return None
    return u.getMultiplier() * 10.0 ** u.getScale()


def _time_factor(doc: libsbml.SBMLDocument) -> tuple[float, str]:
    """Model time units per day, and a note of how it was found."""
    m = doc.getModel()
    unit = m.getTimeUnits() if doc.getLevel() >= 3 and m.isSetTimeUnits() else ("time" if doc.getLevel() < 3 else "")
    if not unit:
        return 1.0, "the model declares no time unit; its time is read in days"
    if unit in ("second", "dimensionless"):
        seconds = 1.0 if unit == "second" else None
    else:
        ud = m.getUnitDefinition(unit)
        if ud is None and doc.getLevel() < 3:
            return 1.0, "the model declares no time unit (Level 2 'time' undefined); its time is read in days"
        seconds = _seconds(ud)
    if seconds is None or seconds <= 0:
        return 1.0, f"the model's time unit {unit!r} is not a multiple of the second; its time is read in days"
    factor = SECONDS_PER_DAY / seconds
    return factor, (f"model time unit: {seconds:g} s (1 day = {factor:g} model time units); "
                    "converted to days" if factor != 1 else "model time unit: day")


def _unit(element) -> str:
    u = element.getUnits() if hasattr(element, "getUnits") else ""
    return u or "1"


def _text(expr: sp.Expr) -> str:
    """A declaration's text for ``expr``. The constants e and pi are written as numbers, so that a
    model quantity named ``E`` or ``pi`` cannot be confused with them."""
    expr = expr.xreplace({sp.E: sp.Float(math.e, 17), sp.pi: sp.Float(math.pi, 17)})
    return str(expr)


def _fixed_time(expr: sp.Expr) -> float | None:
    """``time >= c`` (or >, or c <= time, with time possibly scaled to days) with a number c -> c
    in days; anything else -> None."""
    if isinstance(expr, (sp.GreaterThan, sp.StrictGreaterThan)):
        diff = expr.lhs - expr.rhs
    elif isinstance(expr, (sp.LessThan, sp.StrictLessThan)):
        diff = expr.rhs - expr.lhs
    else:
        return None
    diff = sp.expand(diff)
    slope = diff.coeff(TIME)
    rest = sp.expand(diff - slope * TIME)
    if not (slope.is_number and rest.is_number) or not slope > 0:
        return None
    return float(-rest / slope)


def _formula(ast) -> str:
    return libsbml.formulaToL3String(ast) if ast is not None else "(no math)"


def import_sbml(source: str | Path, name: str | None = None) -> ImportedModel:
    doc, where = _read(source)
    m = doc.getModel()
    unsupported, notes = _packages(doc)
    factor, time_note = _time_factor(doc)
    notes.append(time_note)
    model_time = TIME * factor if factor != 1 else TIME

    def per_day(rate: sp.Expr) -> sp.Expr:  # d/d(model time) -> d/d(day)
        return rate * factor if factor != 1 else rate
    ids = ([c.getId() for c in m.getListOfCompartments()] + [s.getId() for s in m.getListOfSpecies()]
           + [p.getId() for p in m.getListOfParameters()])
    # ids that cannot be names in a declaration (Python keywords; 't', which is time in days)
    # are renamed, with a note
    rename = {}
    for i in ids:
        if i == "t" or keyword.iskeyword(i) or i in ("None", "True", "False"):
            new = i + "_"
            while new in ids or new in rename.values():
                new += "_"
            rename[i] = new
            notes.append(f"SBML id {i!r} is named {new!r} in cartwin ({i!r} is reserved)")
    symbols: dict[str, sp.Symbol] = {i: sp.Symbol(rename.get(i, i), real=True) for i in ids}
    functions = {}
    for fd in m.getListOfFunctionDefinitions():
        lam = fd.getMath()
        if lam is None:
            unsupported.append(f"function definition {fd.getId()} without math")
            continue
        args = [lam.getChild(i).getName() for i in range(lam.getNumChildren() - 1)]
        functions[fd.getId()] = (args, lam.getChild(lam.getNumChildren() - 1))

    def symbol(name_: str) -> sp.Symbol:
        if name_ not in symbols:  # reaction ids as rate symbols, or unknown names
            unsupported.append(f"reference to {name_!r}, which is not a compartment, species or parameter")
            symbols[name_] = sp.Symbol(name_, real=True)
        return symbols[name_]

    def expr(ast, where_: str) -> sp.Expr:
        if ast is None:
            raise SBMLImportError(f"{where}: {where_} has no math")
        try:
            return from_ast(ast, symbol, model_time, functions, where_)
        except SBMLImportError as exc:  # listed with the other constructs cartwin cannot solve
            unsupported.append(str(exc))
            return sp.Integer(0)

    # rules
    assignment_rules: dict[str, sp.Expr] = {}
    rate_rules: dict[str, sp.Expr] = {}
    for rule in m.getListOfRules():
        if rule.isAlgebraic():
            unsupported.append(f"algebraic rule {_formula(rule.getMath())} = 0")
        elif rule.isAssignment():
            assignment_rules[rule.getVariable()] = expr(rule.getMath(), f"assignment rule for {rule.getVariable()}")
        elif rule.isRate():
            # d x / d(model time) -> d x / d day
            rate_rules[rule.getVariable()] = per_day(expr(rule.getMath(), f"rate rule for {rule.getVariable()}"))
    initial_assignments = {ia.getSymbol(): expr(ia.getMath(), f"initial assignment of {ia.getSymbol()}")
                           for ia in m.getListOfInitialAssignments()}
    # what events set: such parameters and fixed species become states (rate 0 between events)
    event_targets = {ea.getVariable() for ev in m.getListOfEvents() for ea in ev.getListOfEventAssignments()}

    # local parameters of kinetic laws become global parameters
    parameters: list[Parameter] = []
    src = f"SBML import: {Path(where).name} (model {m.getId() or m.getName()})"
    states: list[State] = []

    def add_parameter(pid: str, value: float, unit: str, description: str) -> None:
        if value != value:
            unsupported.append(f"parameter {pid} has no value and no initial assignment")
            value = 0.0
        if pid in event_targets:  # an event sets it: a state that stays put between events
            states.append(State(pid, unit, description or pid, _text(sp.Float(value)), "0"))
            return
        parameters.append(Parameter(pid, float(value), unit, description or pid, src))

    for c in m.getListOfCompartments():
        if not c.getConstant() or c.getId() in rate_rules or c.getId() in assignment_rules:
            unsupported.append(f"compartment {c.getId()} of variable size")
        if c.getId() in event_targets:
            unsupported.append(f"compartment {c.getId()}: set by an event (variable size)")
        size = c.getSize() if c.isSetSize() else (1.0 if c.getSpatialDimensionsAsDouble() == 0 else float("nan"))
        if c.getId() not in initial_assignments:
            parameters.append(Parameter(c.getId(), float(size) if size == size else 1.0, _unit(c),
                                        f"compartment {c.getName() or c.getId()}", src))
            if size != size:
                unsupported.append(f"compartment {c.getId()} has no size")

    reaction_rates: dict[str, list[sp.Expr]] = {}
    for r in m.getListOfReactions():
        if r.isSetFast() and r.getFast():
            unsupported.append(f"reaction {r.getId()}: fast reaction")
        kl = r.getKineticLaw()
        if kl is None:
            unsupported.append(f"reaction {r.getId()}: no kinetic law")
            continue
        local = {}
        for lp in list(kl.getListOfLocalParameters()) + list(kl.getListOfParameters()):
            gid = f"{r.getId()}_{lp.getId()}"
            while gid in symbols:
                gid += "_local"
            local[lp.getId()] = sp.Symbol(gid, real=True)
            symbols[gid] = local[lp.getId()]
            add_parameter(gid, lp.getValue(), _unit(lp), f"local parameter {lp.getId()} of reaction {r.getId()}")
        saved = dict(symbols)
        symbols.update(local)
        rate = per_day(expr(kl.getMath(), f"kinetic law of {r.getId()}"))
        symbols.clear()
        symbols.update(saved)
        for ref, sign in ([(x, -1) for x in r.getListOfReactants()] + [(x, 1) for x in r.getListOfProducts()]):
            if ref.isSetId() and ref.getId() in assignment_rules | rate_rules:
                unsupported.append(f"reaction {r.getId()}: variable stoichiometry ({ref.getId()})")
            if ref.isSetStoichiometryMath():
                unsupported.append(f"reaction {r.getId()}: stoichiometryMath for {ref.getSpecies()}")
            stoich = ref.getStoichiometry() if ref.isSetStoichiometry() else 1.0
            stoich = 1.0 if stoich != stoich else stoich
            reaction_rates.setdefault(ref.getSpecies(), []).append(sign * sp.Float(stoich) * rate
                                                                   if stoich != 1 else sign * rate)

    assignments: list[Assignment] = []
    for s in m.getListOfSpecies():
        sid = s.getId()
        comp = symbols[s.getCompartment()]
        amount_based = s.getHasOnlySubstanceUnits()
        if s.isSetInitialAmount():
            init = sp.Float(s.getInitialAmount()) if amount_based else sp.Float(s.getInitialAmount()) / comp
        elif s.isSetInitialConcentration():
            init = sp.Float(s.getInitialConcentration()) * comp if amount_based else sp.Float(s.getInitialConcentration())
        else:
            init = None
        init = initial_assignments.get(sid, init)
        unit = s.getSubstanceUnits() or m.getSubstanceUnits() or "1"
        if sid in assignment_rules:
            assignments.append(Assignment(sid, _text(assignment_rules[sid]), unit, s.getName() or sid))
            continue
        if init is None:
            unsupported.append(f"species {sid} has no initial value")
            init = sp.Float(0)
        if sid in rate_rules:
            rate = rate_rules[sid]
        elif s.getBoundaryCondition() or s.getConstant() or sid not in reaction_rates:
            if sid in event_targets:
                states.append(State(sid, unit, s.getName() or sid, _text(init), "0"))
            elif init.is_number:
                parameters.append(Parameter(sid, float(init), unit, s.getName() or f"species {sid} (fixed)", src))
            else:
                assignments.append(Assignment(sid, _text(init), unit, s.getName() or sid))
            continue
        else:
            total = sp.Add(*reaction_rates[sid])
            rate = total if amount_based else total / comp
        states.append(State(sid, unit, s.getName() or sid, _text(init), _text(rate)))
    for p in m.getListOfParameters():
        pid = p.getId()
        if pid in assignment_rules:
            assignments.append(Assignment(pid, _text(assignment_rules[pid]), _unit(p), p.getName() or pid))
        elif pid in rate_rules or pid in event_targets:
            init = initial_assignments.get(pid, sp.Float(p.getValue()) if p.isSetValue() else None)
            if init is None:
                unsupported.append(f"parameter {pid} changes in time but has no initial value")
                init = sp.Float(0)
            rate = rate_rules.get(pid, sp.Integer(0))
            states.append(State(pid, _unit(p), p.getName() or pid, _text(init), _text(rate)))
        elif pid in initial_assignments:
            assignments.append(Assignment(pid, _text(initial_assignments[pid]), _unit(p), p.getName() or pid))
        else:
            add_parameter(pid, p.getValue() if p.isSetValue() else float("nan"), _unit(p), p.getName() or pid)
    for c in m.getListOfCompartments():
        if c.getId() in initial_assignments:
            assignments.append(Assignment(c.getId(), _text(initial_assignments[c.getId()]), _unit(c), c.getId()))

    state_names = {s.name for s in states}
    dynamic_names = state_names | {a.name for a in assignments if a.name in assignment_rules}
    doses, dose_inputs, events = _events(m, expr, symbols, states, state_names, dynamic_names,
                                         assignment_rules, factor, unsupported, notes)
    if m.getNumConstraints():
        notes.append(f"{m.getNumConstraints()} constraint(s) not checked during the solve")
    if unsupported:
        raise UnsupportedSBMLError(where, sorted(set(unsupported)))

    if rename:
        parameters, states, assignments, dose_inputs, events = _renamed(
            rename, parameters, states, assignments, dose_inputs, events)
        state_names = {s.name for s in states}
        assignment_rules = {rename.get(k, k): v for k, v in assignment_rules.items()}
    # assignments must come in dependency order for cartwin's declaration
    ordered = _order_assignments(assignments, {p.name for p in parameters} | state_names, where)
    observables = tuple(Observable(s.name, s.name, s.unit, s.description) for s in states) + tuple(
        Observable(a.name, a.name, a.unit, a.description) for a in ordered if a.name in assignment_rules)
    model = Model(
        name=name or _safe_name(m.getId() or Path(where).stem), version="sbml",
        description=(m.getName() or m.getId() or where), parameters=tuple(parameters), covariates=(),
        assignments=tuple(ordered), states=tuple(states), doses=tuple(dose_inputs), observables=observables,
        notes=(f"Imported from {Path(where).name} (sha256 {_digest(source)}).", *notes))
    _check_declaration(model, where)
    species = {rename.get(x.getId(), x.getId()) for x in m.getListOfSpecies()}
    nonnegative = tuple(st.name in species for st in model.states)
    return ImportedModel(model, tuple(doses), where, tuple(notes), tuple(events), factor, nonnegative)


def _renamed(rename, parameters, states, assignments, dose_inputs, events):
    from dataclasses import replace

    def n(x):
        return rename.get(x, x)
    return ([replace(p, name=n(p.name)) for p in parameters], [replace(x, name=n(x.name)) for x in states],
            [replace(a, name=n(a.name)) for a in assignments], [replace(d, state=n(d.state)) for d in dose_inputs],
            [replace(e, targets=tuple(n(t) for t in e.targets)) for e in events])


def _check_declaration(model: Model, where: str) -> None:
    """Parse the declaration as code generation will, so that what ``run`` would refuse is
    refused here, at load time (and by ``cartwin validate``)."""
    from cartwin.model.symbolic import parse
    from cartwin.model.declaration import ModelDeclarationError

    try:
        parse(model)
    except ModelDeclarationError as exc:
        raise SBMLImportError(f"{where}: {exc}") from None


def _events(m, expr, symbols, states, state_names, dynamic_names, assignment_rules, factor,
            unsupported, notes):
    """SBML events -> (doses, dose inputs, timed events)."""
    doses: list[Dose] = []
    dose_inputs: list[DoseInput] = []
    events: list[TimedEvent] = []
    # what changes during the solve: states, and assignment rules that use them or time
    dynamic = {symbols[n] for n in dynamic_names if n in symbols and n not in assignment_rules}
    grew = True
    while grew:
        grew = False
        for n, e in assignment_rules.items():
            if symbols[n] not in dynamic and e.free_symbols & (dynamic | {TIME}):
                dynamic.add(symbols[n])
                grew = True
    triggers_use: dict[str, set[str]] = {}
    for order, ev in enumerate(m.getListOfEvents()):
        label = ev.getId() or ev.getName() or f"#{order + 1}"
        trig = ev.getTrigger()
        if trig is None or trig.getMath() is None:
            unsupported.append(f"event {label}: no trigger")
            continue
        condition = expr(trig.getMath(), f"trigger of event {label}")
        moving = sorted(str(x) for x in condition.free_symbols & dynamic)
        if moving:
            unsupported.append(f"event {label}: trigger {_formula(trig.getMath())} depends on {moving}, which "
                               "change during the solve; cartwin fires events at times known before the "
                               "solve (triggers on time and constants only)")
            continue
        delay = sp.Integer(0)
        if ev.isSetDelay():
            delay = expr(ev.getDelay().getMath(), f"delay of event {label}")
            delay = delay / factor if factor != 1 else delay
            if delay.free_symbols & (dynamic | {TIME}):
                unsupported.append(f"event {label}: delay {_formula(ev.getDelay().getMath())} changes during "
                                   "the solve")
                continue
        priority = 0.0
        if ev.isSetPriority():
            p = expr(ev.getPriority().getMath(), f"priority of event {label}")
            if not p.is_number:
                unsupported.append(f"event {label}: priority {_formula(ev.getPriority().getMath())} is not a number")
                continue
            priority = float(p)
        targets, values = [], []
        for ea in ev.getListOfEventAssignments():
            var = ea.getVariable()
            if var in assignment_rules:
                unsupported.append(f"event {label}: assigns {var}, which an assignment rule defines")
                continue
            if var not in state_names:
                unsupported.append(f"event {label}: assigns {var}, which is not a species or parameter")
                continue
            targets.append(var)
            values.append(expr(ea.getMath(), f"assignment to {var} in event {label}"))
        if len(targets) != ev.getNumEventAssignments():
            continue
        delayed = delay != 0
        if delayed and not trig.getPersistent():
            unsupported.append(f"event {label}: a delay with a non-persistent trigger")
            continue
        if delayed and ev.getUseValuesFromTriggerTime() and any(
                v.free_symbols & (dynamic | {TIME}) for v in values):
            unsupported.append(f"event {label}: a delay with values computed at trigger time from "
                               "quantities that change")
            continue
        triggers_use[label] = {str(x) for x in (condition.free_symbols | delay.free_symbols)}
        at = _fixed_time(condition)
        additive = [sp.expand(v - symbols[var]) for var, v in zip(targets, values)]
        as_dose = (at is not None and not delayed and priority == 0.0 and all(
            not (a.free_symbols & (dynamic | {TIME})) for a in additive))
        if as_dose and at <= 0.0 and trig.getInitialValue():
            notes.append(f"event {label} ({_formula(trig.getMath())}) is true at time 0 with initialValue="
                         "true, so it never fires (SBML semantics)")
            continue
        if as_dose:
            for var, added in zip(targets, additive):
                route = f"EVENT{len(dose_inputs) + 1}"
                unit = next((st.unit for st in states if st.name == var), "")
                dose_inputs.append(DoseInput(route, var, unit, _text(added), f"event {label}: {var} += {added}"))
                doses.append(Dose(route, max(float(at), 0.0), 1.0, 0.0, f"event {label}"))
            continue
        events.append(TimedEvent(label, _text(condition), bool(trig.getInitialValue()), _text(delay),
                                 tuple(targets), tuple(_text(v) for v in values), priority, order))
    set_by_events = {str(symbols[t]) for e in events for t in e.targets} | {str(symbols[d.state]) for d in dose_inputs}
    for label, used in triggers_use.items():
        clash = sorted(used & set_by_events)
        if clash:
            unsupported.append(f"event {label}: its trigger or delay uses {clash}, which events set")
    return doses, dose_inputs, events


def _digest(source: str | Path) -> str:
    """The content's hash: the declaration (and so the compiled-code cache key) depends on the
    file's content, not on where it lies."""
    import hashlib

    text = str(source)
    data = text.encode() if text.lstrip().startswith("<") else Path(source).read_bytes()
    return hashlib.sha256(data).hexdigest()[:16]


def _safe_name(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in text) or "sbml_model"


def _order_assignments(assignments: list[Assignment], known: set[str], where: str = "assignment rules"
                       ) -> list[Assignment]:
    """SBML rules are unordered; a cartwin declaration lists each assignment after what it uses."""
    from sympy.parsing.sympy_parser import parse_expr

    from cartwin.model.symbolic import _rename_calls

    names = {a.name for a in assignments}
    local = {n: sp.Symbol(n) for n in names | known}

    def uses(text: str) -> set[str]:
        text, calls = _rename_calls(text, local)  # a quantity named like a function (exp)
        return {str(x) for x in parse_expr(text, local_dict={**local, **calls}).free_symbols}

    deps = {a.name: uses(a.expression) & names for a in assignments}
    pending = {a.name: a for a in assignments}
    out: list[Assignment] = []
    done: set[str] = set()
    while pending:
        ready = [n for n in pending if deps[n] <= done]
        if not ready:
            raise UnsupportedSBMLError(where, [f"circular assignment rules among {sorted(pending)}"])
        for n in ready:
            out.append(pending.pop(n))
            done.add(n)
    return out


# --- python-level simulation --------------------------------------------------------------------
@dataclass(frozen=True)
class SBMLSimulation:
    times: np.ndarray  # (T,)
    names: tuple[str, ...]  # observables: states, then dynamic assignments
    values: np.ndarray  # (N, T, O)
    theta: np.ndarray  # (N, P)
    ok: np.ndarray  # (N,)
    reasons: tuple[str, ...] = ()  # why a patient failed ("" when ok)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.values[:, :, self.names.index(name)]


def simulate_sbml(source: str | Path, t_obs, iiv: dict[str, float] | None = None, n: int = 1,
                  seed: int = 0, rtol: float = 1e-8, atol: float = 1e-10) -> SBMLSimulation:
    """Solve an SBML model with cartwin's generated code and LSODA. ``iiv`` maps parameter ids to
    the SD of log-normal inter-individual variability; patient i draws from its own stream.
    ``t_obs`` in days (converted from the model's time unit, see the module's notes)."""
    from cartwin.simulate.engine import make_solver
    from cartwin.simulate.timed_events import solve_with_events

    imported = import_sbml(source)
    model = imported.model
    iiv = dict(iiv or {})
    unknown = sorted(set(iiv) - set(model.parameter_names))
    if unknown:
        raise SBMLImportError(f"{imported.source}: inter-individual variability on unknown parameters {unknown}; "
                              f"parameters: {list(model.parameter_names)}")
    typical = np.array([p.value for p in model.parameters], float)
    omega = np.array([iiv.get(p, 0.0) for p in model.parameter_names])
    eta = np.stack([np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(i,))).standard_normal(typical.size)
                    for i in range(n)]) * omega
    theta = typical[None, :] * np.exp(eta)
    t_obs = np.asarray(t_obs, float)
    # an SBML simulation starts at time 0 with the model's initial values
    solved = solve_with_events(model, theta, np.zeros((n, 0)), [imported.doses] * n, t_obs,
                               make_solver("scipy-lsoda", rtol=rtol, atol=atol, max_steps=1_000_000),
                               imported.events, origin=0.0, nonnegative=imported.nonnegative)
    values = solved.observations
    return SBMLSimulation(t_obs, tuple(o.test for o in model.observables), values, theta, solved.ok,
                          solved.reasons)
