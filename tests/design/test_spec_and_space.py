"""The design spec's validation messages and the intensity path between regimens."""

from __future__ import annotations

from pathlib import Path

import pytest

from cartwin.design.space import anchor_regimens, cumulative, interpolate
from cartwin.design.spec import DesignSpecError, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "design_least_ld.toml"


def test_the_example_spec_is_valid():
    loaded = load_spec(EXAMPLE)
    assert loaded.spec.space.intensity_path == ["none", "reduced", "erlangen"]
    assert loaded.protocol_path.is_file()


def _errors(text: str) -> str:
    with pytest.raises(DesignSpecError) as info:
        parse_spec(text, "bad.toml", EXAMPLE.parent)
    message = str(info.value)
    assert message.startswith("bad.toml:")
    return message


@pytest.mark.parametrize("change,expected", [
    (('endpoint = "remission_m6"', 'endpoint = "remision_m6"'), "goal.require[0].endpoint: unknown endpoint 'remision_m6'"),
    (('products = ["tyu19", "allo_hla_intact"]', 'products = ["tyu20"]'), "space.products[0]: unknown product 'tyu20'"),
    (('intensity_path = ["none", "reduced", "erlangen"]', 'intensity_path = ["erlangen", "reduced"]'),
     "order the path from least to most lymphodepletion"),
    (('intensity_path = ["none", "reduced", "erlangen"]', 'intensity_path = ["none", "mini"]'),
     "space.intensity_path[1]: unknown regimen 'mini'"),
    (("days_at_least = 28\n", ""), "say what a patient must reach with days_at_least"),
    (('parameter = "RHO"', 'parameter = "RHOO"'), "uncertainty[0].parameter: 'RHOO' is not a parameter"),
    (("low = 0.8", "low = 1.2"), "uncertainty[0]: need low < 1 < high"),
    (('protocol = "nct05988216_expansion.toml"', 'protocol = "missing.toml"'), "protocol: no file"),
    (("at_least = 0.9\n", "at_least = 1.5\n"), "goal.require[0].at_least"),
    (("size = 4\nat_least = 3", "size = 4\nat_least = 5"), "5 successes cannot happen in a trial of 4"),
    (("patients = 200", "patients = 200\npatient = 3"),
     "patient: unknown field; remove it or check its spelling (did you mean 'patients'?)"),
    (("patients = 200", "patient = 200"), "patients: required field is missing"),
    # a dose is judged as the form it was written in, not also as the other form
    (("cells_per_kg = 3e5 }", 'cells_per_kg = "3e5" }'),
     "bad.toml: space.doses[0].cells_per_kg: Input should be a valid number (given '3e5', text)"),
    (("cells_per_kg = 3e5 }", "cells_per_kg = 3e5, cells = 1e7 }"),
     "bad.toml: space.doses[0]: give the dose either per kg (cells_per_kg) or flat (cells), not both"),
    (('minimise = "intensity"', 'minimise = "cart_cmax"'), "goal.minimise: 'cart_cmax'"),
])
def test_bad_specs_name_the_field_and_the_fix(change, expected):
    text = EXAMPLE.read_text()
    old, new = change
    assert old in text
    assert expected in _errors(text.replace(old, new, 1))


def test_a_protocol_given_as_a_spec_is_named_as_such():
    message = _errors((ROOT / "examples" / "nct05988216.toml").read_text())
    assert "this is a protocol, not a design spec" in message
    assert "Extra inputs" not in message and "Field required" not in message


def test_not_toml():
    assert "not valid TOML" in _errors("design_id = ")


def test_a_custom_regimen_on_the_path():
    text = EXAMPLE.read_text().replace('intensity_path = ["none", "reduced", "erlangen"]',
                                       'intensity_path = ["none", "flu_only", "erlangen"]')
    text += '\n[[regimens.flu_only]]\ndrug = "fludarabine"\ndose_mg_m2 = 25\ndays = [-5, -4, -3]\n'
    loaded = parse_spec(text, "custom.toml", EXAMPLE.parent)
    anchors = anchor_regimens(loaded.spec.space.intensity_path, loaded.spec.regimens)
    assert cumulative(anchors[1], "fludarabine") == 75 and cumulative(anchors[1], "cyclophosphamide") == 0


def test_intensity_mixes_neighbouring_regimens_administration_by_administration():
    anchors = anchor_regimens(["none", "reduced", "erlangen"], {})
    assert interpolate(anchors, 0.0).administrations == ()
    assert interpolate(anchors, 0.5).name == "reduced"
    assert interpolate(anchors, 1.0).name == "erlangen"
    quarter = interpolate(anchors, 0.25)  # half of reduced: Flu 12.5 and Cy 125 on days -5, -4, -3
    assert {(a.drug, a.day): a.dose_mg_m2 for a in quarter.administrations} == {
        ("fludarabine", -5.0): 12.5, ("fludarabine", -4.0): 12.5, ("fludarabine", -3.0): 12.5,
        ("cyclophosphamide", -5.0): 125.0, ("cyclophosphamide", -4.0): 125.0, ("cyclophosphamide", -3.0): 125.0}
    three_quarters = interpolate(anchors, 0.75)  # halfway from reduced (Cy 250 x3) to Erlangen (Cy 1000 day -3)
    cy = {a.day: a.dose_mg_m2 for a in three_quarters.administrations if a.drug == "cyclophosphamide"}
    assert cy == {-5.0: 125.0, -4.0: 125.0, -3.0: 625.0}
    assert cumulative(three_quarters, "cyclophosphamide") == 875.0
    assert cumulative(three_quarters, "fludarabine") == 75.0
    with pytest.raises(ValueError):
        interpolate(anchors, 1.5)
