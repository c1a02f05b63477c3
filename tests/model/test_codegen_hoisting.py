"""The generated right-hand side: library calls on constants alone (a threshold to a patient's
Hill exponent) are computed once per patient with the derived constants, powers to whole-number
parameters are multiplications, and the right-hand side and the Jacobian give the same numbers as
the declaration's rates evaluated directly."""

import lupus_virtual as lv
import numpy as np
import pytest
import sympy as sp

from cartwin.model import DEFAULT_MODEL
from cartwin.model.codegen import _safe, compile_model
from cartwin.model.symbolic import HOISTED_PREFIX, hoist_constant_calls, parse, substituted_rates
from cartwin.simulate.engine import covariate_matrix

K_, N_, A_, B_ = sp.symbols("K N A B", real=True)
Y = sp.Symbol("Y", real=True)


def test_only_costly_subexpressions_of_constants_alone_are_hoisted():
    exprs = [Y**N_ / (K_**N_ + Y**N_), sp.exp(A_) * Y + (A_ + B_) * Y + B_**2 * Y, sp.sqrt(A_ * B_) - Y * sp.log(Y)]
    out, hoisted = hoist_constant_calls(exprs, {K_, N_, A_, B_})
    assert [e for _, e in hoisted] == [K_**N_, sp.exp(A_), sp.sqrt(A_ * B_)]
    names = [s for s, _ in hoisted]
    assert all(str(s).startswith(HOISTED_PREFIX) for s in names)
    # what depends on a state stays, and so do sums, products and integer powers of constants
    assert out[0] == Y**N_ / (names[0] + Y**N_)
    assert out[1] == names[1] * Y + (A_ + B_) * Y + B_**2 * Y
    assert out[2] == names[2] - Y * sp.log(Y)
    # substituting back gives the expressions
    back = {s: e for s, e in hoisted}
    assert [e.xreplace(back) for e in out] == exprs


def test_a_repeated_subexpression_is_hoisted_once():
    out, hoisted = hoist_constant_calls([K_**N_ * Y, Y / (K_**N_ + Y)], {K_, N_})
    assert len(hoisted) == 1
    assert out[0].has(hoisted[0][0]) and out[1].has(hoisted[0][0])


def _typical_patient(mod):
    theta = lv.typical_theta("autologous_cd19")[None, :]
    cov = covariate_matrix(DEFAULT_MODEL, {k: np.array([v], float) for k, v in lv.TYPICAL_COVARIATES.items()}, 1)
    K = mod.constants(theta, cov)
    return K, mod.initial(K)


def test_the_compiled_right_hand_side_equals_the_declared_rates():
    mod = compile_model(DEFAULT_MODEL)
    sym = parse(DEFAULT_MODEL)
    hoisted = [n for n in mod.CONSTANT_NAMES if n.startswith(HOISTED_PREFIX)]
    assert hoisted, "the default model has Hill thresholds to patient exponents: something to hoist"
    assert mod.CONSTANT_NAMES[:len(sym.constant_names)] == sym.constant_names

    rates = substituted_rates(sym)
    y_syms = [sp.Symbol(_safe(n), real=True) for n in DEFAULT_MODEL.state_names]
    k_syms = [sp.Symbol(_safe(n), real=True) for n in sym.constant_names]
    t = sp.Symbol("t", real=True)
    direct = sp.lambdify([y_syms, t, k_syms], rates, modules="math")
    direct_jac = sp.lambdify([y_syms, t, k_syms], sp.Matrix(rates).jacobian(y_syms).tolist(), modules="math")

    K, Y0 = _typical_patient(mod)
    rng = np.random.default_rng(7)
    n = len(y_syms)
    for _ in range(5):  # states away from baseline, where every Hill term is in its curved range
        y = Y0[0] * np.exp(rng.normal(0, 0.5, n)) + rng.uniform(0, 1e-3, n)
        k = K[0]
        got = np.empty(n)
        mod.rhs_into(y, 3.0, k, np.zeros(n), got)
        want = np.array(direct(list(y), 3.0, list(k[:len(k_syms)])), float)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())
        J = np.zeros((n, n))
        mod.jac_into(y, 3.0, k, np.zeros(n), J)
        want_j = np.array(direct_jac(list(y), 3.0, list(k[:len(k_syms)])), float)
        np.testing.assert_allclose(J, want_j, rtol=1e-11, atol=1e-12 * np.abs(want_j).max())


def test_powers_to_whole_parameter_values_match_pow():
    """A power to a parameter goes through the generated ``_pow``: repeated squaring for a
    whole-number exponent up to 16 (Hill coefficients of 2 or 4, a p-norm of order 8), pow
    otherwise. Both agree with pow to about |y| ulp, keep the sign of a negative base, and keep
    pow's special values."""
    pow_ = compile_model(DEFAULT_MODEL)._pow
    rng = np.random.default_rng(11)
    for y in (0.0, 1.0, 2.0, 3.0, 4.0, 8.0, 16.0, 17.0, 64.0, -1.0, -2.0, -8.0, -16.0, 0.125, 0.16, 2.5, -70.0):
        for x in np.concatenate([rng.lognormal(0, 2, 50), -rng.lognormal(0, 1, 10), [0.0, 1.0]]):
            if x < 0 and y != np.floor(y):
                continue  # pow of a negative base to a fraction is NaN either way
            want = float(np.power(x, y)) if not (x == 0.0 and y < 0) else np.inf
            got = pow_(float(x), y)
            if np.isfinite(want):
                assert got == pytest.approx(want, rel=max(abs(y), 2.0) * np.finfo(float).eps, abs=1e-300), (x, y)
            else:
                assert got == want, (x, y)
    assert np.isnan(pow_(np.nan, 2.0)) and pow_(np.nan, 0.0) == 1.0 and pow_(np.inf, -2.0) == 0.0
    # a whole-number literal base (a declared rate such as 20**N) is squared as a float, not in
    # wrapping 64-bit integers
    assert pow_(20, 16.0) == pytest.approx(20.0 ** 16, rel=16 * np.finfo(float).eps)
    assert pow_(1000, 8.0) == pytest.approx(1e24, rel=8 * np.finfo(float).eps) and pow_(100, -16.0) > 0


def test_hoisting_leaves_piecewise_alone():
    """A branch of a Piecewise may be evaluated only where its condition holds (a log of a
    quantity that is negative elsewhere), and a condition is no number: neither is hoisted."""
    pw = sp.Piecewise((sp.log(A_ + 1) * Y, sp.exp(B_) > 2), (Y, True))
    out, hoisted = hoist_constant_calls([pw, K_**N_ * Y], {K_, N_, A_, B_})
    assert [e for _, e in hoisted] == [K_**N_]
    assert out[0] == pw


def test_hoisted_names_skip_the_declared_names():
    """A model may declare a name such as h_0: the hoisted constants take other names, so that
    the compiled model's constant names stay unique and name each column of K."""
    from cartwin.model.declaration import Model, Observable, Parameter, State

    model = Model(
        name="hoist_names_test", version="1", description="dA/dt = -h_0 * K**N * A",
        parameters=(Parameter("h_0", 3.0, "1/day", "rate", "assumed: test model"),
                    Parameter("K", 1.5, "1", "base", "assumed: test model"),
                    Parameter("N", 2.5, "1", "exponent", "assumed: test model")),
        covariates=(), assignments=(), doses=(),
        states=(State("A", "mg", "amount", "1", "-h_0*K**N*A"),),
        observables=(Observable("CART", "A", "cells/uL", "amount read out"),),
    )
    mod = compile_model(model)
    assert len(set(mod.CONSTANT_NAMES)) == len(mod.CONSTANT_NAMES)
    K = mod.constants(np.array([[3.0, 1.5, 2.5]]), np.zeros((1, 0)))[0]
    named = dict(zip(mod.CONSTANT_NAMES, K))
    assert named["h_0"] == 3.0
    hoisted = [n for n in mod.CONSTANT_NAMES if n.startswith(HOISTED_PREFIX) and n != "h_0"]
    assert hoisted and named[hoisted[0]] == 1.5 ** 2.5
    out = np.empty(1)
    mod.rhs_into(np.array([2.0]), 0.0, K, np.zeros(1), out)
    assert out[0] == pytest.approx(-3.0 * 1.5 ** 2.5 * 2.0, rel=1e-14)
