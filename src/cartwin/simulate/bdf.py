"""A compiled, per-patient BDF integrator for batches of independent patients.

Why a hand-written integrator: SciPy's ODE solvers call back into Python for every right-hand
side and Jacobian evaluation, and that overhead, not arithmetic, bounds a per-patient loop at a
few hundred patients per second (docs/performance.md). The algorithm here is SciPy's
variable-order BDF/NDF (``scipy.integrate.BDF``; Shampine & Reichelt, "The MATLAB ODE Suite",
SIAM J Sci Comput 1997: quasi-constant step size, orders 1-5, NDF coefficients kappa, Newton
iterations with Jacobian reuse, error-based step and order selection), transcribed into numba so
that a whole patient, and a whole batch in parallel threads, runs in machine code. The linear
systems use the sparse LU that the model's code generator plans for its Jacobian pattern and
compiles to machine code (cartwin.model.codegen.sparse_lu). Each patient keeps its own step
size, order and error control, so its numbers do not depend on the batch it is in. Parallelism
comes from worker processes, one chunk each (numba's threading layers are not all fork-safe, and
processes scale the same on this workload). Tests compare it with LSODA
(tests/engine/test_bdf.py).

Observations between steps come from the BDF interpolating polynomial (the method's own dense
output). Doses split the time axis into segments; the integrator restarts at each segment
boundary, after adding the boluses, exactly as the LSODA backend does.

The kernel is the same for every model: it receives the model's compiled ``rhs_into``,
``jac_into`` and sparse LU as first-class functions (function pointers), with one explicit
signature. Its source is written into the compile cache folder, so that numba caches
its machine code on disk once per installation; a new model compiles only its own right-hand
side and Jacobian, and worker processes load everything instead of compiling again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType

# status codes returned by the kernel, per patient
OK, STEP_TOO_SMALL, TOO_MANY_STEPS, NOT_FINITE, SINGULAR = 0, 1, 2, 3, 4
STATUS_TEXT = {
    OK: "",
    STEP_TOO_SMALL: "step size became too small",
    TOO_MANY_STEPS: "too many steps",
    NOT_FINITE: "non-finite state or derivative",
    SINGULAR: "singular iteration matrix",
}

KERNEL_VERSION = "8"

KERNEL_HEADER = r'''
import numba
import numpy as np
from numba import types

# the model's compiled functions, passed in as first-class functions (function pointers): the
# kernel is compiled once for every model
_V = types.float64[::1]
RHS_INTO = types.FunctionType(types.void(_V, types.float64, _V, _V, _V))
JAC_INTO = types.FunctionType(types.void(_V, types.float64, _V, _V, types.float64[:, ::1]))
_P = types.CPointer(types.float64)
LU_FACTOR = types.FunctionType(types.int64(types.float64, _P, _P))
LU_SOLVE = types.FunctionType(types.void(_P, _P, _P))
_M = types.float64[:, ::1]
_A3 = types.float64[:, :, ::1]
# integrate_batch(rhs_into, jac_into, lu_factor, lu_solve, nnz, K, Y0, bp_count, bp_times,
#                 bp_jumps, bp_rates, t_obs, rtol, atol, max_steps, out, status, counters)
BATCH_SIGNATURE = types.void(
    RHS_INTO, JAC_INTO, LU_FACTOR, LU_SOLVE, types.int64, _M, _M, types.int64[::1], _M, _A3, _A3,
    _V, types.float64, types.float64, types.int64, _A3, types.int64[::1], types.int64[:, ::1])


@numba.njit(cache=True, error_model="numpy")
def _rms(x, scale):
    s = 0.0
    for i in range(x.size):
        v = x[i] / scale[i]
        s += v * v
    return np.sqrt(s / x.size)


@numba.njit(cache=True, error_model="numpy")
def initial_step(rhs_into, t0, y0, f0, k, u, t_bound, rtol, atol, exponent):
    """The starting-step rule of Hairer, Norsett & Wanner (II.4), as SciPy has it; ``exponent``:
    1 / (the order of the method's error estimate + 1)."""
    interval = abs(t_bound - t0)
    if interval == 0.0:
        return 0.0
    scale = atol + np.abs(y0) * rtol
    d0 = _rms(y0, scale)
    d1 = _rms(f0, scale)
    if d0 < 1e-5 or d1 < 1e-5:
        h0 = 1e-6
    else:
        h0 = 0.01 * d0 / d1
    h0 = min(h0, interval)
    f1 = np.empty(y0.size)
    rhs_into(y0 + h0 * f0, t0 + h0, k, u, f1)
    d2 = _rms(f1 - f0, scale) / h0
    if d1 <= 1e-15 and d2 <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** exponent
    return min(100.0 * h0, h1, interval)

'''

# Each patient's segments between dose breakpoints, the same for every kernel: observations up to
# the start, the doses at each breakpoint (a bolus jumps the state, an infusion sets its rate), the
# kernel's ``segment`` between them, and a patient whose output is not finite failed. A kernel
# fills in how its segment is called: ``segment_result`` (what it returns), ``segment_extra`` (the
# arguments after ``steps``), ``segment_state`` (what it carries from one segment to the next),
# ``extra`` (arguments of the batch and of each patient after the common ones) and ``signature``.
DRIVER_TEMPLATE = r'''@numba.njit(cache=True, error_model="numpy")
def integrate_one(rhs_into, jac_into, lu_factor, lu_solve, nnz, y, k, nb, times, jumps, rates,
                  t_obs, rtol, atol, max_steps, out, steps{extra}):
    n = y.size
    n_obs = t_obs.size
    u = np.zeros(n)
    t = t_obs[0]
    if nb > 0 and times[0] < t:
        t = times[0]
    obs_i = 0
    while obs_i < n_obs and t_obs[obs_i] <= t:
        out[obs_i] = y
        obs_i += 1
    b = 0
    while b < nb and times[b] < t:
        b += 1
    if b < nb and times[b] == t:
        y += jumps[b]
        u[:] = rates[b]
        b += 1
    code = 0
{segment_state}    t_end = t_obs[n_obs - 1]
    while obs_i < n_obs and code == 0:
        seg_end = t_end
        if b < nb and times[b] < t_end:
            seg_end = times[b]
        if seg_end > t:
            j = obs_i
            while j < n_obs and t_obs[j] <= seg_end:
                j += 1
            {segment_result} = segment(rhs_into, jac_into, lu_factor, lu_solve, nnz, y, t, seg_end, k, u,
                           t_obs, obs_i, j, out, rtol, atol, max_steps, steps{segment_extra})
            obs_i = j
            t = seg_end
        if b < nb and times[b] == t:
            y += jumps[b]
            u[:] = rates[b]
            b += 1
        elif seg_end >= t_end:
            break
    if code == 0:
        for i in range(n_obs):
            for s in range(n):
                if not np.isfinite(out[i, s]):
                    code = 3
    return code


@numba.njit({signature}, cache=True, error_model="numpy")
def integrate_batch(rhs_into, jac_into, lu_factor, lu_solve, nnz, K, Y0, bp_count, bp_times,
                    bp_jumps, bp_rates, t_obs, rtol, atol, max_steps, out, status, counters{extra}):
    n_pat = Y0.shape[0]
    for p in range(n_pat):
        y = Y0[p].copy()
        steps = np.zeros(4, dtype=np.int64)
        status[p] = integrate_one(rhs_into, jac_into, lu_factor, lu_solve, nnz, y, K[p],
                                  bp_count[p], bp_times[p], bp_jumps[p], bp_rates[p], t_obs, rtol,
                                  atol, max_steps, out[p], steps{extra})
        counters[p, 0] = steps[0]
        counters[p, 1] = steps[1]
        counters[p, 2] = steps[2]
        counters[p, 3] = steps[3]
'''


def driver_source(*, segment_result: str = "code", segment_extra: str = "", segment_state: str = "",
                  extra: str = "", signature: str = "BATCH_SIGNATURE") -> str:
    """The driver (``integrate_one``, ``integrate_batch``) of a kernel, from :data:`DRIVER_TEMPLATE`."""
    return DRIVER_TEMPLATE.format(segment_result=segment_result, segment_extra=segment_extra,
                                  segment_state=segment_state, extra=extra, signature=signature)


KERNEL_SOURCE = KERNEL_HEADER + r'''MAX_ORDER = 5
NEWTON_MAXITER = 4
MIN_FACTOR = 0.2
MAX_FACTOR = 10.0
EPS = 2.220446049250313e-16
KAPPA = np.array([0.0, -0.1850, -1.0 / 9.0, -0.0823, -0.0415, 0.0])
GAMMA = np.zeros(MAX_ORDER + 1)
for _i in range(1, MAX_ORDER + 1):
    GAMMA[_i] = GAMMA[_i - 1] + 1.0 / _i
ALPHA = (1.0 - KAPPA) * GAMMA
ERROR_CONST = KAPPA * GAMMA + 1.0 / np.arange(1, MAX_ORDER + 2)


@numba.njit(cache=True, error_model="numpy")
def _rms_scaled(x, inverse_scale):
    s = 0.0
    for i in range(x.size):
        v = x[i] * inverse_scale[i]
        s += v * v
    return np.sqrt(s / x.size)


# The helpers below index whole arrays (``work[w, i, j]``, ``D[j, k]``) instead of taking views
# (``work[0]``, ``D[j]``): every view in compiled code is an atomic reference-count increment and
# decrement, which cost about a tenth of the integration when taken in the inner loops.
@numba.njit(cache=True, error_model="numpy")
def _compute_r(order, factor, work, w):
    for i in range(order + 1):
        for j in range(order + 1):
            work[w, i, j] = 0.0
    for j in range(order + 1):
        work[w, 0, j] = 1.0
    for i in range(1, order + 1):
        for j in range(1, order + 1):
            work[w, i, j] = work[w, i - 1, j] * (i - 1 - factor * j) / i


@numba.njit(cache=True, error_model="numpy")
def _change_d(D, order, factor, work, out):
    """Re-express the difference array for a new step size (SciPy's change_D)."""
    R, U, RU = 0, 1, 2  # planes of ``work``
    _compute_r(order, factor, work, R)
    _compute_r(order, 1.0, work, U)
    for i in range(order + 1):
        for j in range(order + 1):
            s = 0.0
            for q in range(order + 1):
                s += work[R, i, q] * work[U, q, j]
            work[RU, i, j] = s
    # D[:order+1] = RU.T @ D[:order+1], row by row so that the innermost loop runs along the
    # contiguous state axis; each element sums over j in the same order as a column-wise loop
    n = D.shape[1]
    for i in range(order + 1):
        for k in range(n):
            out[i, k] = 0.0
        for j in range(order + 1):
            c = work[RU, j, i]
            for k in range(n):
                out[i, k] += c * D[j, k]
    for i in range(order + 1):
        for k in range(n):
            D[i, k] = out[i, k]


@numba.njit(cache=True, error_model="numpy")
def segment(rhs_into, jac_into, lu_factor, lu_solve, nnz, y, t0, t_bound, k, u, t_obs, obs_from,
            obs_to, out, rtol, atol, max_steps, steps):
    """Integrate y from t0 to t_bound; write observations obs_from..obs_to-1 (t0 < t <= t_bound)."""
    n = y.size
    f = np.empty(n)
    rhs_into(y, t0, k, u, f)
    h_abs = initial_step(rhs_into, t0, y, f, k, u, t_bound, rtol, atol, 0.5)  # an order-1 start
    newton_tol = max(10.0 * EPS / rtol, min(0.03, rtol ** 0.5))
    D = np.zeros((MAX_ORDER + 3, n))
    D[0] = y
    D[1] = f * h_abs
    work = np.zeros((4, MAX_ORDER + 1, MAX_ORDER + 1))
    D_new = np.empty((MAX_ORDER + 1, n))
    order = 1
    n_equal = 0
    J = np.zeros((n, n))  # jac_into writes the nonzero entries; the others stay 0
    jac_into(y, t0, k, u, J)
    F = np.empty(nnz)
    have_lu = False
    y_pred = np.empty(n)
    psi = np.empty(n)
    scale = np.empty(n)
    inverse_scale = np.empty(n)  # the Newton iteration's error weights
    y_new = np.empty(n)
    d = np.empty(n)
    rhs_vec = np.empty(n)
    fy = np.empty(n)
    dy = np.empty(n)
    # the LU's pointer arguments, taken once (each ``.ctypes`` is a reference-counted object)
    J_ptr, F_ptr, rhs_ptr, dy_ptr = J.ctypes, F.ctypes, rhs_vec.ctypes, dy.ctypes
    t = t0
    next_obs = obs_from
    safety = 0.9
    error_norm = 0.0
    h = 0.0
    while t < t_bound:
        if steps[0] >= max_steps:
            return 2
        min_step = 10.0 * abs(np.nextafter(t, np.inf) - t)
        if h_abs < min_step:
            _change_d(D, order, min_step / h_abs, work, D_new)
            h_abs = min_step
            n_equal = 0
        current_jac = False
        accepted = False
        while not accepted:
            if h_abs < min_step:
                return 1
            t_new = t + h_abs
            if t_new - t_bound > 0:
                t_new = t_bound
                _change_d(D, order, (t_new - t) / h_abs, work, D_new)
                n_equal = 0
                have_lu = False
            h = t_new - t
            h_abs = h
            # row by row, so that the inner loops run along the contiguous state axis; every
            # element sums over j in ascending order, as a loop over j per element would
            for i in range(n):
                y_pred[i] = 0.0 + D[0, i]
                psi[i] = 0.0
            for j in range(1, order + 1):
                g = GAMMA[j]
                for i in range(n):
                    y_pred[i] += D[j, i]
                    psi[i] += D[j, i] * g
            a = ALPHA[order]
            for i in range(n):
                inverse_scale[i] = 1.0 / (atol + rtol * abs(y_pred[i]))  # multiplied, not divided, below
                psi[i] = psi[i] / a
            c = h / ALPHA[order]
            converged = False
            n_iter = 0
            while not converged:
                if not have_lu:
                    if lu_factor(c, J_ptr, F_ptr) == 0:
                        return 4
                    steps[3] += 1
                    have_lu = True
                # Newton iterations (SciPy's solve_bdf_system)
                for i in range(n):
                    y_new[i] = y_pred[i]
                    d[i] = 0.0
                dy_norm_old = -1.0
                finite = True
                for it in range(NEWTON_MAXITER):
                    n_iter = it + 1
                    rhs_into(y_new, t_new, k, u, fy)
                    steps[1] += 1
                    for i in range(n):
                        if not np.isfinite(fy[i]):
                            finite = False
                        rhs_vec[i] = c * fy[i] - psi[i] - d[i]
                    if not finite:
                        break
                    lu_solve(F_ptr, rhs_ptr, dy_ptr)
                    dy_norm = _rms_scaled(dy, inverse_scale)
                    rate = -1.0
                    if dy_norm_old >= 0.0:
                        rate = dy_norm / dy_norm_old
                    if rate >= 0.0 and (rate >= 1.0 or rate ** (NEWTON_MAXITER - it) / (1.0 - rate) * dy_norm > newton_tol):
                        break
                    for i in range(n):
                        y_new[i] += dy[i]
                        d[i] += dy[i]
                    if dy_norm == 0.0 or (rate >= 0.0 and rate / (1.0 - rate) * dy_norm < newton_tol):
                        converged = True
                        break
                    dy_norm_old = dy_norm
                if not converged:
                    if current_jac:
                        if not finite:
                            return 3
                        break
                    jac_into(y_pred, t_new, k, u, J)
                    steps[2] += 1
                    have_lu = False
                    current_jac = True
            if not converged:
                h_abs *= 0.5
                _change_d(D, order, 0.5, work, D_new)
                n_equal = 0
                have_lu = False
                continue
            safety = 0.9 * (2 * NEWTON_MAXITER + 1) / (2 * NEWTON_MAXITER + n_iter)
            s = 0.0
            for i in range(n):
                scale[i] = atol + rtol * abs(y_new[i])
                v = ERROR_CONST[order] * d[i] / scale[i]
                s += v * v
            error_norm = np.sqrt(s / n)
            if error_norm > 1.0:
                factor = max(MIN_FACTOR, safety * error_norm ** (-1.0 / (order + 1)))
                h_abs *= factor
                _change_d(D, order, factor, work, D_new)
                n_equal = 0
            else:
                accepted = True
        steps[0] += 1
        n_equal += 1
        t = t_new
        for i in range(n):
            D[order + 2, i] = d[i] - D[order + 1, i]
            D[order + 1, i] = d[i]
        for j in range(order, -1, -1):
            for i in range(n):
                D[j, i] += D[j + 1, i]
        # dense output on (t - h, t] from this step's interpolating polynomial
        while next_obs < obs_to and t_obs[next_obs] <= t:
            to = t_obs[next_obs]
            for i in range(n):
                out[next_obs, i] = D[0, i]
            if to != t:
                p = 1.0
                for j in range(order):
                    p *= (to - (t - h * j)) / (h * (1 + j))
                    for i in range(n):
                        out[next_obs, i] += D[j + 1, i] * p
            next_obs += 1
        if n_equal < order + 1:
            continue
        err_m = np.inf
        if order > 1:
            s = 0.0
            for i in range(n):
                v = ERROR_CONST[order - 1] * D[order, i] / scale[i]
                s += v * v
            err_m = np.sqrt(s / n)
        err_p = np.inf
        if order < MAX_ORDER:
            s = 0.0
            for i in range(n):
                v = ERROR_CONST[order + 1] * D[order + 2, i] / scale[i]
                s += v * v
            err_p = np.sqrt(s / n)
        f_m = err_m ** (-1.0 / order) if err_m > 0 else np.inf
        f_0 = error_norm ** (-1.0 / (order + 1)) if error_norm > 0 else np.inf
        f_p = err_p ** (-1.0 / (order + 2)) if err_p > 0 else np.inf
        best = f_m
        delta = -1
        if f_0 > best:
            best = f_0
            delta = 0
        if f_p > best:
            best = f_p
            delta = 1
        order += delta
        factor = min(MAX_FACTOR, safety * best)
        h_abs *= factor
        _change_d(D, order, factor, work, D_new)
        n_equal = 0
        have_lu = False
    for i in range(n):
        y[i] = D[0, i]
    return 0


''' + driver_source()


def kernel_name(stem: str, version: str, source: str) -> str:
    """The module name of a kernel: its stem, version and a hash of its source (so that a changed
    kernel never loads a stale cache)."""
    return f"{stem}{version}_{hashlib.sha256(source.encode()).hexdigest()[:12]}"


def _kernel_name() -> str:
    return kernel_name("cartwin_bdf_kernel", KERNEL_VERSION, KERNEL_SOURCE)


def kernel_cached(cache_dir: Path, name: str | None = None) -> bool:
    """Whether numba's cache in ``cache_dir`` already holds a kernel's machine code for this
    Python (its index file for ``integrate_batch``), so that importing it loads instead of
    compiling. ``name``: the kernel's module name (default: the BDF kernel's)."""
    tag = sys.implementation.cache_tag.replace("cpython-", "py")
    return any((Path(cache_dir) / "__pycache__").glob(f"{name or _kernel_name()}.integrate_batch-*.{tag}.nbi"))


class KernelCompilation:
    """The kernel compiled in a separate process while this one does other work (the model's
    code generation and compilation: the two take about as long, and a first run otherwise does
    them one after the other). ``wait()`` returns once the kernel's machine code is in the cache
    (or the other process has failed: the kernel is then compiled here, on first use, with its
    error shown there)."""

    def __init__(self, cache_dir: Path, loader: str = "cartwin.simulate.bdf") -> None:
        import subprocess

        code = (f"import sys; from pathlib import Path; from {loader} import load_integrator; "
                "load_integrator(Path(sys.argv[1]))")
        self._process = subprocess.Popen([sys.executable, "-c", code, str(cache_dir)],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)

    def wait(self) -> int:
        """Wait for the other process; its exit status (0: the kernel is in the cache)."""
        try:
            return self._process.wait()
        except BaseException:  # interrupted: do not leave the compiler running
            self.cancel()
            raise

    def cancel(self) -> None:
        """Stop the compilation (numba writes its cache files whole, so nothing half is left)."""
        self._process.kill()
        self._process.wait()


def compile_kernel_aside(cache_dir: Path, name: str | None = None,
                         loader: str = "cartwin.simulate.bdf") -> KernelCompilation | None:
    """Start compiling a kernel (default the BDF kernel; else module ``name``, whose
    ``load_integrator`` is in module ``loader``) in another process when it is not cached yet;
    None when it is (loading it takes a fraction of a second) or already imported here, when numba
    keeps its cache elsewhere (``NUMBA_CACHE_DIR``: the check could not see it), or when no process
    can be started (the kernel then compiles here, on first use, as without this)."""
    name = name or _kernel_name()
    if name in sys.modules or os.environ.get("NUMBA_CACHE_DIR") or kernel_cached(cache_dir, name):
        return None
    try:
        return KernelCompilation(cache_dir, loader)
    except OSError:
        return None


def load_integrator(cache_dir: Path) -> ModuleType:
    """Write (once) and import the BDF kernel, the same for every model (:func:`load_kernel`)."""
    return load_kernel(cache_dir, _kernel_name(), KERNEL_SOURCE, "The BDF kernel of cartwin (cartwin.simulate.bdf)")


def load_kernel(cache_dir: Path, name: str, source: str, title: str) -> ModuleType:
    """Write (once) and import a kernel module ``name`` made of ``source``.

    The source goes into the compile cache folder under a name made of the kernel's version and
    a hash of its source, so that numba caches its machine code beside it (once per
    installation and cache folder) and a changed kernel never loads a stale one."""
    if name in sys.modules:
        return sys.modules[name]
    path = cache_dir / f"{name}.py"
    if not path.exists():
        header = f'"""{title}, for every model. Do not edit."""\n'
        fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            fh.write(header + source)
        os.replace(tmp, path)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def run_kernel(kernel: ModuleType, compiled: ModuleType, *arrays) -> None:
    """Run a kernel's ``integrate_batch`` (this one's or the RODAS4 kernel's) with ``compiled``'s
    functions and sparse LU, then the arguments of the kernel's own after them (K, Y0, schedules,
    output days, tolerances, outputs, and any of that kernel's own)."""
    from cartwin.model.codegen import sparse_lu

    lu = sparse_lu(compiled)
    kernel.integrate_batch(compiled.rhs_into, compiled.jac_into, lu.factor, lu.solve,
                           compiled.LU_NNZ, *arrays)


def integrate_batch(compiled: ModuleType, cache_dir: Path, *arrays) -> None:
    """:func:`run_kernel` with the BDF kernel."""
    run_kernel(load_integrator(cache_dir), compiled, *arrays)
