"""Protocol rules that react to the simulated patient, evaluated inside the simulation.

Hand-checkable cases on one deterministic patient (the model's typical autologous patient after
the Erlangen regimen): each rule must fire on the first daily check at which its condition holds
in the run without rules, the drug must then change the course as the model declares, and a
rule that never fires must leave every number bit for bit as it was.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from cartwin.body import bsa_mosteller
from cartwin.model import DEFAULT_MODEL as MODEL
from cartwin.plan.rules import CRS_GRADE, Condition, ReactiveRule, crs_grade, solve_with_rules
from cartwin.plan.work import typical_parameters
from cartwin.protocol import parse_protocol
from cartwin.run import simulate
from cartwin.simulate.engine import make_solver, solve
from cartwin.therapy.arm import preset_therapy

COV = dict(WT=62.0, CRCL=110.0, DSDNA0=150.0, C3_0=0.7, C4_0=0.08, UPROT0=1.0, PGA0=2.0,
           ARTH0=1, RASH0=1, ALOP0=1, VASC0=0, MUC0=0, PLEUR0=0, PERIC0=0, MYOS0=0, CASTS0=0,
           HEMAT0=1, PYUR0=0)
DAYS = np.arange(-6.0, 181.0)
TESTS = [o.test for o in MODEL.observables]
THERAPY = preset_therapy("autologous_cd19", "erlangen", cells_per_kg=1e6)


def patient(**overrides):
    theta = typical_parameters(MODEL, THERAPY)
    for name, factor in overrides.items():
        theta[list(MODEL.parameter_names).index(name)] *= factor
    cov = {k: np.array([float(v)]) for k, v in COV.items()}
    doses = THERAPY.patient_doses({"BSA": bsa_mosteller(np.array([165.0]), cov["WT"]), "WT": cov["WT"],
                                   "CRCL": cov["CRCL"]})
    return theta[None, :], cov, doses


def run(theta, cov, doses, rules=()):
    solver = make_solver("numba-bdf")
    if not rules:
        return solve(MODEL, theta, cov, doses, DAYS, solver), doses
    ruled = solve_with_rules(MODEL, theta, cov, doses, DAYS, solver, rules, cov["WT"])
    return ruled.solved, ruled.doses


def series(solved, test):
    return solved.observable(MODEL, test)[0]


def give(rule_id, conditions, drug, route, amount, first=0.0, last=180.0, **kw):
    return ReactiveRule(rule_id, tuple(conditions), first, last, drug=drug, route=route, amount=amount, **kw)


def test_crs_grade_follows_the_astct_table():
    values = {"TEMP": np.array([[37.5, 38.2, 38.2, 37.0, 37.0, 38.5]]),
              "HYPOTEN": np.array([[1, 0, 1, 1, 1, 0]], float),
              "HYPOXIA": np.array([[0, 0, 0, 0, 0, 2]], float),
              "ANTICYT": np.array([[0, 0, 0, 0, 1, 0]], float)}
    # no fever, untreated: not CRS; fever alone 1; fever + fluids 2; after anti-cytokine therapy
    # fever is not required (hypotension with fluids: 2); fever + high-flow oxygen 3
    assert crs_grade(values).tolist() == [[0, 1, 2, 0, 2, 3]]
    values["TEMP"][0, 5] = 37.0  # high-flow oxygen without fever: 3 once treated (day 5 on), else 0
    assert crs_grade(values)[0, 5] == 3
    values["ANTICYT"][:] = 0
    assert crs_grade(values)[0, 5] == 0


@pytest.fixture(scope="module")
def crs_patient():
    """IL-6 release 10 times the typical: CRS grade 2 (fever and hypotension) for some days."""
    theta, cov, doses = patient(P6=10.0)
    base, _ = run(theta, cov, doses)
    return theta, cov, doses, base


def test_tocilizumab_at_crs_grade_2_fires_on_the_first_such_day(crs_patient):
    theta, cov, doses, base = crs_patient
    grade = crs_grade({t: base.observable(MODEL, t) for t in ("TEMP", "HYPOTEN", "HYPOXIA", "ANTICYT")})[0]
    window = (DAYS >= 0) & (DAYS <= 28)
    assert (grade[window] >= 2).sum() >= 2, "the case needs a CRS grade 2 lasting days"
    first = DAYS[window][np.argmax(grade[window] >= 2)]
    rule = give("tcz", [Condition(CRS_GRADE, "at_least", 2)], "tocilizumab", "TOCILIZUMAB", 8.0, 0, 28,
                per="kg", max_amount=800.0, duration_days=1 / 24, unit="mg")
    solved, given = run(theta, cov, doses, (rule,))
    ruled = [d for d in given[0] if d.rule == "tcz"]
    assert [(d.day, d.amount) for d in ruled] == [(first, 8.0 * 62.0)]
    before, after = DAYS <= first, (DAYS > first) & (DAYS <= first + 5)
    # up to the dose nothing changes; after it serum IL-6 rises (receptor clearance blocked) while
    # fever and hypotension fall (signalling blocked)
    np.testing.assert_allclose(series(solved, "IL6")[before], series(base, "IL6")[before], rtol=1e-4)
    assert np.all(series(solved, "IL6")[after] > series(base, "IL6")[after])
    assert np.all(series(solved, "TEMP")[after] < series(base, "TEMP")[after])
    assert series(solved, "HYPOTEN")[after].sum() < series(base, "HYPOTEN")[after].sum()
    assert np.all(series(solved, "ANTICYT")[DAYS > first] == 1) and series(solved, "ANTICYT")[before].max() == 0


def test_dexamethasone_lowers_il6_and_blunts_expansion_a_little(crs_patient):
    theta, cov, doses, base = crs_patient
    rule = give("dex", [Condition(CRS_GRADE, "at_least", 2)], "dexamethasone", "DEXAMETHASONE", 10.0, 0, 28,
                times=4, every_days=0.25, unit="mg")
    solved, given = run(theta, cov, doses, (rule,))
    day = [d for d in given[0] if d.rule == "dex"][0].day
    after = (DAYS > day) & (DAYS <= day + 3)
    assert np.all(series(solved, "IL6")[after] < series(base, "IL6")[after])
    peak, peak_base = series(solved, "CART").max(), series(base, "CART").max()
    assert 0.5 * peak_base < peak < peak_base  # blunted, not abolished (Topp 2021, Oluwole 2021)
    assert series(solved, "PRED")[DAYS == day + 1][0] > 0  # a glucocorticoid is on record


def test_a_rule_that_never_fires_leaves_every_number_as_it_was(crs_patient):
    theta, cov, doses, base = crs_patient
    never = give("never", [Condition("NEUT", "below", -1.0)], "filgrastim", "FILGRASTIM", 5.0, per="kg")
    solved, given = run(theta, cov, doses, (never,))
    assert np.array_equal(solved.observations, base.observations, equal_nan=True)
    assert np.array_equal(solved.states, base.states)
    assert given[0] == doses[0]


def test_filgrastim_for_prolonged_neutropenia_shortens_it():
    theta, cov, doses = patient(SLOPE_N_F=3.0, SLOPE_N_CY=3.0)
    base, _ = run(theta, cov, doses)
    low = series(base, "NEUT") < 0.5
    assert low.sum() >= 5, "the case needs a week of severe neutropenia"
    third = DAYS[np.flatnonzero(low)[2]]  # ANC < 0.5 on three consecutive daily checks
    assert np.all(low[np.flatnonzero(low)[:3]]) and np.all(np.diff(np.flatnonzero(low)[:3]) == 1)
    rule = give("gcsf", [Condition("NEUT", "below", 0.5, for_days=3)], "filgrastim", "FILGRASTIM", 5.0,
                per="kg", times=5, unit="ug")
    solved, given = run(theta, cov, doses, (rule,))
    assert [d.day for d in given[0] if d.rule == "gcsf"] == [third + j for j in range(5)]
    assert (series(solved, "NEUT") < 0.5).sum() < low.sum()


def test_methylprednisolone_pulse_for_a_flare_lowers_activity_while_it_acts():
    theta, cov, doses = patient()
    base, _ = run(theta, cov, doses)
    rule = give("flare", [Condition("PGA", "at_least", 0.0)], "methylprednisolone", "METHYLPREDNISOLONE", 500.0,
                first=20.0, times=3, unit="mg")
    solved, given = run(theta, cov, doses, (rule,))
    assert [d.day for d in given[0] if d.rule == "flare"] == [20.0, 21.0, 22.0]
    day = DAYS == 25
    assert series(solved, "PGA")[day][0] < series(base, "PGA")[day][0]
    assert series(solved, "PRED")[DAYS == 21][0] > 100  # prednisone-equivalent mg/day on record


def test_second_infusion_when_b_cells_come_back():
    theta, cov, doses = patient()
    base, _ = run(theta, cov, doses)
    back = (DAYS >= 60) & (series(base, "BCELL") >= 1)
    assert back.any(), "the case needs B cells back within follow-up"
    day = DAYS[np.argmax(back)]
    rule = give("again", [Condition("BCELL", "at_least", 1.0)], "autologous_cd19", "CART", 1e6, first=60.0,
                per="kg", unit="cells")
    solved, given = run(theta, cov, doses, (rule,))
    second = [d for d in given[0] if d.rule == "again"]
    assert [(d.day, d.amount) for d in second] == [(day, 62e6)]
    assert series(solved, "CART")[DAYS == day + 7][0] > series(base, "CART")[DAYS == day + 7][0]


def test_deferral_at_screening_then_omitting_lymphodepletion():
    theta, cov, doses = patient()
    always = ReactiveRule("defer", (Condition("LYM", "below", 100.0),), 0.0, 180.0, defer_days=7.0,
                          defer_times=2, then="omit")
    ruled = solve_with_rules(MODEL, theta, cov, doses, DAYS, make_solver("numba-bdf"), (always,), cov["WT"])
    ld = [d for d in ruled.doses[0] if d.route in ("FLUDARABINE", "CYCLOPHOSPHAMIDE")]
    assert ld and all(d.amount == 0 and d.rule == "defer" for d in ld)
    assert [e.day for e in ruled.other[0]] == [min(d.day for d in ld)] * 2
    base, _ = run(theta, cov, doses)
    assert series(ruled.solved, "CART").max() < series(base, "CART").max()  # no lymphodepletion


RULES = [
    {"id": "tcz", "when": [{"test": "CRS_GRADE", "at_least": 1}], "arms": ["auto"],
     "give": {"drug": "tocilizumab", "mg_per_kg": 8, "max_mg": 800}, "to_day": 28, "indication": "CRS"},
    {"id": "gcsf", "when": [{"test": "NEUT", "below": 1.0, "for_days": 2}], "from_day": 3,
     "give": {"drug": "filgrastim", "ug_per_kg": 5, "times": 3}},
]


def test_rules_in_a_protocol_give_the_same_run_whatever_the_chunking(protocol_dict):
    protocol_dict["rules"] = RULES
    protocol_dict["arms"][0]["n"] = 4
    protocol_dict["arms"][1]["n"] = 2
    p = parse_protocol(protocol_dict)
    runs = [simulate(p, chunk_size=c) for c in (1, 1000)]
    key = ["subject", "day", "test"]
    assert runs[0].observations.sort(key).equals(runs[1].observations.sort(key))
    assert runs[0].events.sort(["ID", "TIME", "EVID", "CMT"]).equals(runs[1].events.sort(["ID", "TIME", "EVID", "CMT"]))
    ruled = runs[0].events.filter(pl.col("RULE") != "")
    assert set(ruled["RULE"]) <= {"tcz", "gcsf"} and ruled.height > 0
    assert ruled.filter(pl.col("RULE") == "tcz")["ID"].str.starts_with("auto").all()  # arms respected


@pytest.mark.parametrize("rule, message", [
    ({"id": "r", "when": [{"test": "NEUT", "below": 1, "above": 2}], "give": {"drug": "filgrastim", "ug_per_kg": 5}},
     "exactly one of below, above"),
    ({"id": "r", "when": [{"test": "NEUT", "below": 1}], "give": {"drug": "filgrastim", "mg": 5}},
     "filgrastim: give exactly one amount"),
    ({"id": "r", "when": [{"test": "NEUT", "below": 1}]}, "give exactly one of 'give'"),
    ({"id": "r", "when": [{"test": "NEUT", "below": 1}], "arms": ["nope"],
      "give": {"drug": "filgrastim", "ug_per_kg": 5}}, "unknown arms ['nope']"),
])
def test_bad_rules_are_named(protocol_dict, rule, message):
    protocol_dict["rules"] = [rule]
    with pytest.raises(Exception) as info:
        parse_protocol(protocol_dict)
    assert message in str(info.value)


def test_a_rule_on_an_unknown_read_out_is_named(protocol_dict):
    from cartwin.plan import make_work
    protocol_dict["rules"] = [{"id": "r", "when": [{"test": "NOPE", "below": 1}],
                               "give": {"drug": "filgrastim", "ug_per_kg": 5}}]
    with pytest.raises(ValueError, match=r"rules.r.when: model lupus_cart has no read-out \['NOPE'\]"):
        make_work(parse_protocol(protocol_dict))


def test_rule_events_reach_the_run_directory_and_the_cdisc_export(protocol_dict, tmp_path):
    from cartwin.io.cdisc import export_cdisc
    from cartwin.protocol import load_protocol
    from cartwin.run import run_protocol
    from cartwin.store import open_run
    from tests.conftest import write_protocol

    protocol_dict["rules"] = [dict(RULES[1], indication="prolonged neutropenia"),
                              {"id": "defer", "when": [{"test": "LYM", "below": 100}], "arms": ["tyu19"],
                               "defer_lymphodepletion": {"days": 7, "then": "reduce", "fraction": 0.5}}]
    protocol_dict["arms"][0]["n"] = 2
    protocol_dict["arms"][1]["n"] = 1
    out = tmp_path / "run"
    run_protocol(load_protocol(write_protocol(tmp_path / "p.toml", protocol_dict)), out, workers=1)
    events = open_run(out).events()
    gcsf = events.filter(pl.col("RULE") == "gcsf")
    assert gcsf.height > 0 and (gcsf["EVID"] == 1).all() and (gcsf["DRUG"] == "filgrastim").all()
    deferred = events.filter((pl.col("RULE") == "defer") & (pl.col("EVID") == 2))
    assert deferred["ID"].to_list() == ["tyu19-000001"] and "deferred 7 days" in deferred["NOTE"][0]
    cm = export_cdisc(out, tmp_path / "sdtm", formats=("csv",)).datasets
    assert cm["CM"].height == gcsf.height and set(cm["CM"]["CMTRT"]) == {"FILGRASTIM"}
    assert set(cm["CM"]["CMROUTE"]) == {"SUBCUTANEOUS"} and cm["CM"]["CMINDC"].str.contains("neutropenia").all()
    assert "FILGRASTIM" not in set(cm["EX"]["EXTRT"])
