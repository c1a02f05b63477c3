"""Event tables and the solver against hand-written golden cases on a one-compartment model."""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from cartwin.model.codegen import compile_model
from cartwin.model.declaration import DoseInput, Model, Observable, Parameter, State
from cartwin.model.lupus_cart import MODEL
from cartwin.simulate.events import EVENT_SCHEMA, doses_to_schedule
from cartwin.store.tables import events_table
from cartwin.simulate.solvers import ScipyLSODA
from cartwin.therapy.dosing import Dose

K_EL = 0.5  # 1/day

ONE_CMT = Model(
    name="one_compartment_test", version="1", description="A = amount; dA/dt = -k A",
    parameters=(Parameter("KEL", K_EL, "1/day", "elimination", "assumed: test model"),
                Parameter("SCALE", 2.0, "1", "dose scale", "assumed: test model")),
    covariates=(), assignments=(),
    states=(State("A", "mg", "amount", "0", "-KEL*A"),),
    doses=(DoseInput("IV", "A", "mg", "SCALE", "iv dose, doubled to test scaling"),),
    observables=(Observable("CART", "A", "cells/uL", "amount read out"),),
)


def solve(doses, t_obs, backend=None):
    """The one-compartment test model through ``backend`` (LSODA at tight tolerance by default)."""
    backend = backend or ScipyLSODA(rtol=1e-10, atol=1e-12)
    mod = compile_model(ONE_CMT)
    K = mod.constants(np.array([[K_EL, 2.0]]), np.zeros((1, 0)))
    sched = doses_to_schedule(doses, ONE_CMT, mod.dose_scales(K)[0])
    res = backend.solve(mod, K, mod.initial(K), [sched], np.asarray(t_obs, float))
    assert res.ok[0], res.reasons
    return res.states[0, :, 0]


def test_dose_at_day_zero_observation_is_pre_dose():
    y = solve([Dose("IV", 0.0, 10.0)], [0.0, 1.0, 2.0])
    assert y[0] == 0.0  # sample at the dose time is taken before the dose
    assert y[1] == pytest.approx(20 * math.exp(-0.5), rel=1e-8)
    assert y[2] == pytest.approx(20 * math.exp(-1.0), rel=1e-8)


def test_dose_and_observation_at_the_same_later_time():
    y = solve([Dose("IV", 0.0, 10.0), Dose("IV", 2.0, 10.0)], [2.0, 3.0])
    pre = 20 * math.exp(-1.0)
    assert y[0] == pytest.approx(pre, rel=1e-8)
    assert y[1] == pytest.approx((pre + 20) * math.exp(-0.5), rel=1e-8)


def test_observations_before_the_first_dose_are_baseline():
    y = solve([Dose("IV", -3.0, 5.0)], [-5.0, -3.0, -2.0])
    assert y[0] == 0.0 and y[1] == 0.0
    assert y[2] == pytest.approx(10 * math.exp(-0.5), rel=1e-8)


def test_infusion_matches_analytic_solution():
    # 10 mg (x2 scale) over 0.5 day: rate R = 40 mg/day; A(t) = R/k (1 - e^{-kt}) during,
    # then decays from A(0.5)
    y = solve([Dose("IV", 0.0, 10.0, duration_days=0.5)], [0.25, 0.5, 1.5])
    rate = 40.0
    a = lambda t: rate / K_EL * (1 - math.exp(-K_EL * t))
    assert y[0] == pytest.approx(a(0.25), rel=1e-8)
    assert y[1] == pytest.approx(a(0.5), rel=1e-8)
    assert y[2] == pytest.approx(a(0.5) * math.exp(-K_EL * 1.0), rel=1e-8)


def test_event_table_golden_case():
    """Dose rows carry compartment, amount and rate; at equal times the sample comes first
    (a pre-dose sample); one sampling row per assessment day."""
    doses = [Dose("FLUDARABINE", -5.0, 40.0, 0.5 / 24, "fludarabine"),
             Dose("CART", 0.0, 5.5e7, 0.0, "tyu19")]
    table = events_table(SimpleNamespace(subject=["S1"]), MODEL, [doses], np.array([-5.0, 0.0, 7.0]))
    assert table.schema == EVENT_SCHEMA
    rows = table.to_pylist()
    got = [(r["TIME"], r["EVID"], r["CMTNAME"], r["AMT"], round(r["RATE"], 6), r["MDV"], r["DVID"]) for r in rows]
    cmt_flu = MODEL.state_names.index("A_F1") + 1
    assert [r["CMT"] for r in rows if r["EVID"] == 1] == [cmt_flu, MODEL.state_names.index("CE") + 1]
    assert got == [
        (-5.0, 0, "", 0.0, 0.0, 1, "ALL"),         # pre-dose sample first at equal time
        (-5.0, 1, "A_F1", 40.0, 1920.0, 1, ""),    # 40 mg over 30 min = 1920 mg/day
        (0.0, 0, "", 0.0, 0.0, 1, "ALL"),
        (0.0, 1, "CE", 5.5e7, 0.0, 1, ""),         # CAR-T bolus, cells
        (7.0, 0, "", 0.0, 0.0, 1, "ALL"),
    ]


def test_failed_solve_is_reported_not_raised():
    blow_up = Model(
        name="blow_up_test", version="1", description="y' = y^2 blows up at t = 1",
        parameters=(Parameter("P", 1.0, "1", "unused", "assumed: test model"),), covariates=(),
        assignments=(), states=(State("Y", "1", "y", "P", "Y**2"),), doses=(),
        observables=(Observable("CART", "Y", "cells/uL", "y"),))
    mod = compile_model(blow_up)
    K = mod.constants(np.array([[1.0], [-1.0]]), np.zeros((2, 0)))  # y0 = 1 blows up; y0 = -1 does not
    sched = doses_to_schedule([], blow_up, np.zeros(0))
    res = ScipyLSODA(max_steps=2000).solve(mod, K, mod.initial(K), [sched, sched], np.array([0.0, 2.0]))
    assert list(res.ok) == [False, True]
    assert "solver failed" in res.reasons[0] and res.reasons[1] == ""
    # the failed patient keeps the day it reached (day 0) and nothing after; it stays failed
    assert res.states[0, 0, 0] == 1.0 and np.isnan(res.states[0, 1, 0])


def test_schedules_of_a_chunk_equal_each_patients_own():
    """Patients that share their dose times, routes and durations get their breakpoints found
    once; each schedule is still the patient's own: amounts scaled by the patient's own route
    scales, a patient whose course a rule changed, and a patient without doses, in any order."""
    from cartwin.simulate.events import doses_to_schedules

    def one_patient(doses, scale):  # the rule, written out for one patient and dose by dose
        times = np.unique([d.day for d in doses] + [d.day + d.duration_days for d in doses if d.duration_days > 0])
        jumps, rates = np.zeros((times.size, 1)), np.zeros((times.size, 1))
        for d in doses:
            i = np.searchsorted(times, d.day)
            if d.duration_days == 0:
                jumps[i, 0] += d.amount * scale
            else:
                rates[i:np.searchsorted(times, d.day + d.duration_days), 0] += d.amount * scale / d.duration_days
        return times, jumps, rates

    course = [Dose("IV", -5.0, 40.0, 0.5 / 24), Dose("IV", -4.0, 40.0, 0.5 / 24), Dose("IV", 0.0, 7.0),
              Dose("IV", 0.0, 3.0)]  # two boluses at one time add up
    changed = [Dose("IV", -5.0, 40.0, 0.5 / 24), Dose("IV", 2.0, 7.0, rule="defer")]
    patients = [course, [Dose(d.route, d.day, d.amount * 1.5, d.duration_days) for d in course], changed, [],
                course]
    scales = np.array([[2.0], [2.5], [0.7], [1.0], [3.0]])
    got = doses_to_schedules(patients, ONE_CMT, scales)
    for p, doses in enumerate(patients):
        if not doses:
            assert got[p].times.size == 0 and got[p].jumps.shape == (0, 1)
            continue
        times, jumps, rates = one_patient(doses, scales[p, 0])
        np.testing.assert_array_equal(got[p].times, times)
        np.testing.assert_array_equal(got[p].jumps, jumps)
        np.testing.assert_array_equal(got[p].rates, rates)
    first = got[0]
    assert first.jumps[list(first.times).index(0.0), 0] == 20.0  # 7 + 3 mg, scale 2
    assert first.rates[0, 0] == pytest.approx(80.0 * 24 / 0.5)  # 40 mg over 30 min, scale 2


def differences_from_lsoda(protocol_dict, solver: dict, n_per_arm: int = 6):
    """(relative differences of the continuous read-outs, of the threshold read-outs) between a
    whole simulation of ``protocol_dict`` with ``solver`` (its [solver] table) and the same with
    LSODA at tight tolerance, every read-out daily from the first chemotherapy dose to day 120;
    relative to each read-out's largest value (floor 1e-3 of it)."""
    import polars as pl

    from cartwin.protocol import parse_protocol
    from cartwin.run import simulate

    protocol_dict["schedule"] = {"every": 1, "start": -6, "stop": 120}
    protocol_dict["solver"] = {"backend": "scipy-lsoda", "rtol": 1e-10, "atol": 1e-12}
    ref = simulate(parse_protocol(protocol_dict), n_per_arm=n_per_arm)
    protocol_dict["solver"] = solver
    other = simulate(parse_protocol(protocol_dict), n_per_arm=n_per_arm)
    a = ref.observations.sort(["subject", "day", "test"])
    b = other.observations.sort(["subject", "day", "test"])
    assert a.select("subject", "day", "test").equals(b.select("subject", "day", "test"))
    scale = a.group_by("test").agg(pl.col("value").abs().max().alias("m"))
    typical = dict(zip(scale["test"], scale["m"]))
    va, vb = a["value"].to_numpy(), b["value"].to_numpy()
    floor = np.array([1e-3 * typical[t] for t in a["test"]])
    rel = np.where(va == vb, 0.0, np.abs(va - vb) / (np.abs(va) + floor + 1e-300))
    threshold = np.array([t.startswith("SD_") or t in ("HYPOTEN", "HYPOXIA", "ICE") for t in a["test"]])
    return rel[~threshold], rel[threshold]


def one_state_model(name: str, description: str, rate: str, initial: str = "P",
                    parameter: Parameter = Parameter("P", 1.0, "1", "initial value", "assumed: test model")) -> Model:
    """A model of one state ``Y`` (read out as CART) with ``rate`` and one parameter, for solver tests."""
    return Model(name=name, version="1", description=description, parameters=(parameter,), covariates=(),
                 assignments=(), states=(State("Y", "1", "y", initial, rate),), doses=(),
                 observables=(Observable("CART", "Y", "cells/uL", "y"),))


def solve_one_state(model: Model, solver, values, days):
    """``model`` (:func:`one_state_model`) solved by ``solver`` for one patient per parameter value,
    without doses, on ``days``."""
    mod = compile_model(model)
    K = mod.constants(np.asarray(values, float).reshape(-1, 1), np.zeros((len(values), 0)))
    sched = doses_to_schedule([], model, np.zeros(0))
    return solver.solve(mod, K, mod.initial(K), [sched] * len(values), np.asarray(days, float))


def solve_blow_up(solver, name: str, method: str):
    """(the model y' = y^2, which blows up at t = 1 from y(0) = 1, and ``solver``'s result on days 0
    and 2 for y(0) = 1 and y(0) = -1), checked: the first patient failed with a reason naming
    ``method`` and keeps the day it reached (day 0) and nothing after; the second is solved."""
    blow_up = one_state_model(name, "y' = y^2 blows up at t = 1", "Y**2")
    res = solve_one_state(blow_up, solver, [1.0, -1.0], [0.0, 2.0])
    assert list(res.ok) == [False, True]
    assert res.reasons[0].startswith(f"solver failed: {method}")
    assert res.states[0, 0, 0] == 1.0 and np.isnan(res.states[0, 1, 0])
    assert res.states[1, 1, 0] == pytest.approx(-1 / 3, rel=1e-5)
    return blow_up, res
