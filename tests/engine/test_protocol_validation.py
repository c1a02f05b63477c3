"""Every protocol problem gives a message naming the file, the field and the fix."""

import pytest

from cartwin.protocol import ProtocolError, load_protocol, parse_protocol
from tests.conftest import explicit_patient, use_explicit_patients, write_protocol


def errors_of(data) -> str:
    with pytest.raises(ProtocolError) as exc:
        parse_protocol(data, "trial.toml")
    return str(exc.value)


def test_valid_protocol_loads(protocol_dict):
    p = parse_protocol(protocol_dict)
    assert [a.id for a in p.arms] == ["auto", "tyu19"]


def test_malformed_toml_names_the_file_and_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("study_id = 'x'\nseed = = 3\n")
    with pytest.raises(ProtocolError) as exc:
        load_protocol(path)
    assert "bad.toml" in str(exc.value) and "not valid TOML" in str(exc.value)
    assert "line 2" in str(exc.value)


def test_missing_file(tmp_path):
    with pytest.raises(ProtocolError, match="file not found"):
        load_protocol(tmp_path / "nope.toml")


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d["arms"][0].update(product="tyu91"),
     "arms[0] (auto).product: unknown product 'tyu91'"),
    (lambda d: d["arms"][0].update(lymphodepletion="heavy"),
     "arms[0] (auto).lymphodepletion: unknown regimen 'heavy'"),
    (lambda d: d["arms"][0].update(dose={"cells_per_kg": 1e12}),
     "arms[0] (auto).dose.cells_per_kg: 1e+12 cells/kg is outside the plausible"),
    (lambda d: d["arms"][0].update(dose={"cells_per_kg": -5}),
     "arms[0] (auto).dose.cells_per_kg: -5 cells/kg is outside"),
    (lambda d: d["arms"][1].update(dose={"cells": 10}),
     "arms[1] (tyu19).dose.cells: 10 cells is outside the plausible"),
    (lambda d: d["arms"][1].update(id="auto"),
     "arms: arm id 'auto' is used twice"),
    (lambda d: d["arms"][0].pop("n"),
     "arms[0] (auto).n: required when the population is given as distributions"),
    (lambda d: d["arms"][0].update(lymphodepletion=[{"drug": "fludarabine", "dose_mg_m2": 300, "days": [-4]}]),
     "arms[0] (auto).lymphodepletion[0].dose_mg_m2: 300 mg/m^2 of fludarabine is outside"),
    (lambda d: d["arms"][0].update(lymphodepletion=[{"drug": "fludarabine", "dose_mg_m2": 30, "days": [2]}]),
     "arms[0] (auto).lymphodepletion[0].days: day 2 is not between -30 and 0"),
    (lambda d: d["schedule"].update(days=[0, 7, 400]),
     "schedule: days [400.0] lie after follow_up_days = 120"),
    (lambda d: d["schedule"].update(days=[-60, 0]),
     "schedule: days [-60.0] lie before day -30"),
    (lambda d: d["schedule"].update(days=[0, 7, 7, 28]),
     "schedule.days: day(s) [7.0] are listed more than once; list each assessment day once"),
    (lambda d: d["population"]["weight"].update(median=900),
     "population.weight.median: 900 is outside the physiologic range 30-250"),
    (lambda d: d["population"]["age"].update(low=5),
     "population.age.low: 5 is outside the physiologic range 12-90"),
    (lambda d: d["population"]["creatinine"].update(unit="mmol/L"),
     "population.creatinine.unit: unknown unit 'mmol/L' for creatinine"),
    (lambda d: d["population"]["disease"]["c3"].update(unit="mg/dL"),
     "population.disease.c3.median: 0.65 is outside the physiologic range 5-300 in the unit given; "
     'if it is in g/L, say so: c3 = { unit = "g/L", distribution = { ... } }'),
    (lambda d: d["population"]["disease"]["descriptors"].update(seizure=0.1),
     "unknown descriptors ['seizure']"),
    (lambda d: d["population"]["sex"].update(female=1.5),
     "population.sex.female: Input should be less than or equal to 1"),
    (lambda d: d.update(colour="blue"),
     "colour: unknown field; remove it or check its spelling"),
    (lambda d: d.pop("seed"), "seed: required field is missing"),
    (lambda d: d["population"].pop("height"),
     "population needs distributions for ['height']"),
    (lambda d: d["population"]["age"].update(high=10, low=20),
     "population.age: uniform: high must be greater than low"),
    (lambda d: d.update(products={"x": {"allogeneic": True, "edits": ["HLA-Z"]}}),
     "products.x.edits: unknown edits ['HLA-Z']"),
    (lambda d: d["schedule"].update(every=7),
     "give either 'days' or 'every'/'start'/'stop', not both"),
])
def test_each_bad_input_is_named(protocol_dict, mutate, expected):
    mutate(protocol_dict)
    msg = errors_of(protocol_dict)
    assert msg.startswith("trial.toml:")
    assert expected in msg


def test_a_value_given_in_another_accepted_unit_is_named_with_the_unit_setting(protocol_dict):
    """Creatinine 0.66 read as umol/L is out of range, but in range as mg/dL (the usual US unit):
    the message says how to declare mg/dL; a value out of range in every unit gets no hint."""
    use_explicit_patients(protocol_dict, [explicit_patient("A", creatinine=0.66), explicit_patient("B", weight=20)])
    msg = errors_of(protocol_dict)
    assert ('population.patients[0] (A).creatinine: 0.66 is outside the physiologic range 20-1500 umol/L; '
            'if it is in mg/dL, say so: creatinine_unit = "mg/dL"') in msg
    assert "population.patients[1] (B).weight: 20 is outside the physiologic range 30-250 kg\n" in msg + "\n"


def test_a_misspelt_field_is_named_with_the_field_it_is_close_to(protocol_dict):
    """An unknown field one typo away from a field of the schema gets a suggestion; one that is
    like no field gets none."""
    protocol_dict["arms"][0]["lymphodeplet1on"] = protocol_dict["arms"][0].pop("lymphodepletion")
    protocol_dict["colour"] = "blue"
    msg = errors_of(protocol_dict)
    assert ("arms[0].lymphodeplet1on: unknown field; remove it or check its spelling "
            "(did you mean 'lymphodepletion'?)") in msg
    assert "colour: unknown field; remove it or check its spelling\n" in msg + "\n"


@pytest.mark.parametrize("dose, expected", [
    ({"cells_per_kg": "1e6 cells"}, "dose.cells_per_kg: Input should be a valid number (given '1e6 cells', text)"),
    ({"cells": "lots"}, "dose.cells: Input should be a valid number (given 'lots', text)"),
])
def test_a_dose_given_one_way_is_judged_that_way_only(protocol_dict, dose, expected):
    """A per-kg dose with a bad value is not also told that it lacks a flat dose (the union's other
    branch), nor the other way round: one message, the right one."""
    protocol_dict["arms"][0]["dose"] = dose
    msg = errors_of(protocol_dict)
    assert expected in msg
    assert "required field is missing" not in msg and "unknown field" not in msg


def test_explicit_patients_are_checked(protocol_dict):
    use_explicit_patients(protocol_dict, [explicit_patient("A", weight=20), explicit_patient("A")])
    assert "explicit patient ids must be unique" in errors_of(protocol_dict)
    protocol_dict["population"]["patients"][1]["id"] = "B"
    assert "population.patients[0] (A).weight: 20 is outside the physiologic range 30-250 kg" in errors_of(protocol_dict)


def test_user_defined_product_and_regimen(protocol_dict):
    protocol_dict["products"] = {"b2m_ko": {"allogeneic": True, "edits": ["TRAC", "B2M"]}}
    protocol_dict["regimens"] = {"flu_only": [{"drug": "fludarabine", "dose_mg_m2": 30, "days": [-4, -3]}]}
    protocol_dict["arms"][0].update(product="b2m_ko", lymphodepletion="flu_only")
    p = parse_protocol(protocol_dict)
    assert p.arms[0].product == "b2m_ko"


def test_file_round_trip(tmp_path, protocol_dict):
    loaded = load_protocol(write_protocol(tmp_path / "p.toml", protocol_dict))
    assert loaded.protocol.study_id == "TEST-001"
    assert len(loaded.sha256) == 64


def test_a_dose_given_both_per_kg_and_flat_is_one_clear_message(protocol_dict):
    protocol_dict["arms"][0]["dose"] = {"cells_per_kg": 1e6, "cells": 5e7}
    text = errors_of(protocol_dict)
    assert "arms[0].dose: give the dose either per kg (cells_per_kg) or flat (cells), not both" in text
    assert "unknown field" not in text  # both fields are real; the problem is giving both


def test_a_regimen_list_with_a_bad_drug_names_the_drug_only(protocol_dict):
    protocol_dict["arms"][0]["lymphodepletion"] = [{"drug": "cytoxan", "dose_mg_m2": 300, "days": [-5]}]
    text = errors_of(protocol_dict)
    assert "arms[0].lymphodepletion[0].drug" in text and "'cytoxan'" in text
    assert "valid string" not in text  # the list was the right type: no message about text


def test_union_messages_keep_the_other_problems_and_the_names_of_regimens(protocol_dict):
    """Rewriting a union's errors drops only what misleads: an unknown field beside a dose given
    both ways is still reported, and regimens whose names begin like a type tag keep them."""
    protocol_dict["arms"][0]["dose"] = {"cells_per_kg": 1e6, "cells": 5e7, "foo": 1}
    text = errors_of(protocol_dict)
    assert "not both" in text and "arms[0].dose.foo: unknown field" in text
    protocol_dict["arms"][0]["dose"] = {"cells_per_kg": 1e6}
    protocol_dict["regimens"] = {"strong": [{"drug": "x", "dose_mg_m2": 1, "days": [-3]}], "stricter": 5}
    text = errors_of(protocol_dict)
    assert "regimens.strong[0].drug" in text and "regimens.stricter" in text


def test_a_design_spec_given_as_a_protocol_is_named_as_such():
    """`cartwin validate` or `run` of a design spec listed thirteen schema problems and no word of
    what the file is."""
    from tests.conftest import ROOT
    with pytest.raises(ProtocolError) as info:
        load_protocol(ROOT / "examples" / "design_least_ld.toml")
    assert info.value.problems[0].startswith("this is a design spec, not a protocol: search it with `cartwin design")
