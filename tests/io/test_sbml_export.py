"""SBML export: valid Level 3 with units, and the same numbers in libRoadRunner as in cartwin.

The default model's values are being recalibrated, so nothing here hard-codes them: every
check compares cartwin's own solution of a scenario with libRoadRunner's solution of its export.
"""

from __future__ import annotations

import libsbml
import numpy as np
import pytest

from cartwin.io import SBMLExportError
from cartwin.io.sbml import export_sbml, roadrunner_times, scenario_to_sbml, validate_sbml
from cartwin.io.scenario import build_scenario, simulate_scenario
from cartwin.io.units import decompose

roadrunner = pytest.importorskip("roadrunner")

RTOL, ATOL = 1e-10, 1e-12
MAX_RELATIVE_ERROR = 1e-4


def _days(scenario, last_day: float = 365.0) -> np.ndarray:
    """Pre-infusion grid from the first intervention, then a dense grid after the infusion."""
    t0 = scenario.first_intervention_day
    before = np.arange(t0, 0.0, 0.25)
    after = np.concatenate([np.arange(0.25, 30.0, 0.25), np.arange(30.0, last_day + 1e-9, 2.0)])
    return np.concatenate([before, after])


def _roadrunner(text: str, scenario, days: np.ndarray) -> dict[str, np.ndarray]:
    rr = roadrunner.RoadRunner(text)
    integrator = rr.getIntegrator()
    integrator.relative_tolerance = RTOL
    integrator.absolute_tolerance = ATOL
    integrator.setValue("maximum_num_steps", 1_000_000)
    tests = [o.test for o in scenario.model.observables]
    rr.timeCourseSelections = ["time"] + [f"obs_{t}" for t in tests]
    times = roadrunner_times(scenario, days)
    assert times[0] == 0.0  # SBML time starts at the first intervention
    result = np.array(rr.simulate(times=list(times)))
    np.testing.assert_allclose(result[:, 0], times, rtol=0, atol=1e-12)
    return {t: result[:, 1 + i] for i, t in enumerate(tests)}


def _relative_errors(ours: dict, theirs: dict, mask: np.ndarray) -> dict[str, float]:
    out = {}
    for test, a in ours.items():
        b = theirs[test]
        scale = np.maximum(np.abs(a), np.abs(b))
        rel = np.where(scale > 0, np.abs(a - b) / np.where(scale > 0, scale, 1.0), 0.0)
        out[test] = float(rel[mask].max())
    return out


def _cross_check(product: str, regimen: str, **kw) -> tuple[dict, dict, np.ndarray]:
    scenario = build_scenario(None, product, regimen, **kw)
    text = scenario_to_sbml(scenario)
    days = _days(scenario)
    _, ours = simulate_scenario(scenario, days, rtol=RTOL, atol=ATOL)
    theirs = _roadrunner(text, scenario, days)
    return ours, theirs, days


@pytest.mark.parametrize("product, regimen", [("autologous_cd19", "erlangen"), ("tyu19", "standard")])
def test_roadrunner_reproduces_cartwin_after_lymphodepletion_and_infusion(product, regimen):
    ours, theirs, days = _cross_check(product, regimen)
    after = days > 0  # cartwin samples at a dose time pre-dose, SBML simulators post-dose
    errors = _relative_errors(ours, theirs, after)
    worst = {t: e for t, e in errors.items() if e > MAX_RELATIVE_ERROR}
    assert not worst, f"observables off by more than {MAX_RELATIVE_ERROR:g}: {worst}"
    # the scenario must actually exercise the doses: CAR-T expand, B cells fall
    assert ours["CART"][after].max() > 10 * ours["CART"][after][0]
    assert ours["BCELL"][after].min() < 0.1 * ours["BCELL"][0]
    # and lymphodepletion acts before the infusion (neutrophils fall after the first dose)
    assert ours["LYM"][days < 0].min() < 0.9 * ours["LYM"][0]


def test_dose_at_time_zero_fires_and_would_be_lost_with_initial_value_true():
    # without lymphodepletion the CAR-T infusion is the first intervention: SBML time 0
    scenario = build_scenario(None, "autologous_cd19", "none")
    assert scenario.first_intervention_day == 0.0
    text = scenario_to_sbml(scenario)
    days = np.concatenate([[0.0], np.arange(0.5, 120.0, 0.5)])
    _, ours = simulate_scenario(scenario, days, rtol=RTOL, atol=ATOL)
    theirs = _roadrunner(text, scenario, days)
    errors = _relative_errors(ours, theirs, days > 0)
    assert max(errors.values()) <= MAX_RELATIVE_ERROR, errors
    assert theirs["CART"][1] > 0

    doc = libsbml.readSBMLFromString(text)
    [event] = [e for e in doc.getModel().getListOfEvents() if e.getId().startswith("ev_01_")]
    assert event.getTrigger().getInitialValue() is False
    event.getTrigger().setInitialValue(True)
    trapped = _roadrunner(libsbml.writeSBMLToString(doc), scenario, days)
    # the dose is lost: only solver round-off is left where a day later there were CAR-T cells
    assert np.abs(trapped["CART"]).max() < 1e-9 * theirs["CART"][1]


def test_export_is_valid_level3_with_units_declared():
    text = export_sbml(None, "tyu19", "erlangen")
    report = validate_sbml(text)
    assert report.errors == ()
    doc = libsbml.readSBMLFromString(text)
    assert (doc.getLevel(), doc.getVersion()) == (3, 2)
    m = doc.getModel()
    day = m.getUnitDefinition(m.getTimeUnits())
    assert day.getNumUnits() == 1
    assert libsbml.UnitKind_toString(day.getUnit(0).getKind()) == "second"
    assert day.getUnit(0).getMultiplier() == 86400.0
    no_units = [p.getId() for p in m.getListOfParameters() if not p.isSetUnits()]
    assert no_units == []
    # every dose is an event on time with the trigger flags the reference demands
    assert m.getNumEvents() > 0
    for ev in m.getListOfEvents():
        trig = ev.getTrigger()
        assert trig.getInitialValue() is False and trig.getPersistent() is True, ev.getId()
        assert ev.getUseValuesFromTriggerTime() is True
    # the product's mechanism parameters are written, not the model defaults
    assert m.getParameter("ALLO").getValue() == 1.0
    assert m.getParameter("F_HLA").getValue() == pytest.approx(0.1)


def test_patient_covariates_reach_the_file_and_the_doses():
    light = libsbml.readSBMLFromString(export_sbml(covariates={"WT": 50.0})).getModel()
    heavy = libsbml.readSBMLFromString(export_sbml(covariates={"WT": 100.0})).getModel()
    assert light.getParameter("WT").getValue() == 50.0
    cart = [p.getId() for p in light.getListOfParameters() if p.getId().startswith("dose_") and
            "autologous_cd19" in p.getId()]
    assert len(cart) == 1
    assert light.getParameter(cart[0]).getValue() == pytest.approx(50e6)
    assert heavy.getParameter(cart[0]).getValue() == pytest.approx(100e6)


@pytest.mark.parametrize("kwargs, message", [
    ({"product": "no_such_product"}, "unknown product 'no_such_product'"),
    ({"regimen": "no_such_regimen"}, "unknown lymphodepletion regimen"),
    ({"cells_per_kg": -1.0}, "CAR-T dose must be a positive number"),
    ({"covariates": {"WEIGHT_KG": 60}}, "unknown patient covariates ['WEIGHT_KG']"),
    ({"covariates": {"WT": 0.0}}, "impossible patient covariates"),
    ({"covariates": {"WT": 5000.0}}, "WT=5000 is outside the physiologic range 30-250 kg"),
    ({"covariates": {"CREAT": 0.7}}, "CREAT=0.7 is outside the physiologic range 20-1500 umol/L"),
    ({"covariates": {"SEXF": 2.0}}, "SEXF=2 must be 0 or 1"),
    ({"covariates": {"BSA": 50.0}}, "BSA=50 is outside the physiologic range 1-3.91 m^2"),
    ({"covariates": {"CRCL": 0.1}}, "CRCL=0.1 is outside the physiologic range 1-1970 mL/min"),
    ({"covariates": {"ARTH0": 0.5}}, "ARTH0=0.5 must be 0 or 1"),
    ({"model": "no_such_model"}, "unknown model 'no_such_model'"),
])
def test_bad_input_is_a_clear_value_error(kwargs, message):
    with pytest.raises(SBMLExportError) as info:
        export_sbml(**kwargs)
    assert isinstance(info.value, ValueError)
    assert message in str(info.value)


@pytest.mark.parametrize("text, factor, kinds", [
    ("cells/uL", 1e6, (("item", 1), ("litre", -1))),
    ("L/mg/day", 1e3 / 86400, (("gram", -1), ("litre", 1), ("second", -1))),
    ("10^9/L", 1e9, (("litre", -1),)),
    ("cells per cells/uL", 1e-6, (("litre", 1),)),
    ("per cells/uL", 1e-6, (("item", -1), ("litre", 1))),
    ("L/h/kg", 1 / 3600 / 1000, (("gram", -1), ("litre", 1), ("second", -1))),
    ("m^2", 1.0, (("metre", 2),)),
    ("fold baseline", 1.0, ()),
])
def test_unit_strings_decompose_to_sbml_base_units(text, factor, kinds):
    d = decompose(text)
    assert d.factor == pytest.approx(factor, rel=1e-12)
    assert d.kinds == kinds


def test_unknown_unit_token_is_named():
    with pytest.raises(SBMLExportError, match="unknown unit token 'furlong'"):
        decompose("furlong/day")


def test_a_derived_covariates_range_is_what_its_inputs_ranges_give():
    """BSA and CRCL may be given in place of their inputs (export sbml -c BSA=...); their ranges
    are those that Mosteller and Cockcroft-Gault give over the inputs' own ranges, so a value
    given is held to what a patient of the population could have."""
    import itertools

    from cartwin import body
    from cartwin.vocabulary import PATIENT_COVARIATES as C

    bsa = [body.bsa_mosteller(h, w) for h, w in itertools.product((C["HT"].low, C["HT"].high), (C["WT"].low, C["WT"].high))]
    crcl = [body.crcl_cockcroft_gault(a, w, cr, f) for a, w, cr, f in itertools.product(
        (C["AGE"].low, C["AGE"].high), (C["WT"].low, C["WT"].high), (C["CREAT"].low, C["CREAT"].high), (0.0, 1.0))]
    assert C["BSA"].low == pytest.approx(min(bsa), abs=0.005) and C["BSA"].high == pytest.approx(max(bsa), abs=0.005)
    assert C["CRCL"].low == pytest.approx(min(crcl), rel=0.05) and C["CRCL"].high == pytest.approx(max(crcl), rel=0.01)
