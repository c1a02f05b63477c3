"""A JAX backend from the same model declaration: sympy -> JAX, solved with diffrax.

The model's right-hand side is built from the parsed declaration (:func:`cartwin.model.symbolic.parse`,
the same sympy expressions the numba code is generated from) with ``sympy.lambdify(...,
modules="jax")``, and integrated with diffrax's ``Kvaerno5`` (an L-stable ESDIRK method for stiff
systems) under a PID step-size controller. Patients are batched with ``jax.vmap``: every patient
keeps its own step size and error control (a lane that has finished waits for the others); the
lanes share their loops, so a patient's numbers move with the other patients of its block, far
inside the tolerance but not to the bit. Doses split each patient's time axis into segments
exactly as in the other backends (boluses added at a breakpoint, infusion rates constant between
breakpoints, a sample on a breakpoint taken before its jump); segment *m* of every patient of a
block is solved in one vmapped call of the program :mod:`cartwin.simulate.jax_programs` keeps.

Optional: ``pip install cartwin[gpu]`` (jax, diffrax). On a machine with a GPU, JAX runs there;
without one it runs on the CPU, which is how the tests compare it with ``numba-bdf``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType

import numpy as np

from cartwin.simulate.jax_programs import segment_program
from cartwin.simulate.schedule import Schedule
from cartwin.simulate.solvers import SolveResult, check_tolerances


def segments(schedules: list[Schedule], t_obs: np.ndarray, n_states: int):
    """Per patient, the segments between breakpoints, padded to a common count: start and end
    times (N, M), whether the segment is real (N, M), the input rates in force (N, M, S), the jump
    at its end (N, M, S), and the jump at the very start (N, S)."""
    n = len(schedules)
    t_end = float(t_obs[-1])
    bounds, rates, jumps, first = [], [], [], np.zeros((n, n_states))
    for p, s in enumerate(schedules):
        start = float(min(t_obs[0], s.times[0])) if s.times.size else float(t_obs[0])
        u = np.zeros(n_states)
        b = int(np.searchsorted(s.times, start, side="left"))
        if b < s.times.size and s.times[b] == start:
            first[p] = s.jumps[b]
            u = s.rates[b]
            b += 1
        inner = [(float(s.times[i]), i) for i in range(b, s.times.size) if start < s.times[i] < t_end]
        edges = [start] + [t for t, _ in inner] + [t_end]
        seg_rates = [u] + [s.rates[i] for _, i in inner]
        seg_jumps = [s.jumps[i] for _, i in inner] + [np.zeros(n_states)]
        bounds.append(edges)
        rates.append(seg_rates)
        jumps.append(seg_jumps)
    m = max(len(e) - 1 for e in bounds)
    t0 = np.zeros((n, m))
    t1 = np.ones((n, m))
    active = np.zeros((n, m), bool)
    U = np.zeros((n, m, n_states))
    J = np.zeros((n, m, n_states))
    for p in range(n):
        k = len(bounds[p]) - 1
        t0[p, :k] = bounds[p][:-1]
        t1[p, :k] = bounds[p][1:]
        active[p, :k] = np.array(bounds[p][1:]) > np.array(bounds[p][:-1])
        U[p, :k] = rates[p]
        J[p, :k] = jumps[p]
        t0[p, k:] = t1[p, k:] = t_end
        t1[p, k:] = t_end + 1.0  # padding: solved over a dummy span and discarded
    return t0, t1, active, U, J, first


@dataclass(frozen=True)
class JaxDiffrax:
    """sympy -> JAX right-hand side, diffrax Kvaerno5 with PID step control, vmapped over patients."""

    rtol: float = 1e-6
    atol: float = 1e-9
    max_steps: int = 100_000
    name: str = "jax-diffrax"
    model: object = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_tolerances(self.rtol, self.atol)

    def for_model(self, model) -> "JaxDiffrax":
        return JaxDiffrax(self.rtol, self.atol, self.max_steps, self.name, model)

    def compile_aside(self) -> None:
        """XLA compiles on first call; nothing to start before the model is compiled."""
        return None

    def warm_up(self, compiled: ModuleType) -> None:
        """JAX compiles at the first solve of each shape."""

    def describe(self) -> dict:
        import jax
        return {"backend": self.name, "method": "Kvaerno5 (ESDIRK, diffrax) with PID step control; "
                "sympy -> JAX right-hand side; patients vmapped", "rtol": self.rtol, "atol": self.atol,
                "max_steps": self.max_steps, "jacobian": "automatic differentiation (JAX)",
                "device": str(jax.devices()[0]),
                # a patient's numbers depend on its block (far inside the tolerance): the block size
                # is part of what reproduces them
                "lanes_per_block": lane_count(jax.devices()[0].platform)}

    def solve(self, compiled: ModuleType, K: np.ndarray, Y0: np.ndarray,
              schedules: list[Schedule], t_obs: np.ndarray) -> SolveResult:
        if self.model is None:
            raise ValueError("the jax-diffrax backend needs the model: use cartwin.simulate.engine.solve")
        import jax
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        n, s = Y0.shape
        t_obs = np.asarray(t_obs, float)
        if n == 0 or t_obs.size == 0:
            return SolveResult(np.full((n, t_obs.size, s), np.nan), np.ones(n, bool), [""] * n)
        t0, t1, active, U, J, first = segments(schedules, t_obs, s)
        # patients go in blocks of a fixed lane count and the output days are padded to a multiple
        # of 64 (repeats of the last), so that chunks of every size, and protocols whose output
        # days fall in the same multiple of 64, call one program
        lanes = lane_count(jax.devices()[0].platform)
        n_obs = -(-t_obs.size // _OUTPUT_DAYS_STEP) * _OUTPUT_DAYS_STEP
        step = segment_program(self.model, self.rtol, self.atol, self.max_steps, lanes, n_obs, s, K.shape[1])
        out = np.full((n, t_obs.size, s), np.nan)
        before = t_obs[None, :] <= t0[:, :1]  # samples at or before the start: the initial state
        out = np.where(before[:, :, None], Y0[:, None, :], out)
        y = Y0 + first
        ok = np.ones(n, bool)
        tj = jnp.asarray(np.r_[t_obs, np.full(n_obs - t_obs.size, t_obs[-1])])
        for lo in range(0, n, lanes):
            block = np.arange(lo, min(lo + lanes, n))
            for m in range(t0.shape[1]):
                # a patient whose solve failed stops there (its NaN states could hold the block up to
                # max_steps); its lane, and the padding lanes, repeat the block's first live patient
                live = active[block, m] & ok[block]
                if not live.any():
                    continue
                stand_in = block[np.argmax(live)]
                lane = np.r_[np.where(live, block, stand_in), np.full(lanes - block.size, stand_in)]
                ys, y_end, code = step(jnp.asarray(y[lane]), jnp.asarray(t0[lane, m]), jnp.asarray(t1[lane, m]),
                                       jnp.asarray(K[lane]), jnp.asarray(U[lane, m]), tj)
                ys, y_end, code = (np.asarray(ys)[:block.size, :t_obs.size], np.asarray(y_end)[:block.size],
                                   np.asarray(code)[:block.size])
                inside = live[:, None] & (t_obs[None, :] > t0[block, m, None]) & (t_obs[None, :] <= t1[block, m, None])
                out[block] = np.where(inside[:, :, None], ys, out[block])
                ok[block] &= ~live | ((code == 0) & np.isfinite(y_end).all(axis=1))
                y[block] = np.where(live[:, None], y_end + J[block, m], y[block])
        # a failed patient keeps the days it reached (diffrax gives inf, or NaN, for the others);
        # the engine reports from which day on it has no values
        ok &= np.isfinite(out).all(axis=(1, 2))
        reasons = ["" if good else "solver failed: diffrax did not reach the end of a segment" for good in ok]
        return SolveResult(out, ok, reasons)


_OUTPUT_DAYS_STEP = 64


def lane_count(platform: str) -> int:
    """Patients per vmapped call: a few on a CPU, whose cores run the lanes one after another
    (a block waits for its slowest patient), many on an accelerator, which runs them side by side."""
    return 16 if platform == "cpu" else 1024
