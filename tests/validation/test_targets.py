"""The validation suite is data: these tests keep the targets and scenarios well formed."""

from __future__ import annotations

import pytest

from cartwin.protocol import ProtocolError, parse_protocol
from cartwin.validation import statistics as st
from cartwin.validation.suite import SuiteError, load_suite

SUITE = load_suite()


def test_at_least_30_targets_both_calibrated_and_held_out():
    """The issue asks for >= 30 published targets, part of them kept out of calibration."""
    targets = SUITE.targets
    assert len(targets) >= 30
    calibrated = [t for t in targets if t.calibrated]
    held_out = [t for t in targets if not t.calibrated]
    assert calibrated and held_out
    assert len(held_out) >= len(targets) / 3, "a substantial part must be held out"


def test_at_least_16_targets_beyond_the_clinical_evidence_notes():
    """Section 9 of the evidence notes is the start; at least 16 targets come from elsewhere."""
    assert sum(t.origin == "added" for t in SUITE.targets) >= 16


def test_every_target_is_complete():
    """Every row: a source with a year or identifier, an ordered range, a known statistic, arms
    of its scenario, and calibrated rows name the parameters they set."""
    for t in SUITE.targets:
        assert len(t.source) > 20 and any(ch.isdigit() for ch in t.source), t.id
        assert t.low <= t.high, t.id
        assert t.statistic in st.STATISTICS, t.id
        assert t.scenario in SUITE.scenarios, t.id
        scenario_arms = [a["id"] for a in SUITE.scenarios[t.scenario].arms]
        assert set(t.arms) <= set(scenario_arms) and len(t.arms) == (2 if t.statistic in st.TWO_ARM else 1), t.id
        assert (len(t.calibrated_by) > 0) == t.calibrated, t.id
        assert t.range_basis and t.unit, t.id
    ids = [t.id for t in SUITE.targets]
    assert len(ids) == len(set(ids))


def test_every_target_parameter_is_accepted_by_its_statistic():
    """A misspelt parameter must fail here, not at the end of a long run."""
    import inspect
    for t in SUITE.targets:
        fn = st.ONE_ARM.get(t.statistic) or st.TWO_ARM[t.statistic]
        names = set(inspect.signature(fn).parameters)
        if t.statistic in ("proportion_difference", "median_ratio"):
            inner = t.params["of"]
            assert inner in st.ONE_ARM, t.id
            names |= set(inspect.signature(st.ONE_ARM[inner]).parameters)
        assert set(t.params) <= names, (t.id, set(t.params) - names)


def test_every_scenario_is_a_valid_protocol_or_names_a_missing_product():
    """Each scenario becomes a protocol; the only ones allowed to fail are those whose product the
    catalogue does not hold yet (BCMA-directed), and they fail with the protocol's own message."""
    for scenario in SUITE.scenarios.values():
        try:
            parse_protocol(scenario.protocol_dict(SUITE, 8, 1), scenario.id)
        except ProtocolError as exc:
            assert all("unknown product" in p for p in exc.problems), (scenario.id, exc.problems)
            assert "BCMA" in scenario.description, scenario.id


def test_every_scenario_is_used_by_a_target():
    assert {t.scenario for t in SUITE.targets} == set(SUITE.scenarios)


def _write(tmp_path, targets: str):
    path = tmp_path / "targets.toml"
    path.write_text(targets)
    return path


ROW = """
[[target]]
id = "x"
description = "d"
source = "Someone 2024"
evidence = "V"
origin = "added"
scenario = "erlangen_autologous"
statistic = "crs_rate"
params = { min_grade = 1 }
range = [0.1, 0.9]
unit = "fraction"
range_basis = "3/5"
calibration = "no"
"""


def test_a_good_row_loads(tmp_path):
    suite = load_suite(_write(tmp_path, ROW))
    assert [t.id for t in suite.targets] == ["x"] and suite.targets[0].arms == ("autologous",)


@pytest.mark.parametrize("change, message", [
    (('calibration = "no"', 'calibration = "maybe"'), "target[0] (x).calibration"),
    (('calibration = "no"', 'calibration = "yes"'), "target[0] (x).calibrated_by"),
    (('calibration = "no"', 'calibration = "informed"'), "target[0] (x).informed_by"),
    (('statistic = "crs_rate"', 'statistic = "crs_ratio"'), "target[0] (x).statistic: unknown 'crs_ratio'"),
    (('scenario = "erlangen_autologous"', 'scenario = "nowhere"'), "target[0] (x).scenario: unknown 'nowhere'"),
    (("range = [0.1, 0.9]", "range = [0.9, 0.1]"), "target[0] (x).range"),
    (('source = "Someone 2024"\n', ""), "target[0] (x): missing ['source']"),
    (('statistic = "crs_rate"', 'statistic = "proportion_difference"'), "target[0] (x).arms"),
])
def test_a_malformed_row_is_named_with_its_field(tmp_path, change, message):
    with pytest.raises(SuiteError) as exc:
        load_suite(_write(tmp_path, ROW.replace(*change)))
    assert message in str(exc.value)
    assert str(tmp_path / "targets.toml") in str(exc.value)


def test_calibration_check_names_a_parameter_the_model_lacks(tmp_path):
    """After a model change, a calibrated target naming a parameter that no longer exists is listed
    in the report; the shipped suite names only parameters of the current model."""
    from cartwin.validation.suite import calibration_notes

    assert calibration_notes(SUITE) == []
    row = ROW.replace('calibration = "no"', 'calibration = "yes"\ncalibrated_by = ["EC_TEMP", "NO_SUCH_PARAMETER"]')
    notes = calibration_notes(load_suite(_write(tmp_path, row)))
    assert len(notes) == 1 and "x: parameter NO_SUCH_PARAMETER" in notes[0]


def test_a_target_that_prompted_a_model_change_is_counted_apart_from_the_held_out(tmp_path):
    """A target whose failure prompted a change of the model's structure (no parameter set to its
    number) is weaker evidence than one the model never looked at: the report counts it as
    *informed*, not as held out, and says what it prompted."""
    from cartwin.validation.report import summary_rows
    from cartwin.validation.suite import Result

    row = ROW.replace('calibration = "no"', 'calibration = "informed"\ninformed_by = "a kill of the X pool"')
    informed = load_suite(_write(tmp_path, row)).targets[0]
    held_out = load_suite(_write(tmp_path, ROW)).targets[0]
    assert (informed.role, held_out.role) == ("informed", "held out")
    results = [Result(informed, "pass", None, ""), Result(held_out, "fail", None, "")]
    counts = dict(summary_rows(results))
    assert counts["informed"]["pass"] == 1 and counts["informed"]["total"] == 1
    assert counts["held out"]["fail"] == 1 and counts["held out"]["total"] == 1
    assert counts["all targets"]["total"] == 2
    shipped = {t.id: t.role for t in SUITE.targets}
    assert shipped["bcma_sledai2k_m9"] == "informed"
