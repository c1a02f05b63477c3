"""The jax-diffrax backend (sympy -> JAX, diffrax) equals the numba-bdf backend on the CPU, calls one
compiled program whatever the chunk size, keeps its traced program between processes, and runs a
whole protocol from the same declaration.

jax and diffrax are in the test extra (the CPU builds); the module is skipped only where they are not
installed (an installation without the test extra)."""

import json
import os
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

# what choosing the backend does in a process that has not imported diffrax yet (this module imports
# it first): equinox reports errors as NaN, so that the solver's program can be kept
os.environ.setdefault("EQX_ON_ERROR", "nan")
pytest.importorskip("jax")
pytest.importorskip("diffrax")

from cartwin.model import get_model  # noqa: E402
from cartwin.plan import make_work  # noqa: E402
from cartwin.population.virtual import generate  # noqa: E402
from cartwin.protocol import load_protocol, parse_protocol  # noqa: E402
from cartwin.run import run_protocol  # noqa: E402
from cartwin.simulate import jax_programs  # noqa: E402
from cartwin.simulate.engine import make_solver, solve  # noqa: E402
from cartwin.store import layout  # noqa: E402

from tests.conftest import write_protocol  # noqa: E402

DAYS = np.array([-6.0, -3.0, -2.5, 0.0, 1.0, 7.0, 14.0, 28.0, 90.0, 120.0])
# one tolerance for every test, so that the module traces and compiles one program (tens of seconds)
TIGHT = {"rtol": 1e-8, "atol": 1e-11}


def _solve(protocol_dict, index, backend, **tolerances):
    work = make_work(parse_protocol(protocol_dict))
    arm = work.arms[0]
    model = get_model("lupus_cart")
    pop = generate(model, work.population, arm.id, np.asarray(index), work.seed, arm.typical, work.variability)
    doses = arm.therapy.patient_doses(pop.covariates)
    return solve(model, pop.theta, pop.covariates, doses, DAYS, make_solver(backend, **tolerances))


def _relative(a, b):
    scale = np.abs(b).max(axis=(0, 1))
    return np.abs(a - b) / (np.abs(b) + 1e-6 * scale + 1e-300)


def test_jax_diffrax_equals_numba_bdf_on_the_default_model(protocol_dict):
    """Three varied patients, Erlangen Flu/Cy then CAR-T, pre-dose samples on dose days and a
    sample between doses: every state within 5e-5 of the compiled BDF at rtol 1e-8 (measured 4e-6)."""
    bdf = _solve(protocol_dict, np.arange(3), "numba-bdf", **TIGHT)
    jax = _solve(protocol_dict, np.arange(3), "jax-diffrax", **TIGHT)
    assert bdf.ok.all() and jax.ok.all()
    assert np.max(_relative(jax.states, bdf.states)) < 5e-5
    # the samples on dose days are pre-dose in both backends: day -6 is the initial state
    assert np.array_equal(jax.states[:, 0], bdf.states[:, 0])


def test_every_chunk_size_calls_one_program_and_a_patient_hardly_depends_on_its_block(protocol_dict, monkeypatch):
    """A chunk of 17 patients (a block of 16 lanes and a padded one) and a chunk of one call one
    program; every patient is solved as numba-bdf solves it, and a patient alone agrees with itself
    among 15 others far inside the tolerance (the vmapped lanes share their loops, so not to the bit:
    measured 3.5e-9 relative)."""
    monkeypatch.setattr(jax_programs, "_PROGRAMS", {})
    many = _solve(protocol_dict, np.arange(17), "jax-diffrax", **TIGHT)
    one = _solve(protocol_dict, [5], "jax-diffrax", **TIGHT)
    assert len(jax_programs._PROGRAMS) == 1
    assert many.ok.all() and one.ok.all()
    assert np.max(_relative(one.states, many.states[5:6])) < 1e-7
    bdf = _solve(protocol_dict, np.arange(17), "numba-bdf", **TIGHT)
    assert np.max(_relative(many.states, bdf.states)) < 5e-5


def test_a_failed_patient_is_reported_with_the_days_it_reached(protocol_dict):
    """With too few steps allowed (400 at rtol 1e-8 run out during lymphodepletion), every patient
    fails: each is reported failed with the interval, keeps its states up to the last output day it
    reached (as the solve that did not fail gives them) and has none after; the failed lanes do not
    hold the block up."""
    full = _solve(protocol_dict, np.arange(2), "jax-diffrax", **TIGHT)
    short = _solve(protocol_dict, np.arange(2), "jax-diffrax", max_steps=400, **TIGHT)
    assert not short.ok.any()
    for p, reason in enumerate(short.reasons):
        reached = np.isfinite(short.states[p]).all(axis=1)
        k = int(np.argmin(reached))  # the first day without values
        assert 0 < k < DAYS.size and reached[:k].all() and np.isnan(short.states[p, k:]).all()
        assert reason.startswith("solver failed: diffrax did not reach the end of a segment")
        assert f"values kept up to day {DAYS[k - 1]:g})" in reason
        assert np.max(_relative(short.states[p:p + 1, :k], full.states[p:p + 1, :k])) < 1e-12


def test_choosing_the_backend_makes_equinox_report_errors_as_nan():
    """Where diffrax is not imported yet, choosing the backend sets EQX_ON_ERROR=nan (a program that
    raises through a host callback could not be kept); a user's own value wins."""
    code = ("import os; from cartwin.simulate.engine import make_solver; make_solver('jax-diffrax'); "
            "import equinox._config as c; print(os.environ['EQX_ON_ERROR'], c.EQX_ON_ERROR)")
    env = {k: v for k, v in os.environ.items() if k != "EQX_ON_ERROR"}
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.split() == ["nan", "nan"]
    env["EQX_ON_ERROR"] = "raise"
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.split() == ["raise", "raise"]


def test_a_later_process_loads_the_traced_program_instead_of_tracing(protocol_dict, tmp_path, monkeypatch):
    """The traced program is kept in the cache folder; with the in-process table emptied (as in a new
    process) the solve loads it, traces nothing, and gives the same numbers to the bit."""
    monkeypatch.setenv("CARTWIN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(jax_programs, "_PROGRAMS", {})
    first = _solve(protocol_dict, np.arange(2), "jax-diffrax", **TIGHT)
    kept = list((tmp_path / "jax").glob("segment-*.jaxexport"))
    assert len(kept) == 1
    monkeypatch.setattr(jax_programs, "_PROGRAMS", {})

    def no_tracing(*args):
        raise AssertionError("the program was traced again instead of loaded")

    monkeypatch.setattr(jax_programs, "_traced_program", no_tracing)
    again = _solve(protocol_dict, np.arange(2), "jax-diffrax", **TIGHT)
    assert np.array_equal(first.states, again.states)


def test_a_whole_run_with_the_jax_backend(protocol_dict, tmp_path):
    """`[solver] backend = "jax-diffrax"` runs a protocol end to end: the manifest names the backend
    and every read-out is within 5e-5 of the same run with numba-bdf."""
    protocol_dict["arms"] = protocol_dict["arms"][1:]
    protocol_dict["arms"][0]["n"] = 3
    runs = {}
    for backend in ("jax-diffrax", "numba-bdf"):
        protocol_dict["solver"] = {"backend": backend, **TIGHT}
        path = write_protocol(tmp_path / f"{backend}.toml", protocol_dict)
        out = tmp_path / backend
        assert run_protocol(load_protocol(path), out, workers=1).n_failed == 0
        runs[backend] = out
    manifest = json.loads((runs["jax-diffrax"] / "manifest.json").read_text())
    assert manifest["solver"]["backend"] == "jax-diffrax" and manifest["solver"]["lanes_per_block"] == 16
    key = ["subject", "test", "day"]
    jax = pl.read_parquet(runs["jax-diffrax"] / layout.OBSERVATIONS / "*.parquet").sort(key)
    bdf = pl.read_parquet(runs["numba-bdf"] / layout.OBSERVATIONS / "*.parquet").sort(key)
    assert jax.select(key).equals(bdf.select(key))
    a, b = jax["value"].to_numpy(), bdf["value"].to_numpy()
    assert np.all(np.abs(a - b) <= 5e-5 * np.abs(b) + 1e-9)
