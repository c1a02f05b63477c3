"""The model declaration as sympy expressions, and the Python source generated from them.

:func:`parse` classifies every assignment (constant or dynamic) and parses every expression;
:func:`module_source` writes the module that :func:`cartwin.model.codegen.compile_model` caches and
compiles; :func:`vector_function` turns expressions over the model's names into NumPy code (event
triggers and assignments). Only code generation needs sympy, so it lives here, apart from the
loading and compiling of cached code that every worker process does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Callable, Sequence

import numpy as np
import sympy as sp
from sympy.parsing.sympy_parser import parse_expr
from sympy.printing.numpy import NumPyPrinter
from sympy.printing.pycode import PythonCodePrinter

from cartwin.model.codegen import JIT, _safe, _sparse_lu_source, code_key
from cartwin.model.declaration import Model, ModelDeclarationError


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
    def _print_Pow(self, expr, rational=False):
        if expr.exp.is_Number:  # x**2, 1/x, sqrt(x): Python's own
            return super()._print_Pow(expr, rational)
        return f"_pow({self._print(expr.base)}, {self._print(expr.exp)})"

    def _print_Max(self, expr):
        return "max(" + ", ".join(self._print(a) for a in expr.args) + ")"

    def _print_Min(self, expr):
        return "min(" + ", ".join(self._print(a) for a in expr.args) + ")"


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


def dynamic_substitutions(sym: Symbolic) -> dict[sp.Symbol, sp.Expr]:
    """Each state-dependent assignment's symbol -> its expression in states, constants and time
    (earlier assignments substituted in order)."""
    subs: dict[sp.Symbol, sp.Expr] = {}
    for n in sym.dynamic_order:
        subs[sp.Symbol(_safe(n), real=True)] = sym.dynamic_exprs[n].xreplace(subs)
    return subs


def substituted_rates(sym: Symbolic) -> list[sp.Expr]:
    """The states' rates with every state-dependent assignment substituted: expressions of the
    states, the constants and time alone (what the right-hand side evaluates)."""
    subs = dynamic_substitutions(sym)
    return [r.xreplace(subs) for r in sym.rates]


HOISTED_PREFIX = "h_"  # the hoisted constants' names: h_0, h_1..., skipping any declared name


def _costly(e: sp.Expr) -> bool:
    """Whether ``e`` calls a library function when evaluated: a power with a non-integer or
    symbolic exponent (``pow``), or a function (exp, log, ...)."""
    return any(isinstance(x, sp.Function) or (isinstance(x, sp.Pow) and not x.exp.is_Integer)
               for x in sp.preorder_traversal(e))


def hoist_constant_calls(exprs, constants: set[sp.Symbol], taken: set[str] = frozenset()
                         ) -> tuple[list[sp.Expr], list[tuple[sp.Symbol, sp.Expr]]]:
    """``exprs`` with every largest subexpression of constants alone that calls a library
    function (``_costly``: ``K_AG**N_AG``, a Hill threshold to a patient's exponent) replaced
    by a new symbol, and the (symbol, expression) pairs. The right-hand side and the Jacobian
    are evaluated thousands of times per patient and such a value is the same at every one;
    computed once per patient with the other derived constants, it leaves the integrator's
    inner loop. Cheap subexpressions (sums, products, integer powers) stay where they are, and so
    does everything inside a Piecewise (a branch may be evaluated only where its condition holds).
    The new names (``h_0``, ``h_1``...) skip any name in ``taken``, the model's declared names."""
    found: dict[sp.Expr, sp.Symbol] = {}
    index = 0

    def collect(e):
        nonlocal index
        if e.is_Atom or isinstance(e, sp.Piecewise):
            return
        free = e.free_symbols
        if isinstance(e, sp.Expr) and free and free <= constants and _costly(e):
            if e not in found:
                while f"{HOISTED_PREFIX}{index}" in taken:
                    index += 1
                found[e] = sp.Symbol(f"{HOISTED_PREFIX}{index}", real=True)
                index += 1
            return
        for a in e.args:
            collect(a)

    for e in exprs:
        collect(e)
    return [e.xreplace(found) for e in exprs], [(s, e) for e, s in found.items()]


def module_source(model: Model, sym: Symbolic) -> str:
    """The source of the model's compiled module (see :mod:`cartwin.model.codegen`)."""
    vec, sca = _VectorPrinter(), _ScalarPrinter()
    states = model.state_names
    n_theta, n_cov = len(model.parameter_names), len(model.covariate_names)
    # the rates with their constant library calls hoisted into per-patient constants
    constant_syms = {sp.Symbol(_safe(n), real=True) for n in sym.constant_names}
    declared = set(sym.constant_names) | set(sym.dynamic_order) | set(states)
    rates, hoisted = hoist_constant_calls(substituted_rates(sym), constant_syms, declared)
    rates = [r + sp.Symbol(f"u_{i}", real=True) for i, r in enumerate(rates)]
    all_constants = tuple(sym.constant_names) + tuple(str(h) for h, _ in hoisted)
    lines = [
        f'"""Generated from model {model.name} (code key {code_key(model)}; first from version '
        f'{model.version}, declaration {model.content_hash()}). Do not edit."""',
        "import math",
        "import numpy",
        "import numba",
        "",
        f"STATE_NAMES = {tuple(states)!r}",
        f"CONSTANT_NAMES = {all_constants!r}",
        f"OBSERVABLE_TESTS = {tuple(o.test for o in model.observables)!r}",
        "",
        "def constants(THETA, COV):",
        f"    K = numpy.empty((THETA.shape[0], {len(all_constants)}))",
        f"    K[:, :{n_theta}] = THETA",
        f"    K[:, {n_theta}:{n_theta + n_cov}] = COV",
    ]
    for i, n in enumerate(sym.constant_names[: n_theta + n_cov]):
        lines.append(f"    {_safe(n)} = K[:, {i}]")
    for i, n in enumerate(sym.constant_names[n_theta + n_cov:], start=n_theta + n_cov):
        lines.append(f"    {_safe(n)} = K[:, {i}] = {vec.doprint(sym.constant_exprs[n])}")
    for i, (h, e) in enumerate(hoisted, start=len(sym.constant_names)):
        lines.append(f"    {h} = K[:, {i}] = {vec.doprint(e)}")
    lines.append("    return K")
    lines.append("")

    def unpack_constants(indent: str, column: bool) -> list[str]:
        fmt = "K[:, {i}, None]" if column else "K[:, {i}]"
        return [f"{indent}{_safe(n)} = {fmt.format(i=i)}" for i, n in enumerate(sym.constant_names)]

    def per_patient(function: str, target: str, exprs) -> list[str]:
        """``function(K)``: one column of ``target`` per expression, batched over patients."""
        out = [f"def {function}(K):", *unpack_constants("    ", column=False),
               f"    {target} = numpy.empty((K.shape[0], {len(exprs)}))"]
        out += [f"    {target}[:, {i}] = {vec.doprint(e)}" for i, e in enumerate(exprs)]
        return out + [f"    return {target}", ""]

    lines += per_patient("initial", "Y0", sym.initials)
    lines += per_patient("dose_scales", "S", sym.dose_scales)
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
    y_syms = [sp.Symbol(_safe(n), real=True) for n in states]
    jac = sp.Matrix(rates).jacobian(y_syms)

    loads = ([(_safe(n), f"k[{i}]") for i, n in enumerate(sym.constant_names)]
             + [(str(h), f"k[{i}]") for i, (h, _) in enumerate(hoisted, start=len(sym.constant_names))]
             + [(_safe(n), f"y[{i}]") for i, n in enumerate(states)]
             + [(f"u_{i}", f"u[{i}]") for i in range(len(states))])

    def body(exprs: list[sp.Expr], target: str, index) -> list[str]:
        """Straight-line code writing ``target[index]``, after loading only the constants, states
        and inputs it uses (numba's compile time grows with every statement, used or not)."""
        reps, reduced = sp.cse(exprs, symbols=sp.numbered_symbols("x_"), optimizations=None)
        used = {str(x) for _, v in reps for x in v.free_symbols}
        used |= {str(x) for e in reduced for x in e.free_symbols}
        out = [f"    {name} = {source}" for name, source in loads if name in used]
        out += [f"    {sca.doprint(s)} = {sca.doprint(v)}" for s, v in reps]
        for idx, e in zip(index, reduced):
            out.append(f"    {target}[{idx}] = {sca.doprint(e)}")
        out.append("    return")
        return out

    # a power to a parameter (a Hill coefficient, a p-norm's order) is mostly to a whole number
    # that is the same at every call: a few multiplications then (at most 16: the rounding error
    # grows with the exponent, about |y| ulp), instead of a call to pow
    # (glibc's pow was a quarter of the integration's CPU); the branch is always predicted
    lines += [
        JIT,
        "def _pow(x, y):",
        "    if y == math.floor(y) and abs(y) <= 16.0:",
        "        n = int(abs(y))",
        "        r = 1.0",
        "        b = float(x)  # a whole-number literal base would square in wrapping int64",
        "        while n > 0:",
        "            if n & 1:",
        "                r *= b",
        "            b *= b",
        "            n >>= 1",
        "        return r if y >= 0.0 else 1.0 / r",
        "    return x ** y",
        "",
    ]
    # rhs_into writes into a caller's array: compiled integrators call it thousands of times
    # per patient, and an allocation per call costs as much as the arithmetic
    lines.append(JIT)
    lines.append("def rhs_into(y, t, k, u, dydt):")
    lines += body(rates, "dydt", list(range(len(states))))
    lines.append("")
    lines.append(JIT)
    lines.append("def rhs(y, t, k, u):")
    lines.append(f"    dydt = numpy.empty({len(states)})")
    lines.append("    rhs_into(y, t, k, u, dydt)")
    lines.append("    return dydt")
    lines.append("")
    nz = [(i, j) for i in range(jac.rows) for j in range(jac.cols) if jac[i, j] != 0]
    # jac_into writes the nonzero entries into a caller's array, which keeps its zeros elsewhere
    lines.append(JIT)
    lines.append("def jac_into(y, t, k, u, J):")
    lines += body([jac[i, j] for i, j in nz], "J", [f"{i}, {j}" for i, j in nz])
    lines.append("")
    lines.append(JIT)
    lines.append("def jac(y, t, k, u):")
    lines.append(f"    J = numpy.zeros(({len(states)}, {len(states)}))")
    lines.append("    jac_into(y, t, k, u, J)")
    lines.append("    return J")
    lines.append("")
    lines += _sparse_lu_source(len(states), nz)
    return "\n".join(lines)



def vector_function(model: Model, texts: Sequence[str], where: str = "expression") -> Callable:
    """NumPy code for expressions over the model's names (states, constants, assignments, time):
    ``f(Y, K, T) -> list of arrays``, with ``Y`` (N, M, S) states, ``K`` (N, constants) from
    :func:`constants`, ``T`` time broadcastable to (N, M). Used for event triggers and event
    assignments, which are evaluated between solver segments, not inside the integrator."""
    sym = parse(model)
    _, expr = _parser(model)
    subs = dynamic_substitutions(sym)
    exprs = [expr(text, f"{where} {text!r}").xreplace(subs) for text in texts]
    vec = _VectorPrinter()
    lines = ["def f(Y, K, T):", "    t = T"]
    lines += [f"    {_safe(n)} = K[:, {i}, None]" for i, n in enumerate(sym.constant_names)]
    lines += [f"    {_safe(n)} = Y[:, :, {i}]" for i, n in enumerate(model.state_names)]
    lines.append("    return [" + ", ".join(f"{vec.doprint(e)} + 0 * t" for e in exprs) + "]")
    namespace = {"numpy": np, "math": math}
    exec(compile("\n".join(lines), f"<{model.name} {where}>", "exec"), namespace)
    return namespace["f"]
