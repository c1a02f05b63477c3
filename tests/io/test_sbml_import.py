"""SBML import: a published CAR-T model and cartwin's own export, solved by cartwin's engine."""

from __future__ import annotations

from pathlib import Path

import libsbml
import numpy as np
import pytest

from cartwin.io import SBMLImportError, UnsupportedSBMLError
from cartwin.io.sbml import scenario_to_sbml
from cartwin.io.sbml_import import import_sbml, simulate_sbml
from cartwin.io.scenario import build_scenario, simulate_scenario

KIMMEL = Path(__file__).resolve().parents[1] / "data" / "sbml" / "kimmel2021_BIOMD0000001041_reencoded.xml"

# Kimmel 2021 (BIOMD0000001041) from N = 6, C = 0.36, B = 94.86: values that
# an independent re-simulation of the BioModels file reports from an independent scipy re-simulation.
KIMMEL_REFERENCE = {
    "CAR_T_cells": {14: 9.0, 28: 2.5, 60: 0.89, 90: 0.34, 180: 0.019},
    "Normal_T_cells": {7: 109, 14: 295, 28: 473, 60: 499},
    "Antigen_presenting_tumour_cells": {7: 0.52},
}


def test_kimmel_2021_reproduces_the_published_kinetics():
    fine = np.arange(0.0, 20.0, 0.01)
    sim = simulate_sbml(KIMMEL, fine, rtol=1e-10, atol=1e-12)
    cart = sim["CAR_T_cells"][0]
    peak = int(np.argmax(cart))
    assert cart[peak] == pytest.approx(30.1, abs=0.05)
    assert fine[peak] == pytest.approx(7.0, abs=0.05)
    days = sorted({d for v in KIMMEL_REFERENCE.values() for d in v})
    sim = simulate_sbml(KIMMEL, days, rtol=1e-10, atol=1e-12)
    for species, expected in KIMMEL_REFERENCE.items():
        for day, value in expected.items():
            got = sim[species][0, days.index(day)]
            # the reference gives 2-3 significant figures
            assert got == pytest.approx(value, rel=0.02), (species, day, got)
    # the assignment rule (total lymphocytes) is an observable of the imported model
    np.testing.assert_allclose(sim["Total_lymphocyte_count"], sim["Normal_T_cells"] + sim["CAR_T_cells"])


def test_kimmel_matches_libroadrunner():
    roadrunner = pytest.importorskip("roadrunner")
    days = np.array([0.0, 3.0, 7.0, 14.0, 28.0, 90.0])
    sim = simulate_sbml(KIMMEL, days, rtol=1e-10, atol=1e-12)
    rr = roadrunner.RoadRunner(str(KIMMEL))
    rr.integrator.relative_tolerance, rr.integrator.absolute_tolerance = 1e-10, 1e-12
    rr.timeCourseSelections = ["time", "CAR_T_cells", "Normal_T_cells"]
    ref = np.array(rr.simulate(times=list(days)))
    np.testing.assert_allclose(sim["CAR_T_cells"][0], ref[:, 1], rtol=1e-6)
    np.testing.assert_allclose(sim["Normal_T_cells"][0], ref[:, 2], rtol=1e-6)


def test_inter_individual_variability_is_per_patient_and_reproducible():
    days = [0.0, 7.0, 28.0]
    a = simulate_sbml(KIMMEL, days, iiv={"rho_C": 0.3}, n=4, seed=11)
    b = simulate_sbml(KIMMEL, days, iiv={"rho_C": 0.3}, n=2, seed=11)
    np.testing.assert_array_equal(a.values[:2], b.values)  # patient i does not depend on n
    rho = a.theta[:, list(import_sbml(KIMMEL).model.parameter_names).index("rho_C")]
    assert np.unique(rho).size == 4
    assert np.unique(np.round(a["CAR_T_cells"][:, 2], 9)).size == 4
    with pytest.raises(SBMLImportError, match=r"unknown parameters \['nope'\]"):
        simulate_sbml(KIMMEL, days, iiv={"nope": 0.1})


def test_unsupported_constructs_are_listed_together():
    # the lymphodepletion export switches infusion-rate parameters with events that set, not add
    text = scenario_to_sbml(build_scenario(None, "autologous_cd19", "erlangen"))
    doc = libsbml.readSBMLFromString(text)
    m = doc.getModel()
    rule = m.createAlgebraicRule()
    rule.setMath(libsbml.parseL3Formula("H - 1"))
    ev = m.getEvent(0)
    delay = ev.createDelay()
    delay.setMath(libsbml.parseL3Formula("1"))
    rate = m.createRateRule()
    rate.setVariable(m.getParameter(0).getId())
    rate.setMath(libsbml.parseL3Formula("delay(H, 1)"))
    with pytest.raises(UnsupportedSBMLError) as info:
        import_sbml(libsbml.writeSBMLToString(doc))
    text = str(info.value)
    assert "algebraic rule H - 1 = 0" in text
    assert f"rate rule for {m.getParameter(0).getId()}: unsupported MathML element 'delay'" in text
    assert f"event {ev.getId()}: a delay with values computed at trigger time" in text
    assert isinstance(info.value, ValueError)


def test_events_on_parameters_match_cartwin_s_own_solve():
    """The lymphodepletion export changes infusion-rate parameters at the start and the end of
    each infusion (``INF = INF + rate``, ``INF = INF - rate``: parameters that events change) and
    adds the CAR-T bolus: imported back, it gives cartwin's own numbers (the round trip of the
    export, lymphodepletion included)."""
    scenario = build_scenario(None, "autologous_cd19", "erlangen")
    text = scenario_to_sbml(scenario)
    imported = import_sbml(text)
    # fixed-time additions, to parameters that thereby become states, are doses
    assert any(d.state.startswith("INF_") for d in imported.model.doses)
    t0 = scenario.first_intervention_day
    days = np.arange(0.0, 30.0, 0.5) + 0.25
    sim = simulate_sbml(text, days, rtol=1e-10, atol=1e-12)
    assert sim.ok.all(), sim.reasons
    _, ours = simulate_scenario(scenario, days + t0)
    for test in ("CART", "BCELL", "IL6", "C3"):
        np.testing.assert_allclose(sim[f"obs_{test}"][0], ours[test], rtol=1e-5, err_msg=test)


def with_state_triggered_event(path: Path, assignment: str, event_id: str | None = None) -> str:
    """The SBML of ``path`` plus an event triggered by the state itself (CAR_T_cells > 10) that sets
    CAR_T_cells to ``assignment``: a trigger cartwin cannot schedule in advance."""
    doc = libsbml.readSBMLFromFile(str(path))
    ev = doc.getModel().createEvent()
    if event_id:
        ev.setId(event_id)
    ev.setUseValuesFromTriggerTime(True)
    trig = ev.createTrigger()
    trig.setInitialValue(False)
    trig.setPersistent(True)
    trig.setMath(libsbml.parseL3Formula("CAR_T_cells > 10"))
    ea = ev.createEventAssignment()
    ea.setVariable("CAR_T_cells")
    ea.setMath(libsbml.parseL3Formula(assignment))
    return libsbml.writeSBMLToString(doc)


def test_state_dependent_trigger_and_bad_files():
    with pytest.raises(UnsupportedSBMLError, match=r"event #1: trigger CAR_T_cells > 10 depends on \['CAR_T_cells'\]"):
        import_sbml(with_state_triggered_event(KIMMEL, "CAR_T_cells + 1"))
    with pytest.raises(SBMLImportError, match="no such file"):
        import_sbml("/nonexistent/model.xml")
