"""The JAX program of a model for the jax-diffrax backend: traced once, kept, loaded.

The program solves one segment between dose breakpoints for a block of patients: the model's
right-hand side from the parsed declaration (the same sympy expressions the numba code is generated
from, through ``sympy.lambdify(..., modules="jax")``), diffrax's ``Kvaerno5`` under a PID
controller, forward mode, ``jax.vmap`` over the block's lanes.

Tracing diffrax's solver takes seconds of Python and XLA's compilation seconds more, so the traced
program is kept with ``jax.export`` in cartwin's cache folder and XLA's persistent compilation cache
is pointed at the same folder (unless the user has chosen one): a later process loads the program
and its compiled code instead of tracing and compiling again. Every process calls the exported
program, whether it traced it or loaded it, so that both run the same code.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from cartwin.store.atomic import write_bytes

_PROGRAMS: dict = {}


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


def use_compilation_cache() -> None:
    """Point XLA's persistent compilation cache at cartwin's cache folder (``CARTWIN_CACHE_DIR``,
    else ``~/.cache/cartwin``), unless the user has chosen a folder of their own. This is a
    process-wide JAX setting, and JAX reads it once, at the first compilation of the process: where
    other JAX code compiled first, the compiled code is not kept (the traced program still is)."""
    import jax

    if jax.config.jax_compilation_cache_dir is None:
        jax.config.update("jax_compilation_cache_dir", str(_cache_folder()))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def _cache_folder() -> Path:
    from cartwin.model.codegen import cache_base

    path = cache_base() / "jax"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _program_key(model, rtol, atol, max_steps, lanes, n_obs, n_states, n_constants) -> str:
    """What the program depends on: the model's generated-code key (the order of its constants
    included, not their values, which are the program's input), the source of this module and of
    the symbolic layer it builds the right-hand side with, the versions of jax, diffrax and sympy,
    the platform it is lowered for, the tolerances and the shapes."""
    import diffrax
    import jax
    import sympy

    from cartwin.model.codegen import code_key

    record = (code_key(model), _sources_hash(), jax.__version__, diffrax.__version__, sympy.__version__,
              jax.default_backend(), rtol, atol, max_steps, lanes, n_obs, n_states, n_constants)
    return hashlib.sha256(repr(record).encode()).hexdigest()[:24]


@functools.cache
def _sources_hash() -> str:
    """This module's source and the symbolic layer's, read once per process (a solve asks per chunk)."""
    from cartwin.model import symbolic

    return hashlib.sha256(Path(__file__).read_bytes() + Path(symbolic.__file__).read_bytes()).hexdigest()


def segment_program(model, rtol, atol, max_steps, lanes, n_obs, n_states, n_constants):
    """The vmapped segment solve ``(y0, t0, t1, k, u, t_obs) -> (states at t_obs, state at t1,
    status)`` for blocks of ``lanes`` patients and ``n_obs`` output days: from this process's table,
    else loaded from the cache folder, else traced (and kept there)."""
    import jax

    key = _program_key(model, rtol, atol, max_steps, lanes, n_obs, n_states, n_constants)
    if key in _PROGRAMS:
        return _PROGRAMS[key]
    use_compilation_cache()
    path = _cache_folder() / f"segment-{model.name}-{key}.jaxexport"
    exported = None
    if path.is_file():
        try:
            exported = jax.export.deserialize(bytearray(path.read_bytes()))
        except Exception:  # a file cut short or damaged: traced again below, and replaced
            exported = None
    if exported is None:
        f64 = jax.numpy.float64
        shapes = [jax.ShapeDtypeStruct(shape, f64) for shape in
                  ((lanes, n_states), (lanes,), (lanes,), (lanes, n_constants), (lanes, n_states), (n_obs,))]
        traced = _traced_program(model, rtol, atol, max_steps)
        try:
            exported = jax.export.export(traced)(*shapes)
            data = bytes(exported.serialize())
        except (NotImplementedError, ImportError):
            # NotImplementedError: equinox was imported before this backend was chosen, with its
            # errors raised through a host callback (EQX_ON_ERROR other than "nan"), which cannot
            # be exported; ImportError: flatbuffers, which serialisation needs, is not installed.
            # Either way this process uses its own trace, and nothing is kept.
            _PROGRAMS[key] = traced
            return traced
        write_bytes(path, data)
    program = jax.jit(exported.call)
    _PROGRAMS[key] = program
    return program


def _traced_program(model, rtol, atol, max_steps):
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
