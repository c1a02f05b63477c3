"""Replicate trials with parameter uncertainty, missed visits and withdrawal, non-responder
imputation and the replicate summary: hand-checkable cases (no solves) and one small run."""

import copy
import json
import math

import numpy as np
import polars as pl
import pytest

from cartwin.endpoints.compute import endpoint_values
from cartwin.endpoints.realism import replicate_summary
from cartwin.endpoints.table import parse
from cartwin.model import get_model
from cartwin.plan import make_plan
from cartwin.plan.conduct import apply_conduct
from cartwin.population.uncertainty import UncertaintyError, fit_draws, model_draws, read_fit, replicate_stream
from cartwin.protocol import ProtocolError, parse_protocol
from cartwin.protocol.schema import Conduct
from cartwin.run import simulate

MODEL = get_model("lupus_cart")


def test_model_uncertainty_draws_have_the_declared_spread_and_touch_nothing_else():
    """Each replicate shifts the log typical values by the declared standard errors (a protocol's
    se_log overrides one), and only those; replicate r is the same however many are asked for."""
    draws = model_draws(MODEL, 2000, seed=3, override={"RHO": 0.2})
    shifts = np.array([d.log_shift for d in draws])
    declared = {p.name: p.se_log for p in MODEL.parameters if p.se_log > 0}
    assert declared, "the default model declares the uncertainty of its lever parameters"
    expected = {**declared, "RHO": 0.2}
    for name, se in expected.items():
        k = MODEL.parameter_names.index(name)
        assert abs(shifts[:, k].std() - se) < 0.05 * se + 0.005 and abs(shifts[:, k].mean()) < 0.03
    untouched = [k for k, name in enumerate(MODEL.parameter_names) if name not in expected]
    assert not shifts[:, untouched].any()
    assert np.array_equal(model_draws(MODEL, 5, 3, {"RHO": 0.2})[4].log_shift, draws[4].log_shift)
    k = MODEL.parameter_names.index("RHO")
    typical = np.array([p.value for p in MODEL.parameters])
    assert draws[0].typical_for(MODEL, typical)[k] == pytest.approx(typical[k] * math.exp(shifts[0, k]))
    # the model's own declaration alone is enough
    assert len(model_draws(MODEL, 3, 1)) == 3
    from dataclasses import replace
    bare = replace(MODEL, parameters=tuple(replace(p, se_log=0.0, se_source="") for p in MODEL.parameters))
    with pytest.raises(UncertaintyError, match="declares no parameter uncertainty"):
        model_draws(bare, 3, 1)


def _estimates(tmp_path, model="lupus_cart"):
    # RHO 2 (SE log 0.1), K_E 0.2 (SE log 0.2), correlation of the log typical values 0.5;
    # omegas 0.3 and 0.25 with SE log 0.1, uncorrelated with the rest
    record = {
        "provenance": {"model": model},
        "population": [
            {"parameter": "RHO", "typical_value": 2.0, "se_log": 0.1, "omega": 0.3, "omega_se_log": 0.1},
            {"parameter": "K_E", "typical_value": 0.2, "se_log": 0.2, "omega": 0.25, "omega_se_log": 0.1}],
        "correlation_order": ["log RHO", "log K_E", "log omega RHO", "log omega K_E", "log sigma CART"],
        "correlation": [[1, 0.5, 0, 0, 0], [0.5, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 0, 1]],
    }
    (tmp_path / "estimates.json").write_text(json.dumps(record))
    return tmp_path


def test_fit_draws_follow_the_fit_covariance(tmp_path):
    fit = read_fit(_estimates(tmp_path), MODEL)
    draws = fit_draws(fit, MODEL, 3000, seed=9)
    log_rho = np.log([d.typical["RHO"] for d in draws])
    log_ke = np.log([d.typical["K_E"] for d in draws])
    assert abs(log_rho.mean() - math.log(2.0)) < 0.01 and abs(log_rho.std() - 0.1) < 0.005
    assert abs(log_ke.std() - 0.2) < 0.01
    assert abs(np.corrcoef(log_rho, log_ke)[0, 1] - 0.5) < 0.05
    assert abs(np.log([d.omega["RHO"] for d in draws]).mean() - math.log(0.3)) < 0.01
    # the drawn typical value replaces the arm's; the drawn omega the declared variability
    typical = np.array([p.value for p in MODEL.parameters])
    k = MODEL.parameter_names.index("RHO")
    assert draws[0].typical_for(MODEL, typical)[k] == draws[0].typical["RHO"]
    assert draws[0].variability({"K_E": 0.9})["K_E"] == draws[0].omega["K_E"]


def test_a_fit_of_another_model_or_a_missing_fit_is_refused(tmp_path):
    with pytest.raises(UncertaintyError, match="the fit is of model 'other'"):
        read_fit(_estimates(tmp_path, "other"), MODEL)
    with pytest.raises(UncertaintyError, match="not found"):
        read_fit(tmp_path / "nowhere", MODEL)


def test_uncertainty_settings_are_checked(protocol_dict):
    protocol_dict["uncertainty"] = {"replicates": 3, "se_log": {"NOPE": 0.1}}
    with pytest.raises(ProtocolError) as err:
        parse_protocol(protocol_dict)
    assert "unknown parameters ['NOPE']" in str(err.value) and "se_source" in str(err.value)
    protocol_dict["uncertainty"] = {"replicates": 3, "source": "fit"}
    with pytest.raises(ProtocolError, match="uncertainty.fit: required"):
        parse_protocol(protocol_dict)


def test_replicates_multiply_the_chunks_and_keep_their_names_apart(protocol_dict):
    protocol_dict["uncertainty"] = {"replicates": 3, "se_log": {"RHO": 0.2}, "se_source": "assumed: test"}
    plan = make_plan(parse_protocol(protocol_dict), chunk_size=4)
    assert plan.replicates == 3 and plan.to_json()["replicates"] == 3
    assert len(plan.chunks) == 3 * (2 + 2)  # arms of 6 and 5 patients in chunks of 4
    assert len({c.name for c in plan.chunks}) == len(plan.chunks)


# --- conduct --------------------------------------------------------------------------------
DAYS = np.array([-5.0, 0.0, 10.0, 20.0, 30.0, 40.0])


def test_a_constant_hazard_withdraws_the_expected_share_per_interval():
    # h = ln 2 / 10 per day over 10-day intervals: half of those still in leave in each interval
    conduct = Conduct.model_validate({"dropout": [{"reason": "other", "hazard_per_day": math.log(2) / 10}]})
    out = apply_conduct(conduct, 1, "a", np.arange(4000), None, DAYS, {})
    first = np.mean(out.withdrawn_day == 0.0)
    second = np.sum(out.withdrawn_day == 10.0) / np.sum(out.withdrawn_day != 0.0)
    assert abs(first - 0.5) < 0.025 and abs(second - 0.5) < 0.035
    # everything after the last visit is missing; nothing before it is
    row = int(np.flatnonzero(out.withdrawn_day == 10.0)[0])
    assert out.keep[row].tolist() == [True, True, True, False, False, False]
    assert set(out.reason) <= {"", "other"}
    # the same patient has the same conduct in any chunk
    part = apply_conduct(conduct, 1, "a", np.arange(100, 200), None, DAYS, {})
    assert np.array_equal(part.withdrawn_day, out.withdrawn_day[100:200], equal_nan=True)


def test_a_condition_on_the_observations_and_the_baseline_decides_who_can_withdraw():
    # neutrophils below 0.5 on day 20 for patient 0 only; hazard 10/day makes withdrawal certain
    neut = np.full((2, DAYS.size), 3.0)
    neut[0, 3] = 0.3
    # PGA not below baseline from day 30 for patient 1 (relative to baseline on day 0)
    pga = np.array([[2.0, 2.0, 1.0, 0.5, 0.5, 0.5], [2.0, 2.0, 1.5, 1.8, 2.1, 2.1]])
    conduct = Conduct.model_validate({"dropout": [
        {"reason": "toxicity", "test": "NEUT", "op": "<", "value": 0.5, "hazard_per_day": 10},
        {"reason": "lack_of_efficacy", "test": "PGA", "op": ">=", "value": 1.0, "relative_to_baseline": True,
         "from_day": 25, "hazard_per_day": 10}]})
    out = apply_conduct(conduct, 1, "a", np.arange(2), None, DAYS, {"NEUT": neut, "PGA": pga})
    assert out.withdrawn_day.tolist() == [20.0, 30.0]
    assert out.reason == ["toxicity", "lack_of_efficacy"]


def test_missed_visits_have_the_declared_probability_and_spare_the_baseline():
    conduct = Conduct.model_validate({"visits": {"missed_probability": 0.3}})
    out = apply_conduct(conduct, 2, "a", np.arange(3000), None, DAYS, {})
    assert out.keep[:, :2].all()  # day -5 and day 0 are always kept
    assert abs((~out.keep[:, 2:]).mean() - 0.3) < 0.02
    assert np.array_equal(out.missed, (~out.keep).sum(axis=1))
    assert np.isnan(out.withdrawn_day).all()


# --- non-responder imputation and the replicate summary ------------------------------------
TABLE = parse("""
version = "t"
[[endpoint]]
key = "resp"
type = "binary"
label = "responder by day 90"
standard = "s"
standard_version = "v"
definition = "d"
population = "p"
censoring = "none"
unit = "proportion"
success = [{ column = "day_reached", op = "<=", value = 90 }]
evaluable = [{ column = "visits", op = ">", value = 0 }]
missing_data = "non_responder"
assessment_day = 90
""", "test table")


def test_a_patient_withdrawn_before_the_assessment_day_is_a_non_responder():
    frame = pl.DataFrame({
        "day_reached": [30.0, 30.0, 30.0, None, None],
        "visits": [5, 5, 5, 0, 0],
        "withdrawn_day": [None, 50.0, 120.0, 10.0, None]})
    e = TABLE.endpoint("resp")
    values = frame.select(endpoint_values(e, withdrawal=True))["resp"].to_list()
    # responder; withdrawn on day 50 < 90 (imputed); withdrawn after day 90 (kept); withdrawn
    # before any evaluable visit (imputed, now in the denominator); not evaluable, not withdrawn
    assert values == [True, False, True, False, None]
    assert frame.select(endpoint_values(e))["resp"].to_list() == [True, True, True, None, None]


def test_replicate_summary_separates_replicates_from_patients():
    # three replicates of 10 patients: 2, 5 and 8 responders
    resp = [i < k for k in (2, 5, 8) for i in range(10)]
    frame = pl.DataFrame({"arm": ["a"] * 30, "replicate": np.repeat([1, 2, 3], 10), "resp": resp})
    (row,) = replicate_summary(frame, 0.9, TABLE)
    assert [r["p"] for r in row["per_replicate"]] == [0.2, 0.5, 0.8]
    across = row["across_replicates"]
    assert across["median"] == 0.5
    # numpy's linear quantiles of (0.2, 0.5, 0.8) at 5% and 95%: 0.2 + 0.1 x 0.3 and 0.8 - 0.03
    assert across["lower"] == pytest.approx(0.23) and across["upper"] == pytest.approx(0.77)


def test_a_small_run_with_replicates_and_conduct_is_the_same_whatever_the_chunking(protocol_dict):
    protocol_dict["arms"] = protocol_dict["arms"][1:]
    protocol_dict["arms"][0]["n"] = 2
    protocol_dict["uncertainty"] = {"replicates": 2, "se_log": {"RHO": 0.3}, "se_source": "assumed: test"}
    protocol_dict["conduct"] = {"visits": {"missed_probability": 0.3},
                                "dropout": [{"reason": "other", "hazard_per_day": 0.02}]}
    p = parse_protocol(protocol_dict)
    runs = [simulate(p, chunk_size=c, workers=1) for c in (1, 2)]
    a, b = (r.patients.sort("subject") for r in runs)
    assert a.equals(b)
    assert runs[0].observations.sort(["subject", "day", "test"]).equals(runs[1].observations.sort(["subject", "day", "test"]))
    assert a["replicate"].to_list() == [1, 1, 2, 2] and a["subject"].n_unique() == 4
    assert {"withdrawn_day", "withdrawal_reason", "visits_missed"} <= set(a.columns)
    # observations stop after the withdrawal day (the last visit, which may itself be missed) and
    # lack the missed visits
    obs = runs[0].observations
    scheduled = [-6, 0, 7, 14, 28, 56, 90, 120]
    withdrawn = 0
    for row in a.iter_rows(named=True):
        days = set(obs.filter(pl.col("subject") == row["subject"])["day"].to_list())
        last = row["withdrawn_day"] if row["withdrawn_day"] is not None else math.inf
        withdrawn += row["withdrawn_day"] is not None
        assert max(days) <= last
        assert len(days) == sum(d <= last for d in scheduled) - row["visits_missed"]
    assert withdrawn >= 1  # with this seed; 0.02/day over 120 days withdraws 91% of patients
    # the replicates' parameters differ by their draw of RHO, their patients by their own streams
    params = runs[0].parameters.sort("subject")
    assert params["RHO"].n_unique() == 4


def test_a_fit_is_found_beside_the_protocol_file_and_checked_when_loaded(tmp_path, protocol_dict):
    from cartwin.protocol import load_protocol
    from tests.conftest import write_protocol

    (tmp_path / "fit").mkdir()
    _estimates(tmp_path / "fit")
    protocol_dict["uncertainty"] = {"replicates": 2, "source": "fit", "fit": "fit"}
    loaded = load_protocol(write_protocol(tmp_path / "p.toml", protocol_dict))
    assert loaded.protocol.uncertainty.fit == str((tmp_path / "fit").resolve())
    protocol_dict["uncertainty"]["fit"] = "nowhere"
    with pytest.raises(ProtocolError, match="uncertainty.fit: .*not found"):
        load_protocol(write_protocol(tmp_path / "p.toml", protocol_dict))


def test_visit_windows_shift_visits_by_whole_days_inside_their_bounds():
    from cartwin.plan.conduct import actual_days, conduct_uniforms, window_bounds, window_candidates

    days = np.array([-5.0, 0.0, 10.0, 20.0, 30.0])
    lower, upper = window_bounds(days, 35.0)
    assert lower.tolist() == [-5, 0, 5, 15, 25] and upper.tolist() == [-5, 0, 15, 25, 35]
    u = conduct_uniforms(4, "a", np.arange(3000), None, days.size)
    actual = actual_days(u, days, 3, 35.0)
    assert (actual[:, :2] == days[:2]).all()  # screening and infusion stay put
    shift = actual[:, 2:] - days[2:]
    assert set(np.unique(shift)) == {-3, -2, -1, 0, 1, 2, 3}  # whole days, uniform on [-3, 3]
    assert abs(np.mean(shift == 0) - 1 / 7) < 0.02
    # a window wider than the bounds falls back inside them: day 10 never before day 6
    wide = actual_days(u, days, 8, 35.0)
    assert wide[:, 2].min() == 6 and wide[:, 2].max() == 14 and wide[:, 4].max() == 34
    assert set(np.unique(wide)) <= set(window_candidates(days, 8, 35.0).tolist())


def test_a_run_with_visit_windows_samples_each_patient_on_its_own_days(protocol_dict):
    protocol_dict["arms"] = protocol_dict["arms"][:1]
    protocol_dict["arms"][0]["n"] = 3
    protocol_dict["outputs"] = ["CART", "NEUT"]
    protocol_dict["conduct"] = {"visits": {"window_days": 2}}
    runs = [simulate(parse_protocol(protocol_dict), chunk_size=c, workers=1) for c in (1, 3)]
    obs = runs[0].observations
    assert obs.sort(["subject", "day", "test"]).equals(runs[1].observations.sort(["subject", "day", "test"]))
    nominal = [-6, 0, 7, 14, 28, 56, 90, 120]
    per_subject = obs.group_by("subject").agg(pl.col("day").unique().sort()).sort("subject")["day"].to_list()
    for days in per_subject:
        assert len(days) == len(nominal) and days[:2] == [-6, 0]
        assert all(abs(d - n) <= 2 for d, n in zip(days, nominal))
    assert len({tuple(d) for d in per_subject}) > 1
    # the event table's sampling rows are the days the samples were taken
    events = runs[0].events.filter(pl.col("EVID") == 0)
    assert events.group_by("ID").agg(pl.col("TIME").sort()).sort("ID")["TIME"].to_list() == per_subject
    # a value on a shifted day is the model's value on that day: patient 1 re-solved on its own days
    protocol_dict.pop("conduct")
    first = per_subject[0]
    protocol_dict["schedule"] = {"days": first}
    plain = simulate(parse_protocol(protocol_dict), chunk_size=1, workers=1).observations
    subject = obs["subject"].sort()[0]
    mine = obs.filter(pl.col("subject") == subject).sort(["day", "test"])["value"].to_numpy()
    again = plain.filter(pl.col("subject") == subject).sort(["day", "test"])["value"].to_numpy()
    assert np.allclose(mine, again, rtol=1e-6, atol=1e-12)


def test_a_posterior_sample_gives_replicate_r_its_row_r(tmp_path):
    from cartwin.population.uncertainty import posterior_draws

    (tmp_path / "post.csv").write_text("RHO,K_E,omega_RHO\n2.0,0.15,0.3\n2.5,0.2,0.35\n1.8,0.1,0.2\n")
    draws = posterior_draws(tmp_path / "post.csv", MODEL, 3)
    assert [d.typical["RHO"] for d in draws] == [2.0, 2.5, 1.8]
    assert draws[1].typical["K_E"] == 0.2 and draws[2].omega == {"RHO": 0.2}
    with pytest.raises(UncertaintyError, match="3 draws for 4 replicates"):
        posterior_draws(tmp_path / "post.csv", MODEL, 4)
    (tmp_path / "bad.csv").write_text("RHO,SHOE\n2.0,1\n")
    with pytest.raises(UncertaintyError, match=r"columns \['SHOE'\]"):
        posterior_draws(tmp_path / "bad.csv", MODEL, 1)
    (tmp_path / "neg.csv").write_text("RHO\n2.0\n-1\n")
    with pytest.raises(UncertaintyError, match="row 3 \\(draw 2\\), column RHO"):
        posterior_draws(tmp_path / "neg.csv", MODEL, 2)
    # a draw outside a parameter's declared bounds (a fraction of IgG above 0.9) is named, not used
    (tmp_path / "out.csv").write_text("F_IGG_AUTO\n0.1\n0.95\n")
    with pytest.raises(UncertaintyError, match="row 3 \\(draw 2\\), column F_IGG_AUTO: 0.95 is outside the "
                                               "parameter's declared bounds 0-0.9"):
        posterior_draws(tmp_path / "out.csv", MODEL, 2)


def test_replicate_typical_values_stay_within_the_declared_bounds(tmp_path):
    """A typical value drawn outside its parameter's declared bounds is drawn again from the
    replicate's stream (a truncated draw), so a wide standard error on a bounded share cannot
    make a replicate's IgG production negative; draws inside the bounds are unchanged, and
    bounds that no draw can reach are an error naming the parameter."""
    p = MODEL.parameter("F_IGG_AUTO")
    assert p.upper is not None, "F_IGG_AUTO is a share of IgG with a declared upper bound"
    k = MODEL.parameter_names.index("F_IGG_AUTO")
    wide = {"F_IGG_AUTO": 2.0}  # about one log-normal draw in seven around 0.1 with SE 2 is above 0.9
    draws = model_draws(MODEL, 400, seed=5, override=wide)
    typical = np.array([q.value for q in MODEL.parameters])
    values = np.array([d.typical_for(MODEL, typical)[k] for d in draws])
    assert values.max() <= p.upper and values.min() > 0
    assert (values < p.value).mean() > 0.5  # truncated above: more mass below the typical value
    # a replicate whose first draw was inside the bounds keeps it: the same numbers as before
    first = np.array([replicate_stream(5, r).standard_normal(len(typical))[k] for r in range(400)])
    inside = p.value * np.exp(2.0 * first) <= p.upper
    assert 0 < inside.sum() < 400
    shifts = np.array([d.log_shift[k] for d in draws])
    assert np.array_equal(shifts[inside], 2.0 * first[inside])
    assert not np.array_equal(shifts[~inside], 2.0 * first[~inside])
    from dataclasses import replace
    narrow = replace(MODEL, parameters=tuple(replace(q, lower=0.0999, upper=0.1001) if q.name == "F_IGG_AUTO" else q
                                             for q in MODEL.parameters))
    with pytest.raises(UncertaintyError, match="F_IGG_AUTO.*declared bounds 0.0999-0.1001"):
        model_draws(narrow, 3, seed=5, override={"F_IGG_AUTO": 50.0})

    # a fit's joint draws: the whole draw is drawn again
    record = {
        "provenance": {"model": "lupus_cart"},
        "population": [
            {"parameter": "F_IGG_AUTO", "typical_value": 0.5, "se_log": 1.0, "omega": 0.1, "omega_se_log": 0.1},
            {"parameter": "RHO", "typical_value": 2.0, "se_log": 0.1, "omega": 0.3, "omega_se_log": 0.1}],
        "correlation_order": ["log F_IGG_AUTO", "log RHO", "log omega F_IGG_AUTO", "log omega RHO"],
        "correlation": np.eye(4).tolist(),
    }
    (tmp_path / "estimates.json").write_text(json.dumps(record))
    fitted = [d.typical["F_IGG_AUTO"] for d in fit_draws(read_fit(tmp_path, MODEL), MODEL, 300, seed=2)]
    assert max(fitted) <= p.upper and min(fitted) > 0
