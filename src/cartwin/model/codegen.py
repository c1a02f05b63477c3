"""Turn a model declaration into fast code.

The declaration's expressions are parsed once with sympy (:mod:`cartwin.model.symbolic`, imported
only when code is generated: a process that loads cached code never imports sympy). From them come:

- ``constants(THETA, COV) -> K``: per-patient constants (parameters, covariates and every
  assignment that depends on no state), batched with NumPy;
- ``initial(K) -> Y0`` and ``observe(Y, K, T, which=None) -> OBS``, batched with NumPy;
- ``rhs_into(y, t, k, u, dydt)`` and ``jac_into(y, t, k, u, J)``, scalar code compiled with
  numba, with the analytic Jacobian from symbolic differentiation; ``u`` is the vector of
  zero-order input rates into each state (infusions), constant between events; ``rhs`` and
  ``jac`` allocate and return their result (for Python callers such as LSODA);
- ``LU_PLAN``: the sparse LU of the Newton matrix for the Jacobian's pattern (an elimination
  schedule in integer arrays), which :func:`sparse_lu` turns into machine code through LLVM IR.

The generated source is written once per code key (:func:`code_key`) into a cache folder, so
that numba can cache its machine code and worker processes load it instead of compiling again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Sequence

import numpy as np

from cartwin.model.declaration import Model

CODEGEN_VERSION = "13"
# error_model="numpy": a division by zero gives inf or NaN, which the integrators report as a
# failed solve, instead of raising ZeroDivisionError out of compiled code
JIT = '@numba.njit(cache=True, fastmath=False, error_model="numpy")'


NAME_PREFIX = "v_"


def _safe(name: str) -> str:
    """The name of a declared quantity in generated code. Every declared name is prefixed, so
    that no name in a model (``k``, ``y``, ``u_0``, ``which``, ``numpy``, ``exp``, a Python
    keyword...) can collide with a name the generated code uses itself: those never begin with
    ``v_``. Time is ``t``, which a declaration may not use for anything else."""
    return NAME_PREFIX + name


def _minimum_degree_order(n: int, pattern: set[tuple[int, int]]) -> list[int]:
    """Greedy minimum-degree elimination order on the symmetrised pattern (less fill-in)."""
    adj = {i: set() for i in range(n)}
    for i, j in pattern:
        if i != j:
            adj[i].add(j)
            adj[j].add(i)
    order, left = [], set(range(n))
    while left:
        v = min(left, key=lambda x: (len(adj[x] & left), x))
        nb = adj[v] & left
        for a in nb:
            adj[a] |= nb - {a}
        order.append(v)
        left.remove(v)
    return order


# The sparse LU's plan: the integer arrays that the BDF kernel's loops walk (see lu_plan), in
# this order.
LU_PLAN_FIELDS = ("perm", "init_slot", "init_jac", "init_diag", "pivot", "row_ptr", "row_slot",
                  "update_ptr", "update_target", "update_source", "forward_ptr", "forward_slot",
                  "forward_col", "backward_ptr", "backward_slot", "backward_col")


def lu_plan(n: int, jac_nz: Sequence[tuple[int, int]]
            ) -> tuple[dict[str, np.ndarray], int, tuple[int, int]]:
    """The sparse LU of M = I - c*J for the Jacobian's sparsity pattern, as data.

    Pivots are taken on the diagonal in a minimum-degree order (no row exchanges): M is an
    identity minus a small multiple of J, and a tiny pivot makes the Newton iteration fail,
    which the integrator answers by halving the step. The factors live in a flat array F of
    ``nnz`` slots. The elimination is a fixed schedule of operations on slots, which
    :func:`sparse_lu` compiles, unrolled, from these arrays for the BDF kernel.

    Returns (the arrays by name, nnz, (flops of a factorisation, flops of a solve)).
    """
    pattern = set(jac_nz) | {(i, i) for i in range(n)}
    perm = _minimum_degree_order(n, pattern)
    pos = {v: i for i, v in enumerate(perm)}
    filled = {(pos[i], pos[j]) for i, j in pattern}
    for k in range(n):  # symbolic elimination: fill-in
        rows = [i for i in range(k + 1, n) if (i, k) in filled]
        cols = [j for j in range(k + 1, n) if (k, j) in filled]
        for i in rows:
            for j in cols:
                filled.add((i, j))
    slots = {ij: idx for idx, ij in enumerate(sorted(filled))}
    plan: dict[str, list[int]] = {f: [] for f in LU_PLAN_FIELDS}
    plan["perm"] = list(perm)
    # F = I - c*J on the pattern (permuted), every other slot 0
    for (i, j), idx in slots.items():
        oi, oj = perm[i], perm[j]
        if (oi, oj) in pattern:
            plan["init_slot"].append(idx)
            plan["init_jac"].append(oi * n + oj)
            plan["init_diag"].append(int(oi == oj))
    # for each pivot k: every row i below with a nonzero (i, k) is scaled by 1/F[k, k], then
    # F[i, j] -= F[i, k] * F[k, j] for every column j right of k in row k
    plan["row_ptr"].append(0)
    plan["update_ptr"].append(0)
    for k in range(n):
        plan["pivot"].append(slots[(k, k)])
        rows = [i for i in range(k + 1, n) if (i, k) in slots]
        cols = [j for j in range(k + 1, n) if (k, j) in slots]
        for i in rows:
            plan["row_slot"].append(slots[(i, k)])
            for j in cols:
                plan["update_target"].append(slots[(i, j)])
                plan["update_source"].append(slots[(k, j)])
            plan["update_ptr"].append(len(plan["update_target"]))
        plan["row_ptr"].append(len(plan["row_slot"]))
    # forward substitution (unit lower factor), then backward (upper factor)
    plan["forward_ptr"].append(0)
    plan["backward_ptr"].append(0)
    for i in range(n):
        for j in range(i):
            if (i, j) in slots:
                plan["forward_slot"].append(slots[(i, j)])
                plan["forward_col"].append(j)
        plan["forward_ptr"].append(len(plan["forward_slot"]))
    for i in range(n - 1, -1, -1):
        for j in range(i + 1, n):
            if (i, j) in slots:
                plan["backward_slot"].append(slots[(i, j)])
                plan["backward_col"].append(j)
        plan["backward_ptr"].append(len(plan["backward_slot"]))
    factor_flops = (2 * len(plan["init_slot"]) - (len(plan["init_slot"]) - sum(plan["init_diag"]))
                    + n + len(plan["row_slot"]) + 2 * len(plan["update_target"]))
    solve_flops = 2 * len(plan["forward_slot"]) + 2 * len(plan["backward_slot"]) + n
    arrays = {f: np.array(v, dtype=np.int64) for f, v in plan.items()}
    return arrays, len(slots), (factor_flops, solve_flops)


def pack_lu_plan(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """The plan's fields in one integer array: a header of 17 offsets (field f spans offsets
    f..f+1), then the fields in the order of LU_PLAN_FIELDS."""
    sizes = [arrays[f].size for f in LU_PLAN_FIELDS]
    header = len(LU_PLAN_FIELDS) + 1
    offsets = np.concatenate([[0], np.cumsum(sizes)]) + header
    return np.concatenate([offsets.astype(np.int64)] + [arrays[f] for f in LU_PLAN_FIELDS])


def unpack_lu_plan(packed: np.ndarray) -> dict[str, np.ndarray]:
    """The inverse of :func:`pack_lu_plan`."""
    return {f: packed[packed[i]:packed[i + 1]] for i, f in enumerate(LU_PLAN_FIELDS)}


def _sparse_lu_source(n: int, jac_nz: list[tuple[int, int]]) -> list[str]:
    """The sparse LU's plan as constants of the generated module (see :func:`lu_plan`)."""
    arrays, nnz, flops = lu_plan(n, jac_nz)
    packed = pack_lu_plan(arrays)
    return [f"LU_NNZ = {nnz}", f"LU_FLOPS = {flops!r}  # a factorisation, a solve",
            "# the plan of the sparse LU, packed (cartwin.model.codegen.lu_plan and pack_lu_plan)",
            f"LU_PLAN = numpy.array({packed.tolist()!r}, dtype=numpy.int64)", ""]


def _lu_ir(name: str, n: int, plan: dict[str, np.ndarray], nnz: int):
    """LLVM IR of the plan's elimination, unrolled: ``{name}_factor(c, J*, F*) -> 1 (0 if a
    pivot is zero)`` and ``{name}_solve(F*, b*, r*)``. Every factor lives in a register until the
    end; the operations, and their order, are the plan's (IEEE arithmetic, no fusion or
    reassociation), so the numbers are those of the same elimination in any compiled form."""
    from llvmlite import ir

    double, i64 = ir.DoubleType(), ir.IntType(64)
    ptr = ir.PointerType(double)
    module = ir.Module(name=name)
    factor = ir.Function(module, ir.FunctionType(i64, [double, ptr, ptr]), name=f"{name}_factor")
    c, J, F = factor.args
    b = ir.IRBuilder(factor.append_basic_block("entry"))
    zero, one = ir.Constant(double, 0.0), ir.Constant(double, 1.0)

    def load(pointer, index):
        return b.load(b.gep(pointer, [ir.Constant(i64, int(index))], inbounds=True))

    value: dict[int, object] = {}  # slot -> its current value; slots never set are 0
    for slot, jac_index, diag in zip(plan["init_slot"], plan["init_jac"], plan["init_diag"]):
        j = load(J, jac_index)
        value[int(slot)] = b.fsub(one, b.fmul(c, j)) if diag else b.fmul(b.fneg(c), j)
    singular = ir.Constant(ir.IntType(1), 0)
    for k in range(n):
        pivot = value.get(int(plan["pivot"][k]), zero)
        singular = b.or_(singular, b.fcmp_ordered("==", pivot, zero))
        inv = b.fdiv(one, pivot)
        for r in range(plan["row_ptr"][k], plan["row_ptr"][k + 1]):
            ik = int(plan["row_slot"][r])
            a = value[ik] = b.fmul(value[ik], inv)
            for q in range(plan["update_ptr"][r], plan["update_ptr"][r + 1]):
                t = int(plan["update_target"][q])
                value[t] = b.fsub(value.get(t, zero),
                                  b.fmul(a, value.get(int(plan["update_source"][q]), zero)))
    for slot in range(nnz):
        b.store(value.get(slot, zero), b.gep(F, [ir.Constant(i64, slot)], inbounds=True))
    b.ret(b.select(singular, ir.Constant(i64, 0), ir.Constant(i64, 1)))

    solve = ir.Function(module, ir.FunctionType(ir.VoidType(), [ptr, ptr, ptr]), name=f"{name}_solve")
    F, rhs, out = solve.args
    b = ir.IRBuilder(solve.append_basic_block("entry"))
    x: dict[int, object] = {}
    for i in range(n):
        s = load(rhs, plan["perm"][i])
        for q in range(plan["forward_ptr"][i], plan["forward_ptr"][i + 1]):
            s = b.fsub(s, b.fmul(load(F, plan["forward_slot"][q]), x[int(plan["forward_col"][q])]))
        x[i] = s
    for m in range(n):
        i = n - 1 - m
        s = x[i]
        for q in range(plan["backward_ptr"][m], plan["backward_ptr"][m + 1]):
            s = b.fsub(s, b.fmul(load(F, plan["backward_slot"][q]), x[int(plan["backward_col"][q])]))
        x[i] = b.fdiv(s, load(F, plan["pivot"][i]))
    for i in range(n):
        b.store(x[i], b.gep(out, [ir.Constant(i64, int(plan["perm"][i]))], inbounds=True))
    b.ret_void()
    for function in (factor, solve):
        for argument in function.args:
            if isinstance(argument.type, ir.PointerType):
                argument.add_attribute("noalias")  # the kernel passes distinct arrays
    return module


@dataclass(frozen=True)
class SparseLU:
    """A model's sparse LU as machine code, callable from numba code as first-class functions:
    ``factor(c, J, F) -> 1`` (0 if a pivot is zero) puts the factors of I - c*J into F (LU_NNZ
    slots); ``solve(F, b, r)`` puts (I - c*J)^-1 b into r; arguments are pointers (``a.ctypes``)."""

    factor: object
    solve: object
    library: object  # keeps the machine code alive


@cache
def sparse_lu(module: ModuleType) -> SparseLU:
    """Compile ``module``'s LU plan into machine code, once per process.

    The elimination of a model with a few dozen states is thousands of operations; as numba
    source it took most of a new model's compile time (10-15 s), while its LLVM IR, emitted
    directly here, compiles in a fraction of a second. So it is compiled in each process that
    solves (forked workers inherit it) rather than cached on disk. It goes through numba's own
    code generator (a code library under numba's compiler lock), so that the machine code lives
    in the JIT that runs the kernel."""
    from numba.core.compiler_lock import global_compiler_lock
    from numba.core.registry import cpu_target
    from numba.core.types import CPointer, float64, int64, void
    from numba.core.types.function_type import WrapperAddressProtocol

    n = len(module.STATE_NAMES)
    name = f"{module.__name__}_lu"
    ir_module = _lu_ir(name, n, unpack_lu_plan(module.LU_PLAN), module.LU_NNZ)
    with global_compiler_lock:
        library = cpu_target.target_context.codegen().create_library(name)
        library.add_ir_module(ir_module)
        library.finalize()
    pointer = CPointer(float64)

    class _Function(WrapperAddressProtocol):
        def __init__(self, symbol, signature):
            self.address, self.sig = library.get_pointer_to_function(symbol), signature

        def __wrapper_address__(self):
            return self.address

        def signature(self):
            return self.sig

    return SparseLU(_Function(f"{name}_factor", int64(float64, pointer, pointer)),
                    _Function(f"{name}_solve", void(pointer, pointer, pointer)), library)


def cache_base() -> Path:
    """The folder of cartwin's caches: ``CARTWIN_CACHE_DIR``, else ``$XDG_CACHE_HOME/cartwin`` or
    ``~/.cache/cartwin`` (not created here)."""
    return Path(os.environ.get("CARTWIN_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cartwin"))


def cache_dir() -> Path:
    path = cache_base() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def code_key(model: Model) -> str:
    """The key of ``model``'s generated code: a hash of the code generator's version and of what
    the code is generated from (names in order, assignments, states, dose scales, observables),
    not of the declaration's values, units, descriptions or sources. Parameter values enter as
    data at run time, so a model that differs only in them reuses the compiled code."""
    record = {
        "codegen": CODEGEN_VERSION,
        "name": model.name,
        "parameters": list(model.parameter_names),
        "covariates": list(model.covariate_names),
        "assignments": [(a.name, a.expression) for a in model.assignments],
        "states": [(s.name, s.initial, s.rate) for s in model.states],
        "doses": [(d.name, d.state, d.scale) for d in model.doses],
        "observables": [(o.test, o.expression) for o in model.observables],
    }
    return hashlib.sha256(json.dumps(record).encode()).hexdigest()[:16]


@cache
def compile_model(model: Model) -> ModuleType:
    """Generate (or reuse) and import the compiled module of ``model``, by :func:`code_key`."""
    key = code_key(model)
    module_name = f"cartwin_gen_{model.name}_{key}"
    path = cache_dir() / f"{module_name}.py"
    if not path.exists():
        from cartwin.model.symbolic import module_source, parse  # sympy: only to generate

        source = module_source(model, parse(model))
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            fh.write(source)
        os.replace(tmp, path)
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def warm_up(module: ModuleType) -> None:
    """Compile ``rhs_into`` and ``jac_into`` now (or load them from numba's cache), from their
    signature alone: the model is never evaluated at made-up values (constants of 1 can divide
    by zero: ln(1) = 0). These are the only compiled functions of a model: the BDF kernel calls
    them through function pointers, and the LSODA backend compiles the small ``rhs`` and ``jac``
    wrappers around them (:func:`warm_up_wrappers`)."""
    from numba import types

    vector, matrix = types.float64[::1], types.float64[:, ::1]
    # with the return type, as the kernel's function types ask for them: numba caches a
    # signature with and one without a declared return type apart
    module.rhs_into.compile(types.void(vector, types.float64, vector, vector, vector))
    module.jac_into.compile(types.void(vector, types.float64, vector, vector, matrix))


def warm_up_wrappers(module: ModuleType) -> None:
    """Compile the allocating ``rhs(y, t, k, u)`` and ``jac(y, t, k, u)`` that Python callers use."""
    from numba import types

    vector = types.float64[::1]
    module.rhs.compile((vector, types.float64, vector, vector))
    module.jac.compile((vector, types.float64, vector, vector))
