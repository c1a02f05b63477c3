"""The compiled BDF backend against analytic solutions and against LSODA on the default model."""

import math
import sys

import numpy as np
import pytest

from cartwin.model.codegen import compile_model
from cartwin.simulate import engine
from cartwin.simulate.solvers import NumbaBDF
from cartwin.therapy.dosing import Dose
from tests.engine.test_events_and_solver import K_EL, differences_from_lsoda, solve, solve_blow_up


def solve_bdf(doses, t_obs):
    return solve(doses, t_obs, NumbaBDF(rtol=1e-9, atol=1e-12))


def test_bdf_bolus_pre_dose_sampling_and_decay():
    y = solve_bdf([Dose("IV", 0.0, 10.0), Dose("IV", 2.0, 10.0)], [0.0, 0.7, 2.0, 3.0])
    assert y[0] == 0.0
    assert y[1] == pytest.approx(20 * math.exp(-0.35), rel=1e-6)  # from the dense output
    pre = 20 * math.exp(-1.0)
    assert y[2] == pytest.approx(pre, rel=1e-6)
    assert y[3] == pytest.approx((pre + 20) * math.exp(-0.5), rel=1e-6)


def test_bdf_infusion_matches_analytic_solution():
    y = solve_bdf([Dose("IV", 0.0, 10.0, duration_days=0.5)], [0.25, 0.5, 1.5])
    a = lambda t: 40.0 / K_EL * (1 - math.exp(-K_EL * t))
    assert y[0] == pytest.approx(a(0.25), rel=1e-6)
    assert y[2] == pytest.approx(a(0.5) * math.exp(-K_EL), rel=1e-6)


def test_bdf_agrees_with_lsoda_on_the_default_model(protocol_dict):
    """Every observable of 12 varied patients within 1e-3 (relative to its scale) of LSODA at
    tight tolerance, from the first chemotherapy dose to day 120."""
    continuous, threshold = differences_from_lsoda(protocol_dict, {"backend": "numba-bdf", "rtol": 1e-6, "atol": 1e-9})
    assert np.max(continuous) < 1e-3
    # threshold read-outs may flip on the day a continuous state crosses its threshold
    assert np.mean(threshold > 0) < 0.01


def test_bdf_reports_a_failing_patient():
    blow_up, _ = solve_blow_up(NumbaBDF(max_steps=5000), "blow_up_bdf_test", "BDF")
    # through the engine, the reason says where the solve stopped
    solved = engine.solve(blow_up, np.array([[1.0], [-1.0]]), np.zeros((2, 0)), [[], []], np.array([0.0, 0.5, 2.0]),
                   NumbaBDF(max_steps=5000), nonnegative=False)
    assert list(solved.ok) == [False, True]
    assert "between day 0.5 and day 2; values kept up to day 0.5" in solved.reasons[0], solved.reasons[0]
    assert solved.observations[0, 1, 0] == pytest.approx(2.0, rel=1e-4)  # y = 1 / (1 - t)
    assert np.isnan(solved.observations[0, 2, 0])


def _plan_in_python(plan, n, nnz, c, J, b):
    """The LU plan's operations one by one in Python floats (IEEE double, no fusion): the
    reference that the machine code must equal bit for bit."""
    F = [0.0] * nnz
    for slot, a, diag in zip(plan["init_slot"], plan["init_jac"], plan["init_diag"]):
        v = c * float(J.flat[a])
        F[slot] = 1.0 - v if diag else (-c) * float(J.flat[a])
    for k in range(n):
        inv = 1.0 / F[plan["pivot"][k]]
        for r in range(plan["row_ptr"][k], plan["row_ptr"][k + 1]):
            ik = plan["row_slot"][r]
            F[ik] = F[ik] * inv
            for q in range(plan["update_ptr"][r], plan["update_ptr"][r + 1]):
                t = plan["update_target"][q]
                F[t] = F[t] - F[ik] * F[plan["update_source"][q]]
    x = [0.0] * n
    for i in range(n):
        s = float(b[plan["perm"][i]])
        for q in range(plan["forward_ptr"][i], plan["forward_ptr"][i + 1]):
            s = s - F[plan["forward_slot"][q]] * x[plan["forward_col"][q]]
        x[i] = s
    for m in range(n):
        i = n - 1 - m
        s = x[i]
        for q in range(plan["backward_ptr"][m], plan["backward_ptr"][m + 1]):
            s = s - F[plan["backward_slot"][q]] * x[plan["backward_col"][q]]
        x[i] = s / F[plan["pivot"][i]]
    r = np.empty(n)
    r[list(plan["perm"])] = x
    return np.array(F), r


def test_compiled_sparse_lu_solves_the_newton_system_of_the_default_model():
    """The model's sparse LU, compiled from its plan through LLVM IR, solves (I - c J) x = b for
    the Jacobian's pattern, equals the plan's operations done one by one in Python bit for bit
    (so any compiled form of the same plan gives the same numbers), and reports a zero pivot."""
    import numba
    from cartwin.model import DEFAULT_MODEL
    from cartwin.model.codegen import sparse_lu, unpack_lu_plan

    mod = compile_model(DEFAULT_MODEL)
    n = len(mod.STATE_NAMES)
    rng = np.random.default_rng(3)
    pattern = mod.jac(np.ones(n), 0.0, np.ones(len(mod.CONSTANT_NAMES)), np.zeros(n)) != 0
    J = np.where(pattern, rng.standard_normal((n, n)), 0.0)
    b = rng.standard_normal(n)
    c = 0.05
    lu = sparse_lu(mod)

    @numba.njit
    def run(factor, solve, c, J, F, b, r):
        ok = factor(c, J.ctypes, F.ctypes)
        solve(F.ctypes, b.ctypes, r.ctypes)
        return ok

    F, r = np.empty(mod.LU_NNZ), np.empty(n)
    assert run(lu.factor, lu.solve, c, J, F, b, r) == 1
    np.testing.assert_allclose(r, np.linalg.solve(np.eye(n) - c * J, b), rtol=1e-9, atol=1e-12)
    F_ref, r_ref = _plan_in_python(unpack_lu_plan(mod.LU_PLAN), n, mod.LU_NNZ, c, J, b)
    assert np.array_equal(F, F_ref) and np.array_equal(r, r_ref)
    # I - c J with J = I / c has every pivot zero
    assert run(lu.factor, lu.solve, c, np.eye(n) / c, F, b, r) == 0


def test_one_bdf_kernel_serves_every_model():
    """The kernel takes a model's functions as function pointers: two models solve through one
    compiled version of it (a kernel specialised per model would be compiled for each)."""
    from cartwin.model.codegen import cache_dir
    from cartwin.simulate.bdf import load_integrator

    y = solve_bdf([Dose("IV", 0.0, 10.0)], [0.0, 1.0])  # the test model's dose scale is 2
    assert y[1] == pytest.approx(20 * math.exp(-K_EL), rel=1e-6)
    test_bdf_reports_a_failing_patient()  # a second model through the same kernel
    assert len(load_integrator(cache_dir()).integrate_batch.signatures) == 1


def test_a_first_run_compiles_the_kernel_aside_and_a_later_one_loads_it(tmp_path, monkeypatch):
    """Start-up: where the kernel's machine code is not cached, preparing a run starts compiling
    it in another process (so that it overlaps the model's compilation); where it is cached,
    nothing is started and the kernel loads."""
    from cartwin.model.codegen import cache_dir
    from cartwin.simulate.bdf import _kernel_name, compile_kernel_aside, kernel_cached
    from cartwin.simulate.solvers import NumbaBDF

    solve_bdf([Dose("IV", 0.0, 10.0)], [0.0, 1.0])  # the kernel is in this session's cache now
    assert kernel_cached(cache_dir())
    assert NumbaBDF().compile_aside() is None
    assert not kernel_cached(tmp_path)
    monkeypatch.delitem(sys.modules, _kernel_name())  # as in a process that has not loaded it
    aside = compile_kernel_aside(tmp_path)
    assert aside is not None
    assert aside.wait() == 0 and kernel_cached(tmp_path)  # compiled and cached by the other process
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))
    assert compile_kernel_aside(tmp_path / "elsewhere") is None  # no process: compiled here instead
