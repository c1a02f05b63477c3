"""The compiled RODAS4 backend against analytic solutions and against LSODA on the default model."""

import math

import numpy as np
import pytest

from cartwin.model.codegen import compile_model
from cartwin.protocol import parse_protocol
from cartwin.simulate.events import doses_to_schedule
from cartwin.simulate.solvers import NumbaRodas4
from cartwin.therapy.dosing import Dose
from tests.engine.test_events_and_solver import (K_EL, differences_from_lsoda, one_state_model, solve, solve_blow_up,
                                                solve_one_state)


def solve_rodas(doses, t_obs, rtol=1e-9):
    return solve(doses, t_obs, NumbaRodas4(rtol=rtol, atol=rtol * 1e-3))


def test_bolus_pre_dose_sampling_and_decay_between_steps():
    """Two boluses of a one-compartment model (dose scale 2): the sample on the second dose's day
    is taken before it, and days between steps come from the dense output."""
    y = solve_rodas([Dose("IV", 0.0, 10.0), Dose("IV", 2.0, 10.0)], [0.0, 0.7, 2.0, 3.0])
    assert y[0] == 0.0
    assert y[1] == pytest.approx(20 * math.exp(-0.35), rel=1e-7)
    pre = 20 * math.exp(-1.0)
    assert y[2] == pytest.approx(pre, rel=1e-7)
    assert y[3] == pytest.approx((pre + 20) * math.exp(-0.5), rel=1e-7)


def test_infusion_matches_the_analytic_solution():
    y = solve_rodas([Dose("IV", 0.0, 10.0, duration_days=0.5)], [0.25, 0.5, 1.5])
    a = lambda t: 40.0 / K_EL * (1 - math.exp(-K_EL * t))  # noqa: E731
    assert y[0] == pytest.approx(a(0.25), rel=1e-7)
    assert y[1] == pytest.approx(a(0.5), rel=1e-7)
    assert y[2] == pytest.approx(a(0.5) * math.exp(-K_EL), rel=1e-7)


def test_the_error_falls_with_the_tolerance():
    """Order 4: the error on a decay between steps falls with rtol (and stays near it)."""
    exact = 20 * math.exp(-K_EL * 3.3)
    errors = [abs(solve_rodas([Dose("IV", 0.0, 10.0)], [0.0, 3.3], rtol)[1] - exact) / exact
              for rtol in (1e-4, 1e-6, 1e-8)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[1] < 1e-5 and errors[2] < 1e-7


def test_rodas4_agrees_with_lsoda_on_the_default_model(protocol_dict):
    """Every observable of 12 varied patients within 1e-3 (relative to its scale) of LSODA at
    tight tolerance, from the first chemotherapy dose to day 120, through a whole simulation
    whose protocol names the backend."""
    continuous, threshold = differences_from_lsoda(protocol_dict, {"backend": "numba-rodas4", "rtol": 1e-5, "atol": 1e-8})
    assert np.max(continuous) < 1e-3
    # threshold read-outs may flip on the day a continuous state crosses its threshold
    assert np.mean(threshold > 0) < 0.01


def test_a_patients_numbers_do_not_depend_on_its_batch(protocol_dict):
    """Each patient keeps its own step size and error control: solved in a batch of six or alone,
    the same states to the bit."""
    from cartwin.model import DEFAULT_MODEL
    from cartwin.plan import make_work, typical_parameters
    from cartwin.population.virtual import generate
    from cartwin.simulate.engine import covariate_matrix

    protocol = parse_protocol(protocol_dict)
    therapy = make_work(protocol).arms[0].therapy
    mod = compile_model(DEFAULT_MODEL)
    pop = generate(DEFAULT_MODEL, protocol.population, protocol.arms[0].id, np.arange(6), protocol.seed,
                   typical_parameters(DEFAULT_MODEL, therapy))
    K = mod.constants(pop.theta, covariate_matrix(DEFAULT_MODEL, pop.covariates, 6))
    Y0, scales = mod.initial(K), mod.dose_scales(K)
    schedules = [doses_to_schedule(d, DEFAULT_MODEL, scales[i])
                 for i, d in enumerate(therapy.patient_doses(pop.covariates))]
    days = np.arange(0.0, 91.0)
    solver = NumbaRodas4(rtol=1e-6, atol=1e-9)
    together = solver.solve(mod, K, Y0, schedules, days)
    assert together.ok.all()
    for i in (0, 3, 5):
        alone = solver.solve(mod, K[i:i + 1], Y0[i:i + 1], schedules[i:i + 1], days)
        assert np.array_equal(alone.states[0], together.states[i])
        assert np.array_equal(alone.counters[0], together.counters[i])


def test_rodas4_reports_a_failing_patient():
    solve_blow_up(NumbaRodas4(max_steps=5000), "blow_up_rodas_test", "RODAS4")


def test_the_kernel_is_cached_once_for_every_model():
    """Like the BDF kernel, one compiled RODAS4 kernel serves every model and is kept in the cache
    folder: once loaded, a later run starts no compilation of it."""
    from cartwin.model.codegen import cache_dir
    from cartwin.simulate.bdf import kernel_cached
    from cartwin.simulate.rosenbrock import load_integrator, module_name

    solve_rodas([Dose("IV", 0.0, 10.0)], [0.0, 1.0])
    test_rodas4_reports_a_failing_patient()  # a second model through the same kernel
    assert len(load_integrator(cache_dir()).integrate_batch.signatures) == 1
    assert kernel_cached(cache_dir(), module_name())
    assert NumbaRodas4().compile_aside() is None


def test_a_right_hand_side_that_reads_time_gets_its_time_derivative():
    """A model whose rates read time itself (an imported SBML model may have one): the stages add
    h gamma_i df/dt, without which the method loses its order in t. y' = exp(-t) from y(0) = 0
    gives 1 - exp(-t); the default model reads no time and pays nothing for this."""
    from cartwin.model import DEFAULT_MODEL
    from cartwin.simulate.rosenbrock import uses_time

    timed = one_state_model("time_input_rodas_test", "y' = exp(-t)", "exp(-t)")
    assert uses_time(compile_model(timed)) and not uses_time(compile_model(DEFAULT_MODEL))
    days = np.array([0.0, 0.5, 1.0, 3.0, 10.0])
    res = solve_one_state(timed, NumbaRodas4(rtol=1e-8, atol=1e-11), [0.0], days)
    assert res.ok[0]
    np.testing.assert_allclose(res.states[0, :, 0], 1 - np.exp(-days), rtol=1e-7, atol=1e-10)


def test_a_segment_across_day_zero_ends_exactly_on_its_bound():
    """The last step of a segment ends on the segment's bound itself: t + (bound - t) need not
    round to the bound (it misses in a few percent of segments that cross day 0), and a kernel that
    took the sum would try a step of one ulp next and report the patient as failed. A slow decay,
    whose steps are long, from 60 starting days before day 0 to day 1 and to day 2 (a kernel
    that took the sum failed several of these 120 segments)."""
    from cartwin.model.declaration import Parameter

    slow = one_state_model("slow_decay_rodas_test", "y' = -K y", "-K*Y", initial="1",
                           parameter=Parameter("K", 1e-4, "1/day", "decay rate", "assumed: test model"))
    for end in (1.0, 2.0):
        for start in np.linspace(-5.97, -0.013, 60):
            days = np.array([start, end])
            res = solve_one_state(slow, NumbaRodas4(rtol=1e-4, atol=1e-7), [1e-4], days)
            assert res.ok[0], (start, end, res.reasons[0])
            np.testing.assert_allclose(res.states[0, :, 0], np.exp(-1e-4 * (days - start)), rtol=1e-6)


def test_a_segment_of_a_few_ulp_is_one_last_step():
    """Two dose times a few ulp apart make a segment shorter than any step the control would
    allow: it is taken as the segment's last step, not reported as a step that became too small."""
    from tests.engine.test_events_and_solver import ONE_CMT

    mod = compile_model(ONE_CMT)
    K = mod.constants(np.array([[K_EL, 2.0]]), np.zeros((1, 0)))
    second = np.nextafter(np.nextafter(1.0, 2.0), 2.0)
    sched = doses_to_schedule([Dose("IV", 1.0, 10.0), Dose("IV", second, 10.0)], ONE_CMT, mod.dose_scales(K)[0])
    res = NumbaRodas4(rtol=1e-8, atol=1e-11).solve(mod, K, mod.initial(K), [sched], np.array([0.0, 3.0]))
    assert res.ok[0], res.reasons[0]
    assert res.states[0, 1, 0] == pytest.approx(40 * math.exp(-K_EL * 2.0), rel=1e-7)


def test_rodas4_is_the_default_backend_with_its_own_tolerances(protocol_dict):
    """A solver asked for by no name is RODAS4 at rtol 1e-5, atol 1e-8 (as accurate as BDF at 1e-6,
    docs/performance.md); every other backend keeps 1e-6 and 1e-9; a tolerance given wins, and a
    protocol without [solver] leaves both to the backend."""
    from cartwin.simulate.engine import make_solver

    default = make_solver()
    assert (default.name, default.rtol, default.atol) == ("numba-rodas4", 1e-5, 1e-8)
    for backend in ("numba-bdf", "scipy-lsoda"):
        other = make_solver(backend)
        assert (other.name, other.rtol, other.atol) == (backend, 1e-6, 1e-9)
    assert (make_solver(rtol=1e-7).rtol, make_solver(rtol=1e-7).atol) == (1e-7, 1e-8)
    assert "solver" not in protocol_dict
    solver = parse_protocol(protocol_dict).solver
    assert (solver.backend, solver.rtol, solver.atol) == ("numba-rodas4", None, None)
