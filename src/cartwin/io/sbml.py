"""Write a cartwin model, for one patient under one therapy, as SBML Level 3 Version 2.

Mapping (docs/interchange.md has the full table):

- time: SBML ``time`` is days since the **first intervention** (the first lymphodepleting dose,
  or the CAR-T infusion when there is none), so that a tool that starts at 0, as most do, sees
  the whole therapy. ``T_INFUSION`` is the SBML time of the infusion and the assignment rule
  ``protocol_day = time - T_INFUSION`` gives the day relative to it (cartwin's ``t``);
- parameters and covariates: constant parameters with units, name = meaning, source in notes;
- assignments (per-patient constants and dynamic quantities alike): non-constant parameters
  with assignment rules, so that changing a parameter in a simulator propagates;
- states: non-constant parameters with **rate rules**, not species. The model's states mix
  amounts (mg), concentrations (cells/uL, g/L) and dimensionless indices (fold baseline,
  normalised inflammation); as species each would need a compartment and a substance
  interpretation that is false for most of them. Rate rules carry the ODEs exactly;
- observables: non-constant parameters ``obs_<TEST>`` with assignment rules;
- doses: one constant parameter per administration holding the amount in the route's unit
  (mg, cells), and time-triggered events. A bolus (the CAR-T infusion) adds ``amount x scale``
  to its state; an infusion (fludarabine, cyclophosphamide) adds ``amount / duration`` to the
  route's infusion-rate parameter ``INF_<route>`` at its start and removes it at its end; the
  rate enters the state's rate rule times the route's scale. Every trigger has
  ``initialValue = false``, so that a dose at time 0 fires (with ``true`` it is silently lost);
  ``persistent = true`` and ``useValuesFromTriggerTime = true``.

A sample at the time of a dose is post-dose in SBML simulators (libRoadRunner reports the
value after the event) and pre-dose in cartwin; to reproduce a pre-dose sample, sample just
before the dose time.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

import libsbml
import numpy as np
import sympy as sp

from cartwin import __version__
from cartwin.io.errors import SBMLExportError
from cartwin.io.mathml import to_ast
from cartwin.io.scenario import Scenario, build_scenario
from cartwin.io.units import UnitTable, _check, note_for
from cartwin.model.codegen import _safe, compile_model
from cartwin.model.symbolic import parse
from cartwin.model.declaration import Model
from cartwin.therapy.products import Product
from cartwin.therapy.regimens import Regimen

# in the notes of every model cartwin exports: how an earlier export is told from a user's file
EXPORT_MARKER = "Exported by cartwin"

TIME_ID = "protocol_day"
INFUSION_TIME_ID = "T_INFUSION"
_SID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class ValidationReport:
    errors: tuple[str, ...]
    warnings: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.errors


def validate_sbml(text: str, units: bool = True) -> ValidationReport:
    """Read the document back (missing required attributes surface only on reading) and run
    libsbml's consistency checks. Severity error and fatal are errors; the rest warnings."""
    doc = libsbml.readSBMLFromString(text)
    doc.setConsistencyChecks(libsbml.LIBSBML_CAT_UNITS_CONSISTENCY, units)
    doc.setConsistencyChecks(libsbml.LIBSBML_CAT_MODELING_PRACTICE, False)
    doc.checkConsistency()
    errors, warnings = [], []
    for i in range(doc.getNumErrors()):
        e = doc.getError(i)
        line = f"{e.getErrorId()} line {e.getLine()}: {e.getShortMessage()}: {e.getMessage().strip()}"
        (errors if e.getSeverity() >= libsbml.LIBSBML_SEV_ERROR else warnings).append(line)
    return ValidationReport(tuple(errors), tuple(warnings))


def _notes(element, paragraphs: list[str]) -> None:
    body = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs if p)
    if body:
        _check(element.setNotes(f'<body xmlns="http://www.w3.org/1999/xhtml">{body}</body>'), "notes")


def _sid(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_]", "_", text)
    return s if re.match(r"[A-Za-z_]", s) else f"_{s}"


def export_sbml(model: Model | str | None = None, product: str | Product = "autologous_cd19",
                regimen: str | Regimen = "erlangen", covariates: dict[str, float] | None = None,
                cells_per_kg: float | None = 1e6, flat_cells: float | None = None) -> str:
    """The model for one patient (the typical patient unless ``covariates`` override it) under
    one product and lymphodepletion regimen, as an SBML L3V2 string that libsbml validates
    without errors. Raises :class:`SBMLExportError` on bad input."""
    scenario = build_scenario(model, product, regimen, covariates, cells_per_kg, flat_cells)
    return scenario_to_sbml(scenario)


def scenario_to_sbml(scenario: Scenario) -> str:
    model = scenario.model
    sym = parse(model)
    names = (list(model.parameter_names) + list(model.covariate_names)
             + [a.name for a in model.assignments] + list(model.state_names))
    bad = [n for n in names if not _SID.match(n)]
    if bad:
        raise SBMLExportError(f"model {model.name}: names that are not SBML identifiers: {bad}")
    taken = set(names)

    def reserve(sid: str) -> str:
        if sid in taken:
            raise SBMLExportError(f"model {model.name}: the name {sid!r} is needed by the SBML export; "
                                  "rename it in the model")
        taken.add(sid)
        return sid

    # codegen prefixes every declared name (lambda -> v_lambda); map its symbols back to model names
    safe_to_id = {_safe(n): n for n in names}
    time_id = reserve(TIME_ID)

    def name_of(symbol: sp.Symbol) -> str:
        if symbol.name == "t":
            return time_id
        try:
            return safe_to_id[symbol.name]
        except KeyError:
            raise SBMLExportError(f"unknown symbol {symbol.name} in model {model.name}") from None

    def math(expr: sp.Expr):
        return to_ast(expr, name_of)

    doc = libsbml.SBMLDocument(3, 2)
    m = doc.createModel()
    m.setId(_sid(f"{model.name}_{model.version}"))
    m.setName(f"{model.name} {model.version}: {scenario.therapy.product.name}, "
              f"{scenario.therapy.regimen.name} lymphodepletion")
    t0 = scenario.first_intervention_day
    therapy = scenario.therapy
    _notes(m, [
        model.description,
        f"{EXPORT_MARKER} {__version__} from model {model.name} {model.version} "
        f"(content hash {model.content_hash()}).",
        f"Product: {therapy.product.name} ({therapy.product.description}); mechanism parameters "
        f"{therapy.product.mechanism_parameters()}.",
        f"Lymphodepletion: {therapy.regimen.name} ({therapy.regimen.description}; source: "
        f"{therapy.regimen.source}).",
        "CAR-T dose: " + (f"{therapy.cells_per_kg:g} cells/kg" if therapy.cells_per_kg is not None
                          else f"{therapy.flat_cells:g} cells (flat)") + ".",
        "Patient covariates: " + ", ".join(f"{k}={v:g}" for k, v in sorted(scenario.covariates.items())) + ".",
        f"Time: days since the first intervention (protocol day {t0:g}); the CAR-T infusion is at "
        f"time {INFUSION_TIME_ID} = {-t0:g}; {TIME_ID} = time - {INFUSION_TIME_ID} is the day "
        "relative to the infusion.",
        "States are parameters with rate rules; doses are events whose triggers have "
        "initialValue=false so that a dose at time 0 fires. Values sampled at a dose time are "
        "post-dose here; cartwin's own samples at a dose time are pre-dose.",
        *model.notes,
    ])
    units = UnitTable(m)
    day = units.id_for("day")
    _check(m.setTimeUnits(day), "time units")
    _check(m.setSubstanceUnits("item"), "substance units")
    _check(m.setExtentUnits("item"), "extent units")
    _check(m.setVolumeUnits("litre"), "volume units")

    def parameter(sid: str, value: float | None, unit: str, constant: bool, name: str,
                  notes: list[str] = ()) -> libsbml.Parameter:
        p = m.createParameter()
        _check(p.setId(sid), f"parameter id {sid}")
        _check(p.setConstant(constant), f"parameter {sid}")
        if value is not None:
            _check(p.setValue(float(value)), f"value of {sid}")
        _check(p.setUnits(units.id_for(unit)), f"units of {sid} ({unit})")
        p.setName(name)
        unit_note = note_for(unit)
        _notes(p, [f"unit: {unit}" + (f" ({unit_note})" if unit_note else ""), *notes])
        return p

    def assignment_rule(sid: str, expr: sp.Expr) -> None:
        r = m.createAssignmentRule()
        _check(r.setVariable(sid), f"rule for {sid}")
        _check(r.setMath(math(expr)), f"math of {sid}")

    # time convention
    parameter(reserve(INFUSION_TIME_ID), -t0, "day", True,
              "SBML time of the CAR-T infusion (days since the first intervention)")
    parameter(time_id, None, "day", False, "day relative to the CAR-T infusion (cartwin's t)")
    r = m.createAssignmentRule()
    r.setVariable(time_id)
    r.setMath(_minus(libsbml.ASTNode(libsbml.AST_NAME_TIME), INFUSION_TIME_ID))

    # numeric values of every per-patient constant and initial state, for readers of the file
    compiled = compile_model(model)
    K = compiled.constants(scenario.theta[None, :], scenario.covariate_vector()[None, :])[0]
    constant_value = dict(zip(compiled.CONSTANT_NAMES, map(float, K)))
    y0 = compiled.initial(K[None, :])[0]

    values = scenario.parameter_values()
    for p in model.parameters:
        notes = [f"source: {p.source}"]
        if p.iiv:
            notes.append(f"inter-individual variability (log-normal omega): {p.iiv:g}")
        parameter(p.name, values[p.name], p.unit, True, p.description, notes)
    for c in model.covariates:
        parameter(c.name, scenario.covariates[c.name], c.unit, True, c.description, ["patient covariate"])
    for a in model.assignments:
        value = constant_value.get(a.name)
        parameter(a.name, value, a.unit, False, a.description)
        expr = sym.constant_exprs.get(a.name, sym.dynamic_exprs.get(a.name))
        assignment_rule(a.name, expr)

    # infusion-rate parameters, one per route that receives an infusion
    infused_routes = sorted({d.route for d in scenario.doses if d.duration_days > 0})
    route_index = {d.name: i for i, d in enumerate(model.doses)}
    rate_terms: dict[str, list[sp.Expr]] = {s: [] for s in model.state_names}
    inf_ids: dict[str, str] = {}
    for route in infused_routes:
        di = model.dose_input(route)
        sid = reserve(f"INF_{_sid(route)}")
        inf_ids[route] = sid
        parameter(sid, 0.0, f"{di.unit}/day", False,
                  f"infusion rate of {route} ({di.description}); switched by dose events")
        rate_terms[di.state].append(sp.Symbol(sid, real=True) * sym.dose_scales[route_index[route]])
    safe_to_id.update({sid: sid for sid in inf_ids.values()})

    for s, state, rate, initial, y in zip(model.states, model.state_names, sym.rates, sym.initials, y0):
        parameter(state, float(y), s.unit, False, s.description, [f"initial: {s.initial}"])
        if not initial.is_number:
            ia = m.createInitialAssignment()
            _check(ia.setSymbol(state), f"initial assignment of {state}")
            _check(ia.setMath(math(initial)), f"initial of {state}")
        rr = m.createRateRule()
        _check(rr.setVariable(state), f"rate rule of {state}")
        _check(rr.setMath(math(rate + sp.Add(*rate_terms[state]))), f"rate of {state}")

    # doses
    for k, dose in enumerate(sorted(scenario.doses, key=lambda d: d.day), start=1):
        di = model.dose_input(dose.route)
        tag = f"{k:02d}_{_sid(dose.drug or dose.route)}"
        amount_id = reserve(f"dose_{tag}")
        parameter(amount_id, dose.amount, di.unit, True,
                  f"{dose.drug or dose.route} on protocol day {dose.day:g}", [dose.note])
        scale = sym.dose_scales[route_index[dose.route]]
        start = dose.day - t0
        amount = sp.Symbol(amount_id, real=True)
        safe_to_id[amount_id] = amount_id
        if dose.duration_days > 0:
            duration_id = reserve(f"duration_{tag}")
            parameter(duration_id, dose.duration_days, "day", True,
                      f"infusion duration of {dose.drug} on protocol day {dose.day:g}")
            safe_to_id[duration_id] = duration_id
            rate = amount / sp.Symbol(duration_id, real=True)
            inf = sp.Symbol(inf_ids[dose.route], real=True)
            _event(m, reserve(f"ev_{tag}_start"), start, inf_ids[dose.route], math(inf + rate),
                   f"start of {dose.drug} infusion over {dose.duration_days * 24:g} h")
            _event(m, reserve(f"ev_{tag}_end"), start + dose.duration_days, inf_ids[dose.route],
                   math(inf - rate), f"end of {dose.drug} infusion")
        else:
            target = sp.Symbol(_safe(di.state), real=True)
            _event(m, reserve(f"ev_{tag}"), start, di.state, math(target + amount * scale),
                   f"{dose.drug or dose.route} bolus into {di.state}")

    for o in model.observables:
        sid = reserve(f"obs_{_sid(o.test)}")
        parameter(sid, None, o.unit, False, o.description, [f"test code {o.test}"])
        assignment_rule(sid, sym.observables[[x.test for x in model.observables].index(o.test)])

    text = libsbml.writeSBMLToString(doc)
    report = validate_sbml(text)
    if not report.ok:
        raise SBMLExportError("libsbml finds errors in the exported model:\n  " + "\n  ".join(report.errors))
    return text


def _minus(left: libsbml.ASTNode, right_id: str) -> libsbml.ASTNode:
    n = libsbml.ASTNode(libsbml.AST_MINUS)
    n.addChild(left)
    r = libsbml.ASTNode(libsbml.AST_NAME)
    r.setName(right_id)
    n.addChild(r)
    return n


def _event(m: libsbml.Model, sid: str, at_time: float, variable: str, math: libsbml.ASTNode,
           name: str) -> None:
    ev = m.createEvent()
    _check(ev.setId(sid), f"event {sid}")
    ev.setName(name)
    _check(ev.setUseValuesFromTriggerTime(True), f"event {sid}")
    trig = ev.createTrigger()
    # initialValue false: a trigger already true at the start fires (the dose-at-time-zero trap)
    _check(trig.setInitialValue(False), f"trigger of {sid}")
    _check(trig.setPersistent(True), f"trigger of {sid}")
    cond = libsbml.ASTNode(libsbml.AST_RELATIONAL_GEQ)
    cond.addChild(libsbml.ASTNode(libsbml.AST_NAME_TIME))
    value = libsbml.ASTNode(libsbml.AST_REAL)
    value.setValue(float(at_time))
    cond.addChild(value)
    _check(trig.setMath(cond), f"trigger of {sid}")
    ea = ev.createEventAssignment()
    _check(ea.setVariable(variable), f"assignment of {sid}")
    _check(ea.setMath(math), f"assignment of {sid}")


def write_sbml(path, model: Model | str | None = None, product: str | Product = "autologous_cd19",
               regimen: str | Regimen = "erlangen", covariates: dict[str, float] | None = None,
               cells_per_kg: float | None = 1e6, flat_cells: float | None = None) -> str:
    """``export_sbml`` to a file (written atomically). Returns the text."""
    from pathlib import Path

    from cartwin.store.atomic import write_text

    text = export_sbml(model, product, regimen, covariates, cells_per_kg, flat_cells)
    path = Path(path)
    if path.exists() and path.is_dir():
        raise SBMLExportError(f"{path} is a directory; give a file name such as model.xml")
    if path.exists() and not is_cartwin_export(path):
        raise SBMLExportError(f"{path}: names an existing file that is not an earlier cartwin SBML export "
                              f"(no '{EXPORT_MARKER}' in its notes); choose a new file name or remove it")
    try:  # a new folder is made, as every command's --out makes its own
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise SBMLExportError(f"{path.parent}: exists and is not a folder; choose another --out") from None
    write_text(path, text)  # atomically, with an ordinary new file's mode, as every other output
    return text


def is_cartwin_export(path) -> bool:
    """Whether ``path`` is a model cartwin exported (its notes carry :data:`EXPORT_MARKER`, near the
    top of the file): such a file may be replaced by a new export, a user's file never is."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8192)
    except OSError:
        return False
    return EXPORT_MARKER.encode() in head


def roadrunner_times(scenario: Scenario, days: np.ndarray) -> np.ndarray:
    """Protocol days -> SBML time of an export of ``scenario``."""
    return np.asarray(days, float) - scenario.first_intervention_day
