"""Solver backends. Each integrates many independent patients over their own schedules.

``ScipyLSODA`` integrates each patient on its own with ODEPACK's LSODA (``scipy.integrate.odeint``)
using the model's compiled right-hand side and analytic Jacobian. Each patient keeps its own
step-size and error control, so patient *i* gives the same numbers whatever chunk it is solved
in (stacking patients into one system would couple their step sizes; see
docs/run_directory.md, "Reproducibility").
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from cartwin.simulate.schedule import Schedule


@dataclass(frozen=True)
class SolveResult:
    states: np.ndarray  # (N, T, S)
    ok: np.ndarray  # (N,) bool
    reasons: list[str]  # "" when ok
    counters: np.ndarray | None = None  # per patient: steps, RHS, Jacobians, LU factorisations


def check_tolerances(rtol: float, atol: float) -> None:
    if not (0 < rtol < 1 and atol > 0):
        raise ValueError("rtol must lie in (0, 1) and atol be positive")


@dataclass(frozen=True)
class ScipyLSODA:
    rtol: float = 1e-6
    atol: float = 1e-9
    max_steps: int = 100_000
    name: str = "scipy-lsoda"

    def __post_init__(self) -> None:
        check_tolerances(self.rtol, self.atol)

    def compile_aside(self) -> None:
        """Nothing of its own to compile besides the model (see :meth:`NumbaBDF.compile_aside`)."""
        return None

    def warm_up(self, compiled: ModuleType) -> None:
        """Compile the model's allocating ``rhs`` and ``jac``, which odeint calls (or load them)."""
        from cartwin.model.codegen import warm_up, warm_up_wrappers

        warm_up(compiled)
        warm_up_wrappers(compiled)

    def describe(self) -> dict:
        return {"backend": self.name, "method": "LSODA (ODEPACK via scipy.integrate.odeint)",
                "rtol": self.rtol, "atol": self.atol, "max_steps": self.max_steps,
                "jacobian": "analytic (sympy)"}

    def solve(self, compiled: ModuleType, K: np.ndarray, Y0: np.ndarray,
              schedules: list[Schedule], t_obs: np.ndarray) -> SolveResult:
        n, s = Y0.shape
        out = np.full((n, t_obs.size, s), np.nan)
        ok = np.zeros(n, dtype=bool)
        reasons = [""] * n
        for i in range(n):
            try:
                self._solve_one(compiled, K[i], Y0[i], schedules[i], t_obs, out[i])
                if not np.all(np.isfinite(out[i])):
                    raise FloatingPointError("non-finite state")
                ok[i] = True
            except (RuntimeError, FloatingPointError, ValueError, ZeroDivisionError) as exc:
                reasons[i] = f"solver failed: {exc}"
        return SolveResult(out, ok, reasons)

    def _solve_one(self, compiled, k, y0, schedule: Schedule, t_obs, out) -> np.ndarray:
        """Fills ``out`` (T, S) as the solve goes: a failure leaves the days it reached."""
        # imported here: scipy.integrate takes most of a second to import, and only this
        # reference backend needs it
        from scipy.integrate import ODEintWarning, odeint

        rhs, jac = compiled.rhs, compiled.jac
        y = y0.astype(np.float64).copy()
        u = np.zeros_like(y)
        t_end = t_obs[-1]
        t = min(t_obs[0], schedule.times[0]) if schedule.times.size else t_obs[0]
        bounds = [float(b) for b in schedule.times if t < b < t_end] + [t_end]
        # apply breakpoints at the very start (after recording pre-dose observations)
        obs_i = 0
        while obs_i < t_obs.size and t_obs[obs_i] <= t:
            out[obs_i] = y
            obs_i += 1
        b_index = int(np.searchsorted(schedule.times, t, side="left"))
        if b_index < schedule.times.size and schedule.times[b_index] == t:
            y += schedule.jumps[b_index]
            u = schedule.rates[b_index].copy()
            b_index += 1
        for seg_end in bounds:
            if seg_end <= t:
                continue
            j = obs_i
            while j < t_obs.size and t_obs[j] <= seg_end:
                j += 1
            grid = np.concatenate([[t], t_obs[obs_i:j]])
            if grid[-1] != seg_end:
                grid = np.append(grid, seg_end)
            with warnings.catch_warnings():
                warnings.simplefilter("error", ODEintWarning)
                try:
                    sol, info = odeint(rhs, y, grid, args=(k, u), Dfun=jac, rtol=self.rtol,
                                       atol=self.atol, mxstep=self.max_steps, full_output=True)
                except ODEintWarning as w:
                    raise RuntimeError(f"LSODA between day {t:g} and {seg_end:g}: {w}") from None
            if info["message"] != "Integration successful.":
                raise RuntimeError(f"LSODA between day {t:g} and {seg_end:g}: {info['message']}")
            out[obs_i:j] = sol[1:1 + (j - obs_i)]
            obs_i = j
            y = sol[-1].copy()
            t = seg_end
            if b_index < schedule.times.size and schedule.times[b_index] == t:
                y += schedule.jumps[b_index]
                u = schedule.rates[b_index].copy()
                b_index += 1
            if obs_i >= t_obs.size:
                break
        return out


def pack_schedules(schedules: list[Schedule], n_states: int):
    """Ragged per-patient schedules -> padded arrays for compiled code."""
    n = len(schedules)
    width = max([s.times.size for s in schedules] + [1])
    count = np.array([s.times.size for s in schedules], dtype=np.int64)
    times = np.full((n, width), np.inf)
    jumps = np.zeros((n, width, n_states))
    rates = np.zeros((n, width, n_states))
    for i, s in enumerate(schedules):
        m = s.times.size
        times[i, :m] = s.times
        jumps[i, :m] = s.jumps
        rates[i, :m] = s.rates
    return count, times, jumps, rates


@dataclass(frozen=True)
class _CompiledKernelSolver:
    """What the compiled backends share: a kernel in machine code that takes the model's compiled
    functions as function pointers and integrates a batch of patients, each with its own step
    control (cartwin.simulate.bdf, cartwin.simulate.rosenbrock). A backend names its kernel
    (``_kernel``, ``compile_aside``), its method (``_method``, in a failed patient's reason) and
    describes itself."""

    rtol: float = 1e-6
    atol: float = 1e-9
    max_steps: int = 100_000
    name: str = ""

    _method = ""

    def __post_init__(self) -> None:
        check_tolerances(self.rtol, self.atol)

    def warm_up(self, compiled: ModuleType) -> None:
        """Compile the kernel and the model's functions now (or load them from numba's cache),
        before workers fork: otherwise every forked worker would compile them at its first chunk.
        The kernel has one explicit signature, so importing it compiles or loads it; it is called
        here on one patient whose only output day is its start, which evaluates nothing of the
        model."""
        from cartwin.model.codegen import warm_up

        warm_up(compiled)
        n = len(compiled.STATE_NAMES)
        self._kernel(compiled, np.ones((1, len(compiled.CONSTANT_NAMES))), np.zeros((1, n)),
                     np.zeros(1, np.int64), np.full((1, 1), np.inf), np.zeros((1, 1, n)),
                     np.zeros((1, 1, n)), np.zeros(1), self.rtol, self.atol, self.max_steps,
                     np.zeros((1, 1, n)), np.zeros(1, np.int64), np.zeros((1, 4), np.int64))

    def solve(self, compiled: ModuleType, K: np.ndarray, Y0: np.ndarray,
              schedules: list[Schedule], t_obs: np.ndarray) -> SolveResult:
        from cartwin.simulate.bdf import STATUS_TEXT

        n, s = Y0.shape
        count, times, jumps, rates = pack_schedules(schedules, s)
        out = np.full((n, t_obs.size, s), np.nan)
        status = np.zeros(n, dtype=np.int64)
        counters = np.zeros((n, 4), dtype=np.int64)  # steps, RHS, Jacobians, LU factorisations
        self._kernel(compiled, np.ascontiguousarray(K, dtype=np.float64),
                     np.ascontiguousarray(Y0, dtype=np.float64), count, times, jumps, rates,
                     np.ascontiguousarray(t_obs, dtype=np.float64), self.rtol, self.atol,
                     self.max_steps, out, status, counters)
        ok = status == 0  # a failed patient keeps the output days the kernel reached
        reasons = ["" if c == 0 else f"solver failed: {self._method} {STATUS_TEXT[int(c)]}" for c in status]
        return SolveResult(out, ok, reasons, counters)

    def _kernel(self, compiled: ModuleType, *arrays) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class NumbaBDF(_CompiledKernelSolver):
    """Variable-order BDF (SciPy's algorithm) compiled with numba."""

    name: str = "numba-bdf"
    _method = "BDF"

    def compile_aside(self):
        """Start compiling the kernel in another process if it is not cached yet (a first run),
        so that it compiles while this process generates and compiles the model; returns what
        to ``wait()`` on, or None."""
        from cartwin.model.codegen import cache_dir
        from cartwin.simulate.bdf import compile_kernel_aside

        return compile_kernel_aside(cache_dir())

    def describe(self) -> dict:
        return {"backend": self.name, "method": "variable-order BDF/NDF (SciPy's BDF algorithm, "
                "compiled with numba; sparse LU generated for the Jacobian pattern)", "rtol": self.rtol,
                "atol": self.atol, "max_steps": self.max_steps, "jacobian": "analytic (sympy)"}

    def _kernel(self, compiled: ModuleType, *arrays) -> None:
        from cartwin.model.codegen import cache_dir
        from cartwin.simulate.bdf import integrate_batch

        integrate_batch(compiled, cache_dir(), *arrays)


@dataclass(frozen=True)
class NumbaRodas4(_CompiledKernelSolver):
    """RODAS4, an L-stable Rosenbrock method of order 4 (Hairer & Wanner), compiled with numba
    (cartwin.simulate.rosenbrock): one LU and six linear solves per step, no Newton iteration, and
    no restart at order 1 after a dose. Fewer, dearer steps than ``numba-bdf``; faster at matched
    accuracy on the default model, and the default backend (docs/performance.md).

    Its default tolerances are a decade looser than the other backends': its error estimate is the
    more cautious, so that at rtol 1e-5 it is as accurate as BDF at 1e-6 or more (docs/performance.md,
    "A Rosenbrock backend")."""

    rtol: float = 1e-5
    atol: float = 1e-8
    name: str = "numba-rodas4"
    _method = "RODAS4"

    def compile_aside(self):
        """As :meth:`NumbaBDF.compile_aside`, for the RODAS4 kernel."""
        from cartwin.model.codegen import cache_dir
        from cartwin.simulate.bdf import compile_kernel_aside
        from cartwin.simulate.rosenbrock import module_name

        return compile_kernel_aside(cache_dir(), module_name(), "cartwin.simulate.rosenbrock")

    def describe(self) -> dict:
        return {"backend": self.name, "method": "RODAS4, Rosenbrock method of order 4(3) (Hairer & Wanner "
                "1996), compiled with numba; sparse LU generated for the Jacobian pattern; cubic Hermite "
                "dense output", "rtol": self.rtol, "atol": self.atol, "max_steps": self.max_steps,
                "jacobian": "analytic (sympy), every step"}

    def _kernel(self, compiled: ModuleType, *arrays) -> None:
        from cartwin.model.codegen import cache_dir
        from cartwin.simulate.rosenbrock import integrate_batch

        integrate_batch(compiled, cache_dir(), *arrays)


def _jax_diffrax(**options):
    """The optional JAX backend (``pip install cartwin[gpu]``): imported only when asked for."""
    # equinox (under diffrax) raises its errors through a host callback unless told to give NaN, and
    # a program with a host callback can be neither exported nor kept in XLA's cache. The backend
    # does not need the raising: a failed patient is found by diffrax's result code and its
    # non-finite states. The setting is this process's environment (its child processes inherit
    # it, and the user's own equinox checks then give NaN too); a user's own value wins.
    if "equinox" not in sys.modules:
        os.environ.setdefault("EQX_ON_ERROR", "nan")
    try:
        import diffrax  # noqa: F401
        import jax  # noqa: F401
    except ImportError:
        raise ValueError("solver backend 'jax-diffrax' needs jax and diffrax: pip install "
                         "'cartwin[gpu]'") from None
    from cartwin.simulate.jax_solver import JaxDiffrax
    return JaxDiffrax(**options)


BACKENDS = {"scipy-lsoda": ScipyLSODA, "numba-bdf": NumbaBDF, "numba-rodas4": NumbaRodas4,
            "jax-diffrax": _jax_diffrax}
DEFAULT_BACKEND = "numba-rodas4"
