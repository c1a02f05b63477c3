"""A JAX backend from the same model declaration: sympy -> JAX, solved with diffrax.

The model's right-hand side is built from the parsed declaration (:func:`cartwin.model.symbolic.parse`,
the same sympy expressions the numba code is generated from) with ``sympy.lambdify(...,
modules="jax")``, and integrated with diffrax's ``Kvaerno5`` (an L-stable ESDIRK method for stiff
systems) under a PID step-size controller. Patients are batched with ``jax.vmap``: every patient
keeps its own step size and error control (a lane that has finished waits for the others), so a
patient's numbers do not depend on its batch. Doses split each patient's time axis into segments
exactly as in the other backends (boluses added at a breakpoint, infusion rates constant between
breakpoints, a sample on a breakpoint taken before its jump); segment *m* of every patient is solved
in one vmapped call.

Optional: ``pip install cartwin[gpu]`` (jax, diffrax). On a machine with a GPU, JAX runs there;
without one it runs on the CPU, which is how the tests compare it with ``numba-bdf``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np

from cartwin.simulate.schedule import Schedule
from cartwin.store.atomic import write_bytes
from cartwin.simulate.solvers import SolveResult, check_tolerances


def jax_rhs(model):
    """``f(y, t, k, u) -> dy/dt`` in JAX for ``model``: the declaration's rates with every
    state-dependent assignment substituted, ``k`` the compiled model's constants (in its order)."""
    import sympy as sp

    from cartwin.model.codegen import _safe
    from cartwin.model.symbolic import parse, substituted_rates

    sym = parse(model)
    rates = substituted_rates(sym)
    y_syms = [sp.Symbol(_safe(n), real=True) for n in model.state_names]
    k_syms = [sp.Symbol(_safe(n), real=True) for n in sym.constant_names]
    t_sym = sp.Symbol("t", real=True)
    f = sp.lambdify([y_syms, t_sym, k_syms], rates, modules="jax", cse=True)

    import jax.numpy as jnp

    def rhs(y, t, k, u):
        out = f([y[i] for i in range(len(y_syms))], t, [k[i] for i in range(len(k_syms))])
        return jnp.stack([jnp.asarray(v, dtype=y.dtype) + jnp.zeros_like(t) for v in out]) + u
    return rhs


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
                "device": str(jax.devices()[0])}

    def solve(self, compiled: ModuleType, K: np.ndarray, Y0: np.ndarray,
              schedules: list[Schedule], t_obs: np.ndarray) -> SolveResult:
        if self.model is None:
            raise ValueError("the jax-diffrax backend needs the model: use cartwin.simulate.engine.solve")
        import jax
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        n, s = Y0.shape
        t_obs = np.asarray(t_obs, float)
        t0, t1, active, U, J, first = segments(schedules, t_obs, s)
        # patients go in blocks of a fixed lane count (the last padded with copies of its first
        # patient, discarded), and the output days are padded to a multiple of 64 (repeats of the
        # last), so that chunks of every size and schedules of similar length call one program
        lanes = lane_count(jax.devices()[0].platform)
        n_obs = -(-t_obs.size // _OUTPUT_DAYS_STEP) * _OUTPUT_DAYS_STEP
        step = _segment_solver(self.model, self.rtol, self.atol, self.max_steps, lanes, n_obs, s,
                               K.shape[1])
        out = np.full((n, t_obs.size, s), np.nan)
        before = t_obs[None, :] <= t0[:, :1]  # samples at or before the start: the initial state
        out = np.where(before[:, :, None], Y0[:, None, :], out)
        y = Y0 + first
        ok = np.ones(n, bool)
        tj = jnp.asarray(np.r_[t_obs, np.full(n_obs - t_obs.size, t_obs[-1])])
        for lo in range(0, n, lanes):
            block = np.arange(lo, min(lo + lanes, n))
            pad = np.r_[block, np.full(lanes - block.size, lo)]
            kj = jnp.asarray(K[pad])
            for m in range(t0.shape[1]):
                if not active[block, m].any():
                    continue  # no patient of the block has a segment here (padding)
                ys, y_end, code = step(jnp.asarray(y[pad]), jnp.asarray(t0[pad, m]), jnp.asarray(t1[pad, m]),
                                       kj, jnp.asarray(U[pad, m]), tj)
                ys, y_end, code = (np.asarray(ys)[:block.size, :t_obs.size], np.asarray(y_end)[:block.size],
                                   np.asarray(code)[:block.size])
                live = active[block, m]
                inside = live[:, None] & (t_obs[None, :] > t0[block, m, None]) & (t_obs[None, :] <= t1[block, m, None])
                out[block] = np.where(inside[:, :, None], ys, out[block])
                ok[block] &= ~live | (code == 0)
                y[block] = np.where(live[:, None], y_end + J[block, m], y[block])
        ok &= np.isfinite(out).all(axis=(1, 2))
        out[~ok] = np.nan
        reasons = ["" if good else "solver failed: diffrax did not reach the end of a segment" for good in ok]
        return SolveResult(out, ok, reasons)


_SOLVERS: dict = {}
_OUTPUT_DAYS_STEP = 64


def lane_count(platform: str) -> int:
    """Patients per vmapped call: a few on a CPU, whose cores run the lanes one after another
    (a block waits for its slowest patient), many on an accelerator, which runs them side by side."""
    return 16 if platform == "cpu" else 1024


def use_compilation_cache() -> None:
    """Keep XLA's compiled solvers in cartwin's cache folder (``CARTWIN_CACHE_DIR``, else
    ``~/.cache/cartwin``), so that a model's solver compiles once per machine, not once per process,
    unless the user has chosen a JAX compilation cache of their own."""
    import jax

    if jax.config.jax_compilation_cache_dir is None:
        jax.config.update("jax_compilation_cache_dir", str(_cache_folder()))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def _cache_folder() -> Path:
    from cartwin.model.codegen import cache_base

    path = cache_base() / "jax"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _segment_solver(model, rtol, atol, max_steps, lanes, n_obs, n_states, n_constants):
    """The vmapped segment solve for (model, tolerances, shapes), traced once per machine.

    Tracing diffrax's solver takes seconds of Python; the traced program is kept with
    ``jax.export`` beside XLA's compilation cache (keyed by the model's content, the tolerances, the
    shapes and the jax and diffrax versions), so that a later process loads it instead of tracing
    again, and XLA's cache gives its compiled code. Every process calls the exported program,
    whether it traced it or loaded it, so that both run the same code."""
    import diffrax
    import jax

    key = (model.content_hash(), rtol, atol, max_steps, lanes, n_obs, n_states, n_constants)
    if key in _SOLVERS:
        return _SOLVERS[key]
    use_compilation_cache()
    # this module's source is part of the key: a changed program is traced again, never loaded stale
    program = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    name = "-".join(str(part) for part in key[:1] + (jax.__version__, diffrax.__version__, program)) + \
        "-" + hashlib.sha256(repr(key[1:]).encode()).hexdigest()[:16]
    path = _cache_folder() / f"segment-{name}.jaxexport"
    exported = None
    if path.is_file():
        try:
            exported = jax.export.deserialize(bytearray(path.read_bytes()))
        except Exception:  # a file another version wrote, or cut short: traced again below
            exported = None
    if exported is None:
        f64 = jax.numpy.float64
        shapes = [jax.ShapeDtypeStruct(shape, f64) for shape in
                  ((lanes, n_states), (lanes,), (lanes,), (lanes, n_constants), (lanes, n_states), (n_obs,))]
        traced = _traced_solver(model, rtol, atol, max_steps)
        try:
            exported = jax.export.export(traced)(*shapes)
            data = bytes(exported.serialize())
        except NotImplementedError:
            # equinox was imported before this backend was chosen, with its errors raised through a
            # host callback (EQX_ON_ERROR other than "nan"), which cannot be exported: this process
            # uses its own trace, and nothing is kept
            _SOLVERS[key] = traced
            return traced
        write_bytes(path, data)
    fn = jax.jit(exported.call)
    _SOLVERS[key] = fn
    return fn


def _traced_solver(model, rtol, atol, max_steps):
    import diffrax
    import jax
    import jax.numpy as jnp

    rhs = jax_rhs(model)
    term = diffrax.ODETerm(lambda t, y, args: rhs(y, t, args[0], args[1]))
    solver = diffrax.Kvaerno5()
    controller = diffrax.PIDController(rtol=rtol, atol=atol)

    def one(y0, t0, t1, k, u, t_obs):
        ts = jnp.concatenate([jnp.clip(t_obs, t0, t1), t1[None]])
        sol = diffrax.diffeqsolve(term, solver, t0, t1, None, y0, (k, u), saveat=diffrax.SaveAt(ts=ts),
                                  stepsize_controller=controller, max_steps=max_steps, throw=False,
                                  adjoint=diffrax.ForwardMode())
        code = jnp.where(sol.result == diffrax.RESULTS.successful, 0, 1)
        return sol.ys[:-1], sol.ys[-1], code

    return jax.jit(jax.vmap(one, in_axes=(0, 0, 0, 0, 0, None)))
