"""Read an SBML model into a cartwin ``Model`` declaration, so that cartwin's engine solves it.

Supported: compartments of constant size; species (amount or concentration; boundary and constant
species stay fixed unless a rule sets them); global parameters; reactions with kinetic laws
(local parameters become global ``<reaction>_<parameter>``); rate rules and assignment rules on
species, parameters and compartments; initial assignments; function definitions (expanded); and
events whose trigger is ``time >= c`` (or ``>``, or written the other way round) and whose
assignments add to a state (``x = x + amount``): those become dose jumps at fixed times.

Anything else (algebraic rules, delays, event priorities, state-dependent triggers, events that
set rather than add, fast reactions, variable compartments, SBML packages) is listed in one
:class:`UnsupportedSBMLError`.

Concentration species follow SBML semantics: ``d[S]/dt = sum(stoichiometry x rate) / volume``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import libsbml
import numpy as np
import sympy as sp

from cartwin.io.errors import SBMLImportError, UnsupportedSBMLError
from cartwin.io.mathml import from_ast
from cartwin.model.declaration import Assignment, DoseInput, Model, Observable, Parameter, State
from cartwin.therapy.dosing import Dose

TIME = sp.Symbol("t", real=True)


@dataclass(frozen=True)
class ImportedModel:
    """An SBML model as a cartwin declaration. Each fixed-time event assignment ``state = state +
    amount`` is a dose input of the model (its scale is the amount, in terms of the constants)
    and one dose of 1 through it at the event's time, so the engine solves it like any dose."""

    model: Model
    doses: tuple[Dose, ...]
    source: str
    notes: tuple[str, ...] = field(default=())


def _read(source: str | Path) -> tuple[libsbml.SBMLDocument, str]:
    text = str(source)
    if text.lstrip().startswith("<"):
        doc, where = libsbml.readSBMLFromString(text), "<SBML string>"
    else:
        path = Path(source)
        if not path.exists():
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


def _unit(element) -> str:
    u = element.getUnits() if hasattr(element, "getUnits") else ""
    return u or "1"


def _time_trigger(expr: sp.Expr) -> float | None:
    """``time >= c`` (or >, or c <= time) -> c; anything else -> None."""
    if isinstance(expr, (sp.GreaterThan, sp.StrictGreaterThan)) and expr.lhs == TIME and expr.rhs.is_number:
        return float(expr.rhs)
    if isinstance(expr, (sp.LessThan, sp.StrictLessThan)) and expr.rhs == TIME and expr.lhs.is_number:
        return float(expr.lhs)
    return None


def import_sbml(source: str | Path, name: str | None = None) -> ImportedModel:
    doc, where = _read(source)
    m = doc.getModel()
    unsupported: list[str] = []
    for i in range(doc.getNumPlugins()):
        package = doc.getPlugin(i).getPackageName()
        # L3V2's extended-math plugin is part of core; other packages (comp, fbc, ...) are not
        if package != "l3v2extendedmath" and doc.isPackageEnabled(package):
            unsupported.append(f"SBML package '{package}'")
    ids = ([c.getId() for c in m.getListOfCompartments()] + [s.getId() for s in m.getListOfSpecies()]
           + [p.getId() for p in m.getListOfParameters()])
    if "t" in ids:
        unsupported.append("an element with id 't' (cartwin's name for time); rename it")
    symbols: dict[str, sp.Symbol] = {i: sp.Symbol(i, real=True) for i in ids}
    functions = {}
    for fd in m.getListOfFunctionDefinitions():
        lam = fd.getMath()
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
        return from_ast(ast, symbol, TIME, functions, f"{where}: {where_}")

    # rules
    assignment_rules: dict[str, sp.Expr] = {}
    rate_rules: dict[str, sp.Expr] = {}
    for rule in m.getListOfRules():
        if rule.isAlgebraic():
            unsupported.append("algebraic rule")
        elif rule.isAssignment():
            assignment_rules[rule.getVariable()] = expr(rule.getMath(), f"assignment rule for {rule.getVariable()}")
        elif rule.isRate():
            rate_rules[rule.getVariable()] = expr(rule.getMath(), f"rate rule for {rule.getVariable()}")
    initial_assignments = {ia.getSymbol(): expr(ia.getMath(), f"initial assignment of {ia.getSymbol()}")
                           for ia in m.getListOfInitialAssignments()}

    # local parameters of kinetic laws become global parameters
    parameters: list[Parameter] = []
    src = f"SBML import: {Path(where).name} (model {m.getId() or m.getName()})"

    def add_parameter(pid: str, value: float, unit: str, description: str) -> None:
        if value != value:
            unsupported.append(f"parameter {pid} has no value and no initial assignment")
            value = 0.0
        parameters.append(Parameter(pid, float(value), unit, description or pid, src))

    for c in m.getListOfCompartments():
        if not c.getConstant() or c.getId() in rate_rules or c.getId() in assignment_rules:
            unsupported.append(f"compartment {c.getId()} of variable size")
        size = c.getSize() if c.isSetSize() else (1.0 if c.getSpatialDimensionsAsDouble() == 0 else float("nan"))
        if c.getId() not in initial_assignments:
            add_parameter(c.getId(), size, _unit(c), f"compartment {c.getName() or c.getId()}")

    reaction_rates: dict[str, list[sp.Expr]] = {}
    for r in m.getListOfReactions():
        if r.isSetFast() and r.getFast():
            unsupported.append(f"fast reaction {r.getId()}")
        kl = r.getKineticLaw()
        if kl is None:
            unsupported.append(f"reaction {r.getId()} without a kinetic law")
            continue
        local = {}
        for lp in list(kl.getListOfLocalParameters()) + list(kl.getListOfParameters()):
            gid = f"{r.getId()}_{lp.getId()}"
            local[lp.getId()] = sp.Symbol(gid, real=True)
            symbols[gid] = local[lp.getId()]
            add_parameter(gid, lp.getValue(), _unit(lp), f"local parameter {lp.getId()} of reaction {r.getId()}")
        saved = dict(symbols)
        symbols.update(local)
        rate = expr(kl.getMath(), f"kinetic law of {r.getId()}")
        symbols.clear()
        symbols.update(saved)
        for ref, sign in ([(x, -1) for x in r.getListOfReactants()] + [(x, 1) for x in r.getListOfProducts()]):
            if ref.isSetId() and ref.getId() in assignment_rules | rate_rules:
                unsupported.append(f"variable stoichiometry in reaction {r.getId()}")
            stoich = ref.getStoichiometry() if ref.isSetStoichiometry() else 1.0
            reaction_rates.setdefault(ref.getSpecies(), []).append(sign * sp.Float(stoich) * rate
                                                                   if stoich != 1 else sign * rate)

    states: list[State] = []
    assignments: list[Assignment] = []
    dynamic: set[str] = set()
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
            assignments.append(Assignment(sid, str(assignment_rules[sid]), unit, s.getName() or sid))
            dynamic.add(sid)
            continue
        if sid in rate_rules:
            rate = rate_rules[sid]
        elif s.getBoundaryCondition() or s.getConstant() or sid not in reaction_rates:
            if init is None:
                unsupported.append(f"species {sid} has no initial value")
                init = sp.Float(0)
            if init.is_number:
                add_parameter(sid, float(init), unit, s.getName() or f"species {sid} (fixed)")
            else:
                assignments.append(Assignment(sid, str(init), unit, s.getName() or sid))
            continue
        else:
            total = sp.Add(*reaction_rates[sid])
            rate = total if amount_based else total / comp
        if init is None:
            unsupported.append(f"species {sid} has no initial value")
            init = sp.Float(0)
        states.append(State(sid, unit, s.getName() or sid, str(init), str(rate)))
    for p in m.getListOfParameters():
        pid = p.getId()
        if pid in assignment_rules:
            assignments.append(Assignment(pid, str(assignment_rules[pid]), _unit(p), p.getName() or pid))
        elif pid in rate_rules:
            init = initial_assignments.get(pid, sp.Float(p.getValue()) if p.isSetValue() else None)
            if init is None:
                unsupported.append(f"parameter {pid} with a rate rule has no initial value")
                init = sp.Float(0)
            states.append(State(pid, _unit(p), p.getName() or pid, str(init), str(rate_rules[pid])))
        elif pid in initial_assignments:
            assignments.append(Assignment(pid, str(initial_assignments[pid]), _unit(p), p.getName() or pid))
        else:
            add_parameter(pid, p.getValue() if p.isSetValue() else float("nan"), _unit(p), p.getName() or pid)
    for c in m.getListOfCompartments():
        if c.getId() in initial_assignments:
            assignments.append(Assignment(c.getId(), str(initial_assignments[c.getId()]), _unit(c), c.getId()))

    # events: fixed-time additive assignments to states become dose jumps
    state_names = {s.name for s in states}
    doses: list[Dose] = []
    dose_inputs: list[DoseInput] = []
    for ev in m.getListOfEvents():
        label = ev.getId() or ev.getName() or "(unnamed)"
        if ev.isSetDelay():
            unsupported.append(f"event {label}: delay")
        if ev.isSetPriority():
            unsupported.append(f"event {label}: priority")
        trig = ev.getTrigger()
        at = _time_trigger(expr(trig.getMath(), f"trigger of event {label}")) if trig is not None else None
        if at is None:
            unsupported.append(f"event {label}: trigger is not 'time >= constant'")
            continue
        for ea in ev.getListOfEventAssignments():
            var = ea.getVariable()
            target = symbols.get(var)
            value = expr(ea.getMath(), f"assignment to {var} in event {label}")
            added = sp.simplify(value - target) if target is not None else value
            if var not in state_names or (added.free_symbols & ({symbols[n] for n in state_names} | {TIME})):
                unsupported.append(f"event {label}: assignment to {var} is not 'state = state + amount'")
                continue
            if at == 0.0 and trig.getInitialValue():
                unsupported.append(f"event {label} at time 0 with trigger initialValue=true never fires in SBML "
                                   "semantics; set initialValue=false if the dose is meant")
                continue
            route = f"EVENT{len(dose_inputs) + 1}"
            unit = next((st.unit for st in states if st.name == var), "")
            dose_inputs.append(DoseInput(route, var, unit, str(added), f"event {label}: {var} += {added}"))
            doses.append(Dose(route, float(at), 1.0, 0.0, f"event {label}"))
    if m.getNumConstraints():
        unsupported.append(f"{m.getNumConstraints()} constraint(s)")
    if unsupported:
        raise UnsupportedSBMLError(where, sorted(set(unsupported)))

    # assignments must come in dependency order for cartwin's declaration
    ordered = _order_assignments(assignments, {p.name for p in parameters} | state_names)
    observables = tuple(Observable(s.name, s.name, s.unit, s.description) for s in states) + tuple(
        Observable(a.name, a.name, a.unit, a.description) for a in ordered if a.name in assignment_rules)
    model = Model(
        name=name or _safe_name(m.getId() or Path(where).stem), version="sbml",
        description=(m.getName() or m.getId() or where), parameters=tuple(parameters), covariates=(),
        assignments=tuple(ordered), states=tuple(states), doses=tuple(dose_inputs), observables=observables,
        notes=(f"Imported from {where}.",))
    return ImportedModel(model, tuple(doses), where)


def _safe_name(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in text) or "sbml_model"


def _order_assignments(assignments: list[Assignment], known: set[str]) -> list[Assignment]:
    """SBML rules are unordered; a cartwin declaration lists each assignment after what it uses."""
    from sympy.parsing.sympy_parser import parse_expr

    names = {a.name for a in assignments}
    local = {n: sp.Symbol(n) for n in names | known}
    deps = {a.name: {str(x) for x in parse_expr(a.expression, local_dict=local).free_symbols} & names
            for a in assignments}
    pending = {a.name: a for a in assignments}
    out: list[Assignment] = []
    done: set[str] = set()
    while pending:
        ready = [n for n in pending if deps[n] <= done]
        if not ready:
            raise UnsupportedSBMLError("assignment rules", [f"circular assignment rules among {sorted(pending)}"])
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

    def __getitem__(self, name: str) -> np.ndarray:
        return self.values[:, :, self.names.index(name)]


def simulate_sbml(source: str | Path, t_obs, iiv: dict[str, float] | None = None, n: int = 1,
                  seed: int = 0, rtol: float = 1e-8, atol: float = 1e-10) -> SBMLSimulation:
    """Solve an SBML model with cartwin's generated code and LSODA. ``iiv`` maps parameter ids to
    the SD of log-normal inter-individual variability; patient i draws from its own stream."""
    from cartwin.simulate.engine import make_solver, solve

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
    solved = solve(model, theta, np.zeros((n, 0)), [imported.doses] * n, t_obs,
                   make_solver("scipy-lsoda", rtol=rtol, atol=atol, max_steps=1_000_000),
                   origin=0.0, nonnegative=False)
    values = solved.observations
    return SBMLSimulation(t_obs, tuple(o.test for o in model.observables), values, theta, solved.ok)
