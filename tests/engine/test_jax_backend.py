"""The optional jax-diffrax backend (sympy -> JAX, diffrax) equals the numba-bdf backend on the CPU.

Skipped where jax or diffrax is not installed (they are the optional extra cartwin[gpu], not part
of the test extra: XLA compiles the vmapped solver for minutes on a small CPU)."""

import numpy as np
import pytest

pytest.importorskip("jax")
pytest.importorskip("diffrax")

from cartwin.model import get_model  # noqa: E402
from cartwin.plan import make_work  # noqa: E402
from cartwin.population.virtual import generate  # noqa: E402
from cartwin.protocol import parse_protocol  # noqa: E402
from cartwin.simulate.engine import make_solver, solve  # noqa: E402


def test_jax_diffrax_equals_numba_bdf_on_the_default_model(protocol_dict):
    """Three varied patients, Erlangen Flu/Cy then CAR-T, pre-dose samples on dose days and a
    sample between doses: every state within 1e-5 of the compiled BDF at tight tolerances."""
    work = make_work(parse_protocol(protocol_dict))
    arm = work.arms[0]
    model = get_model("lupus_cart")
    pop = generate(model, work.population, arm.id, np.arange(3), work.seed, arm.typical, work.variability)
    doses = arm.therapy.patient_doses(pop.covariates)
    days = np.array([-6.0, -3.0, -2.5, 0.0, 1.0, 7.0, 14.0, 28.0, 90.0, 120.0])
    bdf = solve(model, pop.theta, pop.covariates, doses, days, make_solver("numba-bdf", rtol=1e-9, atol=1e-12))
    jax = solve(model, pop.theta, pop.covariates, doses, days, make_solver("jax-diffrax", rtol=1e-9, atol=1e-12))
    assert bdf.ok.all() and jax.ok.all()
    scale = np.abs(bdf.states).max(axis=(0, 1))
    rel = np.abs(jax.states - bdf.states) / (np.abs(bdf.states) + 1e-6 * scale + 1e-300)
    assert np.max(rel) < 1e-5
    # the samples on dose days are pre-dose in both backends: day -6 is the initial state
    assert np.array_equal(jax.states[:, 0], bdf.states[:, 0])
