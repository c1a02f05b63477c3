"""Published BioModels CAR-T files, as published (tests/data/biomodels, CC0; see its README):
each loads, matches libRoadRunner, reproduces the published values its README lists, and runs
through `cartwin run` with a protocol."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pytest

from cartwin.io.sbml_import import import_sbml, simulate_sbml
from cartwin.protocol import load_protocol
from cartwin.run import run_protocol

DATA = Path(__file__).resolve().parents[1] / "data" / "biomodels"
FILES = sorted(p.name for p in DATA.glob("*.xml"))
# follow-up (days) over which each model is compared; Chaudhury's first-order model cannot be
# integrated past day ~8.6 (its tumour reaches 1e-12 and ln(U) gives NaN; libRoadRunner's CVODE
# stops at t = 8.58 too), see test_chaudhury_first_order_published_values
END = {"MODEL2109110005.xml": 8.5, "MODEL2211040001.xml": 21.0, "BIOMD0000000837.xml": 30.0,
       "BIOMD0000001019.xml": 300.0}
# Melhem 2017's states are of order 1e-13 (mol/L): an absolute tolerance below that
ATOL = {"MODEL2211040001.xml": 1e-18}
# Barros 2021 (HDLM-2): after the CAR-T count falls seven orders of magnitude from its peak,
# libRoadRunner differs from cartwin in the fourth digit (0.41684 against 0.41738 at day 225),
# where cartwin's LSODA at rtol 1e-10 and 1e-12 agree with each other to 1e-7
RTOL = {"BIOMD0000001019.xml": 1e-3}


def _reference(path: Path, imported, days: np.ndarray, atol: float = 1e-12) -> np.ndarray:
    import libsbml
    roadrunner = pytest.importorskip("roadrunner")
    m = libsbml.readSBMLFromFile(str(path)).getModel()
    rr = roadrunner.RoadRunner(str(path))
    rr.integrator.relative_tolerance, rr.integrator.absolute_tolerance = 1e-10, atol
    selections = ["time"]
    for s in imported.model.states:
        species = m.getSpecies(s.name)
        selections.append(f"[{s.name}]" if species is not None and not species.getHasOnlySubstanceUnits() else s.name)
    rr.timeCourseSelections = selections
    # libRoadRunner runs in the model's own time unit; cartwin in days
    return np.array(rr.simulate(times=list(days * imported.time_factor)))[:, 1:]


def test_every_published_file_is_here():
    assert len(FILES) == 12 and (DATA / "README.md").is_file()


@pytest.mark.parametrize("name", FILES)
def test_published_file_matches_libroadrunner(name):
    path = DATA / name
    imported = import_sbml(path)
    if name.startswith("BIOMD"):  # Level 2 files: libsbml's layout/render plugins are ignored, not refused
        assert any("'layout'" in n and "ignored" in n for n in imported.notes)
    # output days off the event times: at an event, cartwin reports the value before it
    days = np.linspace(0.0, END.get(name, 60.0), 9) + np.array([0.0] + [0.0137] * 8)
    atol = ATOL.get(name, 1e-12)
    sim = simulate_sbml(path, days, rtol=1e-10, atol=atol)
    assert sim.ok.all(), sim.reasons
    ref = _reference(path, imported, days, atol)
    ours = np.stack([sim[s.name][0] for s in imported.model.states], axis=1)
    if imported.events and any(e.initial_value is False for e in imported.events):
        # events that fire at time 0 (Melhem 2017): libRoadRunner reports day 0 after them
        ours, ref = ours[1:], ref[1:]
    scale = np.abs(ref).max(axis=0) + 1e-300
    # relative error, with a floor of 1e-6 of the state's largest value (tolerance-level noise below it)
    err = np.abs(ours - ref) / (np.abs(ref) + 1e-6 * scale)
    assert err.max() < RTOL.get(name, 1e-5), (name, [s.name for s in imported.model.states], err.max(axis=0))


def test_kimmel_2021_published_values():
    """README: from N = 6, C = 0.36, B = 94.86, CAR-T peak 30.1/uL at day 7.0, then 9.0 (d14),
    2.5 (d28), 0.89 (d60), 0.34 (d90), 0.019 (d180); N = 109 (d7), 295 (d14), 473 (d28),
    499 (d60); B = 0.52 at d7 (two to three significant figures)."""
    path = DATA / "BIOMD0000001041.xml"
    fine = np.arange(0.0, 20.0, 0.01)
    cart = simulate_sbml(path, fine, rtol=1e-10, atol=1e-12)["CAR_T_cells"][0]
    assert cart[np.argmax(cart)] == pytest.approx(30.1, abs=0.05)
    assert fine[np.argmax(cart)] == pytest.approx(7.0, abs=0.05)
    days = [0.0, 7.0, 14.0, 28.0, 60.0, 90.0, 180.0]
    sim = simulate_sbml(path, days, rtol=1e-10, atol=1e-12)
    expected = {"CAR_T_cells": {0: 0.36, 14: 9.0, 28: 2.5, 60: 0.89, 90: 0.34, 180: 0.019},
                "Normal_T_cells": {0: 6.0, 7: 109, 14: 295, 28: 473, 60: 499},
                "Antigen_presenting_tumour_cells": {0: 94.86, 7: 0.52}}
    for species, values in expected.items():
        for day, value in values.items():
            assert sim[species][0, days.index(day)] == pytest.approx(value, rel=0.02), (species, day)


def test_chaudhury_first_order_published_values():
    """README: CAR-T = 10 e^t up to day 9.3; tumour U 185 at day 5 and < 1e-12 by day 8.5. Past
    day 8.5 the tumour's ln(U) gives NaN: the solve fails, keeps the values it reached and says
    between which days it stopped (libRoadRunner's CVODE fails at t = 8.58 as well), so the
    published decay after day 9.3 (5.17e4 at day 14) cannot be reproduced from this file."""
    path = DATA / "MODEL2109110005.xml"
    days = [0.0, 5.0, 8.0, 8.5, 9.0, 14.0]
    sim = simulate_sbml(path, days, rtol=1e-10, atol=1e-12)
    cart = sim["CAR_T_cells"][0]
    np.testing.assert_allclose(cart[:4], 10 * np.exp(days[:4]), rtol=1e-6)
    assert sim["U"][0, 1] == pytest.approx(185, rel=0.01)
    assert sim["U"][0, 3] < 1e-12
    assert not sim.ok[0] and np.isnan(cart[4:]).all()
    assert "between day 8.5 and day 9; values kept up to day 8.5" in sim.reasons[0]


def test_barros_2021_events_set_values():
    """README: events for the CAR-T injection and the tumour rechallenge. The events set the
    CAR-T count to 2e6 at day 45 and the tumour to 1e6 at day 250 (assignments that set, not add)."""
    path = DATA / "BIOMD0000001019.xml"
    imported = import_sbml(path)
    assert {e.values for e in imported.events} == {("2000000.00000000",), ("1000000.00000000",)}
    sim = simulate_sbml(path, [44.0, 45.0, 45.0 + 1e-9, 250.0, 250.0 + 1e-9], rtol=1e-10, atol=1e-12)
    assert sim["Ct"][0, 0] == 0 and sim["Ct"][0, 1] == 0  # the value on the day is before the event
    assert sim["Ct"][0, 2] == pytest.approx(2e6, rel=1e-6)
    assert sim["T"][0, 4] == pytest.approx(1e6 + sim["T"][0, 3], rel=1e-6)


def test_melhem_2017_time_in_seconds_and_daily_doses():
    """README: time in seconds. The model's maths is in seconds; cartwin reads it in days (1 day
    = 86,400 model time units), and its periodic treatment triggers (rem(time, 1 day) <= 0.5)
    give one filgrastim injection a day from day 0 (libRoadRunner agrees: see the comparison)."""
    imported = import_sbml(DATA / "MODEL2211040001.xml")
    assert imported.time_factor == 86400.0
    from cartwin.model.codegen import compile_model
    from cartwin.simulate.timed_events import firing_times
    K = compile_model(imported.model).constants(np.array([[p.value for p in imported.model.parameters]]),
                                                np.zeros((1, 0)))
    fires = firing_times(imported.model, imported.events, K, 0.0, 10.0)[0]
    label = {i: e.label for i, e in enumerate(imported.events)}
    injections = [t for t, i in fires if label[i] == "TreatmentInjection"]
    np.testing.assert_allclose(injections, [0.0] + [k + 1 / 24 for k in range(1, 10)], atol=1e-9)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("biomodels-runs")
    out = {}
    for name in FILES:
        end = END.get(name, 60.0)
        follow_up = 14.0 if name == "MODEL2109110005.xml" else end
        protocol = base / f"{name}.toml"
        protocol.write_text(
            f'schema_version = 1\nstudy_id = "{name[:-4]}"\nseed = 3\nmodel = "sbml:{DATA / name}"\n'
            f"follow_up_days = {follow_up}\n[schedule]\ndays = [0, {end / 2}, {follow_up}]\n"
            '[[arms]]\nid = "a"\nn = 2\n')
        summary = run_protocol(load_protocol(protocol), base / name, workers=1)
        out[name] = (summary, base / name)
    return out


@pytest.mark.parametrize("name", FILES)
def test_published_file_runs_through_cartwin_run(runs, name):
    summary, rundir = runs[name]
    con = duckdb.connect(str(rundir / "results.duckdb"), read_only=True)
    try:
        statuses = con.execute("SELECT status, failure_reason FROM patients").fetchall()
        days = sorted(d for (d,) in con.execute("SELECT DISTINCT day FROM observations").fetchall())
        lowest = con.execute("SELECT min(value) FROM observations o WHERE test IN "
                             f"({', '.join(repr(s.name) for s in import_sbml(DATA / name).model.states)})"
                             ).fetchone()[0]
    finally:
        con.close()
    assert summary.n_total == 2
    manifest = json.loads((rundir / "manifest.json").read_text())
    # no backend named: LSODA, whose first result needs no compiled BDF kernel
    assert manifest["solver"]["backend"] == "scipy-lsoda"
    assert any("time unit" in n for n in manifest["model"]["notes"])
    if name == "MODEL2109110005.xml":
        # the solve fails after day 8.5 (see above): the patients are flagged, with the day,
        # and keep the days reached
        assert summary.n_failed == 2 and all("between day 4.25 and day 14" in r for _, r in statuses)
        assert days == [0.0, 4.25]
    else:
        assert summary.n_failed == 0 and {s for s, _ in statuses} == {"ok"}
        assert len(days) == 3
    # species never below zero: round-off within the solver's error control is stored as 0
    assert lowest is None or lowest >= 0


# names that generated code, Python or sympy use themselves
CLASHING = ["u_0", "which", "numpy", "k", "y", "exp", "t", "E", "pi", "lambda", "K", "J", "F", "x_0",
            "math", "numba", "dydt", "T", "Y", "need", "OBS", "i", "sqrt", "Max", "I", "S", "N"]


def _clashing_model() -> str:
    """dX_j/dt = -r_j X_j + inputs, with every parameter and species named after something the
    generated code, Python or sympy use; the maths also uses exp(), pi and e."""
    import libsbml
    doc = libsbml.SBMLDocument(3, 2)
    m = doc.createModel()
    m.setId("clash")
    m.setTimeUnits("second")  # also: the time unit is converted (1 day = 86400 s)
    c = m.createCompartment()
    c.setId("cell")
    c.setSize(1.0)
    c.setConstant(True)
    for j, name in enumerate(CLASHING):
        s = m.createSpecies()
        s.setId(name)
        s.setCompartment("cell")
        s.setInitialAmount(1.0 + j)
        s.setHasOnlySubstanceUnits(True)
        s.setBoundaryCondition(False)
        s.setConstant(False)
        p = m.createParameter()
        p.setId(f"r_{j}")
        p.setValue(1e-6 * (1 + j))
        p.setConstant(True)
        rule = m.createRateRule()
        rule.setVariable(name)
        other = CLASHING[j - 1]
        rule.setMath(libsbml.parseL3Formula(
            f"-r_{j} * {name} + 1e-6 * exp(-{other} / 100) * pi / exponentiale"))
    # an assignment rule named like a function, using a quantity named like one, and the function
    total = m.createParameter()
    total.setId("Min")
    total.setConstant(False)
    rule = m.createAssignmentRule()
    rule.setVariable("Min")
    rule.setMath(libsbml.parseL3Formula("exp + exp(y / 1000) + sqrt"))
    return libsbml.writeSBMLToString(doc)


def test_names_that_clash_with_generated_code_give_the_right_numbers():
    import libsbml
    roadrunner = pytest.importorskip("roadrunner")
    text = _clashing_model()
    imported = import_sbml(text)
    assert imported.time_factor == 86400.0
    assert "t_" in imported.model.state_names and "lambda_" in imported.model.state_names  # renamed, noted
    days = np.array([0.0, 0.5, 1.0, 2.0])
    sim = simulate_sbml(text, days, rtol=1e-10, atol=1e-12)
    assert sim.ok.all(), sim.reasons
    rr = roadrunner.RoadRunner(text)
    rr.integrator.relative_tolerance, rr.integrator.absolute_tolerance = 1e-10, 1e-12
    rr.timeCourseSelections = ["time"] + CLASHING + ["Min"]
    ref = np.array(rr.simulate(times=list(days * 86400.0)))[:, 1:]
    renamed = {"t": "t_", "lambda": "lambda_"}
    ours = np.stack([sim[renamed.get(n, n)][0] for n in CLASHING + ["Min"]], axis=1)
    np.testing.assert_allclose(ours, ref, rtol=1e-7)


def test_validate_refuses_what_run_refuses(tmp_path):
    """An SBML model that run cannot load (a required package; a state-dependent trigger) is
    refused by `cartwin validate` with the same message, exit 2, and no traceback."""
    import subprocess
    import sys

    from tests.io.test_sbml_import import with_state_triggered_event
    (tmp_path / "m.xml").write_text(with_state_triggered_event(DATA / "BIOMD0000001041.xml", "0", "rescue"))
    protocol = tmp_path / "p.toml"
    protocol.write_text('schema_version = 1\nstudy_id = "X"\nseed = 1\nmodel = "sbml:m.xml"\n'
                        'follow_up_days = 28\n[schedule]\ndays = [0, 7, 28]\n[[arms]]\nid = "a"\nn = 2\n')
    for args in (["validate", str(protocol)], ["run", str(protocol), "--out", str(tmp_path / "run")]):
        result = subprocess.run([sys.executable, "-m", "cartwin.cli", *args], capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 2, result.stderr  # bad input: a clear message, no traceback
        assert "event rescue: trigger CAR_T_cells > 10 depends on ['CAR_T_cells']" in result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("days, problem", [
    ("[-5, 0, 7]", "days [-5.0] lie before day 0, the start of an SBML model"),
    ("[0, 7, 60]", "days [60.0] lie after follow_up_days = 28"),
    ("[0, nan, 7]", "schedule.days[1]: Input should be a finite number"),  # refused by the strict schema
])
def test_sbml_protocols_get_the_schedule_checks(tmp_path, days, problem):
    from cartwin.protocol import ProtocolError
    protocol = tmp_path / "p.toml"
    protocol.write_text(f'schema_version = 1\nstudy_id = "X"\nseed = 1\nmodel = "sbml:{DATA / "BIOMD0000001041.xml"}"\n'
                        f'follow_up_days = 28\n[schedule]\ndays = {days}\n[[arms]]\nid = "a"\nn = 2\n')
    with pytest.raises(ProtocolError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        load_protocol(protocol)


def test_a_required_package_is_refused_naming_package_and_element():
    import libsbml
    from cartwin.io import UnsupportedSBMLError
    ns = libsbml.SBMLNamespaces(3, 1, "comp", 1)
    doc = libsbml.SBMLDocument(ns)
    doc.setPackageRequired("comp", True)
    m = doc.createModel()
    m.setId("outer")
    plugin = m.getPlugin("comp")
    sub = plugin.createSubmodel()
    sub.setId("inner")
    sub.setModelRef("outer")
    with pytest.raises(UnsupportedSBMLError, match=r"SBML package 'comp' \(hierarchical model composition\), "
                       r"required by the document, used by <comp:submodel id='inner'>: it changes the maths"):
        import_sbml(libsbml.writeSBMLToString(doc))
