"""Turn a model declaration into fast code.

The declaration's expressions are parsed once with sympy. From them come:

- ``constants(THETA, COV) -> K``: per-patient constants (parameters, covariates and every
  assignment that depends on no state), batched with NumPy;
- ``initial(K) -> Y0`` and ``observe(Y, K, T, which=None) -> OBS``, batched with NumPy;
- ``rhs(y, t, k, u)`` and ``jac(y, t, k, u)``, scalar code compiled with numba, with the
  analytic Jacobian from symbolic differentiation; ``u`` is the vector of zero-order input
  rates into each state (infusions), constant between events.

The generated source is written once per model hash into a cache folder, so that numba can
cache its machine code and worker processes load it instead of compiling again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import sys
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Callable, Sequence

import numpy as np

import sympy as sp
from sympy.parsing.sympy_parser import parse_expr
from sympy.printing.numpy import NumPyPrinter
from sympy.printing.pycode import PythonCodePrinter

from cartwin.model.declaration import Model, ModelDeclarationError

CODEGEN_VERSION = "5"
# error_model="numpy": a division by zero gives inf or NaN, which the integrators report as a
# failed solve, instead of raising ZeroDivisionError out of compiled code
JIT = '@numba.njit(cache=True, fastmath=False, error_model="numpy")'


def _above(x, threshold):
    return sp.Piecewise((sp.Float(1.0), x > threshold), (sp.Float(0.0), True))


_FUNCTIONS = {"exp": sp.exp, "log": sp.log, "sqrt": sp.sqrt, "Max": sp.Max, "Min": sp.Min,
              "above": _above}


class _VectorPrinter(NumPyPrinter):
    """NumPy code that broadcasts: element-wise max/min and where() for two-branch choices."""

    def _fold(self, function: str, expr) -> str:
        args = [self._print(a) for a in expr.args]
        out = args[0]
        for a in args[1:]:
            out = f"numpy.{function}({out}, {a})"
        return out

    def _print_Max(self, expr):
        return self._fold("maximum", expr)

    def _print_Min(self, expr):
        return self._fold("minimum", expr)

    def _print_Piecewise(self, expr):
        out = self._print(expr.args[-1].expr)
        for e, c in reversed(expr.args[:-1]):
            out = f"numpy.where({self._print(c)}, {self._print(e)}, {out})"
        return out


class _ScalarPrinter(PythonCodePrinter):
    def _print_Max(self, expr):
        return "max(" + ", ".join(self._print(a) for a in expr.args) + ")"

    def _print_Min(self, expr):
        return "min(" + ", ".join(self._print(a) for a in expr.args) + ")"


NAME_PREFIX = "v_"


def _safe(name: str) -> str:
    """The name of a declared quantity in generated code. Every declared name is prefixed, so
    that no name in a model (``k``, ``y``, ``u_0``, ``which``, ``numpy``, ``exp``, a Python
    keyword...) can collide with a name the generated code uses itself: those never begin with
    ``v_``. Time is ``t``, which a declaration may not use for anything else."""
    return NAME_PREFIX + name


def _rename_calls(text: str, declared: dict) -> tuple[str, dict]:
    """A declared name used as a function (``exp(x)`` in a model with a quantity ``exp``) means
    the function of that name: such calls are renamed before parsing, with the function bound."""
    import io
    import tokenize

    tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    calls: dict[str, object] = {}
    out = []
    for i, tok in enumerate(tokens):
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if (tok.type == tokenize.NAME and tok.string in declared and nxt is not None
                and nxt.type == tokenize.OP and nxt.string == "("):
            function = _FUNCTIONS.get(tok.string) or getattr(sp, tok.string, None)
            if function is None or not callable(function):
                raise ModelDeclarationError(f"{tok.string} is a declared quantity, not a function, in {text!r}")
            alias = f"__call_{tok.string}"
            calls[alias] = function
            tok = tok._replace(string=alias)
        out.append(tok)
    if not calls:
        return text, calls
    return tokenize.untokenize([(t.type, t.string) for t in out]), calls


@dataclass(frozen=True)
class Symbolic:
    """The parsed model: sympy expressions with every assignment classified."""

    constant_names: tuple[str, ...]
    constant_exprs: dict[str, sp.Expr]
    dynamic_order: tuple[str, ...]
    dynamic_exprs: dict[str, sp.Expr]
    rates: tuple[sp.Expr, ...]
    initials: tuple[sp.Expr, ...]
    dose_scales: tuple[sp.Expr, ...]
    observables: tuple[sp.Expr, ...]


def _parser(model: Model):
    """(symbols by declared name, a function text -> sympy expression) for ``model``."""
    names = (list(model.parameter_names) + list(model.covariate_names)
             + [a.name for a in model.assignments] + list(model.state_names))
    if "t" in names:
        raise ModelDeclarationError(f"model {model.name}: 't' is time; name the quantity otherwise")
    symbols = {n: sp.Symbol(_safe(n), real=True) for n in names}
    symbols["t"] = sp.Symbol("t", real=True)
    local = dict(_FUNCTIONS)
    local.update(symbols)

    def expr(text: str, where: str) -> sp.Expr:
        try:
            text, calls = _rename_calls(text, symbols)
            e = parse_expr(text, local_dict={**local, **calls}, evaluate=True)
        except ModelDeclarationError as exc:
            raise ModelDeclarationError(f"{where}: {exc}") from None
        except Exception as exc:  # sympy raises many kinds; all mean the same to the author
            raise ModelDeclarationError(f"{where}: cannot parse {text!r}: {exc}") from None
        unknown = {s.name for s in e.free_symbols - set(symbols.values())}
        if unknown:
            raise ModelDeclarationError(f"{where}: unknown names {sorted(unknown)} in {text!r}")
        return e

    return symbols, expr


@cache
def parse(model: Model) -> Symbolic:
    symbols, expr = _parser(model)
    state_syms = {symbols[s] for s in model.state_names} | {symbols["t"]}
    constant_names = list(model.parameter_names) + list(model.covariate_names)
    constant_exprs: dict[str, sp.Expr] = {}
    dynamic_order: list[str] = []
    dynamic_exprs: dict[str, sp.Expr] = {}
    dynamic_syms: set[sp.Symbol] = set()
    for a in model.assignments:
        e = expr(a.expression, f"assignment {a.name}")
        defined = {symbols[n] for n in constant_names} | dynamic_syms | state_syms
        missing = {s for s in e.free_symbols if s not in defined}
        if missing:
            raise ModelDeclarationError(
                f"assignment {a.name} uses {sorted(str(m) for m in missing)} before they are "
                "declared; order assignments so that each uses only earlier names"
            )
        if e.free_symbols & (state_syms | dynamic_syms):
            dynamic_order.append(a.name)
            dynamic_exprs[a.name] = e
            dynamic_syms.add(symbols[a.name])
        else:
            constant_names.append(a.name)
            constant_exprs[a.name] = e
    rates = tuple(expr(s.rate, f"state {s.name} rate") for s in model.states)
    initials = tuple(expr(s.initial, f"state {s.name} initial") for s in model.states)
    for s, e in zip(model.states, initials):
        if e.free_symbols & (state_syms | dynamic_syms):
            raise ModelDeclarationError(f"state {s.name}: initial value may not depend on states")
    scales = tuple(expr(d.scale, f"dose input {d.name} scale") for d in model.doses)
    observables = tuple(expr(o.expression, f"observable {o.test}") for o in model.observables)
    return Symbolic(tuple(constant_names), constant_exprs, tuple(dynamic_order), dynamic_exprs,
                    rates, initials, scales, observables)


def _source(model: Model, sym: Symbolic) -> str:
    vec, sca = _VectorPrinter(), _ScalarPrinter()
    states = model.state_names
    n_theta, n_cov = len(model.parameter_names), len(model.covariate_names)
    lines = [
        f'"""Generated from model {model.name} {model.version} ({model.content_hash()}). '
        'Do not edit."""',
        "import math",
        "import numpy",
        "import numba",
        "",
        f"STATE_NAMES = {tuple(states)!r}",
        f"CONSTANT_NAMES = {sym.constant_names!r}",
        f"OBSERVABLE_TESTS = {tuple(o.test for o in model.observables)!r}",
        "",
        "def constants(THETA, COV):",
        f"    K = numpy.empty((THETA.shape[0], {len(sym.constant_names)}))",
        f"    K[:, :{n_theta}] = THETA",
        f"    K[:, {n_theta}:{n_theta + n_cov}] = COV",
    ]
    for i, n in enumerate(sym.constant_names[: n_theta + n_cov]):
        lines.append(f"    {_safe(n)} = K[:, {i}]")
    for i, n in enumerate(sym.constant_names[n_theta + n_cov:], start=n_theta + n_cov):
        lines.append(f"    {_safe(n)} = K[:, {i}] = {vec.doprint(sym.constant_exprs[n])}")
    lines.append("    return K")
    lines.append("")

    def unpack_constants(indent: str, column: bool) -> list[str]:
        fmt = "K[:, {i}, None]" if column else "K[:, {i}]"
        return [f"{indent}{_safe(n)} = {fmt.format(i=i)}" for i, n in enumerate(sym.constant_names)]

    # initial(K): batched
    lines.append("def initial(K):")
    lines += unpack_constants("    ", column=False)
    lines.append(f"    Y0 = numpy.empty((K.shape[0], {len(states)}))")
    for i, e in enumerate(sym.initials):
        lines.append(f"    Y0[:, {i}] = {vec.doprint(e)}")
    lines.append("    return Y0")
    lines.append("")
    lines.append("def dose_scales(K):")
    lines += unpack_constants("    ", column=False)
    lines.append(f"    S = numpy.empty((K.shape[0], {len(sym.dose_scales)}))")
    for i, e in enumerate(sym.dose_scales):
        lines.append(f"    S[:, {i}] = {vec.doprint(e)}")
    lines.append("    return S")
    lines.append("")
    # observe(Y, K, T, which): batched over patients (N, T, S); computes only the observables
    # asked for and the intermediate quantities they need (a run may store a few read-outs)
    dyn_syms = {sp.Symbol(_safe(n), real=True): n for n in sym.dynamic_order}
    direct = {n: {dyn_syms[x] for x in sym.dynamic_exprs[n].free_symbols if x in dyn_syms}
              for n in sym.dynamic_order}
    closure: dict[str, set[str]] = {}
    for n in sym.dynamic_order:  # in order, so dependencies are closed before use
        closure[n] = set(direct[n]).union(*[closure[d] for d in direct[n]])
    needs = []
    for e in sym.observables:
        first = {dyn_syms[x] for x in e.free_symbols if x in dyn_syms}
        needs.append(sorted(first.union(*[closure[d] for d in first])))
    lines.append(f"OBSERVE_NEEDS = {tuple(tuple(n) for n in needs)!r}")
    lines.append("")
    lines.append("def observe(Y, K, T, which=None):")
    lines.append(f"    which = range({len(sym.observables)}) if which is None else which")
    lines.append("    need = set()")
    lines.append("    for i in which:")
    lines.append("        need.update(OBSERVE_NEEDS[i])")
    lines.append("    t = T[None, :]")
    lines += unpack_constants("    ", column=True)
    for i, n in enumerate(states):
        lines.append(f"    {_safe(n)} = Y[:, :, {i}]")
    for n in sym.dynamic_order:
        lines.append(f"    if {n!r} in need:")
        lines.append(f"        {_safe(n)} = {vec.doprint(sym.dynamic_exprs[n])}")
    lines.append("    OBS = numpy.empty(Y.shape[:2] + (len(which),))")
    lines.append("    for j, i in enumerate(which):")
    for i, e in enumerate(sym.observables):
        lines.append(f"        {'if' if i == 0 else 'elif'} i == {i}:")
        lines.append(f"            OBS[:, :, j] = {vec.doprint(e)}")
    lines.append("    return OBS")
    lines.append("")

    # rhs and jac: scalar, compiled
    subs = {}
    for n in sym.dynamic_order:
        subs[sp.Symbol(_safe(n), real=True)] = sym.dynamic_exprs[n].xreplace(subs)
    rates = [r.xreplace(subs) + sp.Symbol(f"u_{i}", real=True) for i, r in enumerate(sym.rates)]
    y_syms = [sp.Symbol(_safe(n), real=True) for n in states]
    jac = sp.Matrix(rates).jacobian(y_syms)

    def body(exprs: list[sp.Expr], target: str, shape: str | None, index) -> list[str]:
        """Straight-line code; allocates ``target`` unless ``shape`` is None (written in place)."""
        reps, reduced = sp.cse(exprs, symbols=sp.numbered_symbols("x_"), optimizations="basic")
        out = [f"    {target} = numpy.zeros({shape})"] if shape is not None else []
        out += [f"    {sca.doprint(s)} = {sca.doprint(v)}" for s, v in reps]
        for idx, e in zip(index, reduced):
            if e != 0 or shape is None:
                out.append(f"    {target}[{idx}] = {sca.doprint(e)}")
        out.append(f"    return {target}" if shape is not None else "    return")
        return out

    header = (["    " + f"{_safe(n)} = k[{i}]" for i, n in enumerate(sym.constant_names)]
              + ["    " + f"{_safe(n)} = y[{i}]" for i, n in enumerate(states)]
              + ["    " + f"u_{i} = u[{i}]" for i in range(len(states))])
    # rhs_into writes into a caller's array: compiled integrators call it thousands of times
    # per patient, and an allocation per call costs as much as the arithmetic
    lines.append(JIT)
    lines.append("def rhs_into(y, t, k, u, dydt):")
    lines += header
    lines += body(rates, "dydt", None, list(range(len(states))))
    lines.append("")
    lines.append(JIT)
    lines.append("def rhs(y, t, k, u):")
    lines.append(f"    dydt = numpy.empty({len(states)})")
    lines.append("    rhs_into(y, t, k, u, dydt)")
    lines.append("    return dydt")
    lines.append("")
    nz = [(i, j) for i in range(jac.rows) for j in range(jac.cols) if jac[i, j] != 0]
    lines.append(JIT)
    lines.append("def jac(y, t, k, u):")
    lines += header
    lines += body([jac[i, j] for i, j in nz], "J", f"({len(states)}, {len(states)})",
                  [f"{i}, {j}" for i, j in nz])
    lines.append("")
    lines += _sparse_lu_source(len(states), nz)
    return "\n".join(lines)


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


def _sparse_lu_source(n: int, jac_nz: list[tuple[int, int]]) -> list[str]:
    """Straight-line LU of M = I - c*J for the Jacobian's sparsity pattern.

    Pivots are taken on the diagonal in a minimum-degree order (no row exchanges): M is an
    identity minus a small multiple of J, and a tiny pivot makes the Newton iteration fail,
    which the integrator answers by halving the step. The factors live in a flat array F.
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
    out = [f"LU_NNZ = {len(slots)}", "", "@numba.njit(cache=True)", "def lu_factor(c, J, F):"]
    out.append("    F[:] = 0.0")
    for (i, j), idx in slots.items():
        oi, oj = perm[i], perm[j]
        if (oi, oj) in pattern:
            out.append(f"    F[{idx}] = {'1.0 ' if oi == oj else ''}- c*J[{oi}, {oj}]")
    for k in range(n):
        out.append(f"    if F[{slots[(k, k)]}] == 0.0:")
        out.append("        return False")
        out.append(f"    inv = 1.0/F[{slots[(k, k)]}]")
        rows = [i for i in range(k + 1, n) if (i, k) in slots]
        cols = [j for j in range(k + 1, n) if (k, j) in slots]
        for i in rows:
            out.append(f"    F[{slots[(i, k)]}] *= inv")
            for j in cols:
                out.append(f"    F[{slots[(i, j)]}] -= F[{slots[(i, k)]}]*F[{slots[(k, j)]}]")
    out.append("    return True")
    out += ["", "@numba.njit(cache=True)", "def lu_solve(F, b):", f"    r = numpy.empty({n})",
            f"    lu_solve_into(F, b, numpy.empty({n}), r)", "    return r", ""]
    out += ["@numba.njit(cache=True)", "def lu_solve_into(F, b, x, r):"]
    for i in range(n):
        terms = "".join(f" - F[{slots[(i, j)]}]*x[{j}]" for j in range(i) if (i, j) in slots)
        out.append(f"    x[{i}] = b[{perm[i]}]{terms}")
    for i in range(n - 1, -1, -1):
        terms = "".join(f" - F[{slots[(i, j)]}]*x[{j}]" for j in range(i + 1, n) if (i, j) in slots)
        out.append(f"    x[{i}] = (x[{i}]{terms})/F[{slots[(i, i)]}]")
    for i in range(n):
        out.append(f"    r[{perm[i]}] = x[{i}]")
    out.append("")
    return out


def vector_function(model: Model, texts: Sequence[str], where: str = "expression") -> Callable:
    """NumPy code for expressions over the model's names (states, constants, assignments, time):
    ``f(Y, K, T) -> list of arrays``, with ``Y`` (N, M, S) states, ``K`` (N, constants) from
    :func:`constants`, ``T`` time broadcastable to (N, M). Used for event triggers and event
    assignments, which are evaluated between solver segments, not inside the integrator."""
    sym = parse(model)
    _, expr = _parser(model)
    subs: dict[sp.Symbol, sp.Expr] = {}
    for n in sym.dynamic_order:
        subs[sp.Symbol(_safe(n), real=True)] = sym.dynamic_exprs[n].xreplace(subs)
    exprs = [expr(text, f"{where} {text!r}").xreplace(subs) for text in texts]
    vec = _VectorPrinter()
    lines = ["def f(Y, K, T):", "    t = T"]
    lines += [f"    {_safe(n)} = K[:, {i}, None]" for i, n in enumerate(sym.constant_names)]
    lines += [f"    {_safe(n)} = Y[:, :, {i}]" for i, n in enumerate(model.state_names)]
    lines.append("    return [" + ", ".join(f"{vec.doprint(e)} + 0 * t" for e in exprs) + "]")
    namespace = {"numpy": np, "math": math}
    exec(compile("\n".join(lines), f"<{model.name} {where}>", "exec"), namespace)
    return namespace["f"]


def cache_dir() -> Path:
    base = os.environ.get("CARTWIN_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cartwin")
    path = Path(base) / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


@cache
def compile_model(model: Model) -> ModuleType:
    """Generate (or reuse) and import the compiled module of ``model``."""
    key = hashlib.sha256(f"{CODEGEN_VERSION}:{model.content_hash()}".encode()).hexdigest()[:16]
    module_name = f"cartwin_gen_{model.name}_{key}"
    path = cache_dir() / f"{module_name}.py"
    if not path.exists():
        source = _source(model, parse(model))
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
    """Compile rhs/jac now (or load them from numba's cache), from their signature alone: the
    model is never evaluated at made-up values (constants of 1 can divide by zero: ln(1) = 0)."""
    from numba import types

    vector = types.float64[::1]
    module.rhs.compile((vector, types.float64, vector, vector))
    module.jac.compile((vector, types.float64, vector, vector))
