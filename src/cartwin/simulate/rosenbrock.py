"""A compiled, per-patient Rosenbrock integrator (RODAS4) for batches of independent patients.

RODAS4 (Hairer & Wanner, *Solving Ordinary Differential Equations II*, 2nd ed. 1996, section IV.7;
the coefficients of Hairer's ``rodas.f``, in the form of Sandu et al., "Benchmarking stiff ODE
solvers for atmospheric chemistry problems II: Rosenbrock solvers", Atmos. Environ. 31, 1997) is a
linearly implicit one-step method of order 4 with an embedded order-3 error estimate, L-stable and
stiffly accurate. Each step factors I - h*gamma*J once (the model's generated sparse LU) and solves
six linear systems; there is no Newton iteration, and being a one-step method it keeps its full
order across dose breakpoints, where a multistep method restarts at order 1 from a small step
(docs/performance.md, "Where the integration's steps go"): the step size the control chose after
a segment's last step is carried into the next segment, and the error control shrinks it where the
dose changes the solution. (Carrying instead the step it had asked for before the segment's end cut
the last step short took as many steps and doubled the error at rtol 1e-5.)

It needs the exact Jacobian at every step (the model's analytic one), which a BDF step does not:
it pays where a step is cheap relative to the number of steps saved, as on this model's
lymphodepletion days. Observations between steps come from the cubic Hermite interpolant of the
step's ends and their derivatives (the derivative at a step's end is the next step's first stage,
so the interpolant costs no extra evaluation); its error is part of the accuracy measured against
LSODA (tests/engine/test_rosenbrock.py, benchmarks/bench_solvers.py).

Step-size control as in Sandu et al.'s code: factor 0.9 err^(-1/4) within [0.2, 6]; no increase
right after a rejected step; a tenth on the third rejection in a row, and after a non-finite stage
or derivative (a patient whose step then falls below a few ulp fails, with the reason). Each
patient keeps its own step size and error control, so its numbers do not depend on its batch. The
kernel is the same for every model and is cached on disk as the BDF kernel is (cartwin.simulate.bdf).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from cartwin.simulate.bdf import KERNEL_HEADER, driver_source, kernel_name, load_kernel, run_kernel

KERNEL_VERSION = "7"
STAGES = 6  # RODAS4's

# the BDF kernel's header (cartwin.simulate.bdf: the model's functions as function pointers, the
# batch signature) and driver, with one more argument: whether the right-hand side reads time itself;
# a step's stages are written out by _stage_source where the body says {STAGE_CODE}, and their
# number is STAGES
_KERNEL_BODY = r'''
BATCH_SIGNATURE_TIMED = types.void(*BATCH_SIGNATURE.args, types.boolean)

# RODAS4: Hairer & Wanner (1996), IV.7, coefficients of rodas.f in the form of Sandu et al. (1997):
# stage i evaluates f at y + sum_j A[i, j] K_j, t + ALPHA[i] h, and solves
# (I/(h GAMMA1) - J) K_i = f + sum_j C[i, j] / h K_j (+ h GAMMA[i] df/dt where f depends on t
# itself); y_new = y + sum_j M[j] K_j; error K_6.
STAGES = {STAGES}
GAMMA1 = 0.25
GAMMA = np.array([0.25, -0.1043, 0.1035, -0.3620000000000023e-01, 0.0, 0.0])
ALPHA = np.array([0.0, 0.386, 0.210, 0.630, 1.0, 1.0])
A = np.zeros((STAGES, STAGES))
C = np.zeros((STAGES, STAGES))
_A_LOWER = (1.544, 0.9466785280815826, 0.2557011698983284, 3.314825187068521, 2.896124015972201,
            0.9986419139977817, 1.221224509226641, 6.019134481288629, 12.53708332932087,
            -0.6878860361058950, 1.221224509226641, 6.019134481288629, 12.53708332932087,
            -0.6878860361058950, 1.0)
_C_LOWER = (-5.6688, -2.430093356833875, -0.2063599157091915, -0.1073529058151375,
            -9.594562251023355, -20.47028614809616, 7.496443313967647, -10.24680431464352,
            -33.99990352819905, 11.70890893206160, 8.083246795921522, -7.981132988064893,
            -31.52159432874371, 16.31930543123136, -6.058818238834054)
for _i in range(1, STAGES):
    for _j in range(_i):
        A[_i, _j] = _A_LOWER[_i * (_i - 1) // 2 + _j]
        C[_i, _j] = _C_LOWER[_i * (_i - 1) // 2 + _j]
M = np.array([1.221224509226641, 6.019134481288629, 12.53708332932087, -0.6878860361058950, 1.0, 1.0])
ERROR_ORDER = 4.0
EPS = 2.220446049250313e-16
FAC_MIN, FAC_MAX, FAC_SAFE, FAC_REJECT = 0.2, 6.0, 0.9, 0.1


@numba.njit(cache=True, error_model="numpy")
def segment(rhs_into, jac_into, lu_factor, lu_solve, nnz, y, t0, t_bound, k, u, t_obs, obs_from,
            obs_to, out, rtol, atol, max_steps, steps, h_carried, timed):
    """Integrate y from t0 to t_bound; write observations obs_from..obs_to-1 (t0 < t <= t_bound).
    Starts from the step ``h_carried`` (the last of the previous segment; 0: the starting rule).
    ``timed``: the right-hand side depends on time itself (its derivative in time enters every
    stage, by a forward difference, as in Sandu et al.'s code). Returns (status, the step size to
    carry on)."""
    n = y.size
    f0 = np.empty(n)
    f1 = np.empty(n)
    rhs_into(y, t0, k, u, f0)
    steps[1] += 1
    h = min(h_carried, t_bound - t0)
    if h <= 0.0:
        h = initial_step(rhs_into, t0, y, f0, k, u, t_bound, rtol, atol, 1.0 / ERROR_ORDER)
        steps[1] += 1
    J = np.zeros((n, n))  # jac_into writes the nonzero entries; the others stay 0
    F = np.empty(nnz)
    K = np.empty((STAGES, n))
    y_stage = np.empty(n)
    f_stage = np.empty(n)
    b = np.empty(n)
    y_new = np.empty(n)
    dfdt = np.zeros(n)
    J_ptr, F_ptr, b_ptr = J.ctypes, F.ctypes, b.ctypes
    t = t0
    next_obs = obs_from
    reject_last = False
    reject_more = False
    while t < t_bound:
        if steps[0] >= max_steps:
            return 2, h
        jac_into(y, t, k, u, J)
        steps[2] += 1
        if timed:
            delta = np.sqrt(EPS) * max(1e-5, abs(t))
            rhs_into(y, t + delta, k, u, dfdt)
            steps[1] += 1
            for q in range(n):
                dfdt[q] = (dfdt[q] - f0[q]) / delta
        while True:
            # the last step of the segment ends on its bound, exactly (t + (t_bound - t) need not
            # round to t_bound), and within 1% of it takes the rest (no sliver of a step); only a
            # step that is not the last can be too small (a segment of a few ulp is one last step)
            last = t + 1.01 * h >= t_bound
            if last:
                h = t_bound - t
            elif h < 10.0 * abs(np.nextafter(t, np.inf) - t):
                return 1, h
            hg = h * GAMMA1
            # (I/(h g) - J) K = r  <=>  (I - h g J) K = h g r
            if lu_factor(hg, J_ptr, F_ptr) == 0:
                return 4, h
            steps[3] += 1
{STAGE_CODE}            s = 0.0
            finite = True
            for q in range(n):
                v = y[q]
                for j in range(STAGES):
                    v += M[j] * K[j, q]
                y_new[q] = v
                if not np.isfinite(v):
                    finite = False
                e = K[STAGES - 1, q] / (atol + rtol * max(abs(y[q]), abs(v)))
                s += e * e
            error_norm = np.sqrt(s / n) if finite else np.inf
            if error_norm > 0.0:
                factor = min(FAC_MAX, max(FAC_MIN, FAC_SAFE * error_norm ** (-1.0 / ERROR_ORDER)))
            else:
                factor = FAC_MAX
            h_next = h * factor
            if error_norm <= 1.0:
                t_new = t_bound if last else t + h
                rhs_into(y_new, t_new, k, u, f1)  # the next step's first stage
                steps[1] += 1
                f1_finite = True
                for q in range(n):
                    if not np.isfinite(f1[q]):
                        f1_finite = False
                if not f1_finite:  # a state whose derivative is not finite: rejected as a non-finite stage
                    if h <= 10.0 * abs(np.nextafter(t, np.inf) - t):
                        return 3, h
                    reject_more = reject_last
                    reject_last = True
                    h = h * FAC_REJECT
                    continue
                # dense output on (t, t_new]: cubic Hermite of (y, f0) and (y_new, f1)
                while next_obs < obs_to and t_obs[next_obs] <= t_new:
                    if t_obs[next_obs] == t_new:
                        for q in range(n):
                            out[next_obs, q] = y_new[q]
                    else:
                        # the Hermite basis at theta, once per output day, then four products per state
                        theta = (t_obs[next_obs] - t) / h
                        theta2 = theta * theta
                        theta3 = theta2 * theta
                        w_y = 2.0 * theta3 - 3.0 * theta2 + 1.0
                        w_y_new = 3.0 * theta2 - 2.0 * theta3
                        w_f0 = (theta3 - 2.0 * theta2 + theta) * h
                        w_f1 = (theta3 - theta2) * h
                        for q in range(n):
                            out[next_obs, q] = w_y * y[q] + w_y_new * y_new[q] + w_f0 * f0[q] + w_f1 * f1[q]
                    next_obs += 1
                for q in range(n):
                    y[q] = y_new[q]
                    f0[q] = f1[q]
                t = t_new
                steps[0] += 1
                if reject_last:
                    h_next = min(h_next, h)
                reject_last = False
                reject_more = False
                h = h_next
                break
            if reject_more or not finite:
                h_next = h * FAC_REJECT
            reject_more = reject_last
            reject_last = True
            h = h_next
    return 0, h


'''


def _stage_source(stages: int = STAGES) -> str:
    """The code of a step's stages, written out stage by stage: stage i solves
    (I - h g J) K_i = h g (f(y + sum_j A[i, j] K_j) + sum_j C[i, j] / h K_j (+ h GAMMA[i] df/dt)), each
    sum in one expression per state, added in the order j = 0, 1, ... (one pass over the states
    where a loop per j would make i; the same numbers to the bit)."""
    pad = " " * 12
    lines = []
    for i in range(stages):
        c_terms = "".join(f" + c{j} * K[{j}, q]" for j in range(i))
        lines.append(f"{pad}# stage {i}")
        if i:
            a_terms = "".join(f" + A[{i}, {j}] * K[{j}, q]" for j in range(i))
            lines += [f"{pad}for q in range(n):", f"{pad}    y_stage[q] = y[q]{a_terms}",
                      f"{pad}rhs_into(y_stage, t + ALPHA[{i}] * h, k, u, f_stage)", f"{pad}steps[1] += 1"]
            lines += [f"{pad}c{j} = C[{i}, {j}] / h" for j in range(i)]
        f = "f_stage" if i else "f0"
        lines += [f"{pad}if timed:", f"{pad}    g = GAMMA[{i}] * h", f"{pad}    for q in range(n):",
                  f"{pad}        b[q] = ({f}[q]{c_terms} + g * dfdt[q]) * hg", f"{pad}else:",
                  f"{pad}    for q in range(n):", f"{pad}        b[q] = ({f}[q]{c_terms}) * hg",
                  f"{pad}lu_solve(F_ptr, b_ptr, K[{i}].ctypes)  # straight into its row of K"]
    return "\n".join(lines) + "\n"


KERNEL_SOURCE = (KERNEL_HEADER + _KERNEL_BODY.replace("{STAGES}", str(STAGES)).replace("{STAGE_CODE}", _stage_source())
                 + driver_source(segment_result="code, h", segment_extra=", h, timed", segment_state="    h = 0.0\n",
                                 extra=", timed", signature="BATCH_SIGNATURE_TIMED"))


def module_name() -> str:
    return kernel_name("cartwin_rodas4_kernel", KERNEL_VERSION, KERNEL_SOURCE)


def load_integrator(cache_dir: Path) -> ModuleType:
    """Write (once) and import the RODAS4 kernel, the same for every model."""
    return load_kernel(cache_dir, module_name(), KERNEL_SOURCE,
                       "The RODAS4 kernel of cartwin (cartwin.simulate.rosenbrock)")


def integrate_batch(compiled: ModuleType, cache_dir: Path, *arrays) -> None:
    """As :func:`cartwin.simulate.bdf.integrate_batch`, with the RODAS4 kernel, which is told
    whether the right-hand side reads time itself."""
    run_kernel(load_integrator(cache_dir), compiled, *arrays, uses_time(compiled))


def uses_time(compiled: ModuleType) -> bool:
    """Whether the generated right-hand side reads time ``t`` itself (a model of time-varying
    inputs; an imported SBML model may be one): read from its source, in which every use of a name
    is a plain load."""
    cached = getattr(compiled, "_CARTWIN_USES_TIME", None)
    if cached is None:
        import ast
        import inspect

        function = ast.parse(inspect.getsource(compiled.rhs_into.py_func)).body[0]
        cached = any(isinstance(node, ast.Name) and node.id == "t" and isinstance(node.ctx, ast.Load)
                     for statement in function.body for node in ast.walk(statement))
        compiled._CARTWIN_USES_TIME = cached
    return cached
